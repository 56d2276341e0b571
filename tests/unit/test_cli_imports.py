"""``tierra run`` sets KUBECONFIG before the Kubernetes client libraries load (they read it
once, when imported): importing the CLI must not load them."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_cli_loads_no_kubernetes_client() -> None:
    probe = (
        "import sys, tierra.cli; "
        "loaded = [m for m in ('kubernetes', 'kubernetes_asyncio') if m in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

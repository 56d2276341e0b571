"""Write (or check) the generated CRD YAML in ``crds/`` and the Helm chart's ``crds/``, and the
API reference generated from the same schemas (``docs/api.md``)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tierra.api.crd import all_crds
from tierra.apidocs import API_REFERENCE, stale_api_reference, write_api_reference

HEADER = "# Generated from operator/tierra/api by `tierra crds generate`. Do not edit.\n"
TARGET_DIRS = (Path("crds"), Path("charts/tierra/crds"))


def render_crds() -> dict[str, str]:
    """File name -> YAML text."""
    return {
        name: HEADER + yaml.safe_dump(crd, sort_keys=False, width=100)
        for name, crd in all_crds().items()
    }


def write_crds(root: Path) -> list[Path]:
    written = []
    for directory in TARGET_DIRS:
        (root / directory).mkdir(parents=True, exist_ok=True)
        for name, text in render_crds().items():
            path = root / directory / name
            path.write_text(text)
            written.append(path)
    written.append(write_api_reference(root))
    return written


def stale_crds(root: Path) -> list[Path]:
    """Checked-in CRD files (and the API reference) that differ from what the models generate."""
    stale = [
        root / directory / name
        for directory in TARGET_DIRS
        for name, text in render_crds().items()
        if not (root / directory / name).exists() or (root / directory / name).read_text() != text
    ]
    if stale_api_reference(root):
        stale.append(root / API_REFERENCE)
    return stale

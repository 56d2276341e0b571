"""docs/api.md is generated from the CRD schemas (so from the models) and kept in sync."""

from __future__ import annotations

from pathlib import Path

from tierra.apidocs import API_REFERENCE, render_api_reference, stale_api_reference
from tierra.crdgen import stale_crds

REPO = Path(__file__).resolve().parents[2]


def test_api_reference_is_in_sync() -> None:
    assert not stale_api_reference(REPO), "run `tierra crds generate`"
    assert REPO / API_REFERENCE not in stale_crds(REPO)


def test_every_field_is_documented_with_its_constraints() -> None:
    text = render_api_reference()
    for row in (
        "| `spec.runtime.podSecurity` | `restricted` \\| `baseline` |  | `restricted` |",
        "| `spec.pools[].accelerator.perNode` | integer |  | `1` | >= 1; <= 64 |",
        "| `spec.variants[].accelerator.count` |",
        "| `status.conditions[].observedGeneration` |",
    ):
        assert row in text, row
    assert "## Tier" in text and "## InferenceService" in text


def test_a_stale_reference_is_reported(tmp_path: Path) -> None:
    (tmp_path / API_REFERENCE).parent.mkdir(parents=True)
    (tmp_path / API_REFERENCE).write_text(render_api_reference() + "edited\n")
    assert stale_api_reference(tmp_path)

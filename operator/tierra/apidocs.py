"""The API reference (``docs/api.md``), generated from the same CRD schemas as ``crds/`` (and
so from the typed models): every field of Tier and InferenceService with its type, default,
constraints and description. ``tierra crds generate`` writes it and ``tierra crds check``
fails when it is stale."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tierra.api.crd import all_crds

API_REFERENCE = Path("docs") / "api.md"


def _type(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = str(schema.get("type", "object"))
    if kind == "array":
        return f"[]{_type(schema.get('items') or {})}"
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:
        values = schema["additionalProperties"]
        return f"map[string]{_type(values) if isinstance(values, Mapping) else 'any'}"
    return kind


def _constraints(schema: Mapping[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minimum", ">="),
        ("maximum", "<="),
        ("minLength", "length >="),
        ("maxLength", "length <="),
        ("minItems", "items >="),
        ("maxItems", "items <="),
    ):
        if key in schema:
            exclusive = schema.get("exclusiveMinimum" if key == "minimum" else "exclusiveMaximum")
            shown = {">=": ">", "<=": "<"}.get(label, label) if exclusive is True else label
            parts.append(f"{shown} {schema[key]}")
    if "pattern" in schema:
        parts.append(f"pattern `{schema['pattern']}`")
    for rule in schema.get("x-kubernetes-validations") or []:
        parts.append(str(rule.get("message") or rule.get("rule")))
    return "; ".join(parts).replace("|", "\\|")


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(path: str, schema: Mapping[str, Any], required: bool) -> Iterator[str]:
    default = f"`{_cell(schema['default'])}`" if "default" in schema else ""
    yield (
        f"| `{path}` | {_type(schema)} | {'yes' if required else ''} | {default} | "
        f"{_constraints(schema)} | {_cell(schema.get('description', ''))} |"
    )
    child = schema
    suffix = ""
    while child.get("type") == "array":
        child = child.get("items") or {}
        suffix += "[]"
    needed = set(child.get("required") or [])
    for name, sub in (child.get("properties") or {}).items():
        yield from _rows(f"{path}{suffix}.{name}", sub, name in needed)


def render_api_reference() -> str:
    lines = [
        "# API reference: `tierra.dev/v1alpha1`",
        "",
        "Generated from the typed models (`operator/tierra/api/`) by `tierra crds generate`; "
        "`tierra crds check` fails when it is stale. Do not edit.",
        "",
    ]
    for crd in all_crds().values():
        spec = crd["spec"]
        names = spec["names"]
        version = spec["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        lines += [
            f"## {names['kind']}",
            "",
            f"{_cell(schema.get('description', ''))}",
            "",
            f"- scope: {spec['scope']}; plural `{names['plural']}`; short names "
            + ", ".join(f"`{n}`" for n in names.get("shortNames", []))
            + "; categories "
            + ", ".join(f"`{c}`" for c in names.get("categories", [])),
            f"- subresources: {', '.join(sorted(version.get('subresources') or {})) or 'none'}",
            "",
        ]
        for part in ("spec", "status"):
            if part not in schema["properties"]:
                continue
            lines += [
                f"### {part}",
                "",
                "| field | type | required | default | constraints | description |",
                "|---|---|---|---|---|---|",
                *_rows(part, schema["properties"][part], part in (schema.get("required") or [])),
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def stale_api_reference(root: Path) -> bool:
    path = root / API_REFERENCE
    return not path.exists() or path.read_text() != render_api_reference()


def write_api_reference(root: Path) -> Path:
    path = root / API_REFERENCE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_api_reference())
    return path

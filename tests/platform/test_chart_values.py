"""Every values key platform/ sets exists in the pinned chart: in its values.yaml (with its packaged
subcharts' values) and the maps its templates pass on verbatim (upstream/values-passthrough.yaml), and,
where it has a values.schema.json, the coalesced values pass it too (as Helm validates them)."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import jsonschema
from chart_cache import default_values_with_subcharts, values_schema
from platform_render import RenderedApp, _merge
from upstream import facts


def _resolve(schema: dict[str, Any], node: Any) -> Any:
    """`node` with its local `$ref` (`#/$defs/...`, `#/definitions/...`) followed."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _schema_child(schema: dict[str, Any], node: Any, key: str) -> tuple[bool, Any]:
    """Whether the (resolved) schema object `node` declares `key`, and the key's schema. JSON Schema:
    a key is declared by `properties`, a matching `patternProperties` or an `additionalProperties`
    other than false; an object schema with none of the three leaves its keys open."""
    node = _resolve(schema, node)
    if not isinstance(node, dict):
        return False, None
    if key in node.get("properties", {}):
        return True, node["properties"][key]
    for pattern, child in node.get("patternProperties", {}).items():
        if re.search(pattern, key):
            return True, child
    additional = node.get("additionalProperties")
    if additional not in (None, False):
        return True, additional if isinstance(additional, dict) else {}
    if additional is None and "properties" not in node and "patternProperties" not in node:
        return True, {}
    return False, None


def _unknown_keys(  # noqa: PLR0917 (recursive walk over three parallel trees)
    ours: Any, defaults: Any, allowed: list[str], path: str = "", schema: dict[str, Any] | None = None, node: Any = None
) -> list[str]:
    """Keys in `ours` that neither the chart's values.yaml (`defaults`) nor, where the chart has one, its
    values.schema.json (`schema`, at `node`) declares, nor an `allowed` pattern covers."""
    unknown = []
    if not isinstance(ours, dict):
        return unknown
    for key, value in ours.items():
        here = f"{path}.{key}" if path else str(key)
        if any(fnmatch.fnmatchcase(here, pattern) for pattern in allowed):
            continue
        declared, child = _schema_child(schema, node, str(key)) if schema is not None else (False, None)
        if isinstance(defaults, dict) and key in defaults:
            if defaults[key] != {}:
                # An empty map in values.yaml (annotations, resources, nodeSelector) is one the
                # templates hand on as it is: any key below it is the user's.
                unknown += _unknown_keys(value, defaults[key], allowed, here, schema, child)
        elif declared:
            if isinstance(child, dict) and child:
                unknown += _unknown_keys(value, None, allowed, here, schema, child)
        else:
            unknown.append(here)
    return unknown


def _problems(name: str, chart: str, version: str, ours: dict[str, Any]) -> list[str]:
    """What is wrong with our values for one chart: keys its values.yaml (with subcharts and the recorded
    passthrough maps) does not have, and, where it has a values.schema.json, what the schema refuses.
    Both, since a schema need not close its objects (external-secrets 1.1.0's has no
    `additionalProperties: false` at the top, so a misspelt key passes it)."""
    recorded = facts("values-passthrough")["charts"]
    defaults = default_values_with_subcharts(chart, version)
    problems = []
    schema = values_schema(chart, version)
    if schema is not None:
        merged = _merge(defaults, ours)
        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)(schema)
        problems += [
            f"{name}: {chart} {version} {'.'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(merged)
        ]
    entry = recorded.get(chart, {})
    if entry:
        assert entry["version"] == version, f"values-passthrough.yaml records {chart} {entry['version']}"
    allowed = entry.get("passthrough", []) + entry.get("read_not_listed", [])
    unknown = _unknown_keys(ours, defaults, allowed, schema=schema, node=schema)
    problems += [f"{name}: {chart} {version} has no value {k}" for k in unknown]
    return problems


def test_every_values_key_exists_in_the_pinned_chart(apps: dict[str, RenderedApp]) -> None:
    problems = []
    for name, app in apps.items():
        for chart, (source, ours) in app.charts.items():
            problems += _problems(name, chart, source["targetRevision"], ours)
    assert problems == [], "\n".join(problems)


def test_a_misspelt_key_is_found_where_the_schema_lets_it_pass(apps: dict[str, RenderedApp]) -> None:
    source, ours = apps["external-secrets"].charts["external-secrets"]
    assert values_schema("external-secrets", source["targetRevision"]) is not None
    assert _problems("external-secrets", "external-secrets", source["targetRevision"], ours) == []
    misspelt = {**ours, "installCRDz": True}
    assert _problems("external-secrets", "external-secrets", source["targetRevision"], misspelt) == [
        f"external-secrets: external-secrets {source['targetRevision']} has no value installCRDz"
    ]


def test_unknown_keys_are_found_below_known_ones() -> None:
    defaults = {"a": {"b": 1}, "free": {"x": 1}}
    assert _unknown_keys({"a": {"b": 2, "c": 3}, "free": {"y": 1}, "z": 1}, defaults, ["free"]) == ["a.c", "z"]


def test_keys_a_schema_declares_or_leaves_open_are_known() -> None:
    schema = {
        "type": "object",
        "properties": {
            "pdb": {"$ref": "#/$defs/pdb"},
            "config": {"type": "object"},
            "ports": {"type": "object", "patternProperties": {".*": {"type": "object", "properties": {"on": {}}}}},
        },
        "$defs": {"pdb": {"type": "object", "additionalProperties": False, "properties": {"minAvailable": {}}}},
    }
    ours = {"pdb": {"minAvailable": 1, "minAvailible": 1}, "config": {"any": {"x": 1}}}
    ours["ports"] = {"p": {"on": 1, "of": 1}}
    assert _unknown_keys({**ours, "typo": 1}, {"pdb": {"enabled": False}}, [], schema=schema, node=schema) == [
        "pdb.minAvailible",
        "ports.p.of",
        "typo",
    ]

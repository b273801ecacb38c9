"""Every values key platform/ sets exists in the pinned chart: against its values.schema.json where it
has one (as Helm validates the coalesced values), else against its values.yaml (with its packaged
subcharts' values) and the maps its templates pass on verbatim (upstream/values-passthrough.yaml)."""

from __future__ import annotations

import fnmatch
from typing import Any

import jsonschema
from chart_cache import default_values_with_subcharts, values_schema
from platform_render import RenderedApp, _merge
from upstream import facts


def _unknown_keys(ours: Any, defaults: Any, allowed: list[str], path: str = "") -> list[str]:
    unknown = []
    if not isinstance(ours, dict):
        return unknown
    for key, value in ours.items():
        here = f"{path}.{key}" if path else str(key)
        if any(fnmatch.fnmatchcase(here, pattern) for pattern in allowed):
            continue
        if not isinstance(defaults, dict) or key not in defaults:
            unknown.append(here)
        elif defaults[key] != {}:
            # An empty map in values.yaml (annotations, resources, nodeSelector) is one the
            # templates hand on as it is: any key below it is the user's.
            unknown += _unknown_keys(value, defaults[key], allowed, here)
    return unknown


def test_every_values_key_exists_in_the_pinned_chart(apps: dict[str, RenderedApp]) -> None:
    recorded = facts("values-passthrough")["charts"]
    problems = []
    for name, app in apps.items():
        for chart, (source, ours) in app.charts.items():
            version = source["targetRevision"]
            defaults = default_values_with_subcharts(chart, version)
            schema = values_schema(chart, version)
            if schema is not None:
                merged = _merge(defaults, ours)
                validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)(schema)
                problems += [
                    f"{name}: {chart} {version} {'.'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                    for e in validator.iter_errors(merged)
                ]
                continue
            entry = recorded.get(chart, {})
            if entry:
                assert entry["version"] == version, f"values-passthrough.yaml records {chart} {entry['version']}"
            allowed = entry.get("passthrough", []) + entry.get("read_not_listed", [])
            problems += [f"{name}: {chart} {version} has no value {k}" for k in _unknown_keys(ours, defaults, allowed)]
    assert problems == [], "\n".join(problems)


def test_unknown_keys_are_found_below_known_ones() -> None:
    defaults = {"a": {"b": 1}, "free": {"x": 1}}
    assert _unknown_keys({"a": {"b": 2, "c": 3}, "free": {"y": 1}, "z": 1}, defaults, ["free"]) == ["a.c", "z"]

"""Facts about upstream charts, loaders and controllers that the platform tests rely on.

Each file in tests/platform/upstream/ is written by us from the upstream source it names (repository,
path and tag) and holds only the small facts a test needs, so a chart bump shows in review what moved.
"""

from __future__ import annotations

import fnmatch
import functools
from pathlib import Path
from typing import Any

import yaml

UPSTREAM = Path(__file__).resolve().parents[1] / "upstream"


@functools.cache
def facts(name: str) -> dict[str, Any]:
    """The parsed data file `tests/platform/upstream/<name>.yaml`."""
    return yaml.safe_load((UPSTREAM / f"{name}.yaml").read_text())


def at(values: Any, dotted: str) -> Any:
    """The value at a dotted values path, or None where any part is missing."""
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def holds(values: Any, conditions: list[str]) -> bool:
    """Every condition holds in the values: `path` is truthy, `!path` is falsy (Helm's truthiness:
    missing, false, 0, "" and empty collections are false)."""
    for condition in conditions:
        negate = condition.startswith("!")
        value = bool(at(values, condition.removeprefix("!")))
        if value == negate:
            return False
    return True


def mlflow_accepts_host(allowed: list[str], host: str) -> bool:
    """MLflow's Host-header check (upstream/mlflow-server.yaml `matching`): a pattern with `*` is
    matched with fnmatch, any other must equal the Host header, port included."""
    return "*" in allowed or any(fnmatch.fnmatch(host, a) if "*" in a else host == a for a in allowed)

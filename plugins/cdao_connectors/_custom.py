"""Rebuild a task config dataclass from ``TaskTemplate.custom``.

``custom`` travels as a protobuf Struct, whose only number type is double: an ``int`` field comes
back as ``2.0`` and must be turned back into ``2`` before the config's own validation runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_custom(cls: type[T], custom: dict[str, Any] | None, task_name: str) -> T:
    if not custom:
        raise ValueError(f"task {task_name}: the template carries no {cls.__name__} config in 'custom'")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(custom) - set(fields))
    if unknown:
        raise ValueError(f"task {task_name}: unknown {cls.__name__} fields {unknown} (SDK/connector version skew?)")
    values = {}
    for name, raw in custom.items():
        is_int_field = "int" in str(fields[name].type)
        values[name] = int(raw) if isinstance(raw, float) and raw.is_integer() and is_int_field else raw
    return cls(**values)

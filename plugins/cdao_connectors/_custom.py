"""Rebuild a task config dataclass from ``TaskTemplate.custom``, checking every field's type.

``custom`` travels as a protobuf Struct, whose only number type is double: an ``int`` field comes
back as ``2.0`` and is turned back into ``2``. Everything else must already have the field's type:
a config written by another SDK version, or by hand, fails here with the task and field named,
instead of as a bare ``TypeError`` deep inside a connector or a botocore parameter error.
Hand-written because the configs are plain dataclasses shared with the SDK; a validation library
would add a second definition of each.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


_WHOLE = object()  # a _Mismatch about the value being coerced, not one of its items


class _Mismatch(Exception):
    """``value`` (``_WHOLE``: the field's own) at ``path`` inside the field is not ``expected``."""

    def __init__(self, expected: str, path: str = "", value: Any = _WHOLE):
        self.expected = expected
        self.path = path
        self.value = value

    def inside(self, step: str, item: Any) -> _Mismatch:
        """This mismatch, seen from the container holding ``item`` at ``step``."""
        return _Mismatch(self.expected, step + self.path, item if self.value is _WHOLE else self.value)


def _scalar(value: Any, hint: Any) -> Any:
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    raise _Mismatch(_EXPECTED[hint])


_EXPECTED = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _coerce(value: Any, hint: Any, task_name: str = "", key: Callable[[str], str] = str) -> Any:
    """``value`` as ``hint`` (str, int, float, bool, X | None, dict/Mapping[str, V], tuple[V, ...], list[V],
    a nested dataclass whose fields travel under ``key(field name)``, Any: a JSON value, as is)."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _nested(value, hint, task_name, key)
    if hint is Any or hint in _EXPECTED:
        return value if hint is Any else _scalar(value, hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        expected = []
        non_null = [o for o in options if o is not type(None)]
        for option in non_null:
            try:
                return _coerce(value, option, task_name, key)
            except _Mismatch as wrong:
                if wrong.path and len(non_null) == 1:
                    raise  # the value has the option's form; one of its items is what is wrong
                expected.append(wrong.expected)
        raise _Mismatch(" or ".join(expected + (["null"] if type(None) in options else [])))
    if origin in (dict, Mapping):
        key_hint, value_hint = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise _Mismatch(f"a mapping of {_name(key_hint)} to {_name(value_hint)}")
        coerced = {}
        # A wrong key or value is named by its key: the whole mapping's repr does not say which.
        for k, v in value.items():
            try:
                ck = _coerce(k, key_hint)
            except _Mismatch as wrong:
                raise wrong.inside(f" key {k!r}", k) from None
            try:
                coerced[ck] = _coerce(v, value_hint, task_name, key)
            except _Mismatch as wrong:
                raise wrong.inside(f"[{k!r}]", v) from None
        return coerced
    if origin in (tuple, list):
        item_hint = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(f"a list of {_name(item_hint)}")
        items = []
        for i, v in enumerate(value):
            try:
                items.append(_coerce(v, item_hint, task_name, key))
            except _Mismatch as wrong:
                raise wrong.inside(f"[{i}]", v) from None
        return tuple(items) if origin is tuple else items
    raise TypeError(f"config field type {hint!r} is not supported by config_from_custom")


def _nested(value: Any, hint: Any, task_name: str, key: Callable[[str], str]) -> Any:
    if not isinstance(value, Mapping):
        raise _Mismatch(f"a {_name(hint)} mapping")
    names = _field_of(hint, key)
    unknown = sorted(k for k in value if k not in names)
    if unknown:
        raise ValueError(
            f"task {task_name}: unknown {_name(hint)} fields {unknown}, expected some of {sorted(names)} "
            "(SDK/connector version skew?)"
        )
    return _build(hint, {names[k]: v for k, v in value.items()}, task_name, key)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _field_of(cls: Any, key: Callable[[str], str]) -> dict[str, str]:
    return {key(f.name): f.name for f in dataclasses.fields(cls)}


def config_from_custom(
    cls: type[T], custom: Mapping[str, Any] | None, task_name: str, nested_key: Callable[[str], str] = str
) -> T:
    """``cls`` built from ``custom``; raises ValueError naming the task and the field that is wrong
    (unknown, missing, or of the wrong type), or the task, the config and the config's own value
    check (``task t: BatchJob: vcpus=0 must be an integer >= 1``), whose message names the field.

    A field whose type is itself a dataclass is checked the same way; its fields travel under
    ``nested_key(field name)`` (the form the owner's serializer writes them in)."""
    if not custom:
        raise ValueError(f"task {task_name}: the template carries no {cls.__name__} config in 'custom'")
    return _build(cls, custom, task_name, nested_key)


def _build(cls: Any, custom: Mapping[str, Any], task_name: str, key: Callable[[str], str]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(custom) - set(fields))
    if unknown:
        raise ValueError(f"task {task_name}: unknown {cls.__name__} fields {unknown} (SDK/connector version skew?)")
    missing = sorted(
        n
        for n, f in fields.items()
        if n not in custom and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ValueError(f"task {task_name}: {cls.__name__} fields {missing} are missing")
    values = {}
    for name, raw in custom.items():
        try:
            values[name] = _coerce(raw, hints[name], task_name, key)
        except _Mismatch as wrong:
            bad = raw if wrong.value is _WHOLE else wrong.value
            raise ValueError(
                f"task {task_name}: {cls.__name__}.{name}{wrong.path} = {bad!r} must be {wrong.expected}, "
                f"not {type(bad).__name__}"
            ) from None
    try:
        return cls(**values)
    except ValueError as refused:
        # The config's own value checks (its __post_init__) name the field, not the task.
        raise ValueError(f"task {task_name}: {cls.__name__}: {refused}") from None

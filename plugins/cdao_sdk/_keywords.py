"""Every SDK keyword checked against its annotation and shape when the decorator (or ``configure``)
is called, so a wrong value fails naming the decorator, the keyword and the expected form, instead
of as a bare TypeError deep in flytekit or botocore, or not at all.

Hand-written: the values are plain Python arguments (not a config file), and the checks read the
annotations the functions already carry, so there is no second definition of each keyword.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?")

# Keyword name -> (check, expected form): the shape every SDK function asks of that keyword.
SHAPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "execution_role_arn": (
        lambda v: bool(_ROLE_ARN.fullmatch(v)),
        "an IAM role ARN, arn:aws:iam::<account>:role/<name>",
    ),
    "output_s3_path": (lambda v: bool(_S3_URI.fullmatch(v)), "an s3://<bucket>/<prefix> URI"),
    "checkpoint_s3_uri": (lambda v: bool(_S3_URI.fullmatch(v)), "an s3://<bucket>/<prefix> URI"),
}


def _matches(value: Any, hint: Any) -> bool:  # noqa: PLR0911  (one answer per kind of annotation)
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin in (dict, Mapping):
        key_hint, value_hint = typing.get_args(hint)
        return isinstance(value, Mapping) and all(
            _matches(k, key_hint) and _matches(v, value_hint) for k, v in value.items()
        )
    if origin in (list, tuple):
        return isinstance(value, list | tuple) and all(_matches(v, typing.get_args(hint)[0]) for v in value)
    if origin is type:
        return isinstance(value, type)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # callables and the like: nothing to check by type


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(o) for o in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if origin in (dict, Mapping):
        key_hint, value_hint = typing.get_args(hint)
        return f"a mapping of {_describe(key_hint)} to {_describe(value_hint)}"
    if origin in (list, tuple):
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if origin is type:
        return "a type"
    return {bool: "True or False", int: "an integer", float: "a number", str: "str"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def check(where: str, name: str, value: Any, ok: bool, expected: str) -> None:
    """ValueError ``<where> <name>=<value>: expected <expected>`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{where} {name}={value!r}: expected {expected}")


def checked(where: str, *, unchecked: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wraps an SDK function: each keyword given (but ``unchecked``, which the function checks
    itself) is checked against its annotation, then against :data:`SHAPES` (``ValueError`` naming
    ``where``, the keyword and the expected form)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind_partial(*args, **kwargs)
            for name, value in bound.arguments.items():
                param = signature.parameters[name]
                if (
                    name.startswith("_")
                    or name in unchecked
                    or param.kind is inspect.Parameter.VAR_KEYWORD
                    or name not in hints
                ):
                    continue
                check(where, name, value, _matches(value, hints[name]), _describe(hints[name]))
                if name in SHAPES and value is not None:
                    shape, form = SHAPES[name]
                    check(where, name, value, shape(value), form)
            return fn(*args, **kwargs)

        return call

    return wrap

"""Every SDK keyword checked against its annotation and shape when the decorator is applied (or
``configure`` is called), so a wrong value fails naming the decorator, the keyword and the expected form, instead
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

# IAM's role ARN: arn:<partition>:iam::<12-digit account>:role<path><name>, the path "/" or
# "/.../" of printable ASCII and the name [\w+=,.@-]{1,64} (IAM User Guide, "IAM identifiers",
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns;
# botocore iam/2010-05-08 pathType and roleNameType patterns).
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role(/|/[\x21-\x7e]+/)[\w+=,.@-]{1,64}")
_ROLE_FORM = "an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>"
# General purpose bucket naming rules
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html): 3-63 characters
# of lowercase letters, digits, dots and hyphens, beginning and ending with a letter or digit, no
# two adjacent dots, not shaped like an IP address, and none of the reserved prefixes and suffixes.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_BUCKET_FORM = "an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens; no s3:// or /)"


def _bucket_ok(name: str) -> bool:
    return bool(
        _BUCKET.fullmatch(name)
        and ".." not in name
        and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name)
        and not name.startswith(_BUCKET_RESERVED_PREFIXES)
        and not name.endswith(_BUCKET_RESERVED_SUFFIXES)
    )


def _s3_uri_ok(uri: str) -> bool:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return uri.startswith("s3://") and _bucket_ok(bucket) and not re.search(r"\s", key)


@functools.lru_cache(maxsize=1)
def _region_patterns() -> tuple[re.Pattern[str], ...]:
    # Every partition's region shape as botocore itself knows it (botocore/data/endpoints.json
    # ``partitions[].regionRegex``), so a region AWS opens later is accepted without a release here.
    from botocore.loaders import Loader  # noqa: PLC0415  (read once, on the first region checked)

    return tuple(re.compile(p["regionRegex"]) for p in Loader().load_data("endpoints")["partitions"])


def _region_ok(region: str) -> bool:
    return any(p.match(region) for p in _region_patterns())


# Keyword or setting name -> (check, expected form): the one shape of that value, asked by every SDK
# function with a keyword of that name (``checked``) and by the settings read from the environment
# (``cdao_sdk.settings.get``).
SHAPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "execution_role_arn": (lambda v: bool(_ROLE_ARN.fullmatch(v)), _ROLE_FORM),
    "sagemaker_role": (lambda v: bool(_ROLE_ARN.fullmatch(v)), _ROLE_FORM),
    "emr_serverless_role": (lambda v: bool(_ROLE_ARN.fullmatch(v)), _ROLE_FORM),
    "default_bucket": (_bucket_ok, _BUCKET_FORM),
    "region": (_region_ok, "an AWS region such as us-east-1 (botocore's partitions' region shapes)"),
    "output_s3_path": (_s3_uri_ok, "an s3://<bucket>/<prefix> URI"),
    "checkpoint_s3_uri": (_s3_uri_ok, "an s3://<bucket>/<prefix> URI"),
}


def shape_error(name: str, value: Any) -> str | None:
    """The expected form when ``value`` does not have the shape :data:`SHAPES` gives ``name``."""
    if name not in SHAPES or not isinstance(value, str):
        return None
    shape, form = SHAPES[name]
    return None if shape(value) else form


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
                form = shape_error(name, value)
                check(where, name, value, form is None, form or "")
            return fn(*args, **kwargs)

        return call

    return wrap

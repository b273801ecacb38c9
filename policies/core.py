"""Building blocks shared by every rule: the resource model, unknown values, rule registration.

Rules see plain Python data. Whatever shape the props arrive in (the analyzer's proxies, mock
inputs, a JSON file), `normalize` turns them into dicts and lists in which every value that is
unknown at preview is an `UnknownValue` marker. The marker raises `UnknownValueFound` on any use
(truthiness, comparison, iteration), so a rule that forgets to look for it reports "cannot verify"
instead of silently passing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# The sentinel for "unknown at preview" in plain JSON input (`cdao policy check`, the offline plan)
# belongs to the resource format.
from cdao_resources import UNKNOWN_TOKEN

# The Pulumi engine's own sentinels (pulumi_policy.proxy / pulumi.runtime). Mock runtimes and plan
# writers can leak them into JSON, so they are treated exactly like UNKNOWN_TOKEN.
_ENGINE_SENTINELS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
        "030794c1-ac77-496b-92df-f27374a8bd58",
        "e48ece36-62e2-4504-bad9-02848725956a",
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
    }
)

Level = Literal["mandatory", "advisory"]


class UnknownValueFound(Exception):
    """Raised when a rule touches a value that is unknown at preview."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class UnknownValue:
    """A value that is unknown at preview; any attempt to use it raises UnknownValueFound."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def _raise(self, *_: Any) -> Any:
        raise UnknownValueFound(self.path or "a value")

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _raise
    __iter__ = __len__ = __getitem__ = __contains__ = __int__ = __float__ = _raise

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return UNKNOWN_TOKEN

    def __str__(self) -> str:
        return UNKNOWN_TOKEN


def is_unknown_string(value: str) -> bool:
    """Whether a string (not a JSON document) is, or interpolates, a value unknown at preview."""
    if value in _ENGINE_SENTINELS or value == UNKNOWN_TOKEN:
        return True
    # A JSON document (a policy) keeps its text: parsing it later localises the unknowns inside.
    if value.lstrip().startswith(("{", "[")):
        return False
    # Any other string that merely *contains* the token interpolates an unknown (an ARN built from
    # an unknown account id): its real value is unknown too.
    return UNKNOWN_TOKEN in value or any(s in value for s in _ENGINE_SENTINELS)


def normalize(value: Any, path: str = "") -> Any:
    """Plain dicts/lists with UnknownValue markers, from JSON input or pulumi_policy's proxies."""
    # pulumi_policy's _DictProxy/_ListProxy raise on access to an unknown; their raw target keeps
    # the sentinel strings, which is what lets us turn each one into a marker with its path.
    if isinstance(value, Mapping) and not isinstance(value, dict):
        try:
            value = value["__target"]
        except (KeyError, TypeError):
            value = {k: value[k] for k in value}
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes, list, tuple)):
        try:
            value = value["__target"]  # type: ignore[index]
        except (KeyError, TypeError, IndexError):
            value = list(value)
    if isinstance(value, UnknownValue):
        return value
    if isinstance(value, str):
        return UnknownValue(path) if is_unknown_string(value) else value
    if isinstance(value, Mapping):
        return {str(k): normalize(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def denormalize(value: Any) -> Any:
    """Back to plain JSON data, with UNKNOWN_TOKEN for unknowns (for the cost estimator)."""
    if isinstance(value, UnknownValue):
        return UNKNOWN_TOKEN
    if isinstance(value, dict):
        return {k: denormalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [denormalize(v) for v in value]
    return value


_MISSING = object()


def dig(data: Any, *path: str | int, default: Any = None, where: str = "") -> Any:
    """Walk `path`; raise UnknownValueFound if the value or any parent is unknown.

    Missing keys and explicit nulls give `default` (Pulumi drops None inputs, so both mean "unset").
    """
    cur = data
    walked = where
    for key in path:
        if isinstance(cur, UnknownValue):
            raise UnknownValueFound(cur.path or walked)
        walked = f"{walked}.{key}" if walked else str(key)
        if isinstance(key, int):
            if not isinstance(cur, list) or key >= len(cur):
                return default
            cur = cur[key]
        else:
            if not isinstance(cur, dict):
                return default
            cur = cur.get(key, _MISSING)
            if cur is _MISSING:
                return default
        if cur is None:
            return default
    if isinstance(cur, UnknownValue):
        raise UnknownValueFound(cur.path or walked)
    return cur


def as_list(value: Any) -> list[Any]:
    """IAM and AWS accept a scalar where a list is expected; treat both alike."""
    if value is None:
        return []
    if isinstance(value, UnknownValue):
        raise UnknownValueFound(value.path)
    if isinstance(value, list):
        return value
    return [value]


def to_bool(value: Any) -> bool | None:
    """Booleans arrive as bools, or as strings in a few AWS schemas (launch template `encrypted`)."""
    if isinstance(value, UnknownValue):
        raise UnknownValueFound(value.path)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def to_number(value: Any) -> float | None:
    """Numbers come back as floats under mocks and sometimes as strings in JSON."""
    if isinstance(value, UnknownValue):
        raise UnknownValueFound(value.path)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Resource:
    """One resource as the rules see it: plain props (with UnknownValue markers)."""

    type: str
    name: str
    props: dict[str, Any]
    urn: str | None = None
    id: Any = None
    #: propertyDependencies: prop name -> URNs of the resources that prop was computed from.
    deps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, *path: str | int, default: Any = None) -> Any:
        return dig(self.props, *path, default=default)


@dataclass(frozen=True)
class Finding:
    """What a rule reports: a message, or an unknown it could not see past."""

    message: str
    resource: Resource | None = None
    unknown: bool = False


@dataclass
class Context:
    stack: str
    settings: Mapping[str, Any]
    estimator: Callable[[list[dict[str, Any]]], Any] | None = None

    def setting(self, key: str) -> Any:
        return self.settings[key]


ResourceCheck = Callable[[Resource, Context], Iterable["str | UnknownValueFound"]]
StackCheck = Callable[[list[Resource], Context], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """One policy: a stable id, a one-line name, metadata, and the function that checks it."""

    id: str
    name: str
    description: str
    remediation: str
    level: Level
    family: str
    kind: Literal["resource", "stack"]
    check: Callable[..., Iterable[Any]]
    #: Resource rules run only on these types; stack rules see every resource.
    types: frozenset[str] = frozenset()
    #: Per-stack settings the rule reads (see policies.settings).
    settings: tuple[str, ...] = ()


def resource_rule(
    registry: list[Rule],
    *,
    id: str,
    name: str,
    description: str,
    remediation: str,
    level: Level,
    types: Iterable[str],
    settings: tuple[str, ...] = (),
) -> Callable[[ResourceCheck], ResourceCheck]:
    def register(fn: ResourceCheck) -> ResourceCheck:
        family = registry_family(fn)
        registry.append(
            Rule(id, name, description, remediation, level, family, "resource", fn, frozenset(types), settings)
        )
        return fn

    return register


def stack_rule(
    registry: list[Rule],
    *,
    id: str,
    name: str,
    description: str,
    remediation: str,
    level: Level,
    settings: tuple[str, ...] = (),
) -> Callable[[StackCheck], StackCheck]:
    def register(fn: StackCheck) -> StackCheck:
        family = registry_family(fn)
        registry.append(Rule(id, name, description, remediation, level, family, "stack", fn, frozenset(), settings))
        return fn

    return register


def registry_family(fn: Callable[..., Any]) -> str:
    return fn.__module__.rsplit(".", 1)[-1]


def iter_known(items: Iterable[Any]) -> Iterator[Any]:
    """Yield known items; raise for the first unknown one only after the known ones were seen."""
    pending: UnknownValue | None = None
    for item in items:
        if isinstance(item, UnknownValue):
            pending = pending or item
            continue
        yield item
    if pending is not None:
        raise UnknownValueFound(pending.path)

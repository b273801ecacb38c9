"""The resource list the policy pack and the cost estimate read: `[{type, name, props, ...}]`.

One element per resource of one stack, as JSON-ready data:

    type                  the Pulumi type token, e.g. "aws:eks/nodeGroup:NodeGroup" (required)
    name                  the resource's logical name (required)
    props                 its inputs as a preview shows them, values unknown at preview written as
                          the string UNKNOWN_TOKEN, "<unknown>" (an object; missing or null is {})
    urn                   the resource's URN (optional)
    id                    its physical id once known (optional; the offline plan's mocks give one)
    propertyDependencies  {input name: [URN, ...]} of the resources that input depends on (optional)

The fields are pulumi_policy's PolicyResource (resource_type, name, props, urn,
property_dependencies: pulumi-policy 1.21.0, pulumi_policy/policy.py) flattened into JSON, so a
list from the offline plan, written by hand, or read from a real preview by the pack means the same
thing. `cdao plan --stack <s> --format resources` writes exactly the list its own policy evaluation
read (props unmasked: a secret there is the offline plan's stand-in, never the real value; with
the mocks' ids), which `cdao policy check FILE --stack <s>` takes as is.
`cdao plan --format json` is another shape (a report): its `resources[].inputs` have secrets masked
and no `id`, so it is not this list. The plan produces it (`resource`), the pack and `cdao policy
check` read it (`check`), cdao_cost prices it.

A leaf: it imports nothing from this repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

#: How a value unknown at preview is written in props (`cdao policy check`, the offline plan).
#: The Pulumi engine's own sentinels are opaque UUID strings; policies.core accepts those too.
UNKNOWN_TOKEN = "<unknown>"  # noqa: S105 - a sentinel, not a secret


class PolicyResource(TypedDict):
    type: str
    name: str
    props: Mapping[str, Any]
    urn: NotRequired[str | None]
    id: NotRequired[Any]
    propertyDependencies: NotRequired[Mapping[str, list[str]]]


class ResourceFormatError(ValueError):
    """An element of a resource list is not a PolicyResource; the message names the resource and field."""


def resource(
    type_: str, name: str, props: Mapping[str, Any], *, urn: str | None = None, id: Any = None
) -> PolicyResource:
    """One element of the list; urn and id only when known (an estimator sees `{type, name, props}`)."""
    element: PolicyResource = {"type": type_, "name": name, "props": props}
    if urn is not None:
        element["urn"] = urn
    if id is not None:
        element["id"] = id
    return element


def check(raw: Any) -> PolicyResource:
    """`raw` as a PolicyResource (props null becomes {}; propertyDependencies keeps its list entries).

    Raises ResourceFormatError naming the resource and the field at fault.
    """
    if not isinstance(raw, Mapping):
        raise ResourceFormatError(f"each resource must be an object, got {type(raw).__name__}")
    rtype, name, props = raw.get("type"), raw.get("name"), raw.get("props", {})
    if not isinstance(rtype, str) or not rtype:
        raise ResourceFormatError(f"resource {raw.get('name')!r}: 'type' must be a non-empty string")
    if not isinstance(name, str):
        raise ResourceFormatError(f"resource of type {rtype}: 'name' must be a string")
    if props is None:
        props = {}
    if not isinstance(props, Mapping):
        raise ResourceFormatError(f"resource {name!r} ({rtype}): 'props' must be an object")
    deps_raw = raw.get("propertyDependencies") or {}
    if not isinstance(deps_raw, Mapping):
        raise ResourceFormatError(f"resource {name!r} ({rtype}): 'propertyDependencies' must be an object")
    deps = {str(k): [str(u) for u in v] for k, v in deps_raw.items() if isinstance(v, (list, tuple))}
    urn = raw.get("urn")
    return {
        "type": rtype,
        "name": name,
        "props": props,
        "urn": urn if isinstance(urn, str) else None,
        "id": raw.get("id"),
        "propertyDependencies": deps,
    }


__all__ = ["UNKNOWN_TOKEN", "PolicyResource", "ResourceFormatError", "check", "resource"]

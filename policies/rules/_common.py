"""Helpers shared by rule families: IAM documents, globbing, and relating resources to each other."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from policies.core import (
    Finding,
    Resource,
    UnknownValue,
    UnknownValueFound,
    as_list,
    is_unknown_string,
    normalize,
    to_bool,
)

# ---------------------------------------------------------------------------------------------
# Globs. IAM wildcards are only `*` and `?` (no character classes), matched case-insensitively
# for actions; instance types and classes use the same matcher.


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def glob_match(pattern: str, value: str) -> bool:
    return glob_to_regex(pattern).fullmatch(value) is not None


def matches_any(value: str, patterns: Iterable[str]) -> bool:
    return any(glob_match(p, value) for p in patterns)


# ---------------------------------------------------------------------------------------------
# IAM policy documents


class PolicyParseError(ValueError):
    pass


def parse_policy(value: Any, where: str) -> dict[str, Any]:
    """A policy document from a JSON string or a dict; raises UnknownValueFound if unknown."""
    if isinstance(value, UnknownValue):
        raise UnknownValueFound(value.path or where)
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PolicyParseError(f"{where} is not valid JSON ({exc.msg})") from exc
        doc = normalize(doc, where)
    else:
        doc = value
    if not isinstance(doc, dict):
        raise PolicyParseError(f"{where} is not a JSON object")
    return doc


@dataclass(frozen=True)
class Statement:
    raw: dict[str, Any]
    index: int
    where: str

    @property
    def label(self) -> str:
        sid = self.raw.get("Sid")
        if isinstance(sid, str) and sid:
            return f"{self.where} statement {sid!r}"
        return f"{self.where} Statement[{self.index}]"

    def field(self, key: str) -> list[Any]:
        value = self.raw.get(key)
        if isinstance(value, UnknownValue):
            raise UnknownValueFound(f"{self.label}.{key}")
        return as_list(value)

    def strings(self, key: str) -> list[str]:
        out = []
        for item in self.field(key):
            if isinstance(item, UnknownValue):
                raise UnknownValueFound(f"{self.label}.{key}")
            if isinstance(item, str):
                out.append(item)
        return out

    @property
    def is_allow(self) -> bool:
        effect = self.raw.get("Effect")
        if isinstance(effect, UnknownValue):
            raise UnknownValueFound(f"{self.label}.Effect")
        # IAM requires Effect; anything but "Allow" grants nothing.
        return effect == "Allow"

    def allows_action(self, action: str) -> bool:
        """True if this Allow statement's Action list covers `action` (NotAction is out of scope)."""
        return any(glob_match(p, action) for p in self.strings("Action"))

    def conditions(self) -> list[Condition]:
        block = self.raw.get("Condition")
        if block is None:
            return []
        if isinstance(block, UnknownValue):
            raise UnknownValueFound(f"{self.label}.Condition")
        if not isinstance(block, dict):
            return []
        out = []
        for op, body in block.items():
            if isinstance(body, UnknownValue):
                raise UnknownValueFound(f"{self.label}.Condition.{op}")
            if not isinstance(body, dict):
                continue
            for key, values in body.items():
                # A key built from an unknown output (f"{issuer}:sub" at preview) names no key yet.
                if is_unknown_string(key):
                    raise UnknownValueFound(f"{self.label}.Condition.{op} key {key}")
                vals = []
                for v in as_list(values):
                    if isinstance(v, UnknownValue):
                        raise UnknownValueFound(f"{self.label}.Condition.{op}.{key}")
                    vals.append(v)
                out.append(Condition.parse(op, key, vals))
        return out


@dataclass(frozen=True)
class Condition:
    operator: str  # as written
    base: str  # e.g. "StringEquals", lower-cased comparisons below
    qualifier: str  # "", "ForAnyValue", "ForAllValues"
    if_exists: bool
    key: str
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, operator: str, key: str, values: list[Any]) -> Condition:
        qualifier, _, base = operator.rpartition(":")
        if_exists = base.endswith("IfExists")
        if if_exists:
            base = base[: -len("IfExists")]
        return cls(operator, base, qualifier, if_exists, key, tuple(values))

    def enforces(self, bases: Iterable[str]) -> bool:
        """Whether this condition requires the key to be present and to match.

        `...IfExists` and `ForAllValues:` both evaluate to true when the key is absent from the
        request, so a caller that simply omits the key passes: they enforce nothing.
        """
        return (
            not self.if_exists
            and self.qualifier.lower() != "forallvalues"
            and self.base.lower() in {b.lower() for b in bases}
        )


def statements(doc: dict[str, Any], where: str) -> list[Statement]:
    body = doc.get("Statement")
    if isinstance(body, UnknownValue):
        raise UnknownValueFound(f"{where}.Statement")
    out = []
    for i, st in enumerate(as_list(body)):
        if isinstance(st, UnknownValue):
            raise UnknownValueFound(f"{where}.Statement[{i}]")
        if isinstance(st, dict):
            out.append(Statement(st, i, where))
    return out


def principals(st: Statement, key: str = "Principal") -> dict[str, list[str]] | None:
    """{"*": ["*"]} for a bare "*", else {"AWS": [...], "Service": [...], "Federated": [...]}."""
    value = st.raw.get(key)
    if value is None:
        return None
    if isinstance(value, UnknownValue):
        raise UnknownValueFound(f"{st.label}.{key}")
    if isinstance(value, str):
        return {"*": [value]} if value == "*" else {"AWS": [value]}
    if not isinstance(value, dict):
        return None
    out: dict[str, list[str]] = {}
    for kind, ids in value.items():
        if isinstance(ids, UnknownValue):
            raise UnknownValueFound(f"{st.label}.{key}.{kind}")
        vals = []
        for v in as_list(ids):
            if isinstance(v, UnknownValue):
                raise UnknownValueFound(f"{st.label}.{key}.{kind}")
            if isinstance(v, str):
                vals.append(v)
        out[kind] = vals
    return out


_ACCOUNT_IN_ARN = re.compile(r"^arn:[^:]+:(?:iam|sts)::(\d{12}):")


def principal_account(principal: str) -> str | None:
    """The 12-digit account of an AWS principal (bare id or IAM/STS ARN)."""
    if re.fullmatch(r"\d{12}", principal):
        return principal
    m = _ACCOUNT_IN_ARN.match(principal)
    return m.group(1) if m else None


def arn_account(arn: Any) -> str | None:
    if not isinstance(arn, str):
        return None
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and re.fullmatch(r"\d{12}", parts[4]) else None


# ---------------------------------------------------------------------------------------------
# Relating resources: a child (an SSE config, a flow log, a rule) names its parent through a prop
# holding the parent's id/name. It matches a parent when that string is one of the parent's
# identifiers, or when the engine's propertyDependencies say the prop was computed from the
# parent's URN (which still works at preview, when the id itself is unknown).


def identifiers(res: Resource, *props: str) -> tuple[set[str], bool]:
    """Known identifiers of `res` and whether some identifying value is unknown."""
    ids: set[str] = set()
    uncertain = False
    for raw in (res.id, *(res.props.get(p) for p in ("id", *props))):
        if isinstance(raw, UnknownValue):
            uncertain = True
        elif isinstance(raw, str) and raw:
            ids.add(raw)
    if not ids and not uncertain:
        # Hand-written resource lists often carry no physical id at all; then the logical name is
        # the only handle a child can use (Pulumi derives auto-names from it).
        ids.add(res.name)
    if res.urn:
        ids.add(res.urn)
    return ids, uncertain


COVERED, MISSING, UNKNOWN = "covered", "missing", "unknown"


def coverage(
    targets: list[Resource],
    children: list[Resource],
    link_prop: str,
    target_props: tuple[str, ...],
    child_ok: Callable[[Resource], bool] = lambda _c: True,
) -> list[tuple[Resource, str, str]]:
    """For each target: COVERED by a matching child that passes `child_ok`, MISSING, or UNKNOWN.

    Returns (target, status, detail). UNKNOWN when a child's link is unknown (it might point at this
    target), when the target's own identifier is unknown and an unmatched child exists, or when
    `child_ok` could not be evaluated for a matching child.
    """
    ids = [identifiers(t, *target_props) for t in targets]
    status: list[str] = [MISSING] * len(targets)
    detail: list[str] = [""] * len(targets)
    floating_unknown: list[str] = []
    floating_known = False

    def settle(i: int, child: Resource) -> None:
        try:
            ok = child_ok(child)
        except UnknownValueFound as exc:
            if status[i] != COVERED:
                status[i], detail[i] = UNKNOWN, f"{child.name}: {exc.what}"
            return
        if ok:
            status[i] = COVERED
        elif status[i] == MISSING:
            detail[i] = f"{child.name} does not satisfy the rule"

    for child in children:
        deps = child.deps.get(link_prop, ())
        matched = [i for i, t in enumerate(targets) if t.urn and t.urn in deps]
        if not matched:
            raw = child.props.get(link_prop)
            if isinstance(raw, UnknownValue):
                floating_unknown.append(child.name)
                continue
            if isinstance(raw, str):
                matched = [i for i, (known, _) in enumerate(ids) if raw in known]
            if not matched:
                floating_known = True
        for i in matched:
            settle(i, child)

    out = []
    for i, target in enumerate(targets):
        st, dt = status[i], detail[i]
        if st == MISSING and floating_unknown:
            st, dt = UNKNOWN, f"{link_prop} of {', '.join(sorted(floating_unknown))}"
        elif st == MISSING and ids[i][1] and floating_known and not (ids[i][0] - {target.urn}):
            st, dt = UNKNOWN, f"the identifier of {target.name}"
        out.append((target, st, dt))
    return out


# ---------------------------------------------------------------------------------------------
# Resource types and shapes several families check: EC2 instance shapes, EKS's default pool, buckets.

EKS_COMPONENT = "eks:index:Cluster"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_CONFIGURATION = "aws:ec2/launchConfiguration:LaunchConfiguration"
# Resources that describe one EC2 instance shape with root/ebs block devices and metadataOptions.
INSTANCE_LIKE = (INSTANCE, LAUNCH_CONFIGURATION)


def eks_default_pool(res: Resource) -> bool:
    # No default node group when it is skipped or when Fargate / Auto Mode provides compute.
    skip = to_bool(res.get("skipDefaultNodeGroup"))
    return not (skip or res.get("fargate") or to_bool(res.get("autoMode", "enabled")))


BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")


def buckets(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r.type in BUCKET_TYPES]


def children(resources: list[Resource], suffix: str) -> list[Resource]:
    """Resources of `aws:s3/<suffix>:<Suffix>` and its `...V2` twin."""
    wanted = {
        f"aws:s3/{suffix}:{suffix[0].upper()}{suffix[1:]}",
        f"aws:s3/{suffix}V2:{suffix[0].upper()}{suffix[1:]}V2",
    }
    return [r for r in resources if r.type in wanted]


def bucket_findings(
    resources: list[Resource],
    child_suffix: str,
    inline_ok: Callable[[Resource], bool],
    child_ok: Callable[[Resource], bool],
    missing_message: str,
) -> Iterator[Finding]:
    """Shared shape of the bucket-level stack rules: inline config first, then separate resources."""
    pending: list[Resource] = []
    inline_unknown: dict[str, str] = {}
    for bucket in buckets(resources):
        try:
            if inline_ok(bucket):
                continue
        except UnknownValueFound as exc:
            # A separate configuration resource may still settle it; decide after matching.
            inline_unknown[bucket.name] = exc.what
        pending.append(bucket)
    for bucket, status, detail in coverage(pending, children(resources, child_suffix), "bucket", ("bucket",), child_ok):
        if status == COVERED:
            continue
        if status == UNKNOWN:
            yield Finding(f"cannot verify: {detail}", bucket, unknown=True)
        elif bucket.name in inline_unknown:
            yield Finding(f"cannot verify: {inline_unknown[bucket.name]}", bucket, unknown=True)
        else:
            yield Finding(missing_message + (f" ({detail})" if detail else ""), bucket)

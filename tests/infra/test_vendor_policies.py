"""Each vendor controller's IAM policy against the upstream policy of the version the stacks pin.

A narrowing of a vendor's policy is allowed only where infra/ says why (a reason per action next to
the policy), and never as a tag condition on an action that upstream grants on resources the
controller did not create: those resources do not carry the controller's tag, so the call fails
with UnauthorizedOperation at run time (the load-balancer controller opening the node security group
for target-type ip: kubernetes-sigs/aws-load-balancer-controller #2578, #1312).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cdao_cli.plan.runner import PlanRun, read_stack_file
from infra.components.identity import (
    CLUSTER_AUTOSCALER_NARROWINGS,
    CLUSTER_AUTOSCALER_TAGGED_BY_OTHERS,
    EXTERNAL_SECRETS_ADDED,
    EXTERNAL_SECRETS_NARROWINGS,
    EXTERNAL_SECRETS_OMITTED,
    FLUENT_BIT_NARROWINGS,
    FLUENT_BIT_OMITTED,
    LOAD_BALANCER_CONTROLLER_NARROWINGS,
)

SHARED_CHARTS = Path(__file__).resolve().parents[3] / "shared" / "charts"
RECORDED = Path(__file__).parent / "data" / "upstream_controller_policies.yaml"


def _pinned(chart: str) -> str:
    raw, _ = read_stack_file("prod")
    return raw["cdao:gitops"]["chartVersions"][chart]


def _upstream(chart: str, version: str) -> list[dict]:
    """The vendor's policy at the pinned chart: ../shared's copy of the upstream file where there is
    one, else the facts recorded in tests/infra/data (for the chart's app version)."""
    path = SHARED_CHARTS / chart / version / "upstream-iam-policy.json"
    if path.exists():
        return _normalised(json.loads(path.read_text())["Statement"])
    recorded = yaml.safe_load(RECORDED.read_text())[chart]
    app_version = yaml.safe_load((SHARED_CHARTS / chart / version / "Chart.yaml").read_text())["appVersion"]
    assert str(recorded["version"]) == str(app_version).removeprefix("v"), f"{RECORDED.name} records another {chart}"
    return [
        {"actions": s["actions"], "resources": s["resources"], "condition": s.get("condition", {})}
        for s in recorded["statements"]
    ]


def _normalised(statements: list[dict]) -> list[dict]:
    out = []
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        listify = lambda v: [v] if isinstance(v, str) else list(v)  # noqa: E731
        out.append(
            {"actions": listify(s["Action"]), "resources": listify(s["Resource"]), "condition": s.get("Condition", {})}
        )
    return out


def _requires_resource_tag(condition: dict) -> bool:
    """Whether the statement applies only to resources carrying a tag (the controller's own)."""
    for operator, pairs in condition.items():
        for key, value in pairs.items():
            if key.startswith("aws:ResourceTag/") and not (operator == "Null" and value == "true"):
                return True
    return False


def _ours(run: PlanRun, policy_name: str) -> list[dict]:
    (policy,) = [p for p in run.registrations if p.type == "aws:iam/rolePolicy:RolePolicy" and p.name == policy_name]
    return _normalised(json.loads(policy.inputs["policy"])["Statement"])


def _as_broad(ours: dict, upstream: dict) -> bool:
    resources = "*" in ours["resources"] or set(upstream["resources"]) <= set(ours["resources"])
    return resources and ours["condition"] == upstream["condition"]


VENDORS = {
    # chart key in cdao:gitops.chartVersions: our IRSA policy, and where it differs from upstream, why
    # (narrowed: by action; tagged_by_others: tag-scoped actions whose tag someone else sets, with who;
    # omitted: upstream actions the pinned version never calls as platform/ configures it; added: ours only)
    "aws-load-balancer-controller": {
        "policy": "workload-identity-aws-load-balancer-controller",
        "narrowed": LOAD_BALANCER_CONTROLLER_NARROWINGS,
    },
    "cluster-autoscaler": {
        "policy": "workload-identity-cluster-autoscaler",
        "narrowed": CLUSTER_AUTOSCALER_NARROWINGS,
        "tagged_by_others": CLUSTER_AUTOSCALER_TAGGED_BY_OTHERS,
    },
    "external-secrets": {
        "policy": "workload-identity-external-secrets",
        "narrowed": EXTERNAL_SECRETS_NARROWINGS,
        "omitted": EXTERNAL_SECRETS_OMITTED,
        "added": EXTERNAL_SECRETS_ADDED,
    },
    "aws-for-fluent-bit": {
        "policy": "workload-identity-fluent-bit",
        "narrowed": FLUENT_BIT_NARROWINGS,
        "omitted": FLUENT_BIT_OMITTED,
    },
}


@pytest.mark.parametrize("chart", list(VENDORS))
def test_vendor_policy_keeps_every_upstream_action_and_justifies_each_narrowing(chart: str, plan_of):
    vendor = VENDORS[chart]
    narrowings: dict[str, str] = vendor["narrowed"]
    tagged_by_others: dict[str, str] = vendor.get("tagged_by_others", {})
    omitted: dict[str, str] = vendor.get("omitted", {})
    added: dict[str, str] = vendor.get("added", {})
    upstream = _upstream(chart, _pinned(chart).removeprefix("v"))
    ours = _ours(plan_of("prod"), vendor["policy"])
    upstream_actions = {a for s in upstream for a in s["actions"]}
    our_actions = {a for s in ours for a in s["actions"]}
    assert upstream_actions - our_actions == set(omitted), "actions the controller calls are missing"
    assert our_actions - upstream_actions == set(added), "actions upstream does not grant"
    assert all(reason.strip() for reasons in (narrowings, omitted, added) for reason in reasons.values())

    narrowed: set[str] = set()
    for up in upstream:
        for action in set(up["actions"]) - set(omitted):
            granting = [s for s in ours if action in s["actions"]]
            if not _requires_resource_tag(up["condition"]) and action not in tagged_by_others:
                # Upstream grants this on resources the controller did not create: no tag condition here.
                assert any(not _requires_resource_tag(s["condition"]) for s in granting), (
                    f"{action}: upstream grants it on resources without the controller's tag"
                )
            if not any(_as_broad(s, up) for s in granting):
                narrowed.add(action)
    assert sorted(narrowed - set(narrowings)) == [], "narrowings without a reason next to the policy"
    assert sorted(set(narrowings) - narrowed) == [], "reasons for narrowings that no longer exist"


def test_external_secrets_omissions_hold_for_what_platform_asks_of_it():
    """EXTERNAL_SECRETS_OMITTED drops what only `dataFrom.find` and PushSecret call."""
    platform = Path(__file__).resolve().parents[2] / "platform"
    for path in platform.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            assert doc.get("kind") != "PushSecret", path
            if doc.get("kind") == "ExternalSecret":
                for source in (doc.get("spec") or {}).get("dataFrom") or []:
                    assert "find" not in source, path


def test_fluent_bit_omissions_hold_for_what_platform_asks_of_it():
    """FLUENT_BIT_OMITTED drops what only a group fluent-bit creates itself needs, and the upstream list
    is the C plugin's: platform/ must configure that plugin, without group creation or retention.
    The chart's defaults are ../shared/charts/aws-for-fluent-bit/<version>/values.yaml."""
    version = _pinned("aws-for-fluent-bit")
    defaults = yaml.safe_load((SHARED_CHARTS / "aws-for-fluent-bit" / version / "values.yaml").read_text())
    platform = Path(__file__).resolve().parents[2] / "platform" / "addons" / "observability" / "aws-for-fluent-bit"
    ours = yaml.safe_load((platform / "values.yaml").read_text())
    merged = {key: {**(defaults.get(key) or {}), **(ours.get(key) or {})} for key in ("cloudWatch", "cloudWatchLogs")}
    assert merged["cloudWatchLogs"]["enabled"] is True
    assert merged["cloudWatch"]["enabled"] is False, "the Go plugin needs logs:DescribeLogStreams"
    assert merged["cloudWatchLogs"]["autoCreateGroup"] is False
    assert not merged["cloudWatchLogs"].get("logRetentionDays")


def test_flow_log_role_keeps_every_action_the_vpc_guide_requires(plan_of):
    """A delivery role short of AWS's list fails silently: the flow log shows deliverLogsStatus FAILED
    and no records arrive. Resources may be narrowed to the stack's flow-log group."""
    upstream = yaml.safe_load(RECORDED.read_text())["vpc-flow-logs"]["statements"]
    ours = _ours(plan_of("prod"), "network-flow-logs")
    required = {a for s in upstream for a in s["actions"]}
    granted = {a for s in ours for a in s["actions"]}
    assert required - granted == set(), "actions the VPC user guide requires are missing"


REQUEST_TAG_TYPES = Path(__file__).parent / "data" / "request_tag_resource_types.yaml"


def _resource_types(arn: str, action: str, known: dict) -> set[str]:
    """The resource types an ARN pattern of a statement covers for `action` ("*": all of them)."""
    if arn == "*":
        return set(known[action]["authorized"])
    resource = arn.split(":", 5)[5]
    return {t for t in known[action]["authorized"] if resource == t or resource.startswith(t + "/")}


@pytest.mark.parametrize("chart", list(VENDORS))
def test_request_tag_conditions_cover_only_resource_types_the_action_creates(chart: str, plan_of):
    """Review of issue 13 #6: an aws:RequestTag condition is evaluated against every resource the
    action is authorized on; on a type the tags are not for (CreateSecurityGroup's VPC) it does not
    hold, and the call is denied. So a statement with one may cover only the types the request's
    tags are for, and each type the action needs must be granted by some statement."""
    known = yaml.safe_load(REQUEST_TAG_TYPES.read_text())["actions"]
    ours = _ours(plan_of("prod"), VENDORS[chart]["policy"])
    for statement in ours:
        keys = {key for pairs in statement["condition"].values() for key in pairs}
        if not any(k.startswith("aws:RequestTag/") for k in keys):
            continue
        for action in statement["actions"]:
            assert action in known, f"{action}: record its resource types in {REQUEST_TAG_TYPES.name}"
            covered = set().union(*(_resource_types(r, action, known) for r in statement["resources"]))
            untagged = covered - set(known[action]["tagged"])
            assert not untagged, f"{action}: request-tag condition on {sorted(untagged)}, which it does not create"
    for action, types in known.items():
        granting = [s for s in ours if action in s["actions"]]
        if not granting:
            continue
        granted = set().union(*(_resource_types(r, action, known) for s in granting for r in s["resources"]))
        assert set(types["authorized"]) <= granted, f"{action}: nothing grants {set(types['authorized']) - granted}"

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

from infra.components.identity import (
    CLUSTER_AUTOSCALER_NARROWINGS,
    CLUSTER_AUTOSCALER_TAGGED_BY_OTHERS,
    LOAD_BALANCER_CONTROLLER_NARROWINGS,
)
from infra.plan.runner import PlanRun, read_stack_file

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


VENDORS = [
    # (chart key in cdao:gitops.chartVersions, our IRSA policy, narrowings with their reasons,
    #  actions narrowed by a tag someone else puts on the resources, with who)
    (
        "aws-load-balancer-controller",
        "workload-identity-aws-load-balancer-controller",
        LOAD_BALANCER_CONTROLLER_NARROWINGS,
        {},
    ),
    (
        "cluster-autoscaler",
        "workload-identity-cluster-autoscaler",
        CLUSTER_AUTOSCALER_NARROWINGS,
        CLUSTER_AUTOSCALER_TAGGED_BY_OTHERS,
    ),
]


@pytest.mark.parametrize(
    ("chart", "policy_name", "narrowings", "tagged_by_others"), VENDORS, ids=[v[0] for v in VENDORS]
)
def test_vendor_policy_keeps_every_upstream_action_and_justifies_each_narrowing(
    chart: str, policy_name: str, narrowings: dict[str, str], tagged_by_others: dict[str, str], plan_of
):
    upstream = _upstream(chart, _pinned(chart).removeprefix("v"))
    ours = _ours(plan_of("prod"), policy_name)
    upstream_actions = {a for s in upstream for a in s["actions"]}
    our_actions = {a for s in ours for a in s["actions"]}
    assert upstream_actions - our_actions == set(), "actions the controller calls are missing"
    assert our_actions - upstream_actions == set(), "actions upstream does not grant"

    narrowed: set[str] = set()
    for up in upstream:
        for action in up["actions"]:
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
    assert all(reason.strip() for reason in narrowings.values())

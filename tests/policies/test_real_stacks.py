"""The pack on the platform's own stacks, as `cdao plan` sees them (the real program under mocks).

The three stacks must produce no mandatory violation, and every advisory one must be a rule the
README explains. Mutating one real resource must trip exactly the rule about it, which shows the
rules engage with the shapes the infra really produces rather than only with hand-written fixtures.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cdao_stacks
import policies
from policies import evaluate

plans = pytest.importorskip("tests.infra.plans")
report = pytest.importorskip("cdao_cli.plan.report")

STACKS = cdao_stacks.load().names  # the registry's stacks, not a list of the tests' own
README = Path(policies.__file__).with_name("README.md").read_text()
_ADVISORY_SECTION = README.split("## Advisory rules and the three stacks", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def stack_resources() -> dict[str, list[dict[str, Any]]]:
    out = {}
    for stack in STACKS:
        run = plans.planned(stack)
        out[stack] = report.policy_resources(sorted(run.registrations, key=lambda r: (r.type, r.name)))
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_stack_has_no_mandatory_violation(stack: str, stack_resources: dict[str, list[dict[str, Any]]]) -> None:
    violations = evaluate(stack_resources[stack], stack)
    mandatory = [v.to_dict() for v in violations if v.level == "mandatory"]
    assert mandatory == []
    for v in violations:
        assert f"**{v.rule}**" in _ADVISORY_SECTION, f"advisory {v.rule} on {stack} is not explained in README"


def _first(resources: list[dict[str, Any]], rtype: str) -> dict[str, Any]:
    return next(r for r in resources if r["type"] == rtype)


def _drop(rtype: str) -> Callable[[list[dict[str, Any]]], None]:
    return lambda rs: rs.remove(_first(rs, rtype))


def _set(rtype: str, **props: Any) -> Callable[[list[dict[str, Any]]], None]:
    return lambda rs: _first(rs, rtype)["props"].update(props)


def _weaken_irsa(rs: list[dict[str, Any]]) -> None:
    role = next(r for r in rs if r["type"] == "aws:iam/role:Role" and "AssumeRoleWithWebIdentity" in str(r["props"]))
    trust = json.loads(role["props"]["assumeRolePolicy"])
    conditions = trust["Statement"][0]["Condition"]
    conditions["StringLike"] = {
        k: "system:serviceaccount:*" for k in conditions.pop("StringEquals") if k.endswith(":sub")
    }
    role["props"]["assumeRolePolicy"] = json.dumps(trust)


def _pass_instance_role_to_emr(rs: list[dict[str, Any]]) -> None:
    # The connector's policy as issue 13 (#8) found it: the EMR EC2 role passed to elasticmapreduce.
    pol = next(r for r in rs if r["type"] == "aws:iam/rolePolicy:RolePolicy" and "PassEmrInstanceRole" in str(r))
    document = json.loads(pol["props"]["policy"])
    for statement in document["Statement"]:
        if statement.get("Sid") == "PassEmrInstanceRole":
            statement["Condition"]["StringEquals"]["iam:PassedToService"] = "elasticmapreduce.amazonaws.com"
    pol["props"]["policy"] = json.dumps(document)


def _drop_lbc_backend_rules(rs: list[dict[str, Any]]) -> None:
    # The load-balancer controller's policy as issue 13 (#13) found it: SG rules only on its own groups.
    pol = next(r for r in rs if r["type"] == "aws:iam/rolePolicy:RolePolicy" and "OpenTargetSecurityGroups" in str(r))
    document = json.loads(pol["props"]["policy"])
    document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != "OpenTargetSecurityGroups"]
    pol["props"]["policy"] = json.dumps(document)


MUTATIONS = {
    "bucket-without-sse": (
        _drop("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"),
        "CDAO-DATA-004",
    ),
    "bucket-without-pab": (_drop("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"), "CDAO-DATA-003"),
    "vpc-without-flow-log": (_drop("aws:ec2/flowLog:FlowLog"), "CDAO-NET-006"),
    "rds-single-az": (_set("aws:rds/instance:Instance", multiAz=False), "CDAO-DATA-008"),
    "node-group-type": (_set("aws:eks/nodeGroup:NodeGroup", instanceTypes=["x1e.32xlarge"]), "CDAO-COST-001"),
    "eks-public-endpoint": (_set("eks:index:Cluster", endpointPublicAccess=True), "CDAO-NET-001"),
    "irsa-wildcard-subject": (_weaken_irsa, "CDAO-IAM-008"),
    "emr-instance-role-passed-to-emr": (_pass_instance_role_to_emr, "CDAO-IAM-012"),
    "lbc-without-backend-rules": (_drop_lbc_backend_rules, "CDAO-IAM-013"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_one_weakened_resource_trips_its_rule(name: str, stack_resources: dict[str, list[dict[str, Any]]]) -> None:
    mutate, rule = MUTATIONS[name]
    resources = copy.deepcopy(stack_resources["prod"])
    mutate(resources)
    mandatory = {v.rule for v in evaluate(resources, "prod") if v.level == "mandatory"}
    assert mandatory == {rule}

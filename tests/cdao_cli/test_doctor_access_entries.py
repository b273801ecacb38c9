"""`cdao doctor`'s access-entries check: every administrator the deployment recorded (the `declared`
output's `adminRoleArns`, from the stack file) has a cluster-admin access entry, the cluster's creator
(deployRoleArns[0]) included, for which the program declares none (infra/config.py
declared_admin_role_arns): a cluster created by anyone else leaves CI's role out.

moto 5.2.5 implements no EKS access entries, so the EKS client is botocore's Stubber, which checks
both the request and the response against the installed botocore's EKS service model
(ListAccessEntries: `clusterName`, `associatedPolicyArn`; `accessEntries`, the entries' principal
ARNs per the EKS API reference, https://docs.aws.amazon.com/eks/latest/APIReference/API_ListAccessEntries.html)."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from cdao_cli.doctor import aws
from cdao_cli.doctor.context import DoctorContext
from cdao_cli.plan.runner import read_stack_file
from infra.config import parse_stack_config
from infra.declared import DECLARED_OUTPUT, declared

ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def _run(entries: list[str]) -> tuple[list, object]:
    raw, _ = read_stack_file("prod")
    config = parse_stack_config("prod", raw)[0]
    session = boto3.session.Session(region_name="us-east-1")
    outputs = {"clusterName": "cdao-prod", DECLARED_OUTPUT: declared(config, revision_commit="0" * 40)}
    ctx = DoctorContext(stack="prod", outputs=outputs, session=session)
    client = session.client("eks")
    stub = Stubber(client)
    stub.add_response(
        "list_access_entries",
        {"accessEntries": entries},
        {"clusterName": "cdao-prod", "associatedPolicyArn": ADMIN_POLICY},
    )
    ctx._clients["eks"] = client
    with stub:
        results = aws.access_entries(ctx)
    stub.assert_no_pending_responses()
    return results, config.cluster


def test_every_named_administrator_has_a_cluster_admin_entry():
    raw, _ = read_stack_file("prod")
    cluster = parse_stack_config("prod", raw)[0].cluster
    everyone = [*cluster.deploy_role_arns, *cluster.declared_admin_role_arns]
    results, _ = _run(sorted(set(everyone)))
    assert [r.status for r in results] == ["pass"]


def test_a_cluster_created_by_someone_else_fails_naming_the_deploy_role_and_the_fix():
    raw, _ = read_stack_file("prod")
    cluster = parse_stack_config("prod", raw)[0].cluster
    laptop = "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef"
    results, _ = _run([laptop, *cluster.declared_admin_role_arns])
    (result,) = results
    assert result.status == "fail"
    assert cluster.deploy_role_arns[0] in result.detail
    assert "create-access-entry" in result.remedy and ADMIN_POLICY in result.remedy

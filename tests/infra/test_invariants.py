"""Security and cost invariants a reviewer would check by hand, for every stack."""

from __future__ import annotations

import json

import pytest

import cdao_stacks
from cdao_cli.plan.report import build_plan, policy_resources
from cdao_cli.plan.runner import PlanRun
from infra.contract import ANNOTATION_PREFIX, LABEL_KEYS, SECRET_NAME, SERVICE_ACCOUNTS, stack_annotation_keys
from policies import evaluate

IRSA_ACTION = "sts:AssumeRoleWithWebIdentity"


def _of_type(run: PlanRun, typ: str):
    return [r for r in run.registrations if r.type == typ]


def _trust(role) -> dict:
    policy = role.inputs["assumeRolePolicy"]
    return json.loads(policy) if isinstance(policy, str) else policy


def test_no_ingress_from_anywhere(stack_run: PlanRun):
    """Only a public load balancer on 443 may be open to the internet, and infra/ declares none."""
    for rule in _of_type(stack_run, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        assert rule.inputs.get("cidrIpv4") != "0.0.0.0/0", rule.name
        assert rule.inputs.get("cidrIpv6") != "::/0", rule.name
    for rule in _of_type(stack_run, "aws:ec2/securityGroupRule:SecurityGroupRule"):
        if rule.inputs["type"] == "ingress":
            assert "0.0.0.0/0" not in (rule.inputs.get("cidrBlocks") or []), rule.name
            assert "::/0" not in (rule.inputs.get("ipv6CidrBlocks") or []), rule.name
    for group in _of_type(stack_run, "aws:ec2/securityGroup:SecurityGroup"):
        for ingress in group.inputs.get("ingress") or []:
            assert "0.0.0.0/0" not in (ingress.get("cidrBlocks") or []), group.name


def test_every_bucket_is_private_encrypted_versioned_and_expiring(stack_run: PlanRun):
    buckets = {b.outputs["bucket"] for b in _of_type(stack_run, "aws:s3/bucket:Bucket")}
    expected = 6 if stack_run.config.storage.replication_region else 3
    assert len(buckets) == expected

    def by_bucket(typ: str) -> dict[str, dict]:
        return {r.inputs["bucket"]: r.inputs for r in _of_type(stack_run, typ)}

    blocks = by_bucket("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    sse = by_bucket("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    versioning = by_bucket("aws:s3/bucketVersioning:BucketVersioning")
    lifecycle = by_bucket("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    policies = by_bucket("aws:s3/bucketPolicy:BucketPolicy")
    for bucket in buckets:
        assert all(
            blocks[bucket][k]
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
        default = sse[bucket]["rules"][0]["applyServerSideEncryptionByDefault"]
        assert default["sseAlgorithm"] == "aws:kms" and default["kmsMasterKeyId"].startswith("arn:aws:kms:")
        assert versioning[bucket]["versioningConfiguration"]["status"] == "Enabled"
        rules = {r["id"] for r in lifecycle[bucket]["rules"]}
        assert {"abort-incomplete-uploads", "expire-noncurrent-versions"} <= rules
        statement = json.loads(policies[bucket]["policy"])["Statement"][0]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert not _of_type(stack_run, "aws:s3/bucketAclV2:BucketAclV2") and not _of_type(
        stack_run, "aws:s3/bucketAcl:BucketAcl"
    )


def test_prod_replicates_buckets_to_another_region(plan_of):
    prod = plan_of("prod")
    replications = _of_type(prod, "aws:s3/bucketReplicationConfig:BucketReplicationConfig")
    assert len(replications) == 3
    assert not _of_type(plan_of("dev"), "aws:s3/bucketReplicationConfig:BucketReplicationConfig")


def test_database_is_private_encrypted_and_protected_in_prod(stack_run: PlanRun):
    (db,) = _of_type(stack_run, "aws:rds/instance:Instance")
    inputs = db.inputs
    assert inputs["publiclyAccessible"] is False
    assert inputs["storageEncrypted"] is True and inputs["kmsKeyId"].startswith("arn:aws:kms:")
    assert inputs["manageMasterUserPassword"] is True and "password" not in inputs
    assert inputs["iamDatabaseAuthenticationEnabled"] is True
    assert inputs["backupRetentionPeriod"] >= 1
    if stack_run.stack == "prod":
        assert inputs["multiAz"] is True
        assert inputs["deletionProtection"] is True
        assert inputs["skipFinalSnapshot"] is False
    (rule,) = [
        r
        for r in _of_type(stack_run, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.name == "data-db-from-nodes"
    ]
    assert rule.inputs["fromPort"] == rule.inputs["toPort"] == 5432
    assert rule.inputs["referencedSecurityGroupId"].startswith("sg-")


def test_every_irsa_trust_pins_one_service_account(stack_run: PlanRun):
    roles = [r for r in _of_type(stack_run, "aws:iam/role:Role") if IRSA_ACTION in json.dumps(_trust(r))]
    expected = len(SERVICE_ACCOUNTS) + 3 * len(stack_run.config.flyte.projects)
    assert len(roles) == expected
    for role in roles:
        (statement,) = _trust(role)["Statement"]
        equals = statement["Condition"]["StringEquals"]
        (sub,) = [v for k, v in equals.items() if k.endswith(":sub")]
        (aud,) = [v for k, v in equals.items() if k.endswith(":aud")]
        assert isinstance(sub, str) and sub.startswith("system:serviceaccount:") and "*" not in sub
        assert aud == "sts.amazonaws.com"
        assert set(statement["Condition"]) == {"StringEquals"}


def test_service_trusts_carry_confused_deputy_conditions(stack_run: PlanRun):
    for role in _of_type(stack_run, "aws:iam/role:Role"):
        for statement in _trust(role)["Statement"]:
            service = (statement.get("Principal") or {}).get("Service")
            if service in {
                "sagemaker.amazonaws.com",
                "ecs-tasks.amazonaws.com",
                "emr-serverless.amazonaws.com",
                "elasticmapreduce.amazonaws.com",
            }:
                assert statement["Condition"]["StringEquals"]["aws:SourceAccount"], role.name
                assert statement["Condition"]["ArnLike"]["aws:SourceArn"], role.name


def test_codeweave_role_requires_the_external_id(stack_run: PlanRun):
    (role,) = [r for r in _of_type(stack_run, "aws:iam/role:Role") if r.name == "service-roles-codeweave"]
    (statement,) = _trust(role)["Statement"]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{stack_run.config.codeweave.account_id}:root"}
    assert statement["Condition"]["StringEquals"]["sts:ExternalId"]


def test_no_wildcard_resource_where_the_action_can_be_scoped(stack_run: PlanRun):
    # CDAO-IAM-014 (no cluster access entry) is issue 13 #7's finding, not a policy document's.
    findings = [
        v
        for v in evaluate(policy_resources(stack_run.registrations), stack_run.stack)
        if v.rule.startswith("CDAO-IAM") and v.rule != "CDAO-IAM-014"
    ]
    assert findings == []


def test_pass_role_names_roles_and_services(stack_run: PlanRun):
    for policy in _of_type(stack_run, "aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            if "iam:PassRole" in statement["Action"]:
                assert "*" not in statement["Resource"]
                assert statement["Condition"]["StringEquals"]["iam:PassedToService"]


def test_cluster_secret_carries_the_whole_contract(stack_run: PlanRun):
    (secret,) = [
        s for s in _of_type(stack_run, "kubernetes:core/v1:Secret") if s.inputs["metadata"]["name"] == SECRET_NAME
    ]
    metadata = secret.inputs["metadata"]
    config = stack_run.config
    assert set(metadata["annotations"]) == set(
        stack_annotation_keys(list(config.gitops.chart_versions), list(config.flyte.projects))
    )
    assert all(isinstance(v, str) for v in metadata["annotations"].values())
    assert set(metadata["labels"]) == {"argocd.argoproj.io/secret-type", *LABEL_KEYS}
    assert metadata["labels"]["environment"] == stack_run.stack
    annotations = metadata["annotations"]
    # The commit the stack runs: its pin, or for dev the commit its deploy resolved (here the offline
    # stand-in); tests/infra/test_connector_image.py checks both.
    assert annotations[f"{ANNOTATION_PREFIX}repo-revision"] == stack_run.revision_commit_stand_in or (
        annotations[f"{ANNOTATION_PREFIX}repo-revision"] == config.gitops.revision
    )
    for account in SERVICE_ACCOUNTS:
        assert annotations[f"{ANNOTATION_PREFIX}role-arn-{account.role}"].startswith("arn:aws:iam::")


def test_stack_outputs_give_users_what_they_need(stack_run: PlanRun):
    outputs = stack_run.outputs
    for key in ("clusterName", "kubeconfig", "dbEndpoint", "bucketNames", "batchQueues", "roleArns", "ecrRepositories"):
        assert outputs.get(key), key
    assert set(outputs["bucketNames"]) == {"metadata", "userdata", "workflows"}
    assert set(outputs["batchQueues"]) == {"spot", "ondemand"}


@pytest.mark.parametrize("stack", cdao_stacks.load().names)
def test_dev_fits_its_budget_and_no_stack_breaks_a_mandatory_policy(stack: str, plan_of):
    plan = build_plan(plan_of(stack))
    if stack == "dev":
        # Issue 13's bar: dev idles at or under $200 a month. The seeds' own layout (3 x c5.xlarge on
        # demand, Multi-AZ db.r5.large, 2 NATs) is ~$880.
        assert plan["cost"]["idle_usd_month"] <= 200
    assert plan["policy"]["installed"] and not [v for v in plan["policy"]["violations"] if v["level"] == "mandatory"]

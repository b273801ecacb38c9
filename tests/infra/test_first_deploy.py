"""What the first `pulumi up` into a fresh account needs from AWS, checked against AWS's own contracts.

Each test names the upstream source of the rule it checks; the rule itself is what AWS enforces at
run time, which the mock runtime cannot.
"""

from __future__ import annotations

import json

from infra.plan.runner import PlanRun

# AmazonEMRServicePolicy_v2 (AWS managed policy reference, policy version v6, edited 2026-02-12:
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonEMRServicePolicy_v2.html)
# lets the EMR service role launch into subnets and security groups, and create its default security
# groups in a VPC, only where the resource carries this tag ("CreateInTaggedNetwork",
# "CreateDefaultSecurityGroupInVPCWithEMRTags"); its own PassRoleForEC2 statement names only
# role/EMR_EC2_DefaultRole, so a custom instance-profile role needs its own iam:PassRole to ec2.
EMR_MANAGED_POLICY_TAG = ("for-use-with-amazon-emr-managed-policies", "true")


def _of_type(run: PlanRun, typ: str):
    return [r for r in run.registrations if r.type == typ]


def _statements(run: PlanRun, policy_name: str) -> list[dict]:
    (policy,) = [p for p in _of_type(run, "aws:iam/rolePolicy:RolePolicy") if p.name == policy_name]
    return json.loads(policy.inputs["policy"])["Statement"]


def _passes(statements: list[dict], role_arn: str) -> set[str]:
    """Services the statements allow role_arn to be passed to."""
    services: set[str] = set()
    for s in statements:
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        if s["Effect"] == "Allow" and "iam:PassRole" in actions and role_arn in s["Resource"]:
            services |= set(s["Condition"]["StringEquals"]["iam:PassedToService"].split())
    return services


def test_emr_on_ec2_roles_are_passed_to_the_services_that_use_them(stack_run: PlanRun):
    """RunJobFlow passes ServiceRole to EMR and JobFlowRole (the instance profile's role) to EC2."""
    roles = {r.name: r for r in _of_type(stack_run, "aws:iam/role:Role")}
    service_arn = roles["service-roles-emr-service"].outputs["arn"]
    instance_arn = roles["service-roles-emr-instance"].outputs["arn"]
    connector = _statements(stack_run, "workload-identity-connector")
    assert _passes(connector, service_arn) == {"elasticmapreduce.amazonaws.com"}
    assert _passes(connector, instance_arn) == {"ec2.amazonaws.com"}
    # The service role launches the instances with the instance profile; v2 only passes EMR_EC2_DefaultRole.
    assert _passes(_statements(stack_run, "service-roles-emr-service"), instance_arn) == {"ec2.amazonaws.com"}


def test_emr_instance_profile_has_its_role_s_name(stack_run: PlanRun):
    """EMR rejects an instance profile whose name differs from its role's ("invalid instance profile"):
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-roles-custom.html"""
    role = next(r for r in _of_type(stack_run, "aws:iam/role:Role") if r.name == "service-roles-emr-instance")
    (profile,) = [
        p for p in _of_type(stack_run, "aws:iam/instanceProfile:InstanceProfile") if p.name == "service-roles-emr-instance"
    ]
    assert profile.inputs["name"] == role.outputs["name"]


def test_emr_can_launch_into_the_private_subnets_and_vpc(stack_run: PlanRun):
    key, value = EMR_MANAGED_POLICY_TAG
    subnets = [s for s in _of_type(stack_run, "aws:ec2/subnet:Subnet") if s.inputs["tags"].get("tier") == "private"]
    assert subnets
    for subnet in subnets:
        assert subnet.inputs["tags"].get(key) == value, subnet.name
    (vpc,) = _of_type(stack_run, "aws:ec2/vpc:Vpc")
    assert vpc.inputs["tags"].get(key) == value
    # Database subnets stay untagged: EMR has no business launching there.
    for subnet in _of_type(stack_run, "aws:ec2/subnet:Subnet"):
        if subnet.inputs["tags"].get("tier") == "database":
            assert key not in subnet.inputs["tags"], subnet.name

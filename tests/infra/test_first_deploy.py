"""What the first `pulumi up` into a fresh account needs from AWS, checked against AWS's own contracts.

Each test names the upstream source of the rule it checks; the rule itself is what AWS enforces at
run time, which the mock runtime cannot.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pulumi_aws.ec2transitgateway import vpc_attachment

from cdao_cli.main import main
from cdao_cli.plan.runner import PlanRun, run_program_with_config
from infra.config import ConfigError, parse_stack_config

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
        p
        for p in _of_type(stack_run, "aws:iam/instanceProfile:InstanceProfile")
        if p.name == "service-roles-emr-instance"
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


# ---------------------------------------------------------------- Kubernetes API access (fault 2)

ROLE = "arn:aws:iam::111122223333:role/"
# The transit gateway that routes the test's operations network (10.255.0.0/24) into the VPC.
TGW = "tgw-0123456789abcdef0"
BASE = {
    "cdao-stack:profile": "dev",
    "cdao:network": {"transitGatewayId": TGW},
    "aws:region": "us-east-1",
    "cdao:team": "ml-platform",
    "cdao:costCenter": "cc-1",
    "cdao:gitops": {"repoUrl": "https://github.com/acme/platform.git"},
    "cdao:flyte": {"hostname": "flyte.test.example.org", "certificateValidation": "external"},
    "cdao:database": {"deletionProtection": False},
}


def _cluster(**cluster: object) -> dict:
    return {**BASE, "cdao:cluster": {"deployRoleArns": [f"{ROLE}deploy"], **cluster}}


def _problems(raw: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_stack_config("dev", raw)
    return {key: expected for key, _, expected in info.value.problems}


def test_a_stack_nothing_can_reach_is_refused_saying_what_to_set():
    problems = _problems(_cluster())
    expected = problems["cdao:cluster.endpointPublicAccess"]
    for key in ("publicAccessCidrs", "privateAccessCidrs", "privateAccessSecurityGroupIds"):
        assert key in expected


@pytest.mark.parametrize(
    "access",
    [
        {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/28"]},
        {"privateAccessCidrs": ["10.255.0.0/24"]},
        {
            "endpointPublicAccess": True,
            "publicAccessCidrs": ["203.0.113.0/28"],
            "privateAccessCidrs": ["10.0.250.0/24"],
            "privateAccessSecurityGroupIds": ["sg-0123456789abcdef0"],
        },
    ],
    ids=["public-cidrs", "private-cidrs-routed", "public-then-from-inside-the-vpc"],
)
def test_each_way_in_is_enough(access: dict):
    raw = _cluster(**access)
    if access.get("privateAccessCidrs") != ["10.255.0.0/24"]:
        del raw["cdao:network"]
    config, _ = parse_stack_config("dev", raw)
    assert config.cluster.deploy_role_arns == [f"{ROLE}deploy"]


def test_security_groups_alone_are_no_way_in_for_the_first_deploy():
    """An ingress rule can reference only a security group of the same VPC or a peered one (Amazon VPC
    user guide, security-group-rules.html, "Security group referencing"); this program creates the VPC
    and no peering, so such a group cannot exist before the first `pulumi up`, nor when the stack is
    re-created (docs/disaster-recovery.md). The run would create the cluster and then fail at Argo CD."""
    problems = _problems(_cluster(privateAccessSecurityGroupIds=["sg-0123456789abcdef0"]))
    expected = problems["cdao:cluster.privateAccessSecurityGroupIds"]
    assert "publicAccessCidrs" in expected and "privateAccessCidrs" in expected
    assert "cluster-endpoint.html" in expected


def test_clients_inside_the_vpc_alone_are_no_way_in_for_the_first_deploy():
    """Same reason for a private CIDR inside vpcCidr: only hosts of this VPC hold such addresses, and
    there are none before the first `pulumi up` creates it."""
    raw = _cluster(privateAccessCidrs=["10.0.250.0/24"])
    del raw["cdao:network"]
    expected = _problems(raw)["cdao:cluster.privateAccessCidrs"]
    assert "publicAccessCidrs" in expected and "transitGatewayId" in expected


def test_a_private_cidr_outside_the_vpc_needs_a_declared_route():
    """The control plane's ENIs answer a connected network only if the VPC's route tables send
    replies back to it (EKS user guide, cluster-endpoint.html, "Accessing a private only API server":
    the connected network must be routed to the VPC and admitted by the cluster security group); a
    VPC that this `pulumi up` creates has no such route unless the program declares it."""
    raw = _cluster(privateAccessCidrs=["10.255.0.0/24"])
    del raw["cdao:network"]
    problems = _problems(raw)
    assert "transitGatewayId" in problems["cdao:cluster.privateAccessCidrs"]


def test_a_network_outside_the_vpc_never_takes_the_private_path_while_the_public_endpoint_is_on():
    """With both endpoints on, only requests from within the VPC use the private endpoint: a client
    outside it (behind a transit gateway or VPN) resolves the cluster's name to the public IPs and is
    judged by publicAccessCidrs, so the route and ingress rule built for it are never used; only a
    private-only endpoint is resolved by public DNS to the VPC's private IPs (EKS user guide,
    cluster-endpoint.html, the endpoint access table; awsdocs/amazon-eks-user-guide
    latest/ug/clusters/cluster-endpoint.adoc at 0ce90ef1)."""
    raw = _cluster(
        endpointPublicAccess=True, publicAccessCidrs=["203.0.113.0/28"], privateAccessCidrs=["10.255.0.0/24"]
    )
    expected = _problems(raw)["cdao:cluster.privateAccessCidrs"]
    assert "endpointPublicAccess: false" in expected and "cluster-endpoint.html" in expected


def test_routed_private_cidrs_get_a_transit_gateway_route_in_every_private_route_table():
    raw = _cluster(privateAccessCidrs=["10.255.0.0/24"])
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is None
    (attachment,) = [r for r in registrations if r.type == "aws:ec2transitgateway/vpcAttachment:VpcAttachment"]
    (vpc,) = [r for r in registrations if r.type == "aws:ec2/vpc:Vpc"]
    private = [r for r in registrations if r.type == "aws:ec2/subnet:Subnet" and r.inputs["tags"]["tier"] == "private"]
    assert attachment.inputs["transitGatewayId"] == TGW and attachment.inputs["vpcId"] == vpc.outputs["id"]
    assert sorted(attachment.inputs["subnetIds"]) == sorted(s.outputs["id"] for s in private)
    tables = [
        r for r in registrations if r.type == "aws:ec2/routeTable:RouteTable" and r.name.startswith("network-private-")
    ]
    routes = [r for r in registrations if r.type == "aws:ec2/route:Route" and "transitGatewayId" in r.inputs]
    keys = ("routeTableId", "destinationCidrBlock", "transitGatewayId")
    declared = {tuple(r.inputs[k] for k in keys) for r in routes}
    assert declared == {(t.outputs["id"], "10.255.0.0/24", TGW) for t in tables}
    # A route to a transit gateway the VPC is not yet attached to fails (InvalidTransitGatewayID.NotFound).
    assert all(attachment.urn in r.dependencies for r in routes)


def test_transit_gateway_attachment_leaves_the_owner_s_route_tables_alone():
    """A transit gateway shared through RAM belongs to another account: its default route-table
    association and propagation cannot be set from this one (installed pulumi_aws
    ec2transitgateway.VpcAttachment docstring), so the attachment must leave both unset."""
    doc = Path(vpc_attachment.__file__).read_text()
    assert "cannot be configured or perform drift detection with Resource Access Manager shared" in doc
    raw = _cluster(privateAccessCidrs=["10.255.0.0/24"])
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is None
    (attachment,) = [r for r in registrations if r.type == "aws:ec2transitgateway/vpcAttachment:VpcAttachment"]
    assert "transitGatewayDefaultRouteTableAssociation" not in attachment.inputs
    assert "transitGatewayDefaultRouteTablePropagation" not in attachment.inputs


def test_the_attachment_is_requested_long_before_pulumi_first_calls_the_api():
    """pulumi-aws's VpcAttachment is created once the attachment is `available` or
    `pendingAcceptance` (hashicorp/terraform-provider-aws internal/service/ec2 wait.go,
    waitTransitGatewayVPCAttachmentCreated), so `pulumi up` does not wait for a cross-account owner to
    accept it. The program asks for it with the VPC, before the cluster, and the first call to the API
    (Argo CD's namespace) waits for the routes through it.

    Whether CreateRoute succeeds while the attachment is still `pendingAcceptance` no AWS document
    says; the provider retries it while AWS answers InvalidTransitGatewayID.NotFound, for the
    route's create timeout, 5 minutes by default (terraform-provider-aws internal/service/ec2/vpc_route.go
    at 0128541e, resourceRouteCreate: RetryWhenAWSErrCodeEquals(... errCodeInvalidTransitGatewayIDNotFound)).
    With that default a route refused while pending would fail the run 5 minutes in, long before the
    owner can act: the routes' create timeout must cover the cluster's and the cpu pool's creation
    (about 20 minutes) and the owner's acceptance (docs/first-deploy.md, step 4)."""
    raw = _cluster(privateAccessCidrs=["10.255.0.0/24"])
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is None
    by_urn = {r.urn: r for r in registrations}
    (attachment,) = [r for r in registrations if r.type == "aws:ec2transitgateway/vpcAttachment:VpcAttachment"]
    assert {by_urn[d].type for d in attachment.dependencies} <= {"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet"}
    (namespace,) = [r for r in registrations if r.type == "kubernetes:core/v1:Namespace"]
    routes = [r for r in registrations if r.type == "aws:ec2/route:Route" and attachment.urn in r.dependencies]
    assert routes and all(r.urn in namespace.dependencies for r in routes)
    # An hour: the ~20 minutes of cluster and cpu pool, and the rest for the owner (step 4 says so).
    assert all(_minutes(r.custom_timeouts.get("create", "5m")) >= 60 for r in routes), routes


def _minutes(duration: str) -> float:
    """A Go duration as Pulumi's customTimeouts carry it ("1h30m", "60m", "90s"), in minutes."""
    units = {"h": 60.0, "m": 1.0, "s": 1 / 60}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_public_cidrs_without_the_public_endpoint_are_refused():
    assert "cdao:cluster.publicAccessCidrs" in _problems(_cluster(publicAccessCidrs=["203.0.113.0/28"]))


def test_private_access_becomes_443_ingress_on_pulumi_eks_cluster_security_group():
    raw = _cluster(privateAccessCidrs=["10.255.0.0/24"], privateAccessSecurityGroupIds=["sg-0123456789abcdef0"])
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is None
    (cluster,) = [r for r in registrations if r.type == "eks:index:Cluster"]
    assert cluster.inputs["endpointPrivateAccess"] is True
    rules = [
        r.inputs
        for r in registrations
        if r.type == EC2_RULE and r.inputs["securityGroupId"] == cluster.outputs["clusterSecurityGroupId"]
    ]
    assert {(tuple(r.get("cidrBlocks") or ()), r.get("sourceSecurityGroupId")) for r in rules} == {
        (("10.255.0.0/24",), None),
        ((), "sg-0123456789abcdef0"),
    }
    assert all((r["type"], r["protocol"], r["fromPort"], r["toPort"]) == ("ingress", "tcp", 443, 443) for r in rules)


# pulumi-eks manages the rules of the groups it creates with aws.ec2.SecurityGroupRule
# (pulumi/pulumi-eks nodejs/eks/nodes/securitygroup.ts: nodeIngressRule, eksClusterIngressRule, ...;
# nodejs/eks/cluster/cluster.ts: eksClusterInternetEgressRule; unchanged since 3328fbef, so as in
# 4.4.0), and pulumi_aws 7.51.1 ec2.SecurityGroupRule says not to use it together with
# vpc.SecurityGroupIngressRule/EgressRule or inline rules on one group (rule conflicts, perpetual
# differences, rules overwritten).
EC2_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
VPC_RULES = (
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
)


def test_each_security_group_gets_rules_of_one_kind_only_that_of_its_owner():
    raw = _cluster(privateAccessCidrs=["10.255.0.0/24"], privateAccessSecurityGroupIds=["sg-0123456789abcdef0"])
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is None
    (cluster,) = [r for r in registrations if r.type == "eks:index:Cluster"]
    eks_groups = {cluster.outputs["clusterSecurityGroupId"], cluster.outputs["nodeSecurityGroupId"]}
    kinds: dict[str, set[str]] = {}
    for r in registrations:
        if r.type in (EC2_RULE, *VPC_RULES):
            kinds.setdefault(r.inputs["securityGroupId"], set()).add(r.type)
    assert eks_groups & set(kinds), "the private access rules must reach pulumi-eks's cluster group"
    for group, types in kinds.items():
        assert types == {EC2_RULE} if group in eks_groups else not types & {EC2_RULE}, (group, types)
    inline = [
        r.name
        for r in registrations
        if r.type == "aws:ec2/securityGroup:SecurityGroup" and (r.inputs.get("ingress") or r.inputs.get("egress"))
    ]
    assert inline == []


def test_every_stack_file_says_how_pulumi_reaches_its_api(stack_run: PlanRun):
    cluster = stack_run.config.cluster
    assert cluster.public_access_cidrs or cluster.private_access_cidrs or cluster.private_access_security_group_ids


# ---------------------------------------------------------------- cluster administrators (fault 7)


def test_deploy_roles_are_required():
    raw = {**BASE, "cdao:cluster": {"privateAccessCidrs": ["10.255.0.0/24"]}}
    assert "cdao-github-deploy-<stack>" in _problems(raw)["cdao:cluster.deployRoleArns"]


def test_a_stack_that_keeps_data_requires_a_break_glass_role():
    raw = _cluster(privateAccessCidrs=["10.255.0.0/24"])
    raw["cdao:database"] = {"deletionProtection": True}
    assert "deletionProtection" in _problems(raw)["cdao:cluster.breakGlassRoleArn"]


def test_a_role_listed_twice_is_refused():
    raw = _cluster(privateAccessCidrs=["10.255.0.0/24"], adminRoleArns=[f"{ROLE}deploy"])
    assert "once" in _problems(raw)["cdao:cluster.adminRoleArns"]


def test_every_admin_but_the_creator_gets_an_access_entry(stack_run: PlanRun):
    """EKS gives the creator its own entry (pulumi-eks sets bootstrapClusterCreatorAdminPermissions: true,
    nodejs/eks/cluster/cluster.ts), and a second entry for one principal fails: so not declared."""
    spec = stack_run.config.cluster
    (cluster,) = _of_type(stack_run, "eks:index:Cluster")
    entries = cluster.inputs["accessEntries"]
    admins = {
        e["principalArn"]
        for e in entries.values()
        if any(p["policyArn"].endswith("/AmazonEKSClusterAdminPolicy") for p in e.get("accessPolicies", {}).values())
    }
    expected = {*spec.deploy_role_arns[1:], *spec.admin_role_arns}
    if spec.break_glass_role_arn:
        expected.add(spec.break_glass_role_arn)
    assert admins == expected
    assert spec.deploy_role_arns[0] not in {e["principalArn"] for e in entries.values()}
    previews = {e["principalArn"] for e in entries.values() if e["principalArn"] in spec.preview_role_arns}
    assert previews == set(spec.preview_role_arns)


# ---------------------------------------------------------------- Flyte certificate validation (fault 10)


def _flyte(**flyte: object) -> dict:
    return {**_cluster(privateAccessCidrs=["10.255.0.0/24"]), "cdao:flyte": {"hostname": "flyte.example.org", **flyte}}


def test_certificate_validation_mode_is_required():
    expected = _problems(_flyte())["cdao:flyte.certificateValidation"]
    assert "route53" in expected and "external" in expected


def test_route53_validation_needs_the_zone_and_external_refuses_one():
    assert "cdao:flyte.hostedZoneId" in _problems(_flyte(certificateValidation="route53"))
    assert "cdao:flyte.hostedZoneId" in _problems(_flyte(certificateValidation="external", hostedZoneId="Z123ABC"))


@pytest.mark.parametrize("mode", ["route53", "external"])
def test_the_certificate_arn_reaches_platform_only_once_issued(mode: str):
    raw = _flyte(certificateValidation=mode, **({"hostedZoneId": "Z123ABC"} if mode == "route53" else {}))
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is None
    (validation,) = [r for r in registrations if r.type == "aws:acm/certificateValidation:CertificateValidation"]
    records = [r for r in registrations if r.type == "aws:route53/record:Record"]
    assert len(records) == (1 if mode == "route53" else 0)
    assert bool(validation.inputs.get("validationRecordFqdns")) == (mode == "route53")
    (secret,) = [r for r in registrations if r.type == "kubernetes:core/v1:Secret" and r.name == "gitops-cluster"]
    assert (
        secret.inputs["metadata"]["annotations"]["cdao.io/flyte-certificate-arn"]
        == validation.outputs["certificateArn"]
    )


@pytest.mark.usefixtures("cli_shares_plans")
def test_plan_lists_the_record_the_dns_owner_creates(capsys: pytest.CaptureFixture[str]):
    assert main(["plan", "--stack", "dev", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    (record,) = plan["dns_records"]
    hostname = plan["outputs"]["flyteEndpoint"].removeprefix("https://")
    assert (record["type"], record["name"]) == ("CNAME", f"_<token>.{hostname}.")
    # The Python SDK registers every stack output in one call once all of them resolved (pulumi
    # 3.272.0 sdk/python/lib/pulumi/runtime/stack.py, Stack._finish -> register_outputs), the
    # certificate's ARN among them, which waits for validation: during a first run the output does
    # not exist yet, so the plan points at ACM, where the record is as soon as it is requested.
    assert "aws acm describe-certificate" in record["source"]
    assert "DomainValidationOptions" in record["source"]
    assert "once `pulumi up` has requested" not in record["source"]
    assert main(["plan", "--stack", "dev"]) == 0
    assert f"CNAME _<token>.{hostname}." in capsys.readouterr().out


# ---------------------------------------------------------------- container logs (fault 15)


def test_container_log_group_has_one_owner_and_reaches_platform(stack_run: PlanRun):
    """infra/ creates the group with the stack's retention and hands its name to platform/ through the
    cluster Secret; fluent-bit may only write to it (no CreateLogGroup, no PutRetentionPolicy)."""
    (group,) = [g for g in _of_type(stack_run, "aws:cloudwatch/logGroup:LogGroup") if g.name == "container-logs"]
    assert group.inputs["retentionInDays"] == stack_run.config.cluster.container_log_retention_days
    (secret,) = [s for s in _of_type(stack_run, "kubernetes:core/v1:Secret") if s.name == "gitops-cluster"]
    assert secret.inputs["metadata"]["annotations"]["cdao.io/container-log-group"] == group.inputs["name"]
    actions = {a for s in _statements(stack_run, "workload-identity-fluent-bit") for a in s["Action"]}
    assert "logs:PutLogEvents" in actions
    assert not actions & {"logs:CreateLogGroup", "logs:PutRetentionPolicy"}
    resources = {r for s in _statements(stack_run, "workload-identity-fluent-bit") for r in s["Resource"]}
    assert resources == {group.outputs["arn"], f"{group.outputs['arn']}:*"}


def test_the_documented_certificate_lookup_finds_the_certificate_the_program_requests(plan_of):
    """ACM's ListCertificates returns only RSA_1024 and RSA_2048 certificates unless Includes.keyTypes
    names others (https://docs.aws.amazon.com/acm/latest/APIReference/API_Filters.html, keyTypes), so
    the command docs/first-deploy.md gives the DNS owner must ask for the key type infra/ requests."""
    (cert,) = [r for r in plan_of("prod").registrations if r.type == "aws:acm/certificate:Certificate"]
    key_type = cert.inputs["keyAlgorithm"]
    doc = (Path(__file__).resolve().parents[2] / "docs" / "first-deploy.md").read_text()
    commands = [line for line in doc.splitlines() if "aws acm list-certificates" in line]
    assert commands
    for line in commands:
        assert f"--includes keyTypes={key_type}" in line, line

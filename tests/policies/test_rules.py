"""checkov-style fixtures: for every rule a passing, a failing and an unknown-value case.

Each case evaluates EVERY rule on a small stack and asserts the exact set of (rule id, level)
reported, so a fixture that trips an unrelated rule fails too. Builders produce resources that are
compliant with the whole pack; each case changes only what it is about.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from policies import RULES, evaluate

U = "<unknown>"
ACCT, OTHER = "111111111111", "999999999999"
TAGS = {"team": "ml", "cost-center": "cc-42", "environment": "dev", "managed-by": "pulumi"}
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABC123"
OIDC_ARN = f"arn:aws:iam::{ACCT}:oidc-provider/{ISSUER}"
KMS = f"arn:aws:kms:us-east-1:{ACCT}:key/1234"


def res(type_: str, name: str, **props: Any) -> dict[str, Any]:
    return {"type": type_, "name": name, "props": props}


def tagged(type_: str, name: str, **props: Any) -> dict[str, Any]:
    props.setdefault("tags", dict(TAGS))
    return res(type_, name, **props)


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any = "arn:aws:s3:::data/*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def policy(*statements: dict[str, Any], raw: Any = None) -> dict[str, Any]:
    return tagged("aws:iam/policy:Policy", "pol", policy=raw if raw is not None else doc(*statements))


EC2_TRUST = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}


def role(*trust: dict[str, Any], raw_trust: Any = None, **props: Any) -> dict[str, Any]:
    return tagged(
        "aws:iam/role:Role",
        "role",
        assumeRolePolicy=raw_trust if raw_trust is not None else doc(*(trust or (EC2_TRUST,))),
        **props,
    )


def irsa(condition: Any, federated: str = OIDC_ARN) -> dict[str, Any]:
    return role(
        {
            "Effect": "Allow",
            "Principal": {"Federated": federated},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }
    )


IRSA_OK = {
    "StringEquals": {
        f"{ISSUER}:sub": "system:serviceaccount:flyte:flytepropeller",
        f"{ISSUER}:aud": "sts.amazonaws.com",
    }
}


def service_trust(service: Any, condition: Any = None) -> dict[str, Any]:
    st = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if condition is not None:
        st["Condition"] = condition
    return role(st)


def bucket_set(
    name: str = "data",
    *,
    sse: bool = True,
    pab: bool = True,
    lifecycle: bool = True,
    link: Any = None,
    **props: Any,
) -> list[dict[str, Any]]:
    bucket_name = f"{name}-bucket"
    link = bucket_name if link is None else link
    # The default stack of the cases is dev, a disposable stack (CDAO-DATA-019).
    props.setdefault("forceDestroy", True)
    out = [tagged("aws:s3/bucketV2:BucketV2", name, bucket=bucket_name, **props)]
    if sse:
        out.append(
            res(
                "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
                f"{name}-sse",
                bucket=link,
                rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KMS}}],
            )
        )
    if pab:
        out.append(pab_res(name, link))
    if lifecycle:
        out.append(
            res(
                "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                f"{name}-lifecycle",
                bucket=link,
                rules=[{"id": "expire", "status": "Enabled", "expiration": {"days": 30}}],
            )
        )
    return out


def pab_res(name: str, link: Any, **flags: Any) -> dict[str, Any]:
    values = dict.fromkeys(("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)
    values.update(flags)
    return res("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{name}-pab", bucket=link, **values)


def node_group(types: Any = ("m5.xlarge",), lo: Any = 0, hi: Any = 3, **props: Any) -> dict[str, Any]:
    if isinstance(types, tuple) and any(t.startswith(("p", "g")) for t in types):
        props.setdefault("labels", {"k8s.amazonaws.com/accelerator": "nvidia-a100"})
    return tagged(
        "aws:eks/nodeGroup:NodeGroup",
        "pool",
        instanceTypes=list(types) if isinstance(types, tuple) else types,
        scalingConfig={"minSize": lo, "desiredSize": lo, "maxSize": hi},
        **props,
    )


def launch_template(**props: Any) -> dict[str, Any]:
    props.setdefault("metadataOptions", {"httpTokens": "required", "httpPutResponseHopLimit": 1})
    props.setdefault(
        "blockDeviceMappings",
        [{"deviceName": "/dev/xvda", "ebs": {"volumeType": "gp3", "encrypted": "true", "volumeSize": 100}}],
    )
    return tagged("aws:ec2/launchTemplate:LaunchTemplate", "lt", **props)


def eks_component(**props: Any) -> dict[str, Any]:
    props.setdefault("endpointPublicAccess", False)
    props.setdefault("endpointPrivateAccess", True)
    props.setdefault("encryptionConfigKeyArn", KMS)
    props.setdefault("skipDefaultNodeGroup", True)
    props.setdefault("accessEntries", {"ci": CI_ACCESS_ENTRY})
    return tagged("eks:index:Cluster", "cluster", **props)


# pulumi-eks AccessEntryArgs (installed pulumi_eks/_inputs.py): principalArn plus access policies.
CI_ACCESS_ENTRY = {
    "principalArn": f"arn:aws:iam::{ACCT}:role/cdao-deploy",
    "accessPolicies": {
        "admin": {
            "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            "accessScope": {"type": "cluster"},
        }
    },
}
# aws.eks.AccessEntry for the aws_eks() cluster, linked by its clusterName.
AWS_ACCESS_ENTRY = res(
    "aws:eks/accessEntry:AccessEntry",
    "ci-access",
    clusterName="cdao-dev",
    principalArn=f"arn:aws:iam::{ACCT}:role/cdao-deploy",
    type="STANDARD",
)


def aws_eks(**props: Any) -> dict[str, Any]:
    props.setdefault("vpcConfig", {"endpointPublicAccess": False, "endpointPrivateAccess": True, "subnetIds": ["s"]})
    props.setdefault("encryptionConfig", {"provider": {"keyArn": KMS}, "resources": ["secrets"]})
    cluster_name = props.pop("cluster_name", "cdao-dev")
    out = tagged("aws:eks/cluster:Cluster", "eks", roleArn=f"arn:aws:iam::{ACCT}:role/eks", **props)
    out["props"]["name"] = cluster_name
    return out


def rds(**props: Any) -> dict[str, Any]:
    base = {
        "instanceClass": "db.r6g.large",
        "engine": "postgres",
        "storageEncrypted": True,
        "publiclyAccessible": False,
        "backupRetentionPeriod": 7,
        "multiAz": True,
        "deletionProtection": True,
        "storageType": "gp3",
        "finalSnapshotIdentifier": "cdao-prod-flyte-final-20261130",
    }
    base.update(props)
    return tagged("aws:rds/instance:Instance", "db", **base)


def cluster_secret(environment: Any, **enabled: bool) -> dict[str, Any]:
    """The Argo CD cluster Secret infra/ writes (infra/contract.py), with its labels only."""
    # Both labels that may pick platform/'s values files (the ApplicationSets say which one they read).
    labels = {"argocd.argoproj.io/secret-type": "cluster", "environment": environment, "profile": environment}
    labels |= {f"enable_{addon}": "true" if on else "false" for addon, on in enabled.items()}
    return res(
        "kubernetes:core/v1:Secret", "gitops-cluster-secret", metadata={"name": "in-cluster-cdao", "labels": labels}
    )


def aurora(**props: Any) -> dict[str, Any]:
    props.setdefault("engine", "aurora-postgresql")
    props.setdefault("storageEncrypted", True)
    props.setdefault("finalSnapshotIdentifier", "cdao-prod-aurora-final-20261130")
    return tagged("aws:rds/cluster:Cluster", "aurora", **{k: v for k, v in props.items() if v is not None})


def karpenter_node_pool(limits: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}
        }
    }
    if limits is not None:
        spec["limits"] = limits
    return res(
        "kubernetes:karpenter.sh/v1:NodePool",
        "default",
        apiVersion="karpenter.sh/v1",
        kind="NodePool",
        metadata={"name": "default"},
        spec=spec,
    )


def volume(**props: Any) -> dict[str, Any]:
    props.setdefault("type", "gp3")
    props.setdefault("encrypted", True)
    return tagged("aws:ebs/volume:Volume", "vol", availabilityZone="us-east-1a", size=100, **props)


def ecr(**props: Any) -> dict[str, Any]:
    props.setdefault("imageTagMutability", "IMMUTABLE")
    props.setdefault("imageScanningConfiguration", {"scanOnPush": True})
    props.setdefault("forceDelete", True)
    return tagged("aws:ecr/repository:Repository", "repo", **props)


def vpc_set(with_log: bool = True, log_vpc: Any = "vpc-1") -> list[dict[str, Any]]:
    vpc = tagged("aws:ec2/vpc:Vpc", "vpc", cidrBlock="10.0.0.0/16")
    vpc["id"] = "vpc-1"
    out = [vpc]
    if with_log:
        out.append(tagged("aws:ec2/flowLog:FlowLog", "vpc-flow", vpcId=log_vpc, trafficType="ALL"))
    return out


def sg(ingress: list[dict[str, Any]], sg_id: str = "sg-1") -> dict[str, Any]:
    # No inline rules means `ingress` left unset: an explicit [] manages (and empties) the group's
    # rules, which standalone rule resources on it would contradict (CDAO-NET-011).
    inline = {"ingress": ingress} if ingress else {}
    out = tagged("aws:ec2/securityGroup:SecurityGroup", f"sg-{sg_id}", vpcId="vpc-1", **inline)
    out["id"] = sg_id
    return out


def ingress_rule(cidr: Any, port: Any, sg_id: Any = "sg-1", **props: Any) -> dict[str, Any]:
    return tagged(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        f"in-{port}",
        securityGroupId=sg_id,
        cidrIpv4=cidr,
        fromPort=port,
        toPort=port,
        ipProtocol="tcp",
        **props,
    )


def public_lb(sg_ids: Any = ("sg-1",), internal: Any = False) -> dict[str, Any]:
    return tagged(
        "aws:lb/loadBalancer:LoadBalancer",
        "alb",
        internal=internal,
        loadBalancerType="application",
        securityGroups=list(sg_ids),
    )


LBC_FRONTEND = [
    sg([], "sg-alb"),
    ingress_rule("0.0.0.0/0", 443, "sg-alb"),
    {**ingress_rule(None, 443, "sg-alb", cidrIpv6="::/0"), "name": "in-443-v6"},
]

# An ALB frontend group as the AWS Load Balancer Controller's HTTP->HTTPS setup needs it: 443 and 80.
ALB_80_443 = [*LBC_FRONTEND, {**ingress_rule(None, 80, "sg-alb", cidrIpv6="::/0"), "name": "in-80-v6"}]


def service_role(name: str, service: str, *, condition: Any = None) -> dict[str, Any]:
    """A role as the mocks register it: the physical name is the id; the trust admits one service."""
    st: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if condition is not None:
        st["Condition"] = condition
    out = role(st)
    out["name"], out["id"] = name, f"{name}-1a2b3c4"
    # The ARN a real engine and the offline plan's mocks give a role (cdao_cli/plan/mocks.py).
    out["props"]["arn"] = f"arn:aws:iam::{ACCT}:role/{name}-1a2b3c4"
    return out


def pass_role(sid: str, role_names: list[str], service: Any, op: str = "StringEquals") -> dict[str, Any]:
    return allow(
        "iam:PassRole",
        [f"arn:aws:iam::{ACCT}:role/{n}-1a2b3c4" for n in role_names],
        Sid=sid,
        Condition={op: {"iam:PassedToService": service}},
    )


SOURCE = {"StringEquals": {"aws:SourceAccount": ACCT}}
ROLE_ARN = f"arn:aws:iam::{ACCT}:role/emr-instance-1a2b3c4"
# EMR on EC2: the service role is trusted by elasticmapreduce.amazonaws.com, the instance-profile
# role by ec2.amazonaws.com (EMR Management Guide, emr-iam-role / emr-iam-role-for-ec2).
EMR_ROLES = [
    service_role("emr-service", "elasticmapreduce.amazonaws.com", condition=SOURCE),
    service_role("emr-instance", "ec2.amazonaws.com"),
]


# The AWS Load Balancer Controller's IRSA role (service account name from the EKS user guide's
# helm install, --set serviceAccount.name=aws-load-balancer-controller) and the upstream policy's
# ownership condition shape (docs/install/iam_policy.json v2.17.1:
# {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}).
LBC_SA = "system:serviceaccount:kube-system:aws-load-balancer-controller"
LBC_ROLE = irsa({"StringEquals": {f"{ISSUER}:sub": LBC_SA, f"{ISSUER}:aud": "sts.amazonaws.com"}})
SG_RULE_ACTIONS = ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]
SG_ARNS = "arn:aws:ec2:us-east-1:*:security-group/*"
OWNED = {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}


def role_policy(*statements: dict[str, Any], role_name: str = "role") -> dict[str, Any]:
    return res("aws:iam/rolePolicy:RolePolicy", "lbc-policy", role=role_name, policy=doc(*statements))


# The controller's upstream policy, unmodified, from the pinned chart's data in shared/ (see
# shared/charts/SOURCES.md; located as tests/platform/support/chart_cache.py does), read at test time.
_CHARTS = Path(os.environ.get("CDAO_CHART_CACHE") or Path(__file__).resolve().parents[2].parent / "shared" / "charts")
_UPSTREAM_LBC = _CHARTS / "aws-load-balancer-controller" / "1.17.1" / "upstream-iam-policy.json"
LBC_POLICY_ARN = f"arn:aws:iam::{ACCT}:policy/AWSLoadBalancerControllerIAMPolicy"
LBC_POLICY_URN = "urn:pulumi:dev::cdao::aws:iam/policy:Policy::lbc-policy"
LBC_POLICY = {
    **policy(raw=_UPSTREAM_LBC.read_text()),
    "id": LBC_POLICY_ARN,
    "urn": LBC_POLICY_URN,
}


def lbc_role_with(**props: Any) -> dict[str, Any]:
    return {**LBC_ROLE, "props": {**LBC_ROLE["props"], **props}}


# pulumi-aws acm.Certificate / acm.CertificateValidation inputs; the id of a certificate is its ARN.
CERT = {
    **tagged("aws:acm/certificate:Certificate", "cert", domainName="flyte.example.com", validationMethod="DNS"),
    "id": f"arn:aws:acm:us-east-1:{ACCT}:certificate/0b5e2f3c-1111-2222-3333-444455556666",
}

ACCELERATORS_ALLOWED = {"stacks": {"dev": {"allowedInstanceTypes": ["g4ad.xlarge", "inf2.xlarge", "g5.xlarge"]}}}


def with_props(resource: dict[str, Any], **props: Any) -> dict[str, Any]:
    """`resource` with `props` set, for props its builder's keywords cannot take (e.g. `name`)."""
    return {**resource, "props": {**resource["props"], **props}}


def cert_validation(arn: Any) -> dict[str, Any]:
    return res(
        "aws:acm/certificateValidation:CertificateValidation",
        "cert-validation",
        certificateArn=arn,
        validationRecordFqdns=["_x1.flyte.example.com"],
    )


def role_with(**props: Any) -> dict[str, Any]:
    """The default role with props (e.g. its physical `name`) that role()'s keywords cannot take."""
    base = role()
    return {**base, "props": {**base["props"], **props}}


BACKUP_VAULT_DEV = {
    "type": "aws:backup/vault:Vault",
    "name": "vault",
    "props": {"name": "cdao-dev", "forceDestroy": True},
}


# EMR on EC2 with the v2 managed service policy: it may launch only into subnets and security groups
# tagged for-use-with-amazon-emr-managed-policies=true (AmazonEMRServicePolicy_v2, statement
# CreateInTaggedNetwork; EMR Management Guide, emr-managed-iam-policies).
EMR_TAG = "for-use-with-amazon-emr-managed-policies"
EMR_V2 = [
    EMR_ROLES[0],
    res(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "emr-service-v2",
        role="emr-service-1a2b3c4",
        policyArn="arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2",
    ),
]


def emr_subnet(tag: Any = "true") -> dict[str, Any]:
    tags = {**TAGS, "tier": "private"} if tag is None else {**TAGS, "tier": "private", EMR_TAG: tag}
    out = tagged("aws:ec2/subnet:Subnet", "private-a", mapPublicIpOnLaunch=False, tags=tags)
    out["id"] = "subnet-a"
    return out


def emr_in(subnet_id: Any, **ec2_attributes: Any) -> dict[str, Any]:
    return emr_cluster(
        serviceRole=f"arn:aws:iam::{ACCT}:role/emr-service-1a2b3c4",
        ec2Attributes={
            "subnetId": subnet_id,
            "instanceProfile": f"arn:aws:iam::{ACCT}:instance-profile/emr",
            **ec2_attributes,
        },
    )


def container(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": "app",
        "image": "123.dkr.ecr.us-east-1.amazonaws.com/app:1.4.2",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    }
    c.update(over)
    return c


def deployment(*containers: dict[str, Any], pod: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = {"containers": list(containers or (container(),)), **(pod or {})}
    return res(
        "kubernetes:apps/v1:Deployment",
        "web",
        metadata={"name": "web", "namespace": "apps"},
        spec={"selector": {"matchLabels": {"app": "web"}}, "template": {"spec": spec}},
    )


def notebook(**props: Any) -> dict[str, Any]:
    base = {
        "instanceType": "ml.t3.medium",
        "roleArn": f"arn:aws:iam::{ACCT}:role/nb",
        "rootAccess": "Disabled",
        "directInternetAccess": "Disabled",
        "subnetId": "subnet-1",
        "securityGroups": ["sg-1"],
    }
    base.update(props)
    return tagged("aws:sagemaker/notebookInstance:NotebookInstance", "nb", **base)


def emr_cluster(**props: Any) -> dict[str, Any]:
    base = {
        "releaseLabel": "emr-7.2.0",
        "serviceRole": f"arn:aws:iam::{ACCT}:role/emr",
        "masterInstanceGroup": {"instanceType": "m5.xlarge"},
        "coreInstanceGroup": {"instanceType": "m5.2xlarge", "instanceCount": 2},
        "securityConfiguration": "cdao-emr-encryption",
        "autoTerminationPolicy": {"idleTimeout": 3600},
    }
    base.update(props)
    return tagged("aws:emr/cluster:Cluster", "spark", **base)


def emr_serverless(**props: Any) -> dict[str, Any]:
    base = {
        "releaseLabel": "emr-7.2.0",
        "type": "spark",
        "maximumCapacity": {"cpu": "64 vCPU", "memory": "256 GB"},
        "autoStopConfiguration": {"enabled": True, "idleTimeoutMinutes": 15},
    }
    base.update(props)
    return tagged("aws:emrserverless/application:Application", "spark-sl", **base)


def estimate(peak: Any) -> Callable[[list[dict[str, Any]]], Any]:
    return lambda _resources: SimpleNamespace(idle_usd_month=0.0, peak_usd_month=peak, lines=[])


NAT_ROUTE = {"cidrBlock": "0.0.0.0/0", "natGatewayId": "nat-1"}
TABLE_URN = "urn:pulumi:prod::cdao::aws:ec2/routeTable:RouteTable::private-a"


def route_table(**props: Any) -> dict[str, Any]:
    props.setdefault("id", "rtb-1")
    return tagged("aws:ec2/routeTable:RouteTable", "private-a", vpcId="vpc-1", **props)


def route(table: str) -> dict[str, Any]:
    return res(
        "aws:ec2/route:Route",
        "api-access",
        routeTableId=table,
        destinationCidrBlock="10.255.0.0/24",
        transitGatewayId="tgw-1",
    )


NO_COST = estimate(0.0)


def M(*ids: str) -> set[tuple[str, str]]:
    return {(i, "mandatory") for i in ids}


def A(*ids: str) -> set[tuple[str, str]]:
    return {(i, "advisory") for i in ids}


@dataclass(frozen=True)
class Case:
    resources: list[dict[str, Any]]
    expected: set[tuple[str, str]]
    stack: str
    config: dict[str, Any] | None
    estimator: Callable[..., Any]


def case(
    cid: str,
    resources: dict[str, Any] | list[dict[str, Any]],
    expected: set[tuple[str, str]] | None = None,
    *,
    stack: str = "dev",
    config: dict[str, Any] | None = None,
    estimator: Callable[..., Any] = NO_COST,
) -> Any:
    items = resources if isinstance(resources, list) else [resources]
    return pytest.param(Case(items, expected or set(), stack, config, estimator), id=cid)


SA = "system:serviceaccount:flyte:flytepropeller"
# The shapes pulumi-eks 4.x returns (see the CDAO-IAM-008 cases), with the issuer id format of the
# EKS user guide's example (oidc.eks.<region>.amazonaws.com/id/<32 hex>).
EKS_OIDC_ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
EKS_OIDC_PROVIDER_URL = f"https://{EKS_OIDC_ISSUER}"
EKS_OIDC_PROVIDER_ARN = f"arn:aws:iam::{ACCT}:oidc-provider/{EKS_OIDC_ISSUER}"

CASES = [
    # ---------------------------------------------------------------- IAM-001 Action "*"
    case("CDAO-IAM-001-pass-scoped", policy(allow(["s3:GetObject", "s3:PutObject"]))),
    case("CDAO-IAM-001-pass-deny-star", policy({"Effect": "Deny", "Action": "*", "Resource": "*"})),
    case(
        "CDAO-IAM-001-pass-notaction", policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::d"})
    ),
    case("CDAO-IAM-001-fail-star", policy(allow("*", "arn:aws:s3:::data")), M("CDAO-IAM-001")),
    case(
        "CDAO-IAM-001-fail-inline-list",
        role(inlinePolicies=[{"name": "p", "policy": doc(allow(["s3:GetObject", "*"]))}]),
        M("CDAO-IAM-001"),
    ),
    case(
        "CDAO-IAM-001-fail-dict-single-statement",
        policy(raw={"Version": "2012-10-17", "Statement": allow("*", "arn:aws:s3:::data")}),
        M("CDAO-IAM-001"),
    ),
    case(
        "CDAO-IAM-001-unknown-action",
        policy(raw={"Statement": [{"Effect": "Allow", "Action": U, "Resource": "arn:aws:s3:::data"}]}),
        A("CDAO-IAM-001", "CDAO-IAM-003", "CDAO-IAM-005", "CDAO-IAM-012"),
    ),
    case(
        "CDAO-IAM-001-unknown-document",
        policy(raw=U),
        A("CDAO-IAM-001", "CDAO-IAM-002", "CDAO-IAM-003", "CDAO-IAM-005", "CDAO-IAM-012"),
    ),
    # ---------------------------------------------------------------- IAM-002 Resource "*"
    case("CDAO-IAM-002-pass-unscopable", policy(allow(["ec2:DescribeInstances", "sts:GetCallerIdentity"], "*"))),
    case(
        "CDAO-IAM-002-pass-tag-condition",
        policy(allow("ec2:StartInstances", "*", Condition={"StringEquals": {"aws:ResourceTag/team": "ml"}})),
    ),
    case(
        "CDAO-IAM-002-pass-tag-must-exist",
        policy(
            allow(
                "elasticloadbalancing:DeleteLoadBalancer",
                "*",
                Condition={"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}},
            )
        ),
    ),
    case(
        "CDAO-IAM-002-fail-null-true-is-not-scoping",
        policy(allow("ec2:CreateTags", "*", Condition={"Null": {"aws:RequestTag/team": "true"}})),
        A("CDAO-IAM-002"),
    ),
    case("CDAO-IAM-002-fail-s3-star", policy(allow("s3:GetObject", "*")), A("CDAO-IAM-002")),
    case(
        "CDAO-IAM-002-fail-tag-ifexists",
        policy(allow("ec2:StartInstances", "*", Condition={"StringEqualsIfExists": {"aws:ResourceTag/team": "ml"}})),
        A("CDAO-IAM-002"),
    ),
    case("CDAO-IAM-002-unknown-resource", policy(raw={"Statement": [allow("s3:GetObject", U)]}), A("CDAO-IAM-002")),
    # ---------------------------------------------------------------- IAM-003 iam:*
    case("CDAO-IAM-003-pass", policy(allow("iam:GetRole", f"arn:aws:iam::{ACCT}:role/x"))),
    case("CDAO-IAM-003-fail", policy(allow("IAM:*", f"arn:aws:iam::{ACCT}:user/x")), M("CDAO-IAM-003")),
    case(
        "CDAO-IAM-003-unknown",
        policy(raw={"Statement": [allow(["iam:GetRole", U], f"arn:aws:iam::{ACCT}:user/x")]}),
        A("CDAO-IAM-001", "CDAO-IAM-003", "CDAO-IAM-005", "CDAO-IAM-012"),
    ),
    # ---------------------------------------------------------------- IAM-004 broad managed policies
    case(
        "CDAO-IAM-004-pass",
        [
            res(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                "att",
                role="node",
                policyArn="arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
            ),
            role(managedPolicyArns=["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"]),
        ],
    ),
    case(
        "CDAO-IAM-004-fail-attachment",
        res(
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            "att",
            role="r",
            policyArn="arn:aws:iam::aws:policy/AdministratorAccess",
        ),
        M("CDAO-IAM-004"),
    ),
    case(
        "CDAO-IAM-004-fail-managed-arns",
        role(managedPolicyArns=["arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"]),
        M("CDAO-IAM-004"),
    ),
    case(
        "CDAO-IAM-004-fail-power-user-group",
        res(
            "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
            "att",
            group="devs",
            policyArn="arn:aws:iam::aws:policy/PowerUserAccess",
        ),
        M("CDAO-IAM-004"),
    ),
    case(
        "CDAO-IAM-004-unknown",
        res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "att", role="r", policyArn=U),
        A("CDAO-IAM-004"),
    ),
    # ---------------------------------------------------------------- IAM-005 iam:PassRole
    case(
        "CDAO-IAM-005-pass",
        policy(
            allow(
                "iam:PassRole",
                f"arn:aws:iam::{ACCT}:role/sagemaker-exec",
                Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        ),
    ),
    case("CDAO-IAM-005-pass-not-a-role", policy(allow("iam:Pass*", "arn:aws:s3:::data"))),
    case("CDAO-IAM-005-fail-star", policy(allow("iam:PassRole", "*")), M("CDAO-IAM-005") | A("CDAO-IAM-002")),
    case(
        "CDAO-IAM-005-fail-no-condition",
        policy(allow("iam:Pass*", f"arn:aws:iam::{ACCT}:role/sagemaker-exec")),
        M("CDAO-IAM-005"),
    ),
    case(
        "CDAO-IAM-005-fail-ifexists",
        policy(
            allow(
                "iam:PassRole",
                f"arn:aws:iam::{ACCT}:role/x",
                Condition={"StringEqualsIfExists": {"iam:PassedToService": "batch.amazonaws.com"}},
            )
        ),
        M("CDAO-IAM-005"),
    ),
    case(
        "CDAO-IAM-005-fail-any-role",
        policy(
            allow(
                "iam:PassRole",
                f"arn:aws:iam::{ACCT}:role/*",
                Condition={"StringEquals": {"iam:PassedToService": "batch.amazonaws.com"}},
            )
        ),
        M("CDAO-IAM-005"),
    ),
    case(
        "CDAO-IAM-005-unknown-condition",
        policy(raw={"Statement": [allow("iam:PassRole", f"arn:aws:iam::{ACCT}:role/x", Condition=U)]}),
        A("CDAO-IAM-005", "CDAO-IAM-012"),
    ),
    # ---------------------------------------------------------------- IAM-006 cross-account ExternalId
    case(
        "CDAO-IAM-006-pass-external-id",
        role(
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "f00d-cafe"}},
            }
        ),
    ),
    case(
        "CDAO-IAM-006-pass-same-account",
        role(
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:role/ci"}, "Action": "sts:AssumeRole"},
            arn=f"arn:aws:iam::{ACCT}:role/role",
        ),
    ),
    case(
        "CDAO-IAM-006-pass-trusted-account-config",
        role({"Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": "sts:AssumeRole"}),
        config={"stacks": {"dev": {"trustedAccountIds": [OTHER]}}},
    ),
    case(
        "CDAO-IAM-006-fail",
        role({"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{OTHER}:root"]}, "Action": "sts:AssumeRole"}),
        M("CDAO-IAM-006"),
    ),
    case(
        "CDAO-IAM-006-fail-ifexists",
        role(
            {
                "Effect": "Allow",
                "Principal": {"AWS": OTHER},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEqualsIfExists": {"sts:ExternalId": "f00d"}},
            }
        ),
        M("CDAO-IAM-006"),
    ),
    case(
        "CDAO-IAM-006-unknown-condition",
        role(
            raw_trust={
                "Statement": [{"Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": "sts:*", "Condition": U}]
            }
        ),
        A("CDAO-IAM-006"),
    ),
    # ---------------------------------------------------------------- IAM-007 Principal "*"
    case(
        "CDAO-IAM-007-pass-org-condition",
        res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "bp",
            bucket="data-bucket",
            policy=doc(
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::data-bucket/*",
                    "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}},
                }
            ),
        ),
    ),
    case(
        "CDAO-IAM-007-pass-deny",
        res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "bp",
            bucket="data-bucket",
            policy=doc(
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": "arn:aws:s3:::data-bucket/*",
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ),
        ),
    ),
    case(
        "CDAO-IAM-007-fail-bucket-policy",
        res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "bp",
            bucket="data-bucket",
            policy=doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}),
        ),
        M("CDAO-IAM-007"),
    ),
    case(
        "CDAO-IAM-007-fail-trust-aws-star",
        role({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}),
        M("CDAO-IAM-007"),
    ),
    case(
        "CDAO-IAM-007-fail-notprincipal",
        res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "bp",
            bucket="b",
            policy=doc({"Effect": "Allow", "NotPrincipal": {"AWS": OTHER}, "Action": "s3:*", "Resource": "*"}),
        ),
        M("CDAO-IAM-007"),
    ),
    case(
        "CDAO-IAM-007-unknown-principal",
        res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "bp",
            bucket="b",
            policy={"Statement": [{"Effect": "Allow", "Principal": U, "Action": "s3:GetObject", "Resource": "*"}]},
        ),
        A("CDAO-IAM-007"),
    ),
    # ---------------------------------------------------------------- IAM-008 IRSA
    case("CDAO-IAM-008-pass", irsa(IRSA_OK)),
    case(
        "CDAO-IAM-008-pass-list-of-one",
        irsa({"StringEquals": {f"{ISSUER}:sub": [SA], f"{ISSUER}:aud": ["sts.amazonaws.com"]}}),
    ),
    case(
        "CDAO-IAM-008-fail-stringlike",
        irsa(
            {
                "StringLike": {f"{ISSUER}:sub": "system:serviceaccount:flyte:*"},
                "StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"},
            }
        ),
        M("CDAO-IAM-008"),
    ),
    case("CDAO-IAM-008-fail-no-aud", irsa({"StringEquals": {f"{ISSUER}:sub": SA}}), M("CDAO-IAM-008")),
    case(
        "CDAO-IAM-008-fail-two-subjects",
        irsa(
            {"StringEquals": {f"{ISSUER}:sub": [SA, "system:serviceaccount:a:b"], f"{ISSUER}:aud": "sts.amazonaws.com"}}
        ),
        M("CDAO-IAM-008"),
    ),
    case(
        "CDAO-IAM-008-fail-other-issuer",
        irsa(
            {
                "StringEquals": {
                    "oidc.eks.us-east-1.amazonaws.com/id/OTHER:sub": SA,
                    f"{ISSUER}:aud": "sts.amazonaws.com",
                }
            }
        ),
        M("CDAO-IAM-008"),
    ),
    case("CDAO-IAM-008-fail-no-condition", irsa(None), M("CDAO-IAM-008")),
    # pulumi-eks 4.x outputs (installed pulumi_eks/cluster.py docstrings; nodejs/eks/cluster/cluster.ts):
    # oidcProviderUrl is the issuer URL *with* "https://", oidcIssuer the same without it, and
    # oidcProviderArn "arn:aws:iam::<account>:oidc-provider/<issuer>". A trust built from the URL:
    case(
        "CDAO-IAM-008-fail-keys-from-oidc-provider-url",
        irsa(
            {
                "StringEquals": {
                    f"{EKS_OIDC_PROVIDER_URL}:sub": SA,
                    f"{EKS_OIDC_PROVIDER_URL}:aud": "sts.amazonaws.com",
                }
            },
            federated=EKS_OIDC_PROVIDER_ARN,
        ),
        M("CDAO-IAM-008"),
    ),
    case(
        "CDAO-IAM-008-fail-provider-arn-from-url",
        irsa(
            {"StringEquals": {f"{EKS_OIDC_PROVIDER_URL}:sub": SA, f"{EKS_OIDC_PROVIDER_URL}:aud": "sts.amazonaws.com"}},
            federated=f"arn:aws:iam::{ACCT}:oidc-provider/{EKS_OIDC_PROVIDER_URL}",
        ),
        M("CDAO-IAM-008"),
    ),
    case(
        "CDAO-IAM-008-pass-keys-from-oidc-issuer",
        irsa(
            {"StringEquals": {f"{EKS_OIDC_ISSUER}:sub": SA, f"{EKS_OIDC_ISSUER}:aud": "sts.amazonaws.com"}},
            federated=EKS_OIDC_PROVIDER_ARN,
        ),
    ),
    # review 18 #12: a trust built from an unknown issuer at preview: keys "<unknown>:sub"/":aud".
    case(
        "CDAO-IAM-008-unknown-issuer-in-keys",
        irsa({"StringEquals": {f"{U}:sub": SA, f"{U}:aud": "sts.amazonaws.com"}}),
        A("CDAO-IAM-008"),
    ),
    case(
        "CDAO-IAM-008-unknown-subject",
        irsa({"StringEquals": {f"{ISSUER}:sub": U, f"{ISSUER}:aud": "sts.amazonaws.com"}}),
        A("CDAO-IAM-008"),
    ),
    # ---------------------------------------------------------------- IAM-012 PassRole to the trusting service
    # AmazonEMRFullAccessPolicy_v2 passes the EMR role to elasticmapreduce.amazonaws.com* and the EC2
    # role to ec2.amazonaws.com* (docs.aws.amazon.com/aws-managed-policy/latest/reference/
    # AmazonEMRFullAccessPolicy_v2.html, statements PassRoleForEMR / PassRoleForEC2).
    case(
        "CDAO-IAM-012-pass-emr-one-statement-per-role",
        [
            *EMR_ROLES,
            policy(
                pass_role("PassEmrServiceRole", ["emr-service"], "elasticmapreduce.amazonaws.com"),
                pass_role("PassEmrInstanceRole", ["emr-instance"], "ec2.amazonaws.com"),
            ),
        ],
    ),
    case(
        "CDAO-IAM-012-pass-managed-policy-stringlike",
        [
            *EMR_ROLES,
            policy(
                pass_role("PassRoleForEMR", ["emr-service"], "elasticmapreduce.amazonaws.com*", "StringLike"),
                pass_role("PassRoleForEC2", ["emr-instance"], "ec2.amazonaws.com*", "StringLike"),
            ),
        ],
    ),
    # The fault of issue 13 (#8): both EMR roles passed only to elasticmapreduce.amazonaws.com.
    case(
        "CDAO-IAM-012-fail-emr-instance-role-passed-to-emr",
        [
            *EMR_ROLES,
            policy(pass_role("PassEmrRoles", ["emr-service", "emr-instance"], "elasticmapreduce.amazonaws.com")),
        ],
        M("CDAO-IAM-012"),
    ),
    case(
        "CDAO-IAM-012-fail-sagemaker-role-passed-to-batch",
        [
            service_role("sm-exec", "sagemaker.amazonaws.com", condition=SOURCE),
            role(inlinePolicies=[{"name": "p", "policy": doc(pass_role("P", ["sm-exec"], "batch.amazonaws.com"))}]),
        ],
        M("CDAO-IAM-012"),
    ),
    case(
        "CDAO-IAM-012-pass-eks-node-role-handoff",
        [service_role("node", "ec2.amazonaws.com"), policy(pass_role("PassNodeRole", ["node"], "eks.amazonaws.com"))],
    ),
    # review 18 #3: AWS Batch's documented hand-offs (Batch User Guide execution-IAM-role,
    # instance_IAM_role, spot_fleet_IAM_role) and EKS Fargate's pod execution role (pod-execution-role).
    case(
        "CDAO-IAM-012-pass-batch-execution-role",
        [
            service_role("batch-exec", "ecs-tasks.amazonaws.com", condition=SOURCE),
            policy(pass_role("PassToBatch", ["batch-exec"], "batch.amazonaws.com")),
        ],
    ),
    case(
        "CDAO-IAM-012-pass-batch-instance-and-spot-fleet-roles",
        [
            service_role("batch-instance", "ec2.amazonaws.com"),
            service_role("batch-spot", "spotfleet.amazonaws.com"),
            policy(pass_role("PassToBatch", ["batch-instance", "batch-spot"], "batch.amazonaws.com")),
        ],
    ),
    case(
        "CDAO-IAM-012-pass-fargate-pod-execution-role",
        [
            service_role("fargate-pods", "eks-fargate-pods.amazonaws.com"),
            policy(pass_role("PassToEks", ["fargate-pods"], "eks.amazonaws.com")),
        ],
    ),
    # review 18 #4: a role of another account with the same name is not this stack's role.
    case(
        "CDAO-IAM-012-pass-same-name-other-account",
        [
            {**(r := service_role("emr-instance", "ec2.amazonaws.com")), "props": {**r["props"], "arn": ROLE_ARN}},
            policy(
                allow(
                    "iam:PassRole",
                    f"arn:aws:iam::{OTHER}:role/emr-instance-1a2b3c4",
                    Condition={"StringEquals": {"iam:PassedToService": "elasticmapreduce.amazonaws.com"}},
                )
            ),
        ],
    ),
    case(
        "CDAO-IAM-012-fail-same-name-same-account",
        [
            {**(r := service_role("emr-instance", "ec2.amazonaws.com")), "props": {**r["props"], "arn": ROLE_ARN}},
            policy(pass_role("P", ["emr-instance"], "elasticmapreduce.amazonaws.com")),
        ],
        M("CDAO-IAM-012"),
    ),
    case(
        "CDAO-IAM-012-fail-role-arn-absent-matched-by-name",
        [
            {**(r := service_role("emr-instance", "ec2.amazonaws.com")), "props": {**r["props"], "arn": None}},
            policy(pass_role("P", ["emr-instance"], "elasticmapreduce.amazonaws.com")),
        ],
        M("CDAO-IAM-012"),
    ),
    case(
        "CDAO-IAM-012-unknown-role-arn",
        [
            {**(r := service_role("emr-instance", "ec2.amazonaws.com")), "props": {**r["props"], "arn": U}},
            policy(pass_role("P", ["emr-instance"], "elasticmapreduce.amazonaws.com")),
        ],
        A("CDAO-IAM-012"),
    ),
    case(
        "CDAO-IAM-012-pass-role-outside-the-stack",
        [service_role("other", "ec2.amazonaws.com"), policy(pass_role("P", ["elsewhere"], "sagemaker.amazonaws.com"))],
    ),
    case(
        "CDAO-IAM-012-unknown-trust",
        [
            {**service_role("emr-instance", "ec2.amazonaws.com"), "props": {"assumeRolePolicy": U, "tags": TAGS}},
            policy(pass_role("P", ["emr-instance"], "elasticmapreduce.amazonaws.com")),
        ],
        A("CDAO-IAM-006", "CDAO-IAM-007", "CDAO-IAM-008", "CDAO-IAM-009", "CDAO-IAM-012"),
    ),
    # ---------------------------------------------------------------- IAM-013 LBC on foreign groups
    case(
        "CDAO-IAM-013-pass-backend-rules-without-ownership",
        [
            LBC_ROLE,
            role_policy(
                allow(SG_RULE_ACTIONS, SG_ARNS, Sid="ManageBackendRules"),
                allow([*SG_RULE_ACTIONS, "ec2:DeleteSecurityGroup"], SG_ARNS, Sid="Own", Condition=OWNED),
            ),
        ],
    ),
    # issue 13 #13: the controller's rules on security groups restricted to those it created.
    case(
        "CDAO-IAM-013-fail-ownership-tag-only",
        [LBC_ROLE, role_policy(allow([*SG_RULE_ACTIONS, "ec2:DeleteSecurityGroup"], SG_ARNS, Condition=OWNED))],
        M("CDAO-IAM-013"),
    ),
    case(
        "CDAO-IAM-013-fail-string-equals-ownership",
        [
            LBC_ROLE,
            role_policy(
                allow(
                    SG_RULE_ACTIONS,
                    SG_ARNS,
                    Condition={"StringEquals": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "cdao-prod"}},
                )
            ),
        ],
        M("CDAO-IAM-013"),
    ),
    case(
        "CDAO-IAM-013-pass-managed-policy-attachment",
        [
            LBC_ROLE,
            {**policy(allow(SG_RULE_ACTIONS, SG_ARNS)), "id": f"arn:aws:iam::{ACCT}:policy/lbc"},
            res(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                "lbc-attach",
                role="role",
                policyArn=f"arn:aws:iam::{ACCT}:policy/lbc",
            ),
        ],
    ),
    # review 18 #2: the unmodified upstream policy (shared/charts/aws-load-balancer-controller/1.17.1/
    # upstream-iam-policy.json, the chart's docs/install/iam_policy.json) attached the two other ways
    # pulumi-aws offers: the role's managedPolicyArns, and iam.PolicyAttachment's `roles` list.
    case(
        "CDAO-IAM-013-pass-upstream-policy-managed-arn",
        [lbc_role_with(managedPolicyArns=[LBC_POLICY_ARN]), LBC_POLICY],
        A("CDAO-IAM-002"),  # advisory on the upstream policy's Resource "*" grants (policies/README.md)
    ),
    case(
        "CDAO-IAM-013-pass-upstream-policy-managed-arn-at-preview",
        [
            {**lbc_role_with(managedPolicyArns=[U]), "propertyDependencies": {"managedPolicyArns": [LBC_POLICY_URN]}},
            LBC_POLICY,
        ],
        A("CDAO-IAM-002", "CDAO-IAM-004"),
    ),
    case(
        "CDAO-IAM-013-pass-upstream-policy-attachment",
        [
            LBC_ROLE,
            LBC_POLICY,
            res(
                "aws:iam/policyAttachment:PolicyAttachment",
                "lbc-attach",
                roles=["role"],
                policyArn=LBC_POLICY_ARN,
            ),
        ],
        A("CDAO-IAM-002"),
    ),
    case(
        "CDAO-IAM-013-unknown-managed-arn",
        lbc_role_with(managedPolicyArns=[U]),
        A("CDAO-IAM-004", "CDAO-IAM-013"),
    ),
    case(
        "CDAO-IAM-013-pass-other-service-account",
        [irsa(IRSA_OK), role_policy(allow(SG_RULE_ACTIONS, SG_ARNS, Condition=OWNED))],
    ),
    case(
        "CDAO-IAM-013-unknown-policy-outside-the-stack",
        [
            LBC_ROLE,
            res(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                "lbc-attach",
                role="role",
                policyArn=f"arn:aws:iam::{ACCT}:policy/lbc",
            ),
        ],
        A("CDAO-IAM-013"),
    ),
    # ---------------------------------------------------------------- IAM-014 creator-only cluster
    case("CDAO-IAM-014-pass-access-entries", eks_component()),
    case("CDAO-IAM-014-pass-aws-access-entry", [aws_eks(), AWS_ACCESS_ENTRY]),
    case(
        "CDAO-IAM-014-pass-role-mappings",
        eks_component(
            accessEntries=None,
            authenticationMode="CONFIG_MAP",
            roleMappings=[
                {"roleArn": f"arn:aws:iam::{ACCT}:role/cdao-deploy", "username": "ci", "groups": ["system:masters"]}
            ],
        ),
    ),
    # issue 13 #7: adminRoleArns defaulted to [] -- API mode and no entry at all.
    case("CDAO-IAM-014-fail-component", eks_component(accessEntries=None, authenticationMode="API"), A("CDAO-IAM-014")),
    case("CDAO-IAM-014-fail-aws-cluster", aws_eks(), A("CDAO-IAM-014")),
    case(
        "CDAO-IAM-014-fail-entry-for-another-cluster",
        [aws_eks(cluster_name="cdao-prod"), AWS_ACCESS_ENTRY],
        A("CDAO-IAM-014"),
    ),
    case("CDAO-IAM-014-unknown-entries", eks_component(accessEntries=U), A("CDAO-IAM-014")),
    # ---------------------------------------------------------------- IAM-009 confused deputy
    case(
        "CDAO-IAM-009-pass",
        service_trust("sagemaker.amazonaws.com", {"StringEquals": {"aws:SourceAccount": ACCT}}),
    ),
    case(
        "CDAO-IAM-009-pass-arnlike",
        service_trust(
            ["batch.amazonaws.com"],
            {"ArnLike": {"aws:SourceArn": f"arn:aws:batch:us-east-1:{ACCT}:compute-environment/*"}},
        ),
    ),
    case("CDAO-IAM-009-pass-ec2-not-in-scope", service_trust("ec2.amazonaws.com")),
    case("CDAO-IAM-009-fail", service_trust("sagemaker.amazonaws.com"), M("CDAO-IAM-009")),
    case(
        "CDAO-IAM-009-fail-ifexists",
        service_trust(["ecs-tasks.amazonaws.com"], {"StringEqualsIfExists": {"aws:SourceAccount": ACCT}}),
        M("CDAO-IAM-009"),
    ),
    case(
        "CDAO-IAM-009-fail-wildcard-value",
        service_trust("emr-serverless.amazonaws.com", {"StringLike": {"aws:SourceAccount": "*"}}),
        M("CDAO-IAM-009"),
    ),
    case(
        "CDAO-IAM-009-unknown",
        role(
            raw_trust={
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "elasticmapreduce.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        "Condition": U,
                    }
                ]
            }
        ),
        A("CDAO-IAM-009"),
    ),
    # ---------------------------------------------------------------- IAM-010 user attachments
    case(
        "CDAO-IAM-010-pass",
        res(
            "aws:iam/policyAttachment:PolicyAttachment",
            "pa",
            policyArn=f"arn:aws:iam::{ACCT}:policy/p",
            roles=["r"],
            users=[],
        ),
    ),
    case(
        "CDAO-IAM-010-fail-user-policy",
        res("aws:iam/userPolicy:UserPolicy", "up", user="alice", policy=doc(allow("s3:GetObject"))),
        M("CDAO-IAM-010"),
    ),
    case(
        "CDAO-IAM-010-fail-attachment",
        res(
            "aws:iam/userPolicyAttachment:UserPolicyAttachment",
            "ua",
            user="alice",
            policyArn="arn:aws:iam::aws:policy/ReadOnlyAccess",
        ),
        M("CDAO-IAM-010"),
    ),
    case(
        "CDAO-IAM-010-unknown",
        res("aws:iam/policyAttachment:PolicyAttachment", "pa", policyArn=f"arn:aws:iam::{ACCT}:policy/p", users=U),
        A("CDAO-IAM-010"),
    ),
    # ---------------------------------------------------------------- IAM-011 SageMaker notebook root
    case("CDAO-IAM-011-pass", notebook(rootAccess="Disabled")),
    case("CDAO-IAM-011-fail-default", notebook(rootAccess=None), A("CDAO-IAM-011")),
    case("CDAO-IAM-011-unknown", notebook(rootAccess=U), A("CDAO-IAM-011")),
    # ---------------------------------------------------------------- IAM semantics across rules
    case(
        "CDAO-IAM-007-pass-vpce-condition",
        res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "bp",
            bucket="b",
            policy=doc(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b/*",
                    "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-123"}},
                }
            ),
        ),
    ),
    case(
        "CDAO-IAM-007-fail-source-ip-is-not-identity",
        res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "bp",
            bucket="b",
            policy=doc(
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b/*",
                    "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
                }
            ),
        ),
        M("CDAO-IAM-007"),
    ),
    case(
        "CDAO-IAM-007-fail-forallvalues-org",
        res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "bp",
            bucket="b",
            policy=doc(
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b/*",
                    "Condition": {"ForAllValues:StringEquals": {"aws:PrincipalOrgID": "o-abc"}},
                }
            ),
        ),
        M("CDAO-IAM-007"),
    ),
    case(
        "CDAO-IAM-005-pass-forany-passed-to-service",
        policy(
            allow(
                ["iam:GetRole", "IAM:PASSROLE"],
                [f"arn:aws:iam::{ACCT}:role/batch-job", "arn:aws:s3:::data"],
                Condition={"ForAnyValue:StringEquals": {"iam:PassedToService": ["batch.amazonaws.com"]}},
            )
        ),
    ),
    case("CDAO-IAM-001-pass-service-wildcard", policy(allow("s3:*", "arn:aws:s3:::data/*"))),
    case(
        "CDAO-IAM-008-pass-ignorecase-key",
        irsa({"StringEquals": {f"{ISSUER.upper()}:SUB": SA, f"{ISSUER}:aud": "sts.amazonaws.com"}}),
    ),
    case(
        "CDAO-IAM-008-pass-github-oidc-is-not-irsa",
        irsa(
            {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:org/repo:*"}},
            federated=f"arn:aws:iam::{ACCT}:oidc-provider/token.actions.githubusercontent.com",
        ),
    ),
    case(
        "CDAO-IAM-009-fail-one-of-two-statements",
        role(
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": ACCT}},
            },
            {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": ["sts:AssumeRole"]},
        ),
        M("CDAO-IAM-009"),
    ),
    # ---------------------------------------------------------------- COST-001 instance types
    case("CDAO-COST-001-pass-node-group", node_group(("m5.xlarge", "m6i.2xlarge"))),
    case("CDAO-COST-001-pass-component-skips-default", eks_component()),
    case("CDAO-COST-001-pass-p5-in-prod", node_group(("p5.48xlarge",), 0, 2), stack="prod"),
    case("CDAO-COST-001-fail-node-group", node_group(("m5.24xlarge",)), M("CDAO-COST-001")),
    case("CDAO-COST-001-fail-p5-in-dev", node_group(("p5.48xlarge",), 0, 1), M("CDAO-COST-001")),
    case("CDAO-COST-001-fail-launch-template", launch_template(instanceType="r5.large"), M("CDAO-COST-001")),
    case(
        "CDAO-COST-001-fail-component-default-pool",
        eks_component(
            skipDefaultNodeGroup=False, nodeGroupOptions={"instanceType": "m5.24xlarge", "minSize": 1, "maxSize": 2}
        ),
        M("CDAO-COST-001"),
    ),
    case(
        "CDAO-COST-001-fail-batch-optimal",
        tagged(
            "aws:batch/computeEnvironment:ComputeEnvironment",
            "ce",
            type="MANAGED",
            computeResources={
                "type": "EC2",
                "maxVcpus": 64,
                "minVcpus": 0,
                "instanceTypes": ["optimal"],
                "subnets": ["s"],
            },
        ),
        M("CDAO-COST-001"),
    ),
    case(
        "CDAO-COST-001-fail-managed-node-group-default",
        tagged("eks:index:ManagedNodeGroup", "mng", scalingConfig={"minSize": 1, "maxSize": 2, "desiredSize": 1}),
        config={"stacks": {"dev": {"allowedInstanceTypes": ["m5.large"]}}},
        expected=M("CDAO-COST-001"),
    ),
    case("CDAO-COST-001-unknown", node_group(["m5.large", U], 0, 2), A("CDAO-COST-001", "CDAO-COST-013")),
    # ---------------------------------------------------------------- COST-002 GPU pools
    case("CDAO-COST-002-pass", node_group(("p4d.24xlarge",), 0, 2)),
    case("CDAO-COST-002-pass-cpu-min", node_group(("m5.xlarge",), 3, 10)),
    case("CDAO-COST-002-pass-prod-cap", node_group(("p4d.24xlarge",), 0, 16), stack="prod"),
    case("CDAO-COST-002-fail-min", node_group(("p4d.24xlarge",), 1, 2), M("CDAO-COST-002")),
    case("CDAO-COST-002-fail-max", node_group(("p4d.24xlarge",), 0, 3), M("CDAO-COST-002")),
    case(
        "CDAO-COST-002-fail-gpu-ami-managed",
        tagged(
            "eks:index:ManagedNodeGroup",
            "mng",
            amiType="AL2023_x86_64_NVIDIA",
            instanceTypes=["p4d.24xlarge"],
            scalingConfig={"minSize": 1, "maxSize": 1, "desiredSize": 1},
            labels={"k8s.amazonaws.com/accelerator": "nvidia-a100"},
        ),
        M("CDAO-COST-002"),
    ),
    case(
        "CDAO-COST-002-fail-batch-min-vcpus",
        tagged(
            "aws:batch/computeEnvironment:ComputeEnvironment",
            "ce",
            type="MANAGED",
            computeResources={
                "type": "EC2",
                "maxVcpus": 96,
                "minVcpus": 96,
                "instanceTypes": ["p4d.24xlarge"],
                "subnets": ["s"],
            },
        ),
        M("CDAO-COST-002"),
    ),
    case("CDAO-COST-002-unknown-max", node_group(("p4d.24xlarge",), 0, U), A("CDAO-COST-002", "CDAO-COST-012")),
    # review 18 #12: an unknown size of a CPU pool is COST-012's question (the cap of every pool), not 002's.
    case("CDAO-COST-002-pass-cpu-pool-unknown-max", node_group(("m5.xlarge",), 0, U), A("CDAO-COST-012")),
    case("CDAO-COST-002-unknown-types", node_group(U, 1, 2), A("CDAO-COST-001", "CDAO-COST-002", "CDAO-COST-013")),
    # ---------------------------------------------------------------- COST-013 GPU accelerator label
    case("CDAO-COST-013-pass", node_group(("p4d.24xlarge",), 0, 2)),
    # Labels as the real node groups carry them: the MIG pool is configured by the GPU operator's
    # MIG manager label and must not carry the accelerator label (see the rule's description).
    case(
        "CDAO-COST-013-pass-mig-pool",
        node_group(("p4de.24xlarge",), 0, 2, labels={"nvidia.com/mig.config": "all-1g.10gb"}),
    ),
    case(
        "CDAO-COST-013-fail-time-sliced-pool",
        node_group(("p4d.24xlarge",), 0, 2, labels={"nvidia.com/device-plugin.config": "a100-timeslice"}),
        A("CDAO-COST-013"),
    ),
    case(
        "CDAO-COST-013-fail-gpu-ami-launch-template",
        node_group((), 0, 2, amiType="AL2023_x86_64_NVIDIA", launchTemplate={"name": "lt", "version": "1"}),
        A("CDAO-COST-013"),
    ),
    case("CDAO-COST-013-pass-cpu", node_group(("m5.xlarge",), 0, 3)),
    # review 18 #14: the label makes the autoscaler wait for nvidia.com/gpu; AMD (g4ad) and Inferentia
    # nodes on EKS's accelerated AL2 AMI (AL2_x86_64_GPU) never advertise it.
    case("CDAO-COST-013-pass-amd-g4ad", node_group(("g4ad.xlarge",), 0, 2, labels={}), config=ACCELERATORS_ALLOWED),
    case(
        "CDAO-COST-013-pass-inferentia-gpu-ami",
        node_group(("inf2.xlarge",), 0, 2, amiType="AL2_x86_64_GPU", labels={}),
        config=ACCELERATORS_ALLOWED,
    ),
    case(
        "CDAO-COST-013-fail-nvidia-gpu-ami",
        node_group(("g5.xlarge",), 0, 2, amiType="AL2_x86_64_GPU", labels={}),
        A("CDAO-COST-013"),
        config=ACCELERATORS_ALLOWED,
    ),
    case(
        "CDAO-COST-013-unknown-labels",
        node_group(("p4d.24xlarge",), 0, 2, labels=U),
        A("CDAO-COST-013"),
    ),
    # ---------------------------------------------------------------- COST-012 every pool's max size
    case("CDAO-COST-012-pass", node_group(("m5.xlarge",), 2, 10)),
    case("CDAO-COST-012-pass-prod", node_group(("m5.2xlarge",), 3, 50), stack="prod"),
    # The issue's case: a dev CPU pool allowed 200 nodes passed, its peak under the GPU-sized budget.
    case("CDAO-COST-012-fail-dev-cpu-200", node_group(("m5.large",), 2, 200), M("CDAO-COST-012")),
    case(
        "CDAO-COST-012-fail-managed-node-group-component",
        tagged(
            "eks:index:ManagedNodeGroup",
            "mng",
            instanceTypes=["m5.large"],
            scalingConfig={"minSize": 1, "desiredSize": 1, "maxSize": 11},
        ),
        M("CDAO-COST-012"),
    ),
    case(
        "CDAO-COST-012-fail-eks-default-pool",
        eks_component(skipDefaultNodeGroup=False, nodeGroupOptions={"instanceType": "m5.large", "maxSize": 40}),
        M("CDAO-COST-012"),
    ),
    # pulumi-eks NodeGroupV2 defaults maxSize to 2 (pulumi_eks/node_group_v2.py docstring).
    case("CDAO-COST-012-pass-node-group-v2-default", res("eks:index:NodeGroupV2", "ng2", instanceType="m5.large")),
    case(
        "CDAO-COST-012-fail-node-group-v2",
        res("eks:index:NodeGroupV2", "ng2", instanceType="m5.large", minSize=1, maxSize=64),
        M("CDAO-COST-012"),
    ),
    case(
        "CDAO-COST-012-fail-autoscaling-group",
        res("aws:autoscaling/group:Group", "asg", minSize=0, maxSize=100, launchTemplate={"id": "lt-1"}),
        M("CDAO-COST-012"),
    ),
    case(
        "CDAO-COST-012-pass-configured-cap",
        node_group(("m5.large",), 2, 200),
        config={"CDAO-COST-012": {"nodePoolMaxNodes": {"dev": 250}}},
    ),
    # review 18 #8: a Karpenter NodePool (pulumi-kubernetes CustomResource) has no maxSize; spec.limits bounds it.
    case("CDAO-COST-012-fail-karpenter-no-limits", karpenter_node_pool(None), M("CDAO-COST-012")),
    case("CDAO-COST-012-pass-karpenter-limits", karpenter_node_pool({"cpu": "1000", "memory": "1000Gi"})),
    case("CDAO-COST-012-unknown-max", node_group(("m5.large",), 2, U), A("CDAO-COST-012")),
    # ---------------------------------------------------------------- COST-003 RDS classes
    case("CDAO-COST-003-pass", rds(instanceClass="db.t4g.medium")),
    case("CDAO-COST-003-fail", rds(instanceClass="db.m5.4xlarge"), M("CDAO-COST-003")),
    case("CDAO-COST-003-unknown", rds(instanceClass=U), A("CDAO-COST-003")),
    # ---------------------------------------------------------------- COST-004 NAT gateways
    case("CDAO-COST-004-pass-one-in-dev", tagged("aws:ec2/natGateway:NatGateway", "nat-a", subnetId="s-a")),
    case(
        "CDAO-COST-004-pass-three-in-prod",
        [tagged("aws:ec2/natGateway:NatGateway", f"nat-{az}", subnetId=f"s-{az}") for az in "abc"],
        stack="prod",
    ),
    case(
        "CDAO-COST-004-fail-two-in-dev",
        [tagged("aws:ec2/natGateway:NatGateway", f"nat-{az}", subnetId=f"s-{az}") for az in "ab"],
        M("CDAO-COST-004"),
    ),
    # Counting needs no prop: unknown subnets do not hide a second gateway.
    case(
        "CDAO-COST-004-unknown-props-still-counted",
        [tagged("aws:ec2/natGateway:NatGateway", f"nat-{az}", subnetId=U) for az in "ab"],
        M("CDAO-COST-004"),
    ),
    # ---------------------------------------------------------------- COST-005 tags
    case(
        "CDAO-COST-005-pass",
        tagged("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=30),
    ),
    # review 18 #14: aws.autoscaling.Group's tags are a list of {key, value, propagateAtLaunch}.
    case(
        "CDAO-COST-005-pass-asg-tag-list",
        res(
            "aws:autoscaling/group:Group",
            "asg",
            maxSize=3,
            minSize=0,
            tags=[{"key": k, "value": v, "propagateAtLaunch": True} for k, v in TAGS.items()],
        ),
    ),
    case(
        "CDAO-COST-005-fail-asg-tag-list-missing",
        res(
            "aws:autoscaling/group:Group",
            "asg",
            maxSize=3,
            minSize=0,
            tags=[{"key": "team", "value": "ml", "propagateAtLaunch": True}],
        ),
        M("CDAO-COST-005"),
    ),
    case("CDAO-COST-005-pass-not-taggable", deployment()),
    case(
        "CDAO-COST-005-pass-tags-all",
        res("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=30, tags={}, tagsAll=dict(TAGS)),
    ),
    case(
        "CDAO-COST-005-fail-missing-one",
        res("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=30, tags={"team": "ml", "environment": "dev"}),
        M("CDAO-COST-005"),
    ),
    case("CDAO-COST-005-fail-no-tags", res("aws:efs/fileSystem:FileSystem", "efs", encrypted=True), M("CDAO-COST-005")),
    case(
        "CDAO-COST-005-fail-empty-value",
        res("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=30, tags={**TAGS, "cost-center": ""}),
        M("CDAO-COST-005"),
    ),
    case(
        "CDAO-COST-005-unknown",
        res("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=30, tags=U),
        A("CDAO-COST-005"),
    ),
    # ---------------------------------------------------------------- COST-006 gp2/io1
    case("CDAO-COST-006-pass", volume(type="gp3")),
    case("CDAO-COST-006-fail-gp2", volume(type="gp2"), A("CDAO-COST-006")),
    case(
        "CDAO-COST-006-fail-default-type",
        tagged("aws:ebs/volume:Volume", "v", encrypted=True, size=10),
        A("CDAO-COST-006"),
    ),
    case(
        "CDAO-COST-006-fail-launch-template-io1",
        launch_template(
            blockDeviceMappings=[{"deviceName": "/dev/xvda", "ebs": {"volumeType": "io1", "encrypted": "true"}}]
        ),
        A("CDAO-COST-006"),
    ),
    case("CDAO-COST-006-unknown", volume(type=U), A("CDAO-COST-006")),
    # ---------------------------------------------------------------- COST-007 log retention
    case("CDAO-COST-007-pass", tagged("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=90)),
    case("CDAO-COST-007-fail-unset", tagged("aws:cloudwatch/logGroup:LogGroup", "lg"), M("CDAO-COST-007")),
    case(
        "CDAO-COST-007-fail-zero",
        tagged("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=0),
        M("CDAO-COST-007"),
    ),
    case(
        "CDAO-COST-007-unknown", tagged("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=U), A("CDAO-COST-007")
    ),
    # ---------------------------------------------------------------- COST-008 lifecycle
    case("CDAO-COST-008-pass", bucket_set()),
    case(
        "CDAO-COST-008-pass-inline",
        bucket_set(lifecycle=False, lifecycleRules=[{"enabled": True, "expirations": [{"days": 30}]}]),
    ),
    case("CDAO-COST-008-fail", bucket_set(lifecycle=False), A("CDAO-COST-008")),
    case(
        "CDAO-COST-008-fail-disabled-rule",
        [
            *bucket_set(lifecycle=False),
            res(
                "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
                "lc",
                bucket="data-bucket",
                rules=[{"id": "x", "status": "Disabled"}],
            ),
        ],
        A("CDAO-COST-008"),
    ),
    case(
        "CDAO-COST-008-unknown-link",
        [
            *bucket_set(lifecycle=False),
            res(
                "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                "lc",
                bucket=U,
                rules=[{"id": "x", "status": "Enabled"}],
            ),
        ],
        A("CDAO-COST-008"),
    ),
    # ---------------------------------------------------------------- COST-009 budget
    case("CDAO-COST-009-pass", node_group(), estimator=estimate(99_999.0)),
    case("CDAO-COST-009-fail", node_group(), M("CDAO-COST-009"), estimator=estimate(100_001.0)),
    case("CDAO-COST-009-pass-prod-budget", node_group(), stack="prod", estimator=estimate(100_001.0)),
    case("CDAO-COST-009-unknown", node_group(), A("CDAO-COST-009"), estimator=estimate(U)),
    # ---------------------------------------------------------------- COST-010/011 EMR
    case("CDAO-COST-010-pass-idle-timeout", emr_cluster()),
    case("CDAO-COST-010-pass-step-cluster", emr_cluster(autoTerminationPolicy=None, keepJobFlowAliveWhenNoSteps=False)),
    case("CDAO-COST-010-fail", emr_cluster(autoTerminationPolicy=None), A("CDAO-COST-010")),
    case("CDAO-COST-010-unknown", emr_cluster(autoTerminationPolicy={"idleTimeout": U}), A("CDAO-COST-010")),
    case("CDAO-COST-011-pass", emr_serverless()),
    case("CDAO-COST-011-fail-unbounded", emr_serverless(maximumCapacity=None), M("CDAO-COST-011")),
    case(
        "CDAO-COST-011-fail-no-auto-stop",
        emr_serverless(autoStopConfiguration={"enabled": False}),
        M("CDAO-COST-011"),
    ),
    case("CDAO-COST-011-unknown", emr_serverless(maximumCapacity=U), A("CDAO-COST-011")),
    # ---------------------------------------------------------------- DATA-001 public ACLs
    case("CDAO-DATA-001-pass", bucket_set(acl="private")),
    case("CDAO-DATA-001-fail-inline", bucket_set(acl="public-read"), M("CDAO-DATA-001")),
    case(
        "CDAO-DATA-001-fail-acl-resource",
        [*bucket_set(), res("aws:s3/bucketAclV2:BucketAclV2", "acl", bucket="data-bucket", acl="public-read-write")],
        M("CDAO-DATA-001"),
    ),
    case(
        "CDAO-DATA-001-fail-grant",
        [
            *bucket_set(),
            res(
                "aws:s3/bucketAclV2:BucketAclV2",
                "acl",
                bucket="data-bucket",
                accessControlPolicy={
                    "owner": {"id": "o"},
                    "grants": [
                        {
                            "permission": "READ",
                            "grantee": {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"},
                        }
                    ],
                },
            ),
        ],
        M("CDAO-DATA-001"),
    ),
    case("CDAO-DATA-001-unknown", bucket_set(acl=U), A("CDAO-DATA-001")),
    # ---------------------------------------------------------------- DATA-002 PAB flags
    case("CDAO-DATA-002-pass", bucket_set()),
    case(
        "CDAO-DATA-002-fail",
        [*bucket_set(pab=False), pab_res("data", "data-bucket", restrictPublicBuckets=False)],
        M("CDAO-DATA-002"),
    ),
    case(
        "CDAO-DATA-002-fail-unset-flag",
        [
            *bucket_set(pab=False),
            res(
                "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                "pab",
                bucket="data-bucket",
                blockPublicAcls=True,
            ),
        ],
        M("CDAO-DATA-002"),
    ),
    case(
        "CDAO-DATA-002-unknown",
        [*bucket_set(pab=False), pab_res("data", "data-bucket", blockPublicPolicy=U)],
        A("CDAO-DATA-002"),
    ),
    # ---------------------------------------------------------------- DATA-003 PAB missing
    case("CDAO-DATA-003-pass", bucket_set()),
    case(
        "CDAO-DATA-003-pass-dependency-link",
        [
            {**bucket_set(pab=False)[0], "urn": "urn:pulumi:dev::cdao::aws:s3/bucketV2:BucketV2::data"},
            *bucket_set(pab=False)[1:],
            {
                **pab_res("data", U),
                "propertyDependencies": {"bucket": ["urn:pulumi:dev::cdao::aws:s3/bucketV2:BucketV2::data"]},
            },
        ],
    ),
    case("CDAO-DATA-003-fail", bucket_set(pab=False), M("CDAO-DATA-003")),
    case(
        "CDAO-DATA-003-pass-account-block",
        [
            *bucket_set(pab=False),
            res(
                "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock",
                "account-pab",
                **dict.fromkeys(
                    ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True
                ),
            ),
        ],
    ),
    case(
        "CDAO-DATA-003-fail-other-bucket",
        [*bucket_set(pab=False), pab_res("other", "other-bucket")],
        M("CDAO-DATA-003"),
    ),
    case("CDAO-DATA-003-unknown-link", [*bucket_set(pab=False), pab_res("data", U)], A("CDAO-DATA-003")),
    # ---------------------------------------------------------------- DATA-004 SSE
    case("CDAO-DATA-004-pass", bucket_set()),
    case(
        "CDAO-DATA-004-pass-inline-v7-bucket",
        [
            tagged(
                "aws:s3/bucket:Bucket",
                "logs",
                bucket="logs-bucket",
                forceDestroy=True,
                serverSideEncryptionConfiguration={
                    "rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
                },
            ),
            pab_res("logs", "logs-bucket"),
            res(
                "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                "lc",
                bucket="logs-bucket",
                rules=[{"status": "Enabled"}],
            ),
        ],
    ),
    case(
        "CDAO-DATA-004-pass-linked-by-id",
        [
            {**bucket_set(sse=False, link="bkt-id-1")[0], "id": "bkt-id-1"},
            *bucket_set(sse=False, link="bkt-id-1")[1:],
            res(
                "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                "sse",
                bucket="bkt-id-1",
                rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}],
            ),
        ],
    ),
    case("CDAO-DATA-004-fail", bucket_set(sse=False), M("CDAO-DATA-004")),
    case(
        "CDAO-DATA-004-unknown-link",
        [
            *bucket_set(sse=False),
            res(
                "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
                "sse",
                bucket=U,
                rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}],
            ),
        ],
        A("CDAO-DATA-004"),
    ),
    # ---------------------------------------------------------------- DATA-005..009 RDS
    case("CDAO-DATA-005-pass", rds()),
    case("CDAO-DATA-005-fail", rds(storageEncrypted=False), M("CDAO-DATA-005")),
    case(
        "CDAO-DATA-005-fail-aurora-cluster",
        aurora(backupRetentionPeriod=7, storageEncrypted=None),
        M("CDAO-DATA-005"),
    ),
    case(
        "CDAO-DATA-005-pass-aurora-serverless-v1",
        aurora(engineMode="serverless", storageEncrypted=None),
    ),
    case("CDAO-DATA-005-unknown", rds(storageEncrypted=U), A("CDAO-DATA-005")),
    case("CDAO-DATA-006-pass", rds(publiclyAccessible=False)),
    case("CDAO-DATA-006-fail", rds(publiclyAccessible=True), M("CDAO-DATA-006")),
    case("CDAO-DATA-006-unknown", rds(publiclyAccessible=U), A("CDAO-DATA-006")),
    case("CDAO-DATA-007-pass-default", rds(backupRetentionPeriod=None)),
    case("CDAO-DATA-007-fail", rds(backupRetentionPeriod=0), M("CDAO-DATA-007")),
    case("CDAO-DATA-007-unknown", rds(backupRetentionPeriod=U), A("CDAO-DATA-007")),
    case("CDAO-DATA-008-pass-prod", rds(multiAz=True), stack="prod"),
    case("CDAO-DATA-008-pass-dev-single-az", rds(multiAz=False)),
    case("CDAO-DATA-008-fail-prod", rds(multiAz=None), M("CDAO-DATA-008"), stack="prod"),
    case("CDAO-DATA-008-unknown", rds(multiAz=U), A("CDAO-DATA-008"), stack="prod"),
    case("CDAO-DATA-009-pass-prod", rds(), stack="prod"),
    case("CDAO-DATA-009-pass-dev", rds(deletionProtection=False)),
    case("CDAO-DATA-009-fail-prod", rds(deletionProtection=False), M("CDAO-DATA-009"), stack="prod"),
    case("CDAO-DATA-009-unknown", rds(deletionProtection=U), A("CDAO-DATA-009"), stack="prod"),
    # ---------------------------------------------------------------- DATA-010 EKS secrets
    case("CDAO-DATA-010-pass-component", eks_component()),
    case("CDAO-DATA-010-pass-aws", [aws_eks(), AWS_ACCESS_ENTRY]),
    case("CDAO-DATA-010-fail-component", eks_component(encryptionConfigKeyArn=None), M("CDAO-DATA-010")),
    case("CDAO-DATA-010-fail-aws", [aws_eks(encryptionConfig=None), AWS_ACCESS_ENTRY], M("CDAO-DATA-010")),
    case("CDAO-DATA-010-unknown", eks_component(encryptionConfigKeyArn=U), A("CDAO-DATA-010")),
    # ---------------------------------------------------------------- DATA-011 EBS
    case("CDAO-DATA-011-pass", [volume(), launch_template()]),
    case(
        "CDAO-DATA-011-pass-encryption-by-default",
        [volume(encrypted=False), res("aws:ebs/encryptionByDefault:EncryptionByDefault", "ebs-default", enabled=True)],
    ),
    case("CDAO-DATA-011-fail-volume", volume(encrypted=False), M("CDAO-DATA-011")),
    case(
        "CDAO-DATA-011-fail-launch-template",
        launch_template(
            blockDeviceMappings=[{"deviceName": "/dev/xvda", "ebs": {"volumeType": "gp3", "encrypted": "false"}}]
        ),
        M("CDAO-DATA-011"),
    ),
    case("CDAO-DATA-011-unknown", volume(encrypted=U), A("CDAO-DATA-011")),
    # ---------------------------------------------------------------- DATA-012 EFS
    case("CDAO-DATA-012-pass", tagged("aws:efs/fileSystem:FileSystem", "efs", encrypted=True, kmsKeyId=KMS)),
    case("CDAO-DATA-012-fail", tagged("aws:efs/fileSystem:FileSystem", "efs"), M("CDAO-DATA-012")),
    case("CDAO-DATA-012-unknown", tagged("aws:efs/fileSystem:FileSystem", "efs", encrypted=U), A("CDAO-DATA-012")),
    # ---------------------------------------------------------------- DATA-013/014 ECR
    case("CDAO-DATA-013-pass", ecr()),
    case("CDAO-DATA-013-fail-default", ecr(imageTagMutability=None), M("CDAO-DATA-013")),
    case("CDAO-DATA-013-fail-mutable", ecr(imageTagMutability="MUTABLE"), M("CDAO-DATA-013")),
    case("CDAO-DATA-013-unknown", ecr(imageTagMutability=U), A("CDAO-DATA-013")),
    case("CDAO-DATA-014-pass", ecr()),
    case("CDAO-DATA-014-fail", ecr(imageScanningConfiguration={"scanOnPush": False}), M("CDAO-DATA-014")),
    case("CDAO-DATA-014-fail-unset", ecr(imageScanningConfiguration=None), M("CDAO-DATA-014")),
    case("CDAO-DATA-014-unknown", ecr(imageScanningConfiguration={"scanOnPush": U}), A("CDAO-DATA-014")),
    # ---------------------------------------------------------------- DATA-015 EMR security configuration
    case("CDAO-DATA-015-pass", emr_cluster()),
    case("CDAO-DATA-015-fail", emr_cluster(securityConfiguration=None), M("CDAO-DATA-015")),
    case("CDAO-DATA-015-unknown", emr_cluster(securityConfiguration=U), A("CDAO-DATA-015")),
    # ---------------------------------------------------------------- DATA-018 final snapshots
    case("CDAO-DATA-018-pass", rds(), stack="prod"),
    case("CDAO-DATA-018-pass-dev-skips", rds(skipFinalSnapshot=True)),
    # issue 13 #12: staging lifts deletion protection to tear down, and skipFinalSnapshot followed it.
    case(
        "CDAO-DATA-018-fail-staging-skips",
        rds(skipFinalSnapshot=True, deletionProtection=False, multiAz=False),
        M("CDAO-DATA-018"),
        stack="staging",
    ),
    case("CDAO-DATA-018-fail-no-identifier", rds(finalSnapshotIdentifier=None), M("CDAO-DATA-018")),
    case("CDAO-DATA-018-pass-read-replica", rds(replicateSourceDb="cdao-prod-flyte", finalSnapshotIdentifier=None)),
    case("CDAO-DATA-018-unknown", rds(skipFinalSnapshot=U), A("CDAO-DATA-018")),
    # ---------------------------------------------------------------- DATA-019/020 teardown and kept data
    # issue 13 #6: dev's Backup vault and ECR repositories kept the provider defaults (false).
    case("CDAO-DATA-019-pass", [ecr(), BACKUP_VAULT_DEV]),
    case("CDAO-DATA-019-fail-ecr-default", ecr(forceDelete=None), A("CDAO-DATA-019")),
    case("CDAO-DATA-019-fail-backup-vault", {**BACKUP_VAULT_DEV, "props": {"name": "cdao-dev"}}, A("CDAO-DATA-019")),
    case("CDAO-DATA-019-unknown", ecr(forceDelete=U), A("CDAO-DATA-019")),
    case("CDAO-DATA-020-pass-prod", ecr(forceDelete=None), stack="prod"),
    case("CDAO-DATA-020-fail-prod-bucket", bucket_set("data"), M("CDAO-DATA-020"), stack="prod"),
    case("CDAO-DATA-020-unknown", ecr(forceDelete=U), A("CDAO-DATA-020"), stack="prod"),
    # ---------------------------------------------------------------- DATA-021 connection budget
    # Read from this repository's platform/ values: dev's pools fit the db.t4g.micro dev runs on,
    # prod's (two replicas, full pools) do not.
    case(
        "CDAO-DATA-021-pass-dev-on-micro",
        [rds(instanceClass="db.t4g.micro"), cluster_secret("dev", flyte=True, mlflow=True)],
    ),
    case("CDAO-DATA-021-pass-no-cluster-secret", rds(instanceClass="db.t4g.micro")),
    case(
        "CDAO-DATA-021-pass-addons-off",
        [rds(instanceClass="db.t4g.micro"), cluster_secret("prod", flyte=False, mlflow=False)],
    ),
    case(
        "CDAO-DATA-021-pass-prod-class",
        [rds(), cluster_secret("prod", flyte=True, mlflow=True)],
        stack="prod",
    ),
    case(
        "CDAO-DATA-021-fail-prod-values-on-micro",
        [rds(instanceClass="db.t4g.micro"), cluster_secret("prod", flyte=True, mlflow=True)],
        M("CDAO-DATA-021"),
    ),
    case(
        "CDAO-DATA-021-fail-class-without-memory-figure",
        [rds(instanceClass="db.x9.huge"), cluster_secret("dev", flyte=True)],
        M("CDAO-DATA-021", "CDAO-COST-003"),
    ),
    case(
        "CDAO-DATA-021-unknown-class",
        [rds(instanceClass=U), cluster_secret("dev", flyte=True)],
        A("CDAO-DATA-021", "CDAO-COST-003"),
    ),
    # ---------------------------------------------------------------- DATA-016 RDS minor pin
    case("CDAO-DATA-016-pass-major-only", rds(engineVersion="16")),
    case("CDAO-DATA-016-pass-mysql-major", rds(engine="mysql", engineVersion="8.0")),
    case("CDAO-DATA-016-pass-manual-minors", rds(engineVersion="16.8", autoMinorVersionUpgrade=False)),
    case("CDAO-DATA-016-fail-postgres-minor", rds(engineVersion="16.8"), A("CDAO-DATA-016")),
    case("CDAO-DATA-016-fail-mysql-patch", rds(engine="mysql", engineVersion="8.0.36"), A("CDAO-DATA-016")),
    case("CDAO-DATA-016-unknown", rds(engineVersion=U), A("CDAO-DATA-016")),
    # review 18 #10: Aurora clusters pin and delete the same way (pulumi-aws rds.Cluster docstrings).
    case("CDAO-DATA-016-fail-aurora-minor", aurora(engineVersion="16.4"), A("CDAO-DATA-016")),
    case("CDAO-DATA-016-pass-aurora-major", aurora(engineVersion="16")),
    case("CDAO-DATA-018-fail-aurora-no-identifier", aurora(finalSnapshotIdentifier=None), M("CDAO-DATA-018")),
    case(
        "CDAO-DATA-018-pass-aurora-replica",
        aurora(
            finalSnapshotIdentifier=None, replicationSourceIdentifier="arn:aws:rds:us-west-2:111111111111:cluster:src"
        ),
    ),
    # ---------------------------------------------------------------- DATA-017 ACM validation
    case("CDAO-DATA-017-pass", [CERT, cert_validation(CERT["id"])]),
    case(
        "CDAO-DATA-017-pass-imported",
        {**CERT, "props": {**CERT["props"], "privateKey": "imported", "certificateBody": "imported"}},
    ),
    case("CDAO-DATA-017-fail-dns-not-validated", CERT, A("CDAO-DATA-017")),
    case("CDAO-DATA-017-unknown-link", [CERT, cert_validation(U)], A("CDAO-DATA-017")),
    # ---------------------------------------------------------------- NET-001 EKS endpoint
    case("CDAO-NET-001-pass-private", [aws_eks(), AWS_ACCESS_ENTRY]),
    case(
        "CDAO-NET-001-pass-restricted-cidrs",
        eks_component(endpointPublicAccess=True, publicAccessCidrs=["203.0.113.0/24"]),
    ),
    case(
        "CDAO-NET-001-fail-aws-open",
        [
            aws_eks(vpcConfig={"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"], "subnetIds": ["s"]}),
            AWS_ACCESS_ENTRY,
        ],
        M("CDAO-NET-001"),
    ),
    case("CDAO-NET-001-fail-component-defaults", eks_component(endpointPublicAccess=None), M("CDAO-NET-001")),
    case(
        "CDAO-NET-001-fail-ipv6-world",
        eks_component(endpointPublicAccess=True, publicAccessCidrs=["10.0.0.0/8", "::/0"]),
        M("CDAO-NET-001"),
    ),
    case(
        "CDAO-NET-001-unknown",
        eks_component(endpointPublicAccess=True, publicAccessCidrs=[U]),
        A("CDAO-NET-001"),
    ),
    # ---------------------------------------------------------------- NET-002 open ingress
    case(
        "CDAO-NET-002-pass-internal-cidr",
        sg([{"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["10.0.0.0/16"]}]),
    ),
    case(
        "CDAO-NET-002-pass-443-public-lb",
        [sg([], "sg-lb"), ingress_rule("0.0.0.0/0", 443, "sg-lb"), public_lb(("sg-lb",))],
    ),
    case(
        "CDAO-NET-002-fail-ssh",
        sg([{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]),
        M("CDAO-NET-002"),
    ),
    case(
        "CDAO-NET-008-fail-443-no-lb",
        [sg([], "sg-app"), ingress_rule("0.0.0.0/0", 443, "sg-app")],
        A("CDAO-NET-008"),
    ),
    case(
        "CDAO-NET-008-fail-443-internal-lb",
        [sg([], "sg-lb"), ingress_rule("0.0.0.0/0", 443, "sg-lb"), public_lb(("sg-lb",), internal=True)],
        A("CDAO-NET-008"),
    ),
    # The issue's false positive: a frontend group made ahead of time for the AWS Load Balancer
    # Controller, which attaches it to the ALB it creates through the Ingress annotation
    # alb.ingress.kubernetes.io/security-groups (IDs or names; kubernetes-sigs/aws-load-balancer-controller
    # docs/deploy/security_groups.md), so no aws:lb resource exists in the stack. 443 is an authorized
    # port of Security Hub EC2.18 (docs.aws.amazon.com/securityhub/latest/userguide/ec2-controls.html).
    # Inputs in pulumi-aws's vpc.SecurityGroupIngressRule shape (cidrIpv4/cidrIpv6/ipProtocol).
    case("CDAO-NET-002-pass-443-lbc-frontend-unlisted", LBC_FRONTEND, A("CDAO-NET-008")),
    case(
        "CDAO-NET-008-pass-lbc-frontend-listed-by-logical-name",
        LBC_FRONTEND,
        config={"CDAO-NET-008": {"publicSecurityGroups": {"dev": ["sg-sg-alb"]}}},
    ),
    case(
        "CDAO-NET-008-pass-lbc-frontend-listed-by-id",
        LBC_FRONTEND,
        config={"stacks": {"dev": {"publicSecurityGroups": ["sg-alb"]}}},
    ),
    case(
        "CDAO-NET-008-fail-listed-in-another-stack",
        LBC_FRONTEND,
        A("CDAO-NET-008"),
        config={"CDAO-NET-008": {"publicSecurityGroups": {"prod": ["sg-alb"]}}},
    ),
    case(
        "CDAO-NET-002-fail-listed-group-opens-ssh",
        [*LBC_FRONTEND, ingress_rule("0.0.0.0/0", 22, "sg-alb")],
        M("CDAO-NET-002"),
        config={"CDAO-NET-008": {"publicSecurityGroups": {"dev": ["sg-alb"]}}},
    ),
    case(
        "CDAO-NET-008-unknown-group",
        [sg([], "sg-alb"), ingress_rule("0.0.0.0/0", 443, U)],
        A("CDAO-NET-008"),
    ),
    # review 18 #1: the controller's ALB listens on 80 (redirect to HTTPS) and 443; both are EC2.18's
    # default authorized ports (docs.aws.amazon.com/securityhub/latest/userguide/ec2-controls.html#ec2-18).
    case(
        "CDAO-NET-008-pass-alb-80-443-listed",
        [*ALB_80_443, ingress_rule("0.0.0.0/0", 80, "sg-alb")],
        config={"CDAO-NET-008": {"publicSecurityGroups": {"dev": ["sg-alb"]}}},
    ),
    case(
        "CDAO-NET-002-pass-80-public-lb",
        [sg([], "sg-lb"), ingress_rule("0.0.0.0/0", 80, "sg-lb"), public_lb(("sg-lb",))],
    ),
    case(
        "CDAO-NET-008-fail-80-unlinked-unlisted",
        [sg([], "sg-app"), ingress_rule("0.0.0.0/0", 80, "sg-app")],
        A("CDAO-NET-008"),
    ),
    case(
        "CDAO-NET-002-fail-port-range-80-443",
        sg([{"protocol": "tcp", "fromPort": 80, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}]),
        M("CDAO-NET-002"),
    ),
    # review 18 #13: the controller's security-groups annotation resolves a name against the group's
    # Name tag (kubernetes-sigs/aws-load-balancer-controller docs/guide/ingress/annotations.md).
    case(
        "CDAO-NET-008-pass-listed-by-name-tag",
        [
            {**sg([], "sg-alb"), "props": {**sg([], "sg-alb")["props"], "tags": {**TAGS, "Name": "flyte-alb"}}},
            *ALB_80_443[1:],
        ],
        config={"stacks": {"dev": {"publicSecurityGroups": ["flyte-alb"]}}},
    ),
    # review 18 #7: an unknown CIDR in one ingress entry must not hide a world-open 22 in another.
    case(
        "CDAO-NET-002-fail-ssh-beside-unknown-cidr",
        sg(
            [
                {"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": [U]},
                {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]},
            ]
        ),
        M("CDAO-NET-002") | A("CDAO-NET-002"),
    ),
    case(
        "CDAO-NET-008-fail-443-world-beside-preview-cidr",
        sg([{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": [U, "0.0.0.0/0"]}], "sg-lb"),
        A("CDAO-NET-008"),
    ),
    # review 18 #11: world access split into halves is still world access.
    case(
        "CDAO-NET-002-fail-ssh-world-halves",
        sg([{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/1", "128.0.0.0/1"]}]),
        M("CDAO-NET-002"),
    ),
    case(
        "CDAO-NET-002-fail-all-protocols-ipv6",
        res(
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            "r",
            type="ingress",
            securityGroupId="sg-1",
            protocol="-1",
            fromPort=0,
            toPort=0,
            ipv6CidrBlocks=["::/0"],
        ),
        M("CDAO-NET-002"),
    ),
    case(
        "CDAO-NET-002-fail-default-security-group",
        tagged(
            "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
            "default",
            vpcId="vpc-1",
            ingress=[{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}],
        ),
        M("CDAO-NET-002"),
    ),
    case(
        "CDAO-NET-002-unknown-cidr",
        [sg([], "sg-app"), ingress_rule(U, 22, "sg-app")],
        A("CDAO-NET-002"),
    ),
    # ---------------------------------------------------------------- NET-009/010 EMR v2 network tags
    case("CDAO-NET-009-pass", [*EMR_V2, emr_subnet(), emr_in("subnet-a")]),
    case(
        "CDAO-NET-009-fail-untagged-subnet",
        [*EMR_V2, emr_subnet(None), emr_in("subnet-a")],
        M("CDAO-NET-009") | A("CDAO-NET-010"),
    ),
    case("CDAO-NET-009-unknown-subnet", [*EMR_V2, emr_subnet(), emr_in(U)], A("CDAO-NET-009")),
    # review 18 #5: CreateInTaggedNetwork's StringEquals is case-sensitive, "True" is not "true".
    case(
        "CDAO-NET-009-fail-tag-value-case",
        [*EMR_V2, emr_subnet("True"), emr_in("subnet-a")],
        M("CDAO-NET-009") | A("CDAO-NET-010"),
    ),
    # The provider's default tags reach tagsAll, not tags (pulumi-aws ec2.Subnet tags_all docstring).
    case(
        "CDAO-NET-009-pass-tag-from-provider-default-tags",
        [*EMR_V2, with_props(emr_subnet(None), tagsAll={**TAGS, EMR_TAG: "true"}), emr_in("subnet-a")],
    ),
    # review 18 #6: the statement covers security-group/* too; EMR-managed groups in the stack.
    case(
        "CDAO-NET-009-fail-untagged-emr-managed-group",
        [
            *EMR_V2,
            emr_subnet(),
            sg([], "sg-emr-master"),
            emr_in("subnet-a", emrManagedMasterSecurityGroup="sg-emr-master"),
        ],
        M("CDAO-NET-009"),
    ),
    case(
        "CDAO-NET-009-pass-tagged-emr-managed-group",
        [
            *EMR_V2,
            emr_subnet(),
            {
                **sg([], "sg-emr-master"),
                "props": {**sg([], "sg-emr-master")["props"], "tags": {**TAGS, EMR_TAG: "true"}},
            },
            emr_in("subnet-a", emrManagedMasterSecurityGroup="sg-emr-master"),
        ],
    ),
    case("CDAO-NET-010-pass", [*EMR_V2, emr_subnet()]),
    case("CDAO-NET-010-pass-no-v2-policy", [EMR_ROLES[0], emr_subnet(None)]),
    # issue 13 #8: the v2 policy attached, the private subnets never tagged.
    case("CDAO-NET-010-fail", [*EMR_V2, emr_subnet(None)], A("CDAO-NET-010")),
    case("CDAO-NET-010-unknown-tag", [*EMR_V2, emr_subnet(U)], A("CDAO-NET-010")),
    # ---------------------------------------------------------------- NET-011 inline collection + members
    # Review of issue 13 #1: prod's private tables carried the default route inline while the
    # transit-gateway routes were aws.ec2.Route resources on the same tables.
    case("CDAO-NET-011-pass-all-standalone", [route_table(), route("rtb-1")]),
    case("CDAO-NET-011-pass-all-inline", [route_table(routes=[NAT_ROUTE]), route("rtb-other")]),
    case("CDAO-NET-011-fail-route-table", [route_table(routes=[NAT_ROUTE]), route("rtb-1")], M("CDAO-NET-011")),
    case("CDAO-NET-011-fail-empty-inline-list", [route_table(routes=[]), route("rtb-1")], M("CDAO-NET-011")),
    case("CDAO-NET-011-unknown-table", [route_table(routes=[NAT_ROUTE]), route(U)], A("CDAO-NET-011")),
    # At preview a new table's id is unknown: the route names its table through its dependency.
    case(
        "CDAO-NET-011-pass-unknown-id-linked-to-a-table-without-inline-routes",
        [
            {**route_table(id=U), "urn": TABLE_URN},
            {**route_table(id="rtb-2", routes=[NAT_ROUTE]), "name": "public"},
            {**route(U), "propertyDependencies": {"routeTableId": [TABLE_URN]}},
        ],
    ),
    case(
        "CDAO-NET-011-fail-unknown-id-linked-to-an-inline-table",
        [
            {**route_table(id=U, routes=[NAT_ROUTE]), "urn": TABLE_URN},
            {**route(U), "propertyDependencies": {"routeTableId": [TABLE_URN]}},
        ],
        M("CDAO-NET-011"),
    ),
    case(
        "CDAO-NET-011-fail-security-group",
        [
            tagged("aws:ec2/securityGroup:SecurityGroup", "sg", id="sg-1", egress=[]),
            tagged(
                "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
                "out",
                securityGroupId="sg-1",
                cidrIpv4="10.0.0.0/16",
                ipProtocol="-1",
            ),
        ],
        M("CDAO-NET-011"),
    ),
    case(
        "CDAO-NET-011-fail-network-acl",
        [
            tagged("aws:ec2/networkAcl:NetworkAcl", "acl", id="acl-1", ingress=[]),
            res("aws:ec2/networkAclRule:NetworkAclRule", "r", networkAclId="acl-1", ruleNumber=100),
        ],
        M("CDAO-NET-011"),
    ),
    case(
        "CDAO-NET-011-fail-role-managed-policy-arns",
        [
            role(managedPolicyArns=["arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"], id="nodes"),
            res(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                "ecr",
                role="nodes",
                policyArn="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
            ),
        ],
        M("CDAO-NET-011"),
    ),
    case(
        "CDAO-NET-011-fail-exclusive-policy-attachment",
        [
            res(
                "aws:iam/policyAttachment:PolicyAttachment",
                "all",
                policyArn="arn:aws:iam::aws:policy/ReadOnlyAccess",
                roles=["r1"],
            ),
            res(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                "one",
                role="r2",
                policyArn="arn:aws:iam::aws:policy/ReadOnlyAccess",
            ),
        ],
        M("CDAO-NET-011"),
    ),
    case(
        "CDAO-NET-011-fail-role-inline-policies",
        [
            role(inlinePolicies=[{"name": "a", "policy": doc(allow("s3:GetObject"))}], id="r1"),
            res("aws:iam/rolePolicy:RolePolicy", "b", role="r1", policy=doc(allow("s3:PutObject"))),
        ],
        M("CDAO-NET-011"),
    ),
    # ---------------------------------------------------------------- NET-003/004 IMDS
    case("CDAO-NET-003-pass", launch_template()),
    case("CDAO-NET-003-fail-optional", launch_template(metadataOptions={"httpTokens": "optional"}), M("CDAO-NET-003")),
    case("CDAO-NET-003-fail-unset", launch_template(metadataOptions=None), M("CDAO-NET-003")),
    case(
        "CDAO-NET-003-fail-launch-configuration",
        res(
            "aws:ec2/launchConfiguration:LaunchConfiguration",
            "lc",
            instanceType="m5.large",
            imageId="ami-1",
            rootBlockDevice={"volumeType": "gp3", "encrypted": True},
            metadataOptions={"httpEndpoint": "enabled", "httpPutResponseHopLimit": 1},
        ),
        M("CDAO-NET-003"),
    ),
    case(
        "CDAO-NET-003-pass-imds-disabled",
        launch_template(metadataOptions={"httpEndpoint": "disabled", "httpPutResponseHopLimit": 3}),
    ),
    case("CDAO-NET-003-unknown", launch_template(metadataOptions={"httpTokens": U}), A("CDAO-NET-003")),
    case(
        "CDAO-NET-004-pass", launch_template(metadataOptions={"httpTokens": "required", "httpPutResponseHopLimit": 1.0})
    ),
    case(
        "CDAO-NET-004-fail",
        launch_template(metadataOptions={"httpTokens": "required", "httpPutResponseHopLimit": 2}),
        M("CDAO-NET-004"),
    ),
    case(
        "CDAO-NET-004-unknown",
        launch_template(metadataOptions={"httpTokens": "required", "httpPutResponseHopLimit": U}),
        A("CDAO-NET-004"),
    ),
    # ---------------------------------------------------------------- NET-005 private subnets
    case(
        "CDAO-NET-005-pass-public-tier",
        tagged("aws:ec2/subnet:Subnet", "public-a", mapPublicIpOnLaunch=True, tags={**TAGS, "tier": "public"}),
    ),
    case(
        "CDAO-NET-005-pass-private",
        tagged("aws:ec2/subnet:Subnet", "private-a", mapPublicIpOnLaunch=False, tags={**TAGS, "tier": "private"}),
    ),
    case(
        "CDAO-NET-005-fail",
        tagged("aws:ec2/subnet:Subnet", "private-a", mapPublicIpOnLaunch=True, tags={**TAGS, "tier": "private"}),
        M("CDAO-NET-005"),
    ),
    case(
        "CDAO-NET-005-fail-database",
        tagged("aws:ec2/subnet:Subnet", "db-a", mapPublicIpOnLaunch=True, tags={**TAGS, "tier": "database"}),
        M("CDAO-NET-005"),
    ),
    case(
        "CDAO-NET-005-fail-eks-default-pool",
        eks_component(
            skipDefaultNodeGroup=False,
            privateSubnetIds=["subnet-a", "subnet-b"],
            nodeGroupOptions={"instanceType": "m5.large", "minSize": 1, "maxSize": 2},
        ),
        M("CDAO-NET-005"),
    ),
    case(
        "CDAO-NET-005-pass-eks-default-pool-no-public-ip",
        eks_component(
            skipDefaultNodeGroup=False,
            privateSubnetIds=["subnet-a", "subnet-b"],
            nodeAssociatePublicIpAddress=False,
            nodeGroupOptions={"instanceType": "m5.large", "minSize": 1, "maxSize": 2},
        ),
    ),
    case(
        "CDAO-NET-005-unknown-eks",
        eks_component(skipDefaultNodeGroup=False, privateSubnetIds=["subnet-a"], nodeAssociatePublicIpAddress=U),
        A("CDAO-NET-005"),
    ),
    case(
        "CDAO-NET-005-unknown",
        tagged("aws:ec2/subnet:Subnet", "private-a", mapPublicIpOnLaunch=U, tags={**TAGS, "tier": "private"}),
        A("CDAO-NET-005"),
    ),
    # ---------------------------------------------------------------- NET-006 flow logs
    case("CDAO-NET-006-pass", vpc_set()),
    case("CDAO-NET-006-fail", vpc_set(with_log=False), M("CDAO-NET-006")),
    case(
        "CDAO-NET-006-pass-linked-by-logical-name",
        [
            tagged("aws:ec2/vpc:Vpc", "main-vpc", cidrBlock="10.0.0.0/16"),
            tagged("aws:ec2/flowLog:FlowLog", "main-flow", vpcId="main-vpc", trafficType="ALL"),
        ],
    ),
    case(
        "CDAO-NET-006-fail-subnet-log-only",
        [*vpc_set(with_log=False), tagged("aws:ec2/flowLog:FlowLog", "subnet-flow", subnetId="s-1", trafficType="ALL")],
        M("CDAO-NET-006"),
    ),
    case("CDAO-NET-006-unknown", vpc_set(log_vpc=U), A("CDAO-NET-006")),
    # ---------------------------------------------------------------- NET-007 SageMaker internet access
    case("CDAO-NET-007-pass-notebook", notebook()),
    case(
        "CDAO-NET-007-pass-domain",
        tagged(
            "aws:sagemaker/domain:Domain", "studio", domainName="ml", authMode="IAM", appNetworkAccessType="VpcOnly"
        ),
    ),
    case("CDAO-NET-007-fail-notebook-default", notebook(directInternetAccess=None), M("CDAO-NET-007")),
    case(
        "CDAO-NET-007-fail-domain-default",
        tagged("aws:sagemaker/domain:Domain", "studio", domainName="ml", authMode="IAM"),
        M("CDAO-NET-007"),
    ),
    case("CDAO-NET-007-unknown", notebook(directInternetAccess=U), A("CDAO-NET-007")),
    # ---------------------------------------------------------------- NAME-001 name lengths
    # Names built the way config-derived names are: "<project>-<stack>-<pool or role>".
    case("CDAO-NAME-001-pass", role_with(name="cdao-prod-workload-identity-flyte-propeller")),
    case("CDAO-NAME-001-pass-prefix-at-limit", node_group(nodeGroupNamePrefix="p" * 37)),
    case(
        "CDAO-NAME-001-fail-role-name",
        role_with(name="cdao-production-eu-west-1-workload-identity-flyte-propeller-irsa-v2"),
        M("CDAO-NAME-001"),
    ),
    case(
        "CDAO-NAME-001-fail-role-prefix",
        role_with(namePrefix="cdao-production-workload-identity-flyte-"),
        M("CDAO-NAME-001"),
    ),
    case(
        "CDAO-NAME-001-fail-node-group-prefix",
        node_group(nodeGroupNamePrefix="cdao-production-a100-timeslice-west-2-"),
        M("CDAO-NAME-001"),
    ),
    case(
        "CDAO-NAME-001-fail-bucket",
        bucket_set("cdao-production-eu-west-1-userdata-replica-0123456789abcdef"),
        M("CDAO-NAME-001"),
    ),
    case(
        "CDAO-NAME-001-fail-rds-prefix",
        rds(identifierPrefix="cdao-production-eu-west-1-flyte-admin-"),
        M("CDAO-NAME-001"),
    ),
    # review 18 #9: pulumi-eks's components, load balancer prefixes and target groups.
    case(
        "CDAO-NAME-001-fail-pulumi-eks-managed-node-group",
        tagged("eks:index:ManagedNodeGroup", "mng", nodeGroupName="n" * 70),
        M("CDAO-NAME-001"),
    ),
    case("CDAO-NAME-001-fail-pulumi-eks-cluster", with_props(eks_component(), name="c" * 120), M("CDAO-NAME-001")),
    case("CDAO-NAME-001-pass-pulumi-eks-cluster", with_props(eks_component(), name="cdao-prod")),
    case("CDAO-NAME-001-fail-lb-name-prefix", with_props(public_lb(()), namePrefix="flyte-a"), M("CDAO-NAME-001")),
    case("CDAO-NAME-001-pass-lb-name-prefix", with_props(public_lb(()), namePrefix="flyte-")),
    case(
        "CDAO-NAME-001-fail-target-group-name",
        with_props(
            res("aws:lb/targetGroup:TargetGroup", "tg", port=443, protocol="HTTPS", vpcId="vpc-1"), name="t" * 33
        ),
        M("CDAO-NAME-001"),
    ),
    case("CDAO-NAME-001-unknown", role_with(name=U), A("CDAO-NAME-001")),
    # ---------------------------------------------------------------- K8S
    case("CDAO-K8S-001-pass", deployment()),
    case(
        "CDAO-K8S-001-fail",
        deployment(container(securityContext={"privileged": True, "runAsNonRoot": True, "runAsUser": 1000})),
        M("CDAO-K8S-001"),
    ),
    case("CDAO-K8S-001-fail-host-network", deployment(pod={"hostNetwork": True}), M("CDAO-K8S-001")),
    case(
        "CDAO-K8S-001-unknown",
        deployment(container(securityContext={"privileged": U, "runAsNonRoot": True, "runAsUser": 1000})),
        A("CDAO-K8S-001"),
    ),
    case(
        "CDAO-K8S-002-pass-pod-level",
        deployment(container(securityContext=None), pod={"securityContext": {"runAsNonRoot": True, "runAsUser": 1000}}),
    ),
    case("CDAO-K8S-002-fail-unset", deployment(container(securityContext=None)), M("CDAO-K8S-002")),
    case(
        "CDAO-K8S-002-fail-uid-0",
        deployment(container(securityContext={"runAsUser": 0, "allowPrivilegeEscalation": False})),
        M("CDAO-K8S-002"),
    ),
    case(
        "CDAO-K8S-002-unknown",
        deployment(container(securityContext={"runAsNonRoot": U})),
        A("CDAO-K8S-002"),
    ),
    case("CDAO-K8S-003-pass", deployment()),
    case("CDAO-K8S-003-fail", deployment(container(resources={"requests": {"memory": "1Gi"}})), A("CDAO-K8S-003")),
    case("CDAO-K8S-003-unknown", deployment(container(resources={"limits": U})), A("CDAO-K8S-003")),
    case("CDAO-K8S-004-pass-digest", deployment(container(image="ghcr.io/org/app@sha256:" + "a" * 64))),
    case("CDAO-K8S-004-pass-registry-port", deployment(container(image="registry.local:5000/app:2.0.1"))),
    case("CDAO-K8S-004-fail-latest", deployment(container(image="nginx:latest")), M("CDAO-K8S-004")),
    case("CDAO-K8S-004-fail-untagged-port", deployment(container(image="registry.local:5000/app")), M("CDAO-K8S-004")),
    case(
        "CDAO-K8S-004-fail-cronjob-init",
        res(
            "kubernetes:batch/v1:CronJob",
            "nightly",
            spec={
                "schedule": "0 0 * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {"initContainers": [container(image="busybox")], "containers": [container()]}
                        }
                    }
                },
            },
        ),
        M("CDAO-K8S-004"),
    ),
    case("CDAO-K8S-004-unknown", deployment(container(image=U)), A("CDAO-K8S-004")),
]


@pytest.mark.parametrize("c", CASES)
def test_rule_case(request: pytest.FixtureRequest, c: Case) -> None:
    violations = evaluate(c.resources, c.stack, c.config, cost_estimator=c.estimator)
    assert {(v.rule, v.level) for v in violations} == c.expected, [v.to_dict() for v in violations]
    if "-unknown" in request.node.callspec.id and c.expected and all(lvl == "advisory" for _, lvl in c.expected):
        assert all("unknown at preview" in v.message for v in violations), [v.message for v in violations]


def test_every_rule_has_pass_fail_and_unknown_cases() -> None:
    ids = [p.id for p in CASES]
    for rule in RULES:
        for kind in ("pass", "fail", "unknown"):
            assert any(i.startswith(f"{rule.id}-{kind}") for i in ids), f"{rule.id} has no {kind} case"

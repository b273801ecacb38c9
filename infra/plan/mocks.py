"""Pulumi mock runtime that answers like AWS would, so the real program runs with no engine.

Every resource gets a deterministic, well-formed ID and ARN (a hash of its type and logical name),
so two plans of the same code are identical and diff cleanly in a pull-request comment. Any output
the program reads must come back here: a missing one silently becomes None and its dependants drop
the input (see shared FACTS), which would make the plan lie.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2

ACCOUNT_ID = "111122223333"  # AWS's documentation account: never a real one
PARTITION = "aws"

# Prefixes AWS gives the IDs of EC2-family resources.
_EC2_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
    "aws:ec2/flowLog:FlowLog": "fl",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
    "aws:efs/fileSystem:FileSystem": "fs",
    "aws:efs/mountTarget:MountTarget": "fsmt",
    "aws:efs/accessPoint:AccessPoint": "fsap",
}


def _hex(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent_urn: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)


class AwsMocks(pulumi_mocks.Mocks):
    def __init__(self, region: str, stack: str):
        self.region = region
        self.stack = stack

    # -- invokes ---------------------------------------------------------------------------------
    def call(self, args: pulumi_mocks.MockCallArgs):
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":  # noqa: S105 - an invoke token
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:user/offline-plan",
                "userId": "AIDAOFFLINEPLAN",
                "id": ACCOUNT_ID,
            }, []
        if token == "aws:index/getRegion:getRegion":  # noqa: S105 - an invoke token
            return {
                "name": self.region,
                "region": self.region,
                "id": self.region,
                "endpoint": f"ec2.{self.region}.amazonaws.com",
            }, []
        if token == "aws:index/getPartition:getPartition":  # noqa: S105 - an invoke token
            return {
                "partition": PARTITION,
                "dnsSuffix": "amazonaws.com",
                "id": PARTITION,
                "reverseDnsPrefix": "com.amazonaws",
            }, []
        raise NotImplementedError(
            f"the offline plan has no mock for invoke {token!r}; add one to infra/plan/mocks.py "
            "returning what AWS would, or the dependent inputs would silently vanish"
        )

    def _eks_cluster(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        cluster = inputs.get("name") or name
        issuer_id = _hex(self.stack, "oidc", name, length=32).upper()
        oidc_url = f"oidc.eks.{self.region}.amazonaws.com/id/{issuer_id}"
        endpoint = f"https://{issuer_id}.gr7.{self.region}.eks.amazonaws.com"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": cluster, "cluster": {"server": endpoint, "certificate-authority-data": "LS0tLS1CRUdJTg=="}}
            ],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}],
            "current-context": cluster,
            "users": [
                {
                    "name": cluster,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cluster, "--region", self.region],
                        }
                    },
                }
            ],
        }
        return {
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            "oidcProviderArn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:oidc-provider/{oidc_url}",
            "oidcProviderUrl": oidc_url,
            "oidcIssuer": f"https://{oidc_url}",
            "clusterSecurityGroupId": f"sg-{_hex(self.stack, name, 'cluster-sg')}",
            "nodeSecurityGroupId": f"sg-{_hex(self.stack, name, 'node-sg')}",
        }

    # -- resources -------------------------------------------------------------------------------
    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        inputs = dict(args.inputs)
        typ, name = args.typ, args.name
        physical = inputs.get("name") or f"{name}-{_hex(self.stack, typ, name, length=7)}"
        outputs = {**inputs}
        service = typ.split(":")[1].split("/")[0] if typ.startswith("aws:") else ""

        if typ in _EC2_ID_PREFIX:
            rid = f"{_EC2_ID_PREFIX[typ]}-{_hex(self.stack, typ, name)}"
            outputs["arn"] = f"arn:{PARTITION}:ec2:{self.region}:{ACCOUNT_ID}:{typ.split(':')[2].lower()}/{rid}"
        elif typ == "aws:iam/role:Role":
            rid = physical
            outputs.update(
                name=physical,
                arn=f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{physical}",
                uniqueId=f"AROA{_hex(self.stack, typ, name).upper()}",
            )
        elif typ == "aws:iam/policy:Policy":
            rid = f"arn:{PARTITION}:iam::{ACCOUNT_ID}:policy/{physical}"
            outputs.update(name=physical, arn=rid)
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            rid = physical
            outputs.update(name=physical, arn=f"arn:{PARTITION}:logs:{self.region}:{ACCOUNT_ID}:log-group:{physical}")
        else:
            rid = physical if "name" in inputs else f"{name}-{_hex(self.stack, typ, name, length=8)}"
            if service:
                outputs.setdefault(
                    "arn", f"arn:{PARTITION}:{service}:{self.region}:{ACCOUNT_ID}:{_arn_kind(typ)}/{rid}"
                )

        if typ == "eks:index:Cluster":
            outputs.update(self._eks_cluster(name, inputs))
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            group_name = f"{inputs.get('nodeGroupNamePrefix', name + '-')}{_hex(self.stack, typ, name, length=26)}"
            cluster = inputs.get("clusterName", "cluster")
            suffix = _hex(self.stack, name, length=8)
            outputs.update(
                nodeGroupName=group_name,
                arn=f"arn:{PARTITION}:eks:{self.region}:{ACCOUNT_ID}:nodegroup/{cluster}/{group_name}/{suffix}",
                status="ACTIVE",
                resources=[{"autoscalingGroups": [{"name": f"eks-{group_name}"}], "remoteAccessSecurityGroupId": ""}],
            )
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs.update(latestVersion=1, defaultVersion=1)
        elif typ == "aws:kms/key:Key":
            key_id = _uuid(self.stack, typ, name)
            outputs.update(keyId=key_id, arn=f"arn:{PARTITION}:kms:{self.region}:{ACCOUNT_ID}:key/{key_id}")
            rid = key_id
        elif typ == "aws:ec2/vpc:Vpc":
            outputs.update(
                defaultSecurityGroupId=f"sg-{_hex(self.stack, typ, name, 'default')}",
                mainRouteTableId=f"rtb-{_hex(self.stack, typ, name, 'main')}",
            )
        elif typ == "aws:ec2/eip:Eip":
            digest = hashlib.sha256(f"{self.stack}/{name}".encode()).digest()
            outputs.update(publicIp=f"3.{digest[0]}.{digest[1]}.{digest[2] or 1}", allocationId=rid)
        elif typ == "aws:ec2/subnet:Subnet":
            outputs.setdefault("availabilityZoneId", f"use1-az{(int(_hex(self.stack, name, length=2), 16) % 6) + 1}")
        if "tags" in inputs:
            outputs["tagsAll"] = inputs["tags"]
        outputs["id"] = rid
        return rid, outputs


def _uuid(*parts: str) -> str:
    h = _hex(*parts, length=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _arn_kind(typ: str) -> str:
    # "aws:rds/instance:Instance" -> "instance"; good enough for an ARN nobody dereferences offline.
    return re.sub(r"(?<!^)(?=[A-Z])", "-", typ.split(":")[2]).lower()


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Records each registration with its parent, which the stock monitor drops, so the plan can
    group resources by the component that declared them.

    It also stops advertising resource references: with them, the stock monitor hung or failed
    intermittently when component outputs carried references (3 of 5 runs; see shared FACTS).
    """

    def __init__(self, mocks: pulumi_mocks.Mocks):
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = rpc.deserialize_properties(request.object)
            outputs = self.resources[response.urn].state if response.urn in self.resources else {}
            self.registrations[response.urn] = Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=bool(request.custom),
                parent_urn=request.parent,
                inputs=_plain(inputs),
                outputs=_plain(outputs),
            )
        return response

    def GetDeploymentInfo(self, request):
        info = super().GetDeploymentInfo(request)
        features = [f for f in info.supportedFeatures if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES]
        return resource_pb2.DeploymentInfo(supportedFeatures=features)


def _plain(value: Any) -> Any:
    """Make deserialized properties JSON-safe (secrets unwrapped to a marker, refs to URNs)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return "[secret]"
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))

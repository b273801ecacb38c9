"""Pulumi mock runtime that answers like AWS would, so the real program runs with no engine.

Every resource gets a deterministic, well-formed ID and ARN (a hash of its type and logical name),
so two plans of the same code are identical and diff cleanly in a pull-request comment. Any output
the program reads must come back here: a missing one silently becomes None and its dependants drop
the input (see shared FACTS), which would make the plan lie.

Each output is what the provider documents, never what infra/ expects: only outputs the installed
SDK declares, in the format its docstring (or the upstream code or AWS reference cited next to it)
gives; tests/infra/test_mock_contracts.py checks them against the SDKs. Names over AWS's limits
(infra/names.py) fail here as they would in the provider.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import json
from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2

from infra import names

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
    "aws:ec2transitgateway/vpcAttachment:VpcAttachment": "tgw-attach",
    "aws:efs/fileSystem:FileSystem": "fs",
    "aws:efs/mountTarget:MountTarget": "fsmt",
    "aws:efs/accessPoint:AccessPoint": "fsap",
}


# The ARN of each resource type the program declares whose SDK has an `arn` output, in AWS's format:
# the "Resource types" table of each service's page in the Service Authorization Reference,
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_<service>.html
# (amazonec2, amazonrds, awskeymanagementservice, amazonelasticfilesystem, amazoneks, iam,
# amazoncloudwatchlogs, awsbackup, awsbatch, amazonelasticcontainerregistry, awscertificatemanager,
# amazonemrserverless, amazons3, amazondynamodb). `{id}` is the resource's ID, `{name}` its name.
ARN_FORMATS = {
    "aws:ec2/vpc:Vpc": "arn:{partition}:ec2:{region}:{account}:vpc/{id}",
    "aws:ec2/subnet:Subnet": "arn:{partition}:ec2:{region}:{account}:subnet/{id}",
    "aws:ec2/internetGateway:InternetGateway": "arn:{partition}:ec2:{region}:{account}:internet-gateway/{id}",
    "aws:ec2/eip:Eip": "arn:{partition}:ec2:{region}:{account}:elastic-ip/{id}",
    "aws:ec2/routeTable:RouteTable": "arn:{partition}:ec2:{region}:{account}:route-table/{id}",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "arn:{partition}:ec2:{region}:{account}:vpc-endpoint/{id}",
    "aws:ec2/securityGroup:SecurityGroup": "arn:{partition}:ec2:{region}:{account}:security-group/{id}",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "arn:{partition}:ec2:{region}:{account}:security-group/{id}",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (
        "arn:{partition}:ec2:{region}:{account}:security-group-rule/{id}"
    ),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (
        "arn:{partition}:ec2:{region}:{account}:security-group-rule/{id}"
    ),
    "aws:ec2/flowLog:FlowLog": "arn:{partition}:ec2:{region}:{account}:vpc-flow-log/{id}",
    "aws:ec2/launchTemplate:LaunchTemplate": "arn:{partition}:ec2:{region}:{account}:launch-template/{id}",
    "aws:ec2transitgateway/vpcAttachment:VpcAttachment": (
        "arn:{partition}:ec2:{region}:{account}:transit-gateway-attachment/{id}"
    ),
    "aws:efs/fileSystem:FileSystem": "arn:{partition}:elasticfilesystem:{region}:{account}:file-system/{id}",
    "aws:efs/accessPoint:AccessPoint": "arn:{partition}:elasticfilesystem:{region}:{account}:access-point/{id}",
    "aws:rds/instance:Instance": "arn:{partition}:rds:{region}:{account}:db:{name}",
    "aws:rds/parameterGroup:ParameterGroup": "arn:{partition}:rds:{region}:{account}:pg:{name}",
    "aws:rds/subnetGroup:SubnetGroup": "arn:{partition}:rds:{region}:{account}:subgrp:{name}",
    # An alias's name already starts with "alias/".
    "aws:kms/alias:Alias": "arn:{partition}:kms:{region}:{account}:{name}",
    "aws:kms/key:Key": "arn:{partition}:kms:{region}:{account}:key/{id}",
    "aws:iam/role:Role": "arn:{partition}:iam::{account}:role/{name}",
    "aws:iam/instanceProfile:InstanceProfile": "arn:{partition}:iam::{account}:instance-profile/{name}",
    "aws:cloudwatch/logGroup:LogGroup": "arn:{partition}:logs:{region}:{account}:log-group:{name}",
    "aws:eks/nodeGroup:NodeGroup": "arn:{partition}:eks:{region}:{account}:nodegroup/{cluster}/{name}/{uuid}",
    "aws:eks/addon:Addon": "arn:{partition}:eks:{region}:{account}:addon/{cluster}/{name}/{uuid}",
    "aws:backup/vault:Vault": "arn:{partition}:backup:{region}:{account}:backup-vault:{name}",
    "aws:backup/plan:Plan": "arn:{partition}:backup:{region}:{account}:backup-plan:{id}",
    "aws:batch/computeEnvironment:ComputeEnvironment": (
        "arn:{partition}:batch:{region}:{account}:compute-environment/{name}"
    ),
    "aws:batch/jobQueue:JobQueue": "arn:{partition}:batch:{region}:{account}:job-queue/{name}",
    "aws:ecr/repository:Repository": "arn:{partition}:ecr:{region}:{account}:repository/{name}",
    "aws:acm/certificate:Certificate": "arn:{partition}:acm:{region}:{account}:certificate/{id}",
    "aws:emrserverless/application:Application": (
        "arn:{partition}:emr-serverless:{region}:{account}:/applications/{id}"
    ),
    "aws:s3/bucket:Bucket": "arn:{partition}:s3:::{name}",
    "aws:s3/bucketV2:BucketV2": "arn:{partition}:s3:::{name}",
    "aws:dynamodb/table:Table": "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
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
    # The inputs as a report may print them: every secret value replaced by SECRET_MASK.
    masked_inputs: dict[str, Any] = field(default_factory=dict)
    # The `replace_on_changes` resource option: input paths whose change makes Pulumi replace it.
    replace_on_changes: list[str] = field(default_factory=list)
    # The `ignore_changes` resource option: input paths Pulumi ignores for updates and replacements.
    ignore_changes: list[str] = field(default_factory=list)
    # URNs this resource waits for, as the engine orders it: explicit dependsOn, every input's
    # dependencies and its provider.
    dependencies: frozenset[str] = frozenset()
    # Per input: the URNs its value came from (what a remote component passes on to its children).
    property_dependencies: dict[str, frozenset[str]] = field(default_factory=dict)
    # The `protect` and `retain_on_delete` resource options (pulumi's RegisterResourceRequest).
    protect: bool = False
    retain_on_delete: bool = False
    # The `custom_timeouts` resource option: operation ("create", "update", "delete") -> duration
    # string ("60m"); what the provider waits for instead of its own default.
    custom_timeouts: dict[str, str] = field(default_factory=dict)


class AwsMocks(pulumi_mocks.Mocks):
    def __init__(self, region: str, stack: str):
        self.region = region
        self.stack = stack

    # -- invokes ---------------------------------------------------------------------------------
    def call(self, args: pulumi_mocks.MockCallArgs):
        # Results in the shape of the installed SDK's Get*Result types (pulumi_aws get_caller_identity,
        # get_region, get_partition); values in the formats AWS documents for STS GetCallerIdentity.
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
            f"the offline plan has no mock for invoke {token!r}; add one to cdao_cli/plan/mocks.py "
            "returning what AWS would, or the dependent inputs would silently vanish"
        )

    def _eks_cluster(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The outputs of pulumi-eks's Cluster component that the program reads, as pulumi-eks 4.x
        builds them: pulumi/pulumi-eks@7bf0c1b1 nodejs/eks/cluster/cluster.ts (createCluster and
        generateKubeconfig) and the docstrings of the installed pulumi_eks/cluster.py."""
        cluster = inputs.get("name") or name
        issuer_id = _hex(self.stack, "oidc", name, length=32).upper()
        # EKS's identity.oidc.issuer, https://docs.aws.amazon.com/eks/latest/userguide/enable-iam-roles-for-service-accounts.html
        issuer_url = f"https://oidc.eks.{self.region}.amazonaws.com/id/{issuer_id}"
        endpoint = f"https://{issuer_id}.gr7.{self.region}.eks.amazonaws.com"
        kubeconfig = {
            "apiVersion": "v1",
            "clusters": [
                {
                    "cluster": {"server": endpoint, "certificate-authority-data": "LS0tLS1CRUdJTg=="},
                    "name": "kubernetes",
                }
            ],
            "contexts": [{"context": {"cluster": "kubernetes", "user": "aws"}, "name": "aws"}],
            "current-context": "aws",
            "kind": "Config",
            "users": [
                {
                    "name": "aws",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                *("--region", self.region, "eks", "get-token"),
                                *("--cluster-name", cluster, "--output", "json"),
                            ],
                            "env": [
                                {
                                    "name": "KUBERNETES_EXEC_INFO",
                                    "value": '{"apiVersion": "client.authentication.k8s.io/v1beta1"}',
                                }
                            ],
                        }
                    },
                }
            ],
        }
        return {
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            # IAM names the provider by the issuer URL without its scheme.
            "oidcProviderArn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:oidc-provider/{issuer_url.removeprefix('https://')}",
            # cluster.ts: `oidcProviderUrl: oidcIssuerUrl` (the issuer URL, with https://) and
            # `oidcIssuer: oidcIssuerUrl.apply((url) => url.replace("https://", ""))`.
            "oidcProviderUrl": issuer_url,
            "oidcIssuer": issuer_url.removeprefix("https://"),
            "clusterSecurityGroupId": f"sg-{_hex(self.stack, name, 'cluster-sg')}",
            "nodeSecurityGroupId": f"sg-{_hex(self.stack, name, 'node-sg')}",
        }

    # -- resources -------------------------------------------------------------------------------
    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        inputs = dict(args.inputs)
        typ, name = args.typ, args.name
        physical = inputs.get("name") or f"{name}-{_hex(self.stack, typ, name, length=7)}"
        handler = _HANDLERS.get(typ)
        if typ in names.RESOURCE_NAMES:
            key, limit, suffix = names.RESOURCE_NAMES[typ]
            value = physical if key is None else inputs.get(key)
            if isinstance(value, str) and (problem := names.too_long(value, limit, suffix)):
                # What the provider (or AWS) answers to a name over the limit: the update fails.
                raise ValueError(f"{typ} {name}: {problem}")
        if typ in _EC2_ID_PREFIX:
            rid = f"{_EC2_ID_PREFIX[typ]}-{_hex(self.stack, typ, name)}"
        else:
            rid = physical if "name" in inputs else f"{name}-{_hex(self.stack, typ, name, length=8)}"
        extra: dict[str, Any] = {}
        if handler is not None:
            specific_id, specific = handler(self, typ, name, inputs, physical)
            rid = specific_id or rid
            extra.update(specific)
        if "arn" not in extra and _declares_arn(typ):
            if typ not in ARN_FORMATS:
                raise NotImplementedError(
                    f"the offline plan has no ARN format for {typ!r}; "
                    "add AWS's to ARN_FORMATS in cdao_cli/plan/mocks.py"
                )
            extra["arn"] = self.arn(typ, id=rid, name=physical)
        outputs = {**inputs, **extra}
        if "tags" in inputs:
            outputs["tagsAll"] = inputs["tags"]
        outputs["id"] = rid
        return rid, outputs

    def arn(self, typ: str, **fields: str) -> str:
        region = fields.pop("region", None) or self.region
        return ARN_FORMATS[typ].format(partition=PARTITION, region=region, account=ACCOUNT_ID, **fields)

    def _addon(self, typ, name, inputs, physical):
        cluster, addon = inputs.get("clusterName", "cluster"), inputs.get("addonName", name)
        return f"{cluster}:{addon}", {
            "arn": self.arn(typ, cluster=cluster, name=addon, uuid=_uuid(self.stack, typ, name)),
        }

    def _random_id(self, typ, name, inputs, physical):
        # pulumi_random RandomId: `hex` is "padded hexadecimal digits ... twice as long as the requested
        # byte length"; the ID is the base64url form (terraform-provider-random, resource_id.go).
        raw = bytes.fromhex(_hex(self.stack, typ, name, length=2 * int(inputs.get("byteLength", 4))))
        b64url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return b64url, {
            "hex": raw.hex(),
            "b64Url": b64url,
            "b64Std": base64.b64encode(raw).decode(),
            "dec": str(int.from_bytes(raw, "big")),
        }

    def _role(self, typ, name, inputs, physical):
        arn = f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{physical}"
        return physical, {"name": physical, "arn": arn, "uniqueId": f"AROA{_hex(self.stack, typ, name).upper()}"}

    def _instance_profile(self, typ, name, inputs, physical):
        return physical, {"name": physical, "arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:instance-profile/{physical}"}

    def _log_group(self, typ, name, inputs, physical):
        return physical, {
            "name": physical,
            "arn": f"arn:{PARTITION}:logs:{self.region}:{ACCOUNT_ID}:log-group:{physical}",
        }

    def _eks(self, typ, name, inputs, physical):
        return None, self._eks_cluster(name, inputs)

    def _node_group(self, typ, name, inputs, physical):
        # pulumi_aws eks.NodeGroup: `resources` is a list of NodeGroupResource (autoscaling_groups[].name,
        # remote_access_security_group_id); a `*_prefix` name gets a 26-character unique suffix.
        group_name = f"{inputs.get('nodeGroupNamePrefix', name + '-')}{_hex(self.stack, typ, name, length=26)}"
        cluster = inputs.get("clusterName", "cluster")
        return None, {
            "nodeGroupName": group_name,
            "arn": self.arn(typ, cluster=cluster, name=group_name, uuid=_uuid(self.stack, typ, name)),
            "status": "ACTIVE",
            "resources": [{"autoscalingGroups": [{"name": f"eks-{group_name}"}], "remoteAccessSecurityGroupId": ""}],
        }

    def _launch_template(self, typ, name, inputs, physical):
        return None, {"latestVersion": 1, "defaultVersion": 1}

    def _kms_key(self, typ, name, inputs, physical):
        key_id = _uuid(self.stack, typ, name)
        region = inputs.get("region") or self.region
        return key_id, {"keyId": key_id, "arn": f"arn:{PARTITION}:kms:{region}:{ACCOUNT_ID}:key/{key_id}"}

    def _backup_vault(self, typ, name, inputs, physical):
        region = inputs.get("region") or self.region
        return physical, {
            "name": physical,
            "arn": f"arn:{PARTITION}:backup:{region}:{ACCOUNT_ID}:backup-vault:{physical}",
            "recoveryPoints": 0,
        }

    def _backup_plan(self, typ, name, inputs, physical):
        plan_id = _uuid(self.stack, typ, name)
        return plan_id, {
            "arn": f"arn:{PARTITION}:backup:{self.region}:{ACCOUNT_ID}:backup-plan:{plan_id}",
            "version": _hex(self.stack, typ, name, "version", length=32),
        }

    def _backup_selection(self, typ, name, inputs, physical):
        return _hex(self.stack, typ, name, length=32), {}

    def _rds(self, typ, name, inputs, physical):
        ident = (
            inputs.get("identifier")
            or f"{inputs.get('identifierPrefix', name + '-')}{_hex(self.stack, typ, name, length=8)}"
        )
        address = f"{ident}.c{_hex(self.stack, 'rds', length=11)}.{self.region}.rds.amazonaws.com"
        secret = (
            f"arn:{PARTITION}:secretsmanager:{self.region}:{ACCOUNT_ID}:secret:rds!db-{_uuid(self.stack, typ, name)}"
        )
        return f"db-{_hex(self.stack, typ, name, length=26).upper()}", {
            "identifier": ident,
            "address": address,
            "port": 5432,
            "endpoint": f"{address}:5432",
            "arn": f"arn:{PARTITION}:rds:{self.region}:{ACCOUNT_ID}:db:{ident}",
            "masterUserSecrets": [
                {"secretArn": secret, "kmsKeyId": inputs.get("masterUserSecretKmsKeyId", ""), "secretStatus": "active"}
            ],
        }

    def _bucket(self, typ, name, inputs, physical):
        bucket = (
            inputs.get("bucket") or f"{inputs.get('bucketPrefix', name + '-')}{_hex(self.stack, typ, name, length=12)}"
        )
        return bucket, {
            "bucket": bucket,
            "arn": f"arn:{PARTITION}:s3:::{bucket}",
            "bucketDomainName": f"{bucket}.s3.amazonaws.com",
            "bucketRegionalDomainName": f"{bucket}.s3.{self.region}.amazonaws.com",
        }

    def _emr_serverless(self, typ, name, inputs, physical):
        app_id = f"00f{_hex(self.stack, typ, name, length=13)}"
        return app_id, {"arn": f"arn:{PARTITION}:emr-serverless:{self.region}:{ACCOUNT_ID}:/applications/{app_id}"}

    def _batch(self, typ, name, inputs, physical):
        kind = "compute-environment" if "compute" in typ else "job-queue"
        arn = f"arn:{PARTITION}:batch:{self.region}:{ACCOUNT_ID}:{kind}/{physical}"
        return arn, {"arn": arn, "name": physical}

    def _ecr(self, typ, name, inputs, physical):
        return physical, {
            "arn": f"arn:{PARTITION}:ecr:{self.region}:{ACCOUNT_ID}:repository/{physical}",
            "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{physical}",
            "registryId": ACCOUNT_ID,
        }

    def _certificate(self, typ, name, inputs, physical):
        cert_id = _uuid(self.stack, typ, name)
        domain = inputs.get("domainName", "example.invalid")
        token = _hex(self.stack, typ, name, length=32)
        return f"arn:{PARTITION}:acm:{self.region}:{ACCOUNT_ID}:certificate/{cert_id}", {
            "arn": f"arn:{PARTITION}:acm:{self.region}:{ACCOUNT_ID}:certificate/{cert_id}",
            "status": "PENDING_VALIDATION",
            "domainValidationOptions": [
                {
                    "domainName": domain,
                    "resourceRecordName": f"_{token[:32]}.{domain}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": f"_{token[::-1]}.acm-validations.aws.",
                }
            ],
        }

    def _vpc(self, typ, name, inputs, physical):
        return None, {
            "defaultSecurityGroupId": f"sg-{_hex(self.stack, typ, name, 'default')}",
            "mainRouteTableId": f"rtb-{_hex(self.stack, typ, name, 'main')}",
        }

    def _eip(self, typ, name, inputs, physical):
        digest = hashlib.sha256(f"{self.stack}/{name}".encode()).digest()
        return None, {"publicIp": f"3.{digest[0]}.{digest[1]}.{digest[2] or 1}"}

    def _subnet(self, typ, name, inputs, physical):
        return None, {"availabilityZoneId": f"use1-az{(int(_hex(self.stack, name, length=2), 16) % 6) + 1}"}


_HANDLERS = {
    "aws:iam/role:Role": AwsMocks._role,
    "aws:iam/instanceProfile:InstanceProfile": AwsMocks._instance_profile,
    "aws:cloudwatch/logGroup:LogGroup": AwsMocks._log_group,
    "eks:index:Cluster": AwsMocks._eks,
    "aws:eks/nodeGroup:NodeGroup": AwsMocks._node_group,
    "aws:ec2/launchTemplate:LaunchTemplate": AwsMocks._launch_template,
    "aws:kms/key:Key": AwsMocks._kms_key,
    "aws:backup/vault:Vault": AwsMocks._backup_vault,
    "aws:backup/plan:Plan": AwsMocks._backup_plan,
    "aws:backup/selection:Selection": AwsMocks._backup_selection,
    "aws:rds/instance:Instance": AwsMocks._rds,
    "aws:s3/bucket:Bucket": AwsMocks._bucket,
    "aws:s3/bucketV2:BucketV2": AwsMocks._bucket,
    "aws:emrserverless/application:Application": AwsMocks._emr_serverless,
    "aws:batch/computeEnvironment:ComputeEnvironment": AwsMocks._batch,
    "aws:batch/jobQueue:JobQueue": AwsMocks._batch,
    "aws:ecr/repository:Repository": AwsMocks._ecr,
    "aws:ec2/vpc:Vpc": AwsMocks._vpc,
    "aws:acm/certificate:Certificate": AwsMocks._certificate,
    "aws:ec2/eip:Eip": AwsMocks._eip,
    "aws:ec2/subnet:Subnet": AwsMocks._subnet,
    "aws:eks/addon:Addon": AwsMocks._addon,
    "random:index/randomId:RandomId": AwsMocks._random_id,
}


def _uuid(*parts: str) -> str:
    h = _hex(*parts, length=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def sdk_resource_class(typ: str) -> type:
    """The installed SDK's class for a resource type token ("aws:iam/role:Role" -> pulumi_aws.iam.Role)."""
    package, module_path, cls = typ.split(":")
    module = module_path.split("/", maxsplit=1)[0]
    return getattr(importlib.import_module(f"pulumi_{package}" + ("" if module == "index" else f".{module}")), cls)


def sdk_outputs(cls: type) -> dict[str, property]:
    """The outputs an SDK resource class declares, by their wire (camelCase) name."""
    return {
        value.fget._pulumi_name: value
        for klass in reversed(cls.__mro__)
        for value in vars(klass).values()
        if isinstance(value, property) and hasattr(value.fget, "_pulumi_name")
    }


@functools.cache
def _declares_arn(typ: str) -> bool:
    # A mock must not invent outputs a resource does not have.
    return typ.split(":", maxsplit=1)[0] in {"aws", "eks", "random"} and "arn" in sdk_outputs(sdk_resource_class(typ))


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
                masked_inputs=_plain(inputs, mask=True),
                replace_on_changes=list(request.replaceOnChanges),
                ignore_changes=list(request.ignoreChanges),
                dependencies=frozenset(request.dependencies).union(
                    *(deps.urns for deps in request.propertyDependencies.values()),
                    # A provider reference is "<urn>::<id>".
                    [request.provider.rsplit("::", 1)[0]] if request.provider else [],
                ),
                property_dependencies={key: frozenset(deps.urns) for key, deps in request.propertyDependencies.items()},
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                custom_timeouts={
                    op: value for op in ("create", "update", "delete") if (value := getattr(request.customTimeouts, op))
                },
            )
        return response

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The URN the engine gives: the parent's whole qualified type, and none for the root stack.

        The SDK's mock keeps only the parent's last type and prefixes the stack's. The engine's rule
        is pulumi/pulumi sdk/go/common/resource/urn `New(stack, project, parentType, baseType, name)`:
        `parentType$baseType` unless the parent is the root `pulumi:pulumi:Stack`, where parentType
        is the parent URN's qualified type.
        """
        if parent:
            parent_type = parent.split("::")[2]
            if parent_type != "pulumi:pulumi:Stack":
                type_ = f"{parent_type}${type_}"
        return super().make_urn("", type_, name)

    def GetDeploymentInfo(self, request):
        info = super().GetDeploymentInfo(request)
        features = [f for f in info.supportedFeatures if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES]
        return resource_pb2.DeploymentInfo(supportedFeatures=features)


SECRET_MASK = "[secret]"  # noqa: S105 - the placeholder printed instead of a secret


def _masked(value: Any) -> str:
    """SECRET_MASK with a short fingerprint, so a diff can see that a secret changed.

    What reaches the offline plan as a secret is a stand-in (runner.OFFLINE_SECRET) or a value the
    program derived from committed config and wrapped with Output.secret (a trust policy, ...), so
    nothing here is secret in fact; an unsalted digest of a real secret would let a guess of it be
    confirmed, which is why real secret config never reaches the plan (runner.read_stack_file).
    """
    digest = hashlib.sha256(json.dumps(_plain(value), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{SECRET_MASK[:-1]} {digest}]"


def _plain(value: Any, mask: bool = False) -> Any:
    """Make deserialized properties JSON-safe.

    Unmasked, secrets are unwrapped as a policy analyzer sees them: only the offline plan's
    stand-ins ever arrive here as secret values, and props are evaluated in memory, never printed.
    Masked (`mask=True`), each secret becomes SECRET_MASK with a fingerprint (`[secret 1a2b3c4d]`),
    which is what reports print. A secret
    arrives as Pulumi's wire envelope {rpc._special_sig_key: rpc._special_secret_sig, "value": ...}
    (pulumi/runtime/rpc.py), because the mock monitor advertises the "secrets" feature.
    """
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _masked(value.get("value")) if mask else _plain(value.get("value"))
        return {k: _plain(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, mask) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))

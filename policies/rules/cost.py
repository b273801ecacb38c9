"""Cost: instance and DB class allow-lists, GPU pool caps, NAT count, tags, volumes, retention, budget."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from cdao_pools import ACCELERATOR_LABEL, MIG_CONFIG_LABEL

from cdao_cost import estimate_cost
from cdao_resources import resource
from policies.core import (
    UNKNOWN_TOKEN,
    Context,
    Finding,
    Resource,
    Rule,
    UnknownValueFound,
    as_list,
    denormalize,
    dig,
    iter_known,
    resource_rule,
    stack_rule,
    to_bool,
    to_number,
)
from policies.rules._common import (
    EKS_COMPONENT,
    INSTANCE_LIKE,
    LAUNCH_TEMPLATE,
    bucket_findings,
    eks_default_pool,
    matches_any,
)

RULES: list[Rule] = []

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
MANAGED_NODE_GROUP = "eks:index:ManagedNodeGroup"
BATCH_CE = "aws:batch/computeEnvironment:ComputeEnvironment"
EMR_CLUSTER = "aws:emr/cluster:Cluster"
# Self-managed pools: pulumi-eks's NodeGroup/NodeGroupV2 components (maxSize, default 2 per the
# installed pulumi_eks/node_group_v2.py docstring) and a plain EC2 Auto Scaling group.
EKS_SELF_MANAGED = ("eks:index:NodeGroup", "eks:index:NodeGroupV2")
ASG = "aws:autoscaling/group:Group"

# pulumi-eks creates a default self-managed node group of t3.medium unless told otherwise; managed
# node groups without a launch template also default to t3.medium.
_EKS_DEFAULT_INSTANCE_TYPE = "t3.medium"
_EKS_DEFAULT_MIN, _EKS_DEFAULT_MAX = 1, 2

_GPU_FAMILY = re.compile(r"^(p\d|g\d|gr\d|trn\d|inf\d|dl\d)", re.IGNORECASE)
_GPU_AMI = re.compile(r"GPU|NVIDIA|NEURON", re.IGNORECASE)


def is_gpu_type(instance_type: str) -> bool:
    return bool(_GPU_FAMILY.match(instance_type.split(".", 1)[0]))


def instance_types(res: Resource) -> tuple[str, list[Any]]:  # noqa: PLR0911 - one branch per shape
    """(prop path, instance types) of a compute resource; types may contain unknown markers."""
    if res.type in (NODE_GROUP, MANAGED_NODE_GROUP):
        types = as_list(res.get("instanceTypes"))
        if not types and res.get("launchTemplate") is None:
            return "instanceTypes (default)", [_EKS_DEFAULT_INSTANCE_TYPE]
        return "instanceTypes", types
    if res.type == EKS_COMPONENT:
        if not eks_default_pool(res):
            return "instanceType", []
        chosen = res.get("nodeGroupOptions", "instanceType") or res.get("instanceType")
        return "instanceType", [chosen or _EKS_DEFAULT_INSTANCE_TYPE]
    if res.type in (LAUNCH_TEMPLATE, *INSTANCE_LIKE):
        return "instanceType", as_list(res.get("instanceType"))
    if res.type == BATCH_CE:
        if str(res.get("computeResources", "type", default="")).upper().startswith("FARGATE"):
            return "computeResources.instanceTypes", []
        return "computeResources.instanceTypes", as_list(res.get("computeResources", "instanceTypes"))
    if res.type == EMR_CLUSTER:
        return "instanceGroups", [
            res.get(group, "instanceType") for group in ("masterInstanceGroup", "coreInstanceGroup")
        ]
    return "", []


def _batch_type_allowed(entry: str, allowed: list[str]) -> bool:
    # Batch accepts families ("c5") and keywords ("optimal"): those cover many sizes, so they pass only
    # when the allow-list names them (or "family.*") explicitly.
    if "." in entry:
        return matches_any(entry, allowed)
    return entry.lower() in {a.lower() for a in allowed} or f"{entry.lower()}.*" in {a.lower() for a in allowed}


@resource_rule(
    RULES,
    id="CDAO-COST-001",
    name="Instance type outside the stack's allow-list",
    description=(
        "Node groups (aws and pulumi-eks shapes, including pulumi-eks's default node group), launch "
        "templates, instances, Batch compute environments and EMR clusters may use only the instance "
        "types allowed for the stack."
    ),
    remediation="Pick a type from allowedInstanceTypes for this stack, or extend the list in the pack config.",
    level="mandatory",
    types=(NODE_GROUP, MANAGED_NODE_GROUP, EKS_COMPONENT, LAUNCH_TEMPLATE, *INSTANCE_LIKE, BATCH_CE, EMR_CLUSTER),
    settings=("allowedInstanceTypes",),
)
def cost_001_instance_types(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    allowed = ctx.setting("allowedInstanceTypes")
    prop, types = instance_types(res)
    for t in iter_known(types):
        if not isinstance(t, str):
            continue
        ok = _batch_type_allowed(t, allowed) if res.type == BATCH_CE else matches_any(t, allowed)
        if not ok:
            yield f"{prop}: {t!r} is not allowed in stack {ctx.stack!r}"


def _pool_sizes(res: Resource) -> tuple[Any, Any]:
    if res.type in (NODE_GROUP, MANAGED_NODE_GROUP):
        return res.get("scalingConfig", "minSize"), res.get("scalingConfig", "maxSize")
    if res.type == ASG:
        return res.get("minSize"), res.get("maxSize")
    if res.type in EKS_SELF_MANAGED:
        return res.get("minSize", default=_EKS_DEFAULT_MIN), res.get("maxSize", default=_EKS_DEFAULT_MAX)
    opts = res.get("nodeGroupOptions") or {}
    lo = dig(opts, "minSize", where="nodeGroupOptions")
    hi = dig(opts, "maxSize", where="nodeGroupOptions")
    lo = res.get("minSize", default=_EKS_DEFAULT_MIN) if lo is None else lo
    hi = res.get("maxSize", default=_EKS_DEFAULT_MAX) if hi is None else hi
    return lo, hi


def _is_gpu_pool(res: Resource) -> bool:
    if to_bool(res.get("gpu")) or to_bool(res.get("nodeGroupOptions", "gpu")):
        return True
    ami = res.get("amiType")
    if isinstance(ami, str) and _GPU_AMI.search(ami):
        return True
    _, types = instance_types(res)
    return any(isinstance(t, str) and is_gpu_type(t) for t in iter_known(types))


@resource_rule(
    RULES,
    id="CDAO-COST-002",
    name="GPU pool keeps idle nodes or exceeds the stack's cap",
    description=(
        "A GPU node pool (by instance type, GPU AMI type or the pulumi-eks gpu flag) must scale from "
        "gpuPoolMinNodes (0 by default) and to at most gpuPoolMaxNodes for the stack; a GPU Batch compute "
        "environment must have minVcpus 0."
    ),
    remediation="Set the pool's minSize to 0 (the autoscaler adds nodes on demand) and maxSize within the cap.",
    level="mandatory",
    types=(NODE_GROUP, MANAGED_NODE_GROUP, EKS_COMPONENT, BATCH_CE),
    settings=("gpuPoolMaxNodes", "gpuPoolMinNodes"),
)
def cost_002_gpu_pool(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    cap, floor = ctx.setting("gpuPoolMaxNodes"), ctx.setting("gpuPoolMinNodes")
    if res.type == BATCH_CE:
        min_vcpus = to_number(res.get("computeResources", "minVcpus", default=0)) or 0
        if min_vcpus > 0 and _is_gpu_pool(res):
            yield f"GPU compute environment keeps {min_vcpus:g} vCPUs running (computeResources.minVcpus > 0)"
        return
    if res.type == EKS_COMPONENT and not eks_default_pool(res):
        return
    # GPU-ness first: an unknown size of a pool known to be CPU-only is none of this rule's business,
    # and an unknown GPU-ness matters only if the sizes break a GPU cap.
    unknown_gpu: UnknownValueFound | None = None
    try:
        if not _is_gpu_pool(res):
            return
    except UnknownValueFound as exc:
        unknown_gpu = exc
    lo, hi = (to_number(v) for v in _pool_sizes(res))
    problems = []
    if lo is not None and lo > floor:
        problems.append(f"min size {lo:g} > {floor}")
    if hi is not None and hi > cap:
        problems.append(f"max size {hi:g} > cap {cap} for stack {ctx.stack!r}")
    if problems and unknown_gpu is not None:
        raise unknown_gpu
    if problems:
        yield "GPU pool " + ", ".join(problems)


RDS_TYPES = ("aws:rds/instance:Instance", "aws:rds/clusterInstance:ClusterInstance")


@resource_rule(
    RULES,
    id="CDAO-COST-003",
    name="RDS instance class outside the stack's allow-list",
    description="RDS instances and Aurora cluster instances may use only the classes allowed for the stack.",
    remediation="Pick a class from allowedRdsInstanceClasses (e.g. db.t4g.medium, db.r6g.large).",
    level="mandatory",
    types=RDS_TYPES,
    settings=("allowedRdsInstanceClasses",),
)
def cost_003_rds_class(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    cls = res.get("instanceClass")
    if isinstance(cls, str) and not matches_any(cls, ctx.setting("allowedRdsInstanceClasses")):
        yield f"instanceClass {cls!r} is not allowed in stack {ctx.stack!r}"


@stack_rule(
    RULES,
    id="CDAO-COST-004",
    name="More NAT gateways than the stack allows",
    description="A stack may declare at most maxNatGateways NAT gateways (1 in dev: one shared egress is enough).",
    remediation="Share one NAT gateway across the dev AZs (Network args: single NAT), or raise maxNatGateways.",
    level="mandatory",
    settings=("maxNatGateways",),
)
def cost_004_nat_count(resources: list[Resource], ctx: Context) -> Iterator[Finding]:
    limit = ctx.setting("maxNatGateways")
    nats = [r for r in resources if r.type == "aws:ec2/natGateway:NatGateway"]
    if limit is not None and len(nats) > limit:
        names = ", ".join(r.name for r in nats)
        for nat in nats[int(limit) :]:
            yield Finding(f"{len(nats)} NAT gateways ({names}) > {limit} allowed in stack {ctx.stack!r}", nat)


# Types the platform creates that carry cost and accept tags; any other aws: resource with a
# `tags` prop is checked too.
TAGGABLE = frozenset(
    {
        "aws:ec2/vpc:Vpc",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/eip:Eip",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:ec2/instance:Instance",
        "aws:ec2/flowLog:FlowLog",
        "aws:eks/cluster:Cluster",
        "aws:eks/nodeGroup:NodeGroup",
        EKS_COMPONENT,
        MANAGED_NODE_GROUP,
        "aws:rds/instance:Instance",
        "aws:rds/cluster:Cluster",
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "aws:efs/fileSystem:FileSystem",
        "aws:ebs/volume:Volume",
        "aws:ecr/repository:Repository",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:kms/key:Key",
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        BATCH_CE,
        "aws:batch/jobQueue:JobQueue",
        EMR_CLUSTER,
        "aws:emrserverless/application:Application",
        "aws:sagemaker/domain:Domain",
        "aws:sagemaker/notebookInstance:NotebookInstance",
        "aws:sagemaker/endpoint:Endpoint",
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        "aws:sagemaker/model:Model",
        "aws:lb/loadBalancer:LoadBalancer",
        "aws:secretsmanager/secret:Secret",
    }
)


def _is_taggable(res: Resource) -> bool:
    if res.type in TAGGABLE:
        return True
    return res.type.startswith("aws:") and not res.type.startswith("aws:iam/") and "tags" in res.props


@resource_rule(
    RULES,
    id="CDAO-COST-005",
    name="Taggable resource missing team/cost-center/environment tags",
    description="Every taggable AWS resource carries the requiredTags (cost allocation and ownership).",
    remediation="Add the tags (the platform's tag helper sets environment, team, cost-center, managed-by).",
    level="mandatory",
    types=(),
    settings=("requiredTags",),
)
def cost_005_tags(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    if not _is_taggable(res):
        return
    present: set[str] = set()
    pending: UnknownValueFound | None = None
    for prop in ("tags", "tagsAll"):
        try:
            tags = res.get(prop) or {}
        except UnknownValueFound as exc:
            pending = exc
            continue
        if isinstance(tags, list):
            # aws.autoscaling.Group's `tags` is a list of {key, value, propagateAtLaunch}
            # (pulumi_aws/autoscaling/_inputs.py, GroupTagArgs), not a map.
            pairs: dict[Any, Any] = {}
            for i, item in enumerate(tags):
                if isinstance(item, dict) and isinstance(item.get("key"), str):
                    pairs[item["key"]] = item.get("value")
                elif item is not None:
                    pending = pending or UnknownValueFound(f"{prop}[{i}]")
            tags = pairs
        if isinstance(tags, dict):
            for key, value in tags.items():
                if isinstance(value, str) and value.strip():
                    present.add(key)
                elif value is not None and not isinstance(value, str):
                    pending = pending or UnknownValueFound(f"{prop}.{key}")
    missing = [t for t in ctx.setting("requiredTags") if t not in present]
    if missing and pending is not None:
        yield pending
    elif missing:
        yield f"missing tags {missing}"


_OLD_VOLUME_TYPES = ("gp2", "io1")


@resource_rule(
    RULES,
    id="CDAO-COST-006",
    name="gp2/io1 EBS volume where gp3/io2 is cheaper",
    description=(
        "EBS volumes (a volume without a type defaults to gp2), launch-template and instance block devices, "
        "and the pulumi-eks node root volume use gp2 or io1; gp3 is ~20% cheaper than gp2 and io2 gives "
        "more durability than io1 for the same price."
    ),
    remediation="Set the volume type to gp3 (or io2 where provisioned IOPS are needed).",
    level="advisory",
    types=("aws:ebs/volume:Volume", LAUNCH_TEMPLATE, *INSTANCE_LIKE, EKS_COMPONENT),
)
def cost_006_volume_type(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    found: list[tuple[str, Any]] = []
    if res.type == "aws:ebs/volume:Volume":
        found.append(("type", res.get("type", default="gp2")))
    elif res.type == LAUNCH_TEMPLATE:
        for i, bdm in enumerate(as_list(res.get("blockDeviceMappings"))):
            found.append((f"blockDeviceMappings[{i}].ebs.volumeType", dig(bdm, "ebs", "volumeType")))
    elif res.type in INSTANCE_LIKE:
        found.append(("rootBlockDevice.volumeType", res.get("rootBlockDevice", "volumeType")))
        for i, dev in enumerate(as_list(res.get("ebsBlockDevices"))):
            found.append((f"ebsBlockDevices[{i}].volumeType", dig(dev, "volumeType")))
    elif res.type == EKS_COMPONENT and eks_default_pool(res):
        found.append(("nodeRootVolumeType", res.get("nodeRootVolumeType")))
        found.append(("nodeGroupOptions.nodeRootVolumeType", res.get("nodeGroupOptions", "nodeRootVolumeType")))
    for path, vtype in found:
        if isinstance(vtype, str) and vtype.lower() in _OLD_VOLUME_TYPES:
            yield f"{path} is {vtype!r}"


@resource_rule(
    RULES,
    id="CDAO-COST-007",
    name="CloudWatch log group without retention",
    description="A log group without retentionInDays (or 0) keeps logs forever and its cost grows without bound.",
    remediation="Set retentionInDays (e.g. 30 in dev, 90-365 in prod).",
    level="mandatory",
    types=("aws:cloudwatch/logGroup:LogGroup",),
)
def cost_007_log_retention(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    days = to_number(res.get("retentionInDays", default=0))
    if not days:
        yield "retentionInDays is not set: logs are kept forever"


def _enabled_rules(rules: Any, status_key: str) -> bool:
    for rule in iter_known(as_list(rules)):
        if not isinstance(rule, dict):
            continue
        flag = dig(rule, status_key)
        if flag is True or (isinstance(flag, str) and flag.lower() == "enabled"):
            return True
    return False


@stack_rule(
    RULES,
    id="CDAO-COST-008",
    name="S3 bucket without lifecycle rules",
    description=(
        "A bucket has no enabled lifecycle rule, inline (lifecycleRules) or through a "
        "BucketLifecycleConfiguration(V2) whose `bucket` names it, so objects and old versions accumulate."
    ),
    remediation="Add a BucketLifecycleConfiguration with an enabled rule (expiry, transition, abort multipart).",
    level="advisory",
)
def cost_008_bucket_lifecycle(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    yield from bucket_findings(
        resources,
        "bucketLifecycleConfiguration",
        inline_ok=lambda b: _enabled_rules(b.get("lifecycleRules"), "enabled"),
        child_ok=lambda c: _enabled_rules(c.get("rules"), "status"),
        missing_message="no enabled lifecycle rule",
    )


@stack_rule(
    RULES,
    id="CDAO-COST-009",
    name="Estimated monthly peak cost exceeds the stack's budget",
    description=(
        "The stack's estimated monthly peak (every pool at its max size), from the same price table as "
        "`cdao plan`, must not exceed budgetUsdMonth for the stack."
    ),
    remediation="Lower pool max sizes or instance sizes, or raise budgetUsdMonth after approval.",
    level="mandatory",
    settings=("budgetUsdMonth",),
)
def cost_009_budget(resources: list[Resource], ctx: Context) -> Iterator[Finding]:
    budget = ctx.setting("budgetUsdMonth")
    estimator = ctx.estimator or estimate_cost
    plain = [resource(r.type, r.name, denormalize(r.props)) for r in resources]
    try:
        estimate = estimator(plain)
    except (TypeError, ValueError) as exc:
        # The price table reads numbers (sizes, counts) that may still be unknown at preview; only
        # then is a failed estimate "cannot verify". Otherwise it is a real error and fails closed.
        if UNKNOWN_TOKEN not in json.dumps([p["props"] for p in plain], default=str):
            raise
        yield Finding(f"cannot verify: the estimate needs values unknown at preview ({exc})", None, unknown=True)
        return
    peak = estimate.peak_usd_month
    if isinstance(peak, str) or peak is None:
        yield Finding("cannot verify: the estimated peak cost is unknown at preview", None, unknown=True)
        return
    if float(peak) > float(budget):
        yield Finding(
            f"estimated peak {float(peak):,.0f} USD/month exceeds the {ctx.stack!r} budget of "
            f"{float(budget):,.0f} USD/month",
            None,
        )


@resource_rule(
    RULES,
    id="CDAO-COST-010",
    name="EMR cluster without idle auto-termination",
    description=(
        "An EMR cluster that stays alive when it has no steps (keepJobFlowAliveWhenNoSteps defaults to true) "
        "and has no autoTerminationPolicy.idleTimeout keeps billing every instance while idle."
    ),
    remediation="Set autoTerminationPolicy={'idleTimeout': 3600} or keepJobFlowAliveWhenNoSteps=false.",
    level="advisory",
    types=(EMR_CLUSTER,),
)
def cost_010_emr_idle(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if to_bool(res.get("keepJobFlowAliveWhenNoSteps", default=True)) is False:
        return
    if not to_number(res.get("autoTerminationPolicy", "idleTimeout", default=0)):
        yield "stays up when idle: no autoTerminationPolicy.idleTimeout"


@resource_rule(
    RULES,
    id="CDAO-COST-011",
    name="EMR Serverless application with unbounded capacity or no auto-stop",
    description=(
        "An EMR Serverless application without maximumCapacity can scale (and bill) without limit, and one "
        "with autoStopConfiguration.enabled=false keeps its pre-initialized capacity running when idle."
    ),
    remediation="Set maximumCapacity {cpu, memory} for the stack's budget and keep auto-stop enabled.",
    level="mandatory",
    types=("aws:emrserverless/application:Application",),
)
def cost_011_emr_serverless(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if res.get("maximumCapacity") is None:
        yield "no maximumCapacity: scaling is unbounded"
    if to_bool(res.get("autoStopConfiguration", "enabled", default=True)) is False:
        yield "autoStopConfiguration.enabled is false"


# pulumi-kubernetes registers a CustomResource as f"kubernetes:{apiVersion}:{kind}"
# (pulumi_kubernetes/apiextensions/CustomResource.py); Karpenter's NodePool is karpenter.sh v1 (and
# v1beta1 before Karpenter 1.0).
KARPENTER_NODE_POOLS = ("kubernetes:karpenter.sh/v1:NodePool", "kubernetes:karpenter.sh/v1beta1:NodePool")


@resource_rule(
    RULES,
    id="CDAO-COST-012",
    name="Node pool may scale past the stack's cap",
    description=(
        "Every node pool -- aws.eks.NodeGroup and pulumi-eks ManagedNodeGroup (scalingConfig.maxSize), "
        "pulumi-eks NodeGroup/NodeGroupV2 (maxSize, default 2), pulumi-eks's default node group, and an EC2 "
        "Auto Scaling group -- has a maxSize of at most nodePoolMaxNodes for the stack, CPU pools included "
        "(GPU pools also meet gpuPoolMaxNodes). The budget rule prices the peak, but a cheap pool allowed "
        "hundreds of nodes stays under a budget sized for GPUs. A Karpenter NodePool declared with "
        "pulumi-kubernetes has no node count; it must at least set spec.limits (cpu, memory), without which "
        "it provisions without bound (https://karpenter.sh/docs/concepts/nodepools/, 'spec.limits')."
    ),
    remediation=(
        "Lower the pool's maxSize to the stack's nodePoolMaxNodes, or raise the cap in the pack config; give a "
        "Karpenter NodePool spec.limits."
    ),
    level="mandatory",
    types=(NODE_GROUP, MANAGED_NODE_GROUP, EKS_COMPONENT, *EKS_SELF_MANAGED, ASG, *KARPENTER_NODE_POOLS),
    settings=("nodePoolMaxNodes",),
)
def cost_012_pool_cap(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    if res.type in KARPENTER_NODE_POOLS:
        if not res.get("spec", "limits"):
            yield "Karpenter NodePool without spec.limits: it may launch nodes without bound"
        return
    if res.type == EKS_COMPONENT and not eks_default_pool(res):
        return
    cap = ctx.setting("nodePoolMaxNodes")
    hi = to_number(_pool_sizes(res)[1])
    if hi is not None and hi > cap:
        yield f"max size {hi:g} > cap {cap} for stack {ctx.stack!r}"


# The cluster autoscaler's AWS provider treats a node carrying this label as not ready until its GPUs
# are allocatable, so it does not add a second node while the first one's device plugin starts
# (kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/aws_cloud_provider.go, GPULabel;
# cloudprovider/aws/README.md). The GPU operator's MIG manager reads nvidia.com/mig.config: a MIG pool
# with the mixed strategy advertises nvidia.com/mig-* resources, never nvidia.com/gpu, so the label
# would keep its nodes "not ready" forever (NVIDIA gpu-operator docs, GPU Operator with MIG).
_NVIDIA_FAMILY = re.compile(r"^(p\d|g\d|gr\d)", re.IGNORECASE)
# G4ad carries AMD Radeon Pro V520 GPUs, not NVIDIA (EC2 accelerated computing instance types,
# https://aws.amazon.com/ec2/instance-types/g4/); Inferentia/Trainium (inf*, trn*) run EKS's AL2 "GPU"
# AMI too (EKS User Guide, eks-optimized-ami: AL2_x86_64_GPU is the accelerated AMI for NVIDIA and
# Neuron), so neither that AMI type nor the g* prefix alone says NVIDIA.
_NON_NVIDIA_FAMILY = re.compile(r"^(g4ad)\b", re.IGNORECASE)


def _nvidia_type(instance_type: str) -> bool:
    family = instance_type.split(".", 1)[0]
    return bool(_NVIDIA_FAMILY.match(family)) and not _NON_NVIDIA_FAMILY.match(family)


@resource_rule(
    RULES,
    id="CDAO-COST-013",
    name="NVIDIA GPU node group without the autoscaler's accelerator label",
    description=(
        "An EKS node group of NVIDIA GPU instances (p*, g* but g4ad, which is AMD; or an *_NVIDIA AMI type; "
        "AL2_x86_64_GPU also serves Inferentia/Trainium, so it counts only with NVIDIA types) lacks the node label "
        "k8s.amazonaws.com/accelerator, the label the cluster autoscaler's AWS provider uses to wait for the "
        "GPUs to be advertised (kubernetes/autoscaler cloudprovider/aws/aws_cloud_provider.go GPULabel); "
        "until then a pending GPU pod looks unschedulable and a second node is bought. MIG pools "
        "(label nvidia.com/mig.config) are exempt."
    ),
    remediation="Add labels {'k8s.amazonaws.com/accelerator': '<gpu model, e.g. nvidia-a100>'} to the node group.",
    level="advisory",
    types=(NODE_GROUP, MANAGED_NODE_GROUP),
)
def cost_013_gpu_accelerator_label(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    # Only NVIDIA pools: the label makes the autoscaler wait for nvidia.com/gpu, which AMD (g4ad) and
    # Neuron (inf*, trn*) nodes never advertise, so there it would block scale-up for good.
    ami = res.get("amiType")
    if not (isinstance(ami, str) and re.search("NVIDIA", ami, re.IGNORECASE)):
        _, types = instance_types(res)
        if not any(isinstance(t, str) and _nvidia_type(t) for t in iter_known(types)):
            return
    labels = res.get("labels") or {}
    if MIG_CONFIG_LABEL in labels or ACCELERATOR_LABEL in labels:
        return
    yield f"GPU node group without the {ACCELERATOR_LABEL} label: the autoscaler may add a node per pending pod"

"""One EKS managed node group per pool, with its launch template and autoscaler hints.

Plain aws.eks.NodeGroup + aws.ec2.LaunchTemplate rather than pulumi-eks's node-group components:
those register as one opaque resource, hiding instance types, sizes and metadata options from the
policy pack and the cost estimate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from cdao_pools import (
    ACCELERATOR_LABEL,
    DEVICE_PLUGIN_CONFIG_LABEL,
    EKS_TAINT_EFFECT,
    GPU_RESOURCE,
    GPU_SHARING_LABEL,
    MIG_CONFIG_LABEL,
    NODE_POOL_LABEL,
    mig_resource_name,
    workload_label,
)

from cdao_catalog.instances import INSTANCE_TYPES
from infra.config import NodePoolConfig


def pool_labels(pool_name: str, pool: NodePoolConfig) -> dict[str, str]:
    """Every Kubernetes label a pool's nodes carry; the SDK, Flyte and the GPU stack select on these."""
    labels = {NODE_POOL_LABEL: pool_name, GPU_SHARING_LABEL: pool.gpu_sharing.mode}
    labels.update({workload_label(w): "true" for w in pool.workload_types})
    if pool.gpu_sharing.mode == "mig":
        labels[MIG_CONFIG_LABEL] = mig_layout_name(pool_name)
    elif pool.gpu_sharing.mode == "time-slicing":
        labels[DEVICE_PLUGIN_CONFIG_LABEL] = pool_name
    kind = INSTANCE_TYPES[pool.instance_types[0]]
    if kind.is_gpu and pool.gpu_sharing.mode != "mig":
        # Not on MIG pools: the mixed strategy advertises only nvidia.com/mig-*, never nvidia.com/gpu,
        # so with this label the autoscaler would never see the node become ready. The value names
        # the GPU (the README's `<gpu-type>`); the autoscaler reads only that the label is there.
        labels[ACCELERATOR_LABEL] = f"nvidia-{(kind.gpu_model or '').lower()}"
    labels.update(pool.labels)
    return labels


def mig_layout_name(pool_name: str) -> str:
    return f"cdao-{pool_name}"


def time_slicing_configs(pools: Mapping[str, NodePoolConfig]) -> str:
    """The device-plugin configs the GPU operator must hold, as the cluster Secret annotation
    `cdao.io/gpu-time-slicing` carries them: `<config>=<replicas>` per time-sliced pool, comma-separated
    (`a100-timeslice=4,h100-timeslice=3`; "" for none). `<config>` is the pool's
    nvidia.com/device-plugin.config label (pool_labels), `<replicas>` its gpuSharing.replicas."""
    return ",".join(
        f"{pool_labels(name, pool)[DEVICE_PLUGIN_CONFIG_LABEL]}={pool.gpu_sharing.replicas}"
        for name, pool in sorted(pools.items())
        if pool.gpu_sharing.mode == "time-slicing"
    )


def mig_layouts(pools: Mapping[str, NodePoolConfig]) -> str:
    """The MIG layouts the MIG manager must hold, as the cluster Secret annotation
    `cdao.io/gpu-mig-layouts` carries them: `<layout>=<profile>:<count>;...` per MIG pool,
    comma-separated (`cdao-a100-mig=1g.10gb:2;2g.20gb:1;3g.40gb:1`; "" for none). `<layout>` is the
    pool's nvidia.com/mig.config label (pool_labels); the counts are of gpuSharing.migProfiles per GPU."""
    layouts = []
    for name, pool in sorted(pools.items()):
        if pool.gpu_sharing.mode == "mig":
            counts = Counter(pool.gpu_sharing.mig_profiles)
            slices = ";".join(f"{profile}:{count}" for profile, count in counts.items())
            layouts.append(f"{pool_labels(name, pool)[MIG_CONFIG_LABEL]}={slices}")
    return ",".join(layouts)


def gpu_resources(pool: NodePoolConfig) -> dict[str, int]:
    """Extended resources one node of the pool advertises once the GPU stack has configured it."""
    kind = INSTANCE_TYPES[pool.instance_types[0]]
    if not kind.is_gpu:
        return {}
    sharing = pool.gpu_sharing
    if sharing.mode == "time-slicing":
        return {GPU_RESOURCE: kind.gpu_count * (sharing.replicas or 1)}
    if sharing.mode == "mig":
        counts: dict[str, int] = {}
        for profile in sharing.mig_profiles:
            counts[mig_resource_name(profile)] = counts.get(mig_resource_name(profile), 0) + kind.gpu_count
        return counts
    return {GPU_RESOURCE: kind.gpu_count}


@dataclass(frozen=True)
class NodePoolArgs:
    pool_name: str
    pool: NodePoolConfig
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    node_security_group_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    # What the node group waits for beyond its inputs (the node networking add-ons); a dependsOn on
    # this component would not reach its children.
    depends_on: Sequence[pulumi.Resource] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class NodePool(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodePoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:NodePool", name, None, opts)
        pool, pool_name = args.pool, args.pool_name
        kind = INSTANCE_TYPES[pool.instance_types[0]]
        tags = {**args.tags, NODE_POOL_LABEL: pool_name}

        template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            name=pulumi.Output.concat(args.cluster_name, f"-{pool_name}"),
            description=f"Nodes of pool {pool_name}",
            update_default_version=True,
            # IMDSv2 only, one hop: pods cannot reach the node's instance credentials, so workloads
            # must use their own IRSA role instead of borrowing the node's.
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=pool.disk_size_gb, volume_type="gp3", encrypted="true", delete_on_termination="true"
                    ),
                )
            ],
            vpc_security_group_ids=[args.node_security_group_id],
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind_, tags=tags)
                for kind_ in ("instance", "volume")
            ],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

        labels = pool_labels(pool_name, pool)
        group = aws.eks.NodeGroup(
            f"{name}-ng",
            cluster_name=args.cluster_name,
            node_group_name_prefix=f"{pool_name}-",
            node_role_arn=args.node_role_arn,
            subnet_ids=list(args.subnet_ids),
            instance_types=list(pool.instance_types),
            capacity_type=pool.capacity_type,
            ami_type="AL2023_x86_64_NVIDIA" if kind.is_gpu else "AL2023_x86_64_STANDARD",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=pool.min_size, desired_size=pool.initial_size, max_size=pool.max_size
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable_percentage=25),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                name=template.name, version=template.latest_version.apply(str)
            ),
            labels=labels,
            taints=[
                aws.eks.NodeGroupTaintArgs(key=t.key, value=t.value or None, effect=EKS_TAINT_EFFECT[t.effect])
                for t in pool.taints
            ],
            tags={
                **tags,
                "k8s.io/cluster-autoscaler/enabled": "true",
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.depends_on),
                # The autoscaler owns the running size; Pulumi only sets where the pool starts.
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )

        # Managed node groups do not copy their tags to the Auto Scaling group, and the cluster
        # autoscaler can only scale a pool up from zero if the ASG itself says which labels, taints
        # and GPU resources a new node would have: so the node-template tags go on the ASG.
        template_tags = {f"k8s.io/cluster-autoscaler/node-template/label/{k}": v for k, v in labels.items()}
        template_tags.update(
            {f"k8s.io/cluster-autoscaler/node-template/taint/{t.key}": f"{t.value}:{t.effect}" for t in pool.taints}
        )
        template_tags.update(
            {f"k8s.io/cluster-autoscaler/node-template/resources/{r}": str(n) for r, n in gpu_resources(pool).items()}
        )
        asg_name = group.resources.apply(lambda res: res[0].autoscaling_groups[0].name)
        for key, value in sorted(template_tags.items()):
            aws.autoscaling.Tag(
                f"{name}-asg-tag-{_tag_slug(key)}",
                autoscaling_group_name=asg_name,
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=pulumi.ResourceOptions(parent=group),
            )

        self.node_group = group
        self.node_group_name = group.node_group_name
        self.register_outputs({"nodeGroupName": group.node_group_name, "launchTemplateId": template.id})


def _tag_slug(key: str) -> str:
    # Logical names must be stable and unique per tag: derive them from the tag key, never an index.
    return key.removeprefix("k8s.io/cluster-autoscaler/node-template/").replace("/", "-")

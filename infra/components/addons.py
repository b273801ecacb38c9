"""EKS managed add-ons: pod networking, DNS, kube-proxy and the EBS/EFS storage drivers.

Managed by EKS rather than by Argo CD: EKS picks builds compatible with the cluster's Kubernetes
version and upgrades them with it. The three that call AWS APIs run as their own IRSA roles.

They come in two groups because of what they run on. The node networking add-ons (DaemonSets) must
exist before any node group: the node role lacks AmazonEKS_CNI_Policy, so a node's CNI works only
through the vpc-cni add-on's IRSA role (EKS user guide, create-node-role and cni-iam-role;
terraform-aws-eks #1910 and its `before_compute`). The others run Deployments, which EKS reports
DEGRADED, and Pulumi times out on, while no node can schedule them: they come after the first pool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.config import EKS_ADDON_NAMES

# Add-on name -> contract role whose IRSA role it runs as; the others call no AWS API.
ADDON_ROLES: dict[str, str] = {"vpc-cni": "vpc-cni", "aws-ebs-csi-driver": "ebs-csi", "aws-efs-csi-driver": "efs-csi"}

NODE_NETWORKING_ADDONS = ("vpc-cni", "kube-proxy")
WORKLOAD_ADDONS = tuple(a for a in EKS_ADDON_NAMES if a not in NODE_NETWORKING_ADDONS)

# The VPC CNI's network-policy agent is what enforces platform/'s NetworkPolicies; without it
# they are accepted by the API and silently do nothing.
_CONFIGURATION = {"vpc-cni": {"enableNetworkPolicy": "true"}}


@dataclass(frozen=True)
class ClusterAddonsArgs:
    # An Output of the control plane, so each add-on waits for the cluster (Cluster.name).
    cluster_name: pulumi.Input[str]
    addons: Sequence[str]
    role_arns: Mapping[str, pulumi.Input[str]]
    versions: Mapping[str, str]
    # What every add-on waits for (a dependsOn on this component would not reach its children).
    depends_on: Sequence[pulumi.Resource] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class ClusterAddons(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:ClusterAddons", name, None, opts)
        self.addons: list[aws.eks.Addon] = []
        for addon in args.addons:
            role = ADDON_ROLES.get(addon)
            configuration = _CONFIGURATION.get(addon)
            resource = aws.eks.Addon(
                f"{name}-{addon}",
                cluster_name=args.cluster_name,
                addon_name=addon,
                addon_version=args.versions.get(addon),
                service_account_role_arn=args.role_arns[role] if role else None,
                configuration_values=json.dumps(configuration) if configuration else None,
                # EKS bootstraps self-managed vpc-cni, coredns and kube-proxy with the cluster; the
                # managed add-ons take them over instead of failing on the existing objects.
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                tags=dict(args.tags),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
            )
            self.addons.append(resource)
        self.register_outputs({})

"""EKS managed add-ons: pod networking, DNS, kube-proxy and the EBS/EFS storage drivers.

Managed by EKS rather than by Argo CD: EKS picks builds compatible with the cluster's Kubernetes
version and upgrades them with it. The three that call AWS APIs run as their own IRSA roles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.config import EKS_ADDON_NAMES

# Add-on name -> contract role whose IRSA role it runs as; the others call no AWS API.
ADDON_ROLES: dict[str, str] = {"vpc-cni": "vpc-cni", "aws-ebs-csi-driver": "ebs-csi", "aws-efs-csi-driver": "efs-csi"}

# The VPC CNI's network-policy agent is what enforces platform/'s NetworkPolicies; without it
# they are accepted by the API and silently do nothing.
_CONFIGURATION = {"vpc-cni": {"enableNetworkPolicy": "true"}}


@dataclass(frozen=True)
class ClusterAddonsArgs:
    cluster_name: str
    role_arns: Mapping[str, pulumi.Input[str]]
    versions: Mapping[str, str]
    tags: Mapping[str, str] = field(default_factory=dict)


class ClusterAddons(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:ClusterAddons", name, None, opts)
        for addon in EKS_ADDON_NAMES:
            role = ADDON_ROLES.get(addon)
            configuration = _CONFIGURATION.get(addon)
            aws.eks.Addon(
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
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})

"""The EKS control plane (pulumi-eks) and the IAM role its managed node groups share."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks

from infra.lib.shared import kept_on_teardown, rotating_key

# AWS-managed policies every EKS worker needs to join the cluster and pull images. The VPC CNI's
# policy is deliberately absent: it goes to the aws-node service account through IRSA instead, so a
# compromised pod cannot rewrite the node's network interfaces with the node's own role.
NODE_MANAGED_POLICIES = {
    "worker": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "ecr-read": "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "ssm": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
}


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    endpoint_public_access: bool
    public_access_cidrs: Sequence[str]
    enabled_log_types: Sequence[str]
    log_retention_days: int
    # Cluster admins besides the creator, whose entry EKS creates itself (pulumi-eks sets
    # bootstrapClusterCreatorAdminPermissions: true, nodejs/eks/cluster/cluster.ts).
    admin_role_arns: Sequence[str]
    preview_role_arns: Sequence[str] = ()
    # Clients of the private endpoint: ingress on 443 to the cluster security group.
    private_access_cidrs: Sequence[str] = ()
    private_access_security_group_ids: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    # Every stack but dev: the control-plane log group (audit records) is protected.
    keep_on_teardown: bool = False


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[object]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        secrets_key = rotating_key(
            f"{name}-secrets",
            f"Envelope encryption of Kubernetes Secrets in {args.cluster_name}",
            f"{args.cluster_name}-secrets",
            {**tags, "Name": f"{args.cluster_name}-secrets"},
            child,
        )

        # EKS creates this group itself on first log write with retention "never expire"; owning it
        # first is the only way to bound how long (and how expensively) control-plane logs are kept.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane",
            name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=args.log_retention_days,
            tags=tags,
            opts=kept_on_teardown(child, args.keep_on_teardown),
        )

        self.node_role = aws.iam.Role(
            f"{name}-node",
            description=f"EC2 nodes of {args.cluster_name}'s managed node groups",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags=tags,
            opts=child,
        )
        for purpose, arn in NODE_MANAGED_POLICIES.items():
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{purpose}",
                role=self.node_role.name,
                policy_arn=arn,
                opts=pulumi.ResourceOptions(parent=self.node_role),
            )

        access_entries = {
            f"admin-{index}": eks.AccessEntryArgs(
                principal_arn=arn,
                access_policies={
                    "cluster-admin": eks.AccessPolicyAssociationArgs(
                        policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                        access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                    )
                },
            )
            for index, arn in enumerate(args.admin_role_arns)
        }
        # Preview roles get an entry and no access policy: authenticated, they read discovery and
        # OpenAPI (ClusterRole system:discovery), and nothing else. pulumi-kubernetes previews objects
        # by server-side dry run, which Kubernetes authorizes like the write itself, and falls back to a
        # client-side preview when it is Forbidden (pulumi/pulumi-kubernetes
        # provider/pkg/provider/provider.go, Create/Update); a Helm release previews without the cluster
        # (helm_release.go). Write rights in `argocd` would let a pull request's code rewrite Argo CD,
        # or act as its service accounts (Kubernetes `edit`), and so administer the whole cluster.
        access_entries.update(
            {
                f"preview-{index}": eks.AccessEntryArgs(principal_arn=arn)
                for index, arn in enumerate(args.preview_role_arns)
            }
        )

        cluster = eks.Cluster(
            f"{name}-eks",
            # The name reaches the control plane through the log group: a dependsOn on this remote
            # component is not passed on to the aws.eks.Cluster inside it, and EKS would otherwise
            # create the group first (retention "never expire") and ours would fail as existing.
            name=log_group.name.apply(lambda _: args.cluster_name),
            version=args.kubernetes_version,
            vpc_id=args.vpc_id,
            private_subnet_ids=list(args.private_subnet_ids),
            node_associate_public_ip_address=False,
            endpoint_private_access=True,
            endpoint_public_access=args.endpoint_public_access,
            public_access_cidrs=list(args.public_access_cidrs) if args.endpoint_public_access else None,
            encryption_config_key_arn=secrets_key.arn,
            enabled_cluster_log_types=list(args.enabled_log_types),
            # Access entries, not the aws-auth ConfigMap: managed through the EKS API, auditable in
            # CloudTrail, and not lost when someone edits a ConfigMap by hand.
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=access_entries or None,
            create_oidc_provider=True,
            # Node pools are plain aws.eks.NodeGroup resources (infra/components/node_pool.py), so
            # policies and the cost estimate see them; no default node group of pulumi-eks's own.
            skip_default_node_group=True,
            # VPC CNI, CoreDNS and kube-proxy become EKS managed add-ons in infra/components/addons.py,
            # where the CNI can run as its own IRSA role, which needs this cluster's OIDC provider first.
            use_default_vpc_cni=True,
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=False),
            tags=tags,
            cluster_tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )

        # pulumi-eks puts its own cluster security group on the control plane's ENIs and admits 443
        # only from the node security group (pulumi/pulumi-eks nodejs/eks/cluster/cluster.ts
        # `eksClusterSecurityGroup`, vpcConfig.securityGroupIds; nodejs/eks/nodes/securitygroup.ts
        # `eksClusterIngressRule`, unchanged since 3328fbef, so as in 4.4.0): any other client of the
        # private endpoint needs its own rule here. Of pulumi-eks's kind, aws.ec2.SecurityGroupRule
        # (as its eksClusterIngressRule and cluster.ts eksClusterInternetEgressRule on this group):
        # pulumi_aws's ec2.SecurityGroupRule warns that mixing it with vpc.SecurityGroupIngressRule
        # on one group causes rule conflicts and overwritten rules. One source per rule, as it advises.
        api_clients = [("cidr", str(c), {"cidr_blocks": [str(c)]}) for c in args.private_access_cidrs] + [
            ("sg", g, {"source_security_group_id": g}) for g in args.private_access_security_group_ids
        ]
        self.api_access_rules = [
            aws.ec2.SecurityGroupRule(
                f"{name}-api-from-{kind}-{source.replace('/', '-')}",
                type="ingress",
                security_group_id=cluster.cluster_security_group_id,
                description=f"Kubernetes API (private endpoint) from {source}",
                protocol="tcp",
                from_port=443,
                to_port=443,
                opts=pulumi.ResourceOptions(parent=self),
                **peer,
            )
            for kind, source, peer in api_clients
        ]

        # The name as an Output of the control plane, not the plain string: node groups, add-ons and
        # anything else that takes it then wait for the cluster instead of racing its creation.
        self.name = cluster.urn.apply(lambda _: args.cluster_name)
        self.kubeconfig = cluster.kubeconfig
        self.oidc_provider_arn = cluster.oidc_provider_arn
        # The issuer without `https://`: what IAM names the provider by and what IRSA trust policies
        # key their conditions on (pulumi_eks Cluster.oidc_issuer; oidc_provider_url carries the scheme).
        self.oidc_issuer = cluster.oidc_issuer
        self.node_security_group_id = cluster.node_security_group_id
        self.cluster_security_group_id = cluster.cluster_security_group_id
        self.node_role_arn = self.node_role.arn
        self.secrets_key_arn = secrets_key.arn
        self.control_plane_log_group_name = log_group.name
        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        self.stack_outputs: dict[str, Any] = {
            "clusterName": args.cluster_name,
            "kubeconfig": pulumi.Output.secret(self.kubeconfig),
            "oidcProviderArn": self.oidc_provider_arn,
        }
        # Its entry in the stack output `logGroups` (what `cdao doctor` checks retention against).
        self.log_groups = {
            "controlPlane": {"name": self.control_plane_log_group_name, "retentionDays": args.log_retention_days}
        }
        self.register_outputs(
            {
                "name": self.name,
                "oidcProviderArn": self.oidc_provider_arn,
                "oidcIssuer": self.oidc_issuer,
                "nodeRoleArn": self.node_role_arn,
                "nodeSecurityGroupId": self.node_security_group_id,
                "secretsKeyArn": self.secrets_key_arn,
            }
        )

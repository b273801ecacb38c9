"""Wires the platform's components together; each AWS concern is one ComponentResource.

Order follows the data flow of DESIGN.md: network -> cluster and node pools -> data -> identity ->
compute back-ends -> GitOps bootstrap. Nothing is declared at import time: `build` is called by
infra/__main__.py under the engine and by the offline plan under mocks, with the same config.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from infra.components.cluster import Cluster, ClusterArgs
from infra.components.network import Network, NetworkArgs
from infra.components.node_pool import NodePool, NodePoolArgs
from infra.config import StackConfig


def cluster_name(config: StackConfig) -> str:
    return f"cdao-{config.stack}"


def build(config: StackConfig, secrets: Mapping[str, str]) -> None:
    net = config.network
    network = Network(
        "network",
        NetworkArgs(
            region=config.region,
            vpc_cidr=str(net.vpc_cidr),
            availability_zones=config.azs,
            public_subnet_cidrs=config.subnet_cidrs("public"),
            private_subnet_cidrs=config.subnet_cidrs("private"),
            database_subnet_cidrs=config.subnet_cidrs("database"),
            single_nat_gateway=net.nat_gateways == "single",
            flow_log_retention_days=net.flow_log_retention_days,
            interface_endpoints=net.interface_endpoints,
            cluster_name=cluster_name(config),
            tags=config.tags,
        ),
    )

    spec = config.cluster
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            cluster_name=cluster_name(config),
            kubernetes_version=spec.kubernetes_version,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            endpoint_public_access=spec.endpoint_public_access,
            public_access_cidrs=[str(c) for c in spec.public_access_cidrs],
            enabled_log_types=list(spec.enabled_log_types),
            log_retention_days=spec.log_retention_days,
            admin_role_arns=list(spec.admin_role_arns),
            tags=config.tags,
        ),
    )
    for pool_name, pool in config.enabled_pools.items():
        NodePool(
            f"pool-{pool_name}",
            NodePoolArgs(
                pool_name=pool_name,
                pool=pool,
                cluster_name=cluster.name,
                node_role_arn=cluster.node_role_arn,
                node_security_group_id=cluster.node_security_group_id,
                subnet_ids=network.private_subnet_ids,
                tags=config.tags,
            ),
            # A node group can only join once the control plane and its access configuration exist.
            opts=pulumi.ResourceOptions(depends_on=[cluster]),
        )

    pulumi.export("region", config.region)
    pulumi.export("clusterName", cluster.name)
    pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
    pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("databaseSubnetIds", network.database_subnet_ids)

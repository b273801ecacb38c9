"""Wires the platform's components together; each AWS concern is one ComponentResource.

Order follows the data flow of DESIGN.md: network -> cluster and node pools -> data -> identity ->
compute back-ends -> GitOps bootstrap. Nothing is declared at import time: `build` is called by
infra/__main__.py under the engine and by the offline plan under mocks, with the same config.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from infra.components.network import Network, NetworkArgs
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

    pulumi.export("region", config.region)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("databaseSubnetIds", network.database_subnet_ids)

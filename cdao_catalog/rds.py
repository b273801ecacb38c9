"""What the platform knows about the RDS DB instance classes its stacks may use: their memory, and
the default `max_connections` RDS for PostgreSQL derives from it.

Prices live in cdao_cost/prices.yaml, not here: this file is hardware, that one is money.
"""

from __future__ import annotations

# Memory per DB instance class, GiB: Amazon RDS User Guide, "Hardware specifications for DB instance
# classes" (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Summary.html),
# read 2026-12-01. Every class of cdao_cost/prices.yaml's rds_hourly is here (tests/cdao_cost checks it).
DB_INSTANCE_MEMORY_GIB: dict[str, float] = {
    "db.t4g.micro": 1,
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.r5.large": 16,
    "db.r6g.large": 16,
    "db.r6g.xlarge": 32,
    "db.r7g.large": 16,
    "db.r7g.xlarge": 32,
}

# RDS for PostgreSQL's default parameter group sets max_connections to
# LEAST({DBInstanceClassMemory/9531392}, 5000) (Amazon RDS User Guide, "Quotas and constraints",
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html#RDS_Limits.MaxConnections;
# AWS Prescriptive Guidance, "Tuning PostgreSQL parameters: max_connections").
_BYTES_PER_CONNECTION = 9531392
_MAX_CONNECTIONS_CAP = 5000
# PostgreSQL keeps this many of max_connections for superusers (`superuser_reserved_connections`,
# default 3: PostgreSQL 16 documentation, runtime-config-connection); RDS's own monitoring connects as one.
SUPERUSER_RESERVED_CONNECTIONS = 3


class UnknownDbInstanceClassError(KeyError):
    """A DB instance class this catalogue has no memory figure for."""


def max_connections_bound(instance_class: str) -> int:
    """The most connections an RDS for PostgreSQL instance of `instance_class` accepts with the default
    parameter group: LEAST(memory / 9531392, 5000) computed with the class's whole memory in bytes.

    An upper bound: RDS's DBInstanceClassMemory is the class's memory less what the operating system
    and RDS's own processes use (Amazon RDS User Guide, "DB parameter formula variables",
    https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ParamValuesRef.html), a figure AWS does
    not publish per class, so the deployed value is somewhat lower; `SHOW max_connections` gives it.

    Raises UnknownDbInstanceClassError for a class without a memory figure here.
    """
    try:
        gib = DB_INSTANCE_MEMORY_GIB[instance_class]
    except KeyError:
        raise UnknownDbInstanceClassError(instance_class) from None
    return min(int(gib * 2**30) // _BYTES_PER_CONNECTION, _MAX_CONNECTIONS_CAP)

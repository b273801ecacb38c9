"""The node pools a task can run on, as the SDK's users import them (`from cdao_sdk.pools import ...`).

The facts are owned by `cdao_pools` (plugins/cdao_pools), which infra/ builds the pools from; this
module only gives them their place in the SDK.
"""

from cdao_pools import (
    A100_MIG,
    A100_TIMESLICE,
    CPU,
    GPU_RESOURCE,
    GPU_SHARING_LABEL,
    H100_TIMESLICE,
    MIG_PROFILES,
    NODE_POOL_LABEL,
    NODE_POOLS,
    WORKLOAD_TYPE_LABEL_PREFIX,
    WORKLOAD_TYPES,
    NodePool,
    Taint,
    mig_resource,
    workload_label,
)

__all__ = [
    "A100_MIG",
    "A100_TIMESLICE",
    "CPU",
    "GPU_RESOURCE",
    "GPU_SHARING_LABEL",
    "H100_TIMESLICE",
    "MIG_PROFILES",
    "NODE_POOLS",
    "NODE_POOL_LABEL",
    "WORKLOAD_TYPES",
    "WORKLOAD_TYPE_LABEL_PREFIX",
    "NodePool",
    "Taint",
    "mig_resource",
    "workload_label",
]

"""EKS node pools as the infrastructure creates them: the single source for the rest of the repo.

Keep this module free of flytekit imports so infra/, platform/ tests and policies can import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_POOL_LABEL = "cdao.io/node-pool"
WORKLOAD_TYPE_LABEL_PREFIX = "workload-type.cdao.io/"

GPU_RESOURCE = "nvidia.com/gpu"
MIG_PROFILES = ("1g.10gb", "2g.20gb", "3g.40gb")


def workload_label(workload_type: str) -> str:
    """Label key a node carries (value ``"true"``) when it accepts ``workload_type``."""
    return f"{WORKLOAD_TYPE_LABEL_PREFIX}{workload_type}"


def mig_resource(profile: str) -> str:
    """Extended resource name of a MIG slice under the GPU operator's mixed strategy."""
    if profile not in MIG_PROFILES:
        raise ValueError(f"unknown MIG profile {profile!r}; the a100-mig pool exposes {', '.join(MIG_PROFILES)}")
    return f"nvidia.com/mig-{profile}"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str = "NoSchedule"

    def toleration(self) -> dict[str, str]:
        """Kubernetes toleration (camelCase, as in a pod spec) matching this taint exactly."""
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


@dataclass(frozen=True)
class NodePool:
    name: str
    workload_types: tuple[str, ...]
    taint: Taint | None
    gpu_model: str | None  # the value users pass as gpu_type for this pool
    mig_profiles: tuple[str, ...] = ()
    # Each nvidia.com/gpu is a time-slice of a GPU (infra/config.py gpuSharing.mode time-slicing).
    time_sliced: bool = False

    @property
    def node_labels(self) -> dict[str, str]:
        labels = {NODE_POOL_LABEL: self.name}
        labels.update({workload_label(w): "true" for w in self.workload_types})
        return labels


CPU = NodePool(name="cpu", workload_types=("control", "mlops"), taint=None, gpu_model=None)
A100_TIMESLICE = NodePool(
    name="a100-timeslice",
    workload_types=("research", "training", "development", "batch-inference"),
    taint=Taint("gpu", "true"),
    gpu_model="a100",
    time_sliced=True,
)
A100_MIG = NodePool(
    name="a100-mig",
    workload_types=("production-inference", "critical-agents"),
    taint=Taint("gpu", "mig"),
    gpu_model="a100",
    mig_profiles=MIG_PROFILES,
)
H100_TIMESLICE = NodePool(
    name="h100-timeslice",
    workload_types=("training", "fine-tuning"),
    taint=Taint("gpu", "h100"),
    gpu_model="h100",
    time_sliced=True,
)

NODE_POOLS: dict[str, NodePool] = {p.name: p for p in (CPU, A100_TIMESLICE, A100_MIG, H100_TIMESLICE)}
WORKLOAD_TYPES: tuple[str, ...] = tuple(sorted({w for p in NODE_POOLS.values() for w in p.workload_types}))

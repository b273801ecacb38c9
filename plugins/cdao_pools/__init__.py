"""The EKS node pools' facts, owned here once: label keys, GPU resource names, and each default pool's
workload types, taint and GPU sharing, and how a taint effect is spelled in the EKS API.

infra/config.py builds its default pools (`DEFAULT_NODE_POOLS`) and infra/components/node_pool.py
the node labels and advertised resources from this module; the SDK (cdao_sdk) routes tasks with it.
It imports neither Pulumi nor flytekit: the SDK ships to notebooks without Pulumi, and the program
must not load flytekit. A stack may still override a pool (infra/config.py, `cdao:nodePools`);
tests/platform/test_consistency.py checks the stacks against these defaults.

GPU resource names are the NVIDIA device plugin's: `nvidia.com/gpu` for whole or time-sliced GPUs,
`nvidia.com/mig-<profile>` per MIG slice under the mixed strategy
(https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/gpu-operator-mig.html).
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_POOL_LABEL = "cdao.io/node-pool"
WORKLOAD_TYPE_LABEL_PREFIX = "workload-type.cdao.io/"
# The pool's gpuSharing.mode (none, time-slicing, mig), for selectors that care how GPUs are shared.
GPU_SHARING_LABEL = "cdao.io/gpu-sharing"

GPU_RESOURCE = "nvidia.com/gpu"
# The NVIDIA MIG manager applies the layout named by this node label (the GPU stack in platform/
# defines a layout of that name from the same pool config).
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
# The GPU operator's device plugin picks its time-slicing config by this node label; platform/
# names each config after the pool (replicas from the same pool config).
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"
# The cluster autoscaler's AWS provider treats a node with this label as not ready until it
# advertises nvidia.com/gpu, so it does not scale out again while the first node loads its driver
# (kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md, "GPU Node Groups"; #1949).
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

# A Kubernetes taint effect (core/v1 TaintEffect, what a pool's taint declares) -> the EKS API's
# TaintEffect enum, which CreateNodegroup takes and DescribeNodegroup returns
# (https://docs.aws.amazon.com/eks/latest/APIReference/API_Taint.html; botocore
# data/eks/2017-11-01/service-2.json, shape TaintEffect).
EKS_TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}


def workload_label(workload_type: str) -> str:
    """Label key a node carries (value ``"true"``) when it accepts ``workload_type``."""
    return f"{WORKLOAD_TYPE_LABEL_PREFIX}{workload_type}"


def mig_resource(profile: str) -> str:
    """Extended resource name of a MIG slice under the GPU operator's mixed strategy.

    Raises ValueError for a profile the default MIG pool does not cut (MIG_PROFILES)."""
    if profile not in MIG_PROFILES:
        raise ValueError(f"unknown MIG profile {profile!r}; the a100-mig pool exposes {', '.join(MIG_PROFILES)}")
    return mig_resource_name(profile)


def mig_resource_name(profile: str) -> str:
    """`nvidia.com/mig-<profile>`, for any profile a stack's pool config names (infra/config.py checks it)."""
    return f"{MIG_RESOURCE_PREFIX}{profile}"


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
    # The MIG layout of one GPU (mixed strategy; a profile may repeat), empty unless MIG.
    mig_layout: tuple[str, ...] = ()
    # Pods per GPU when time-sliced (the device plugin advertises replicas x GPUs), else None.
    time_slicing_replicas: int | None = None

    @property
    def mig_profiles(self) -> tuple[str, ...]:
        """The distinct MIG profiles of the layout, in layout order."""
        return tuple(dict.fromkeys(self.mig_layout))

    @property
    def time_sliced(self) -> bool:
        """Each nvidia.com/gpu is a time-slice of a GPU (gpuSharing.mode time-slicing)."""
        return self.time_slicing_replicas is not None

    @property
    def gpu_sharing(self) -> dict[str, object]:
        """The pool's `gpuSharing` in the stack config's shape (infra/config.py GpuSharing)."""
        if self.mig_layout:
            return {"mode": "mig", "migProfiles": list(self.mig_layout)}
        if self.time_sliced:
            return {"mode": "time-slicing", "replicas": self.time_slicing_replicas}
        return {"mode": "none"}

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
    time_slicing_replicas=4,
)
A100_MIG = NodePool(
    name="a100-mig",
    workload_types=("production-inference", "critical-agents"),
    taint=Taint("gpu", "mig"),
    gpu_model="a100",
    mig_layout=("1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"),
)
H100_TIMESLICE = NodePool(
    name="h100-timeslice",
    workload_types=("training", "fine-tuning"),
    taint=Taint("gpu", "h100"),
    gpu_model="h100",
    time_slicing_replicas=3,
)

NODE_POOLS: dict[str, NodePool] = {p.name: p for p in (CPU, A100_TIMESLICE, A100_MIG, H100_TIMESLICE)}
# The MIG profiles the SDK can request: those the default MIG pool cuts.
MIG_PROFILES: tuple[str, ...] = A100_MIG.mig_profiles
WORKLOAD_TYPES: tuple[str, ...] = tuple(sorted({w for p in NODE_POOLS.values() for w in p.workload_types}))

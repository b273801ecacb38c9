"""What the platform knows about the EC2 instance types its node pools may use.

The stack config is validated against this catalogue (a typo in an instance type must stop the
program before anything is declared, not fail 20 minutes into an EKS node-group create), and the
GPU facts here decide which sharing modes a pool may use: MIG exists only on A100/H100-class GPUs.
Prices live in cdao_cost/prices.yaml, not here: this file is hardware, that one is money.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    gpu_model: str | None = None
    gpu_count: int = 0
    gpu_memory_gib: int = 0

    @property
    def mig_capable(self) -> bool:
        # Multi-Instance GPU is an Ampere/Hopper data-centre feature (A100, A30, H100, H200); A10G has none.
        return self.gpu_model in {"A100", "H100"}

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0


_CATALOGUE = [
    InstanceType("t3.medium", 2, 4),
    InstanceType("t3.large", 2, 8),
    InstanceType("t3.xlarge", 4, 16),
    InstanceType("m5.large", 2, 8),
    InstanceType("m5.xlarge", 4, 16),
    InstanceType("m5.2xlarge", 8, 32),
    InstanceType("m5.4xlarge", 16, 64),
    InstanceType("m6i.large", 2, 8),
    InstanceType("m6i.xlarge", 4, 16),
    InstanceType("m6i.2xlarge", 8, 32),
    InstanceType("m6i.4xlarge", 16, 64),
    InstanceType("m7i.large", 2, 8),
    InstanceType("m7i.xlarge", 4, 16),
    InstanceType("m7i.2xlarge", 8, 32),
    InstanceType("m7i.4xlarge", 16, 64),
    InstanceType("c5.xlarge", 4, 8),
    InstanceType("c5.2xlarge", 8, 16),
    InstanceType("c5.4xlarge", 16, 32),
    InstanceType("c6i.xlarge", 4, 8),
    InstanceType("c6i.2xlarge", 8, 16),
    InstanceType("c6i.4xlarge", 16, 32),
    InstanceType("r5.xlarge", 4, 32),
    InstanceType("r5.2xlarge", 8, 64),
    InstanceType("g5.xlarge", 4, 16, "A10G", 1, 24),
    InstanceType("g5.12xlarge", 48, 192, "A10G", 4, 24),
    InstanceType("p4d.24xlarge", 96, 1152, "A100", 8, 40),
    InstanceType("p4de.24xlarge", 96, 1152, "A100", 8, 80),
    InstanceType("p5.48xlarge", 192, 2048, "H100", 8, 80),
]

INSTANCE_TYPES: dict[str, InstanceType] = {i.name: i for i in _CATALOGUE}

# MIG profiles per GPU memory size, with the compute slices (of 7) each one takes. The memory suffix
# differs between the 40 GB and 80 GB parts, so a 1g.10gb profile does not exist on a p4d's A100-40GB.
MIG_PROFILES: dict[int, dict[str, int]] = {
    40: {"1g.5gb": 1, "2g.10gb": 2, "3g.20gb": 3, "4g.20gb": 4, "7g.40gb": 7},
    80: {"1g.10gb": 1, "1g.20gb": 1, "2g.20gb": 2, "3g.40gb": 3, "4g.40gb": 4, "7g.80gb": 7},
}
MIG_SLICES_PER_GPU = 7

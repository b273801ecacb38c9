"""Tasks the Codeweave end-to-end tests run for real in a subprocess (imported by module name)."""

from __future__ import annotations

import time

from cdao_sdk import gpu_task


@gpu_task(platform="codeweave", gpu_type="nvidia-a100-80gb", gpus=2, memory="64Gi")
def scale(values: list[int], factor: float) -> tuple[float, str]:
    total = sum(values) * factor
    return total, f"scaled {len(values)} values"


@gpu_task(platform="codeweave", gpu_type="nvidia-h100-80gb")
def explode(x: int) -> int:
    if x > 0:
        raise RuntimeError(f"bad input {x}")
    return x


@gpu_task(platform="codeweave", gpu_type="nvidia-a100-40gb")
def sleepy(seconds: int) -> int:
    time.sleep(seconds)
    return seconds

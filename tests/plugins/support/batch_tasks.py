"""Batch tasks serialized by the tests (moto's Batch does not run containers, so bodies never run)."""

from __future__ import annotations

from cdao_sdk import batch_task


@batch_task(spot=True, vcpus=2, memory="4Gi")
def preprocess(path: str) -> str:
    return path + ".parquet"


@batch_task(spot=True, vcpus=2, memory="4Gi")
def featurize(path: str) -> str:
    return path + ".features"


@batch_task(spot=False, vcpus=8, memory="32Gi", gpus=1, timeout=3600)
def etl(n: int) -> int:
    return n

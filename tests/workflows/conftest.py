"""Shared set-up for the pipeline tests: real local runs, never served from flytekit's local cache."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# One OpenMP thread per process, set before torch or xgboost is imported (libgomp reads the variable
# when it loads; `pyflyte` subprocesses inherit it). The pipelines' batches are tiny (64 images of 8x8
# pixels), so a second intra-op thread only adds synchronisation: fitting gpu_training's CNN for 8
# epochs took 14.1 s of CPU with torch's default 2 threads and 4.8 s with 1 on a 2-core machine. The
# results do not depend on it; a user's environment that sets the variable keeps its value.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The local Spark session the Spark steps start (pyspark's launch_gateway reads PYSPARK_SUBMIT_ARGS,
# pyspark/java_gateway.py, pyspark 4.3.0): no web UI (pyspark does the same under SPARK_TESTING), a
# handful of shuffle partitions for reports of a few dozen rows instead of 200, and the JVM's quick
# C1 compiler only, which suits a driver that lives for seconds. None of them changes a result; the
# first local pipeline run took 45 s with the defaults and 19 s with these (mean of two, load ~7).
os.environ.setdefault(
    "PYSPARK_SUBMIT_ARGS",
    "--conf spark.ui.enabled=false --conf spark.sql.shuffle.partitions=4 "
    "--driver-java-options -XX:TieredStopAtLevel=1 pyspark-shell",
)

# The helpers module must import by a name of its own: this folder cannot be a package, because
# under --import-mode=importlib it would be named `workflows` and shadow the package under test.
HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


from workflow_test_support import STACK_ENV  # noqa: E402  (lives in HERE, added above)


@pytest.fixture(autouse=True)
def _local_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A cached result would let a broken task body pass; the domain variable is CI's registration switch.
    monkeypatch.setenv("FLYTE_LOCAL_CACHE_ENABLED", "false")
    monkeypatch.delenv("FLYTE_DOMAIN", raising=False)
    # Tests of the SDK itself (tests/plugins) configure other values; each test here starts from
    # the environment alone, as registration in CI does.
    from cdao_sdk import settings  # noqa: PLC0415 - imports flytekit

    monkeypatch.setattr(settings, "_current", settings.Settings())
    for name, value in STACK_ENV.items():
        monkeypatch.setenv(name, value)
    # One intra-op thread for torch, here and in the workers it spawns (they read OMP_NUM_THREADS,
    # as torchrun sets it for them): on two shared cores its OpenMP threads spin against each other,
    # and 12 epochs of the digits model took 6.2 s with two threads, 0.4 s with one.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    yield
    if torch is not None:
        torch.set_num_threads(threads)


# Every workflow must be executed by its tests (tests/workflows/test_registration.py): recorded at run time.
from workflow_runs import record_workflow_runs, reorder  # noqa: E402, F401  (record_workflow_runs: autouse fixture)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reorder(items)

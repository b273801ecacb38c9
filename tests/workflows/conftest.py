"""Shared set-up for the pipeline tests: real local runs, never served from flytekit's local cache."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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

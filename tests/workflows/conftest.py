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


@pytest.fixture(autouse=True)
def _local_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A cached result would let a broken task body pass; the domain variable is CI's registration switch.
    monkeypatch.setenv("FLYTE_LOCAL_CACHE_ENABLED", "false")
    monkeypatch.delenv("FLYTE_DOMAIN", raising=False)
    # The pipeline modules fill the SDK's settings when first imported; tests of the SDK itself
    # (tests/plugins) reset them, so put the pipelines' local settings back before each test.
    from workflows._platform import ensure_settings  # noqa: PLC0415 - imports flytekit and the SDK

    ensure_settings()
    yield

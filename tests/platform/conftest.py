"""Fixtures for platform/: each stack's cluster Secret and the Applications generated from it.

Helpers live in support/ (added to sys.path here, as tests/plugins does), so test modules import
them by name under --import-mode=importlib.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

SUPPORT = Path(__file__).parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from platform_checks import rendered  # noqa: E402  (lives in SUPPORT, added above)
from platform_render import RenderedApp  # noqa: E402
from platform_stack import STACKS, cluster_secret  # noqa: E402


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def apps(stack: str) -> dict[str, RenderedApp]:
    return rendered(stack)


@pytest.fixture
def secret(stack: str) -> dict[str, Any]:
    return cluster_secret(stack)

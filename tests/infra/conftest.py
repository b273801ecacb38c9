"""The one mock-runtime fixture every infra test uses.

Pulumi's mock settings are process-global context variables; cdao_cli.plan.runner runs each program in
a fresh contextvars.Context, so stacks planned by different tests never see each other's state.
Each stack is planned once per session and shared with the other folders' tests (tests/infra/plans.py).
"""

from __future__ import annotations

import pytest

from cdao_cli.plan.runner import PlanRun, available_stacks
from tests.infra.plans import planned

STACKS = available_stacks()


@pytest.fixture(params=STACKS)
def stack_run(request: pytest.FixtureRequest) -> PlanRun:
    return planned(request.param)


@pytest.fixture
def plan_of():
    return planned

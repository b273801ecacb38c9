"""The one mock-runtime fixture every infra test uses.

Pulumi's mock settings are process-global context variables; cdao_cli.plan.runner runs each program in
a fresh contextvars.Context, so stacks planned by different tests never see each other's state.
Each stack is planned once per session and shared (a run takes ~2 s cold, ~0.1 s warm).
"""

from __future__ import annotations

import functools

import pytest

from cdao_cli.plan.runner import PlanRun, available_stacks, run_stack

STACKS = available_stacks()


@functools.cache
def _planned(stack: str) -> PlanRun:
    return run_stack(stack)


@pytest.fixture(params=STACKS)
def stack_run(request: pytest.FixtureRequest) -> PlanRun:
    return _planned(request.param)


@pytest.fixture
def plan_of():
    return _planned

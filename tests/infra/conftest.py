"""The one mock-runtime fixture every infra test uses.

Pulumi's mock settings are process-global context variables; cdao_cli.plan.runner runs each program in
a fresh contextvars.Context, so stacks planned by different tests never see each other's state.
Each stack is planned once per session and shared with the other folders' tests (tests/infra/plans.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdao_cli.plan import runner
from cdao_cli.plan.runner import PlanRun, available_stacks
from tests.infra.plans import planned

STACKS = available_stacks()


@pytest.fixture(params=STACKS)
def stack_run(request: pytest.FixtureRequest) -> PlanRun:
    return planned(request.param)


@pytest.fixture
def plan_of():
    return planned


@pytest.fixture
def cli_shares_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cdao plan` in this test takes each plan of environments/ from plans.planned() instead of
    planning it again: for tests of what the command makes of plans (formats, order, exit codes), not
    of planning itself, and that change nothing the program reads. Another folder is planned as usual."""
    real = runner.run_stack

    def run_stack(stack: str, environments_dir: Path = runner.ENVIRONMENTS_DIR) -> PlanRun:
        if Path(environments_dir).resolve() == runner.ENVIRONMENTS_DIR.resolve():
            return planned(stack)
        return real(stack, environments_dir)

    # cdao plan imports run_stack from the runner when it runs (cdao_cli/main.py _plan).
    monkeypatch.setattr(runner, "run_stack", run_stack)

"""The repository's stacks planned offline once per test session, for every folder's tests.

A plan of a real stack takes seconds (cdao_cli/plan/runner.py run_stack runs infra/__main__.py under
Pulumi's mocks) and tests in tests/infra, tests/cdao_cli, tests/platform, tests/plugins and
tests/policies read the same ones. A shared plan is read-only: a test that changes what the program
sees (a stack file of its own, patched mocks or config code) runs run_stack itself.
"""

from __future__ import annotations

import functools
import os

from cdao_cli.plan.runner import PlanRun, run_stack
from infra.images import IMAGES_PUSHED_ENV, REVISION_COMMIT_ENV


def planned(stack: str) -> PlanRun:
    """run_stack(stack) on environments/, shared. Besides the stack file the program reads these two
    variables (infra/__main__.py), so a test that sets one gets a plan of its own values."""
    return _planned(stack, os.environ.get(REVISION_COMMIT_ENV), os.environ.get(IMAGES_PUSHED_ENV))


@functools.cache
def _planned(stack: str, _revision_commit: str | None, _images_pushed: str | None) -> PlanRun:
    return run_stack(stack)

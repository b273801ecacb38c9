"""Which workflows this test session actually executed, recorded while the tests run.

A workflow counts as executed by a test when the test's own call of it (not a compilation, nor a
sub-workflow of another workflow it runs) returned: a call that raised, a skipped test, or code
that never runs (``if False:``) records nothing. flytekit runs a workflow called outside a compilation locally
(flytekit/core/workflow.py ``WorkflowBase.__call__`` -> ``flyte_entity_call_handler``,
flytekit/core/promise.py, 1.16.31), so wrapping ``__call__`` sees every local run in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.workflow import WorkflowBase

# (workflow name, test node id) of every local run that returned.
EXECUTED: set[tuple[str, str]] = set()
# Node ids of every test collected (and not deselected) in this session.
COLLECTED: set[str] = set()
_RUNNING: ContextVar[bool] = ContextVar("workflow_running", default=False)
# The test that reads EXECUTED; it runs after every other test of the session.
CHECK = "test_every_workflow_is_executed_by_its_tests"


def reorder(items: list[pytest.Item]) -> None:
    """Collection hook: remember what runs, and put :data:`CHECK` last."""
    COLLECTED.update(item.nodeid for item in items)
    items.sort(key=lambda item: item.name.startswith(CHECK))


@pytest.fixture(autouse=True)
def record_workflow_runs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    original = WorkflowBase.__call__
    test = request.node.nodeid

    def call(self: WorkflowBase, *args: Any, **kwargs: Any) -> Any:
        # Only the test's own call: not a compilation, nor a sub-workflow of a workflow it runs.
        top_level = FlyteContextManager.current_context().compilation_state is None and not _RUNNING.get()
        reset = _RUNNING.set(True)
        try:
            result = original(self, *args, **kwargs)
        finally:
            _RUNNING.reset(reset)
        if top_level:
            EXECUTED.add((self.name, test))
        return result

    monkeypatch.setattr(WorkflowBase, "__call__", call)
    yield

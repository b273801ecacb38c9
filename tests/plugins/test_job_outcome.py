"""Which finished jobs propeller runs again: the phase a job's ``error.pb`` makes of its attempt.

The ``error.pb`` here is written by flytekit's own job entrypoint (``pyflyte-execute``'s
``_dispatch_execute``, flytekit/bin/entrypoint.py at 1.16.31), in process (a subprocess costs
seconds; ``test_codeweave_e2e.py`` runs the real command once): a user exception is
``NON_RECOVERABLE``, a ``FlyteRecoverableException`` and any error of flytekit's own outside the
user's code (origin ``SYSTEM``, such as inputs it cannot download) are ``RECOVERABLE``. The
connectors answer ``RECOVERABLE`` as ``RETRYABLE_FAILED``, which propeller retries while the task
has retries left (``PhaseInfoRetryableFailure``), and everything else as ``FAILED``, which it never
retries (``PhaseInfoFailure``; flyteplugins/v1.16.8 go/tasks/plugins/webapi/connector/plugin.go
``Status``). plugins/README.md and ``cdao_sdk.decorators.CONNECTOR_TASK_RETRIES`` say the same.
"""

from __future__ import annotations

import pytest
from cdao_connectors._common import outcome_after_exit
from cdao_sdk import gpu_task
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.bin.entrypoint import _dispatch_execute, setup_execution
from flytekit.core.constants import FLYTE_FAIL_ON_ERROR
from flytekit.exceptions.user import FlyteRecoverableException
from propeller import write_inputs


@gpu_task(platform="codeweave", gpu_type="nvidia-a100-80gb")
def lost_its_gpu(x: int) -> int:
    if x:
        raise FlyteRecoverableException(f"GPU {x} fell off the bus")
    return x


@gpu_task(platform="codeweave", gpu_type="nvidia-a100-80gb")
def bad_input(x: int) -> int:
    if x:
        raise RuntimeError(f"bad input {x}")
    return x


_CASES = {
    "the author's FlyteRecoverableException": (lost_its_gpu, True, TaskExecution.RETRYABLE_FAILED, "fell off the bus"),
    "flytekit failing to download the inputs": (bad_input, False, TaskExecution.RETRYABLE_FAILED, "inputs.pb"),
    "a user exception": (bad_input, True, TaskExecution.FAILED, "bad input 7"),
}


@pytest.mark.parametrize("case", _CASES.values(), ids=_CASES.keys())
def test_a_job_runs_again_only_after_a_recoverable_error(case, tmp_path, monkeypatch):
    task, has_inputs, phase, said = case
    # Every connector's job runs with it set (cdao_connectors._common.rendered_container): the
    # entrypoint writes error.pb, then exits 1.
    monkeypatch.setenv(FLYTE_FAIL_ON_ERROR, "true")
    prefix = str(tmp_path / "metadata")
    if has_inputs:
        write_inputs(task, prefix, x=7)
    with setup_execution(str(tmp_path / "raw"), prefix) as ctx, pytest.raises(SystemExit):
        _dispatch_execute(ctx, lambda: task, f"{prefix}/inputs.pb", prefix)

    outcome = outcome_after_exit(prefix, has_outputs=True, platform_succeeded=False, platform_message="exit code 1")
    assert TaskExecution.Phase.Name(outcome.phase) == TaskExecution.Phase.Name(phase)
    assert said in outcome.message

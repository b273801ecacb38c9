"""Pieces every connector here needs: deterministic names, reading the task's outcome, log links."""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flyteidl.core import errors_pb2
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.configuration import DataConfig
from flytekit.core.constants import FLYTE_FAIL_ON_ERROR
from flytekit.core.data_persistence import FileAccessProvider
from flytekit.extend.backend.utils import render_task_template
from flytekit.models.core.execution import TaskLog
from flytekit.models.task import TaskTemplate


def attempt_seed(task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any) -> str:
    """A string identical for every CreateTask of one task attempt and different across attempts.

    Propeller gives each attempt its own output prefix and task execution id; a repeated CreateTask
    of the attempt (propeller lost its state before recording the answer) repeats both, which is
    what makes creates idempotent.
    """
    parts = [output_prefix]
    teid = getattr(task_execution_metadata, "task_execution_id", None)
    if teid is not None:
        node = teid.node_execution_id
        ex = node.execution_id
        parts += [ex.project, ex.domain, ex.name, node.node_id, str(teid.retry_attempt)]
    tid = task_template.id
    if tid is not None:
        parts += [tid.project, tid.domain, tid.name, tid.version]
    return "|".join(str(p) for p in parts)


def readable_execution_name(task_execution_metadata: Any) -> str:
    teid = getattr(task_execution_metadata, "task_execution_id", None)
    if teid is None:
        return "local"
    node = teid.node_execution_id
    return f"{node.execution_id.name}-{node.node_id}-{teid.retry_attempt}"


def deterministic_name(prefix: str, seed: str, readable: str, max_len: int, allowed: str = r"A-Za-z0-9_-") -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest()[:16]
    body = re.sub(rf"[^{allowed}]", "-", f"{prefix}-{readable}").strip("-")
    return f"{body[: max_len - len(digest) - 1]}-{digest}"


def rendered_container(task_template: TaskTemplate, output_prefix: str) -> tuple[str, list[str], dict[str, str]]:
    """Image, command and environment of the task's ``pyflyte-execute`` container.

    Propeller renders the template placeholders before CreateTask; rendering again is a no-op then,
    and it fills them when a caller (local execution, tests) hands over the raw template.
    """
    if task_template.container is None or not task_template.container.image:
        raise ValueError(f"task {task_template.id.name}: the template has no container image to run")
    args = list(task_template.container.args or [])
    if any("{{." in a for a in args):
        args = list(render_task_template(task_template, output_prefix).container.args)
    if not args:
        raise ValueError(f"task {task_template.id.name}: the template's container has no command")
    env = dict(task_template.container.env or {})
    # pyflyte-execute exits 0 after a user error unless told otherwise; the platforms only see the
    # exit code, so without this a failed task would be reported as a successful job.
    env[FLYTE_FAIL_ON_ERROR] = "true"
    return task_template.container.image, args, env


@lru_cache(maxsize=1)
def _file_access() -> FileAccessProvider:
    # A provider of our own rather than the default context's: its data config is read from the
    # environment at first use, after the Deployment (or a test) has set the storage endpoint.
    return FileAccessProvider(
        tempfile.mkdtemp(prefix="cdao-connector-"), tempfile.gettempdir(), data_config=DataConfig.auto()
    )


@dataclass(frozen=True)
class TaskOutcome:
    phase: int
    message: str


def outcome_after_exit(
    output_prefix: str, has_outputs: bool, platform_succeeded: bool, platform_message: str
) -> TaskOutcome:
    """Decide the Flyte phase once the platform reports the job finished.

    The task's own ``error.pb`` wins over the platform's verdict, and a "successful" job that did
    not write the outputs it promised is a failure: an error is never reported as success.
    """
    fa = _file_access()
    prefix = output_prefix.rstrip("/")
    if fa.exists(f"{prefix}/error.pb"):
        local = fa.get_random_local_path()
        fa.get_data(f"{prefix}/error.pb", local)
        doc = errors_pb2.ErrorDocument()
        with open(local, "rb") as f:
            doc.ParseFromString(f.read())
        recoverable = doc.error.kind == errors_pb2.ContainerError.RECOVERABLE
        phase = TaskExecution.RETRYABLE_FAILED if recoverable else TaskExecution.FAILED
        return TaskOutcome(phase, f"task raised: {doc.error.message or 'see error.pb'}")
    if not platform_succeeded:
        return TaskOutcome(TaskExecution.FAILED, platform_message)
    if has_outputs and not fa.exists(f"{prefix}/outputs.pb"):
        return TaskOutcome(TaskExecution.FAILED, f"job succeeded but wrote no {prefix}/outputs.pb")
    return TaskOutcome(TaskExecution.SUCCEEDED, platform_message)


def log_link(name: str, uri: str) -> Any:
    """A log link in the protobuf form ``Resource.log_links`` carries over gRPC."""
    return TaskLog(uri=uri, name=name).to_flyte_idl()


def noting_staleness(resource: Any, stale: str | None) -> Any:
    """``resource`` (a flytekit ``Resource``) with ``stale`` (``StatusCache``'s reason a status is
    its last known one) appended to its message, so the user sees why the status may lag."""
    if stale:
        resource.message = f"{resource.message}; {stale}" if resource.message else stale
    return resource

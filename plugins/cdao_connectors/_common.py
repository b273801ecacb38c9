"""Pieces every connector here needs: deterministic names, reading the task's outcome, log links."""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

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


def node_seed(task_template: TaskTemplate, task_execution_metadata: Any) -> str:
    """A string identical for every attempt of one node execution of a task (:func:`attempt_seed`
    without the attempt's output prefix and retry): SageMaker's :data:`NODE_TAG_KEY` tag tells a
    job an earlier attempt of the node made, which a later one may take over."""
    parts: list[str] = []
    teid = getattr(task_execution_metadata, "task_execution_id", None)
    if teid is not None:
        node = teid.node_execution_id
        ex = node.execution_id
        parts += [ex.project, ex.domain, ex.name, node.node_id]
    tid = task_template.id
    if tid is not None:
        parts += [tid.project, tid.domain, tid.name, tid.version]
    return "|".join(str(p) for p in parts)


# The tag of the node execution every SageMaker job or endpoint a CreateTask makes carries, beside
# its attempt's (:data:`ATTEMPT_TAG_KEY`), valued attempt_tag_value(node_seed(...)).
NODE_TAG_KEY = "flyte-node"


# The tag every job a CreateTask makes carries on backends that tag jobs (SageMaker, EMR Serverless):
# it tells the attempt's job from another of the same name, for the sweep (cdao_connectors._attempts,
# "Sweeping") and for an operator (plugins/README.md, "Jobs nobody follows").
ATTEMPT_TAG_KEY = "flyte-attempt"


def attempt_tag_value(seed: str) -> str:
    """The :data:`ATTEMPT_TAG_KEY` tag's value for the attempt whose :func:`attempt_seed` is ``seed``:
    32 hex characters, within every tagging backend's limits: a SageMaker tag value is at most 256
    characters of ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`` (letters, separators and numbers of any script;
    botocore ``sagemaker/2017-07-24`` ``TagValue``), an EMR Serverless one at most 256 of
    ``[A-Za-z0-9 /_.:=+@-]`` (botocore ``emr-serverless/2021-07-13`` ``TagValue``)."""
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


T = TypeVar("T")


def attempts_left(task_template: Any, task_execution_metadata: Any) -> str | None:
    """What propeller does once this CreateTask answers an error, said from what the request carries:
    the task's ``retries`` (``template.metadata.retries.retries``) and the attempt
    (``task_execution_metadata.task_execution_id.retry_attempt``, which flytekit's connector service
    passes on: flytekit/extend/backend/connector_service.py ``CreateTask``, 1.16.31). None when the
    request carries no attempt (a local run).

    Propeller (flyteplugins/v1.16.8): any CreateTask error is ``PhaseInfoRetryableFailure``, a USER
    error (internal/webapi/launcher.go ``launch``, core/phase.go), which ends the attempt and is never
    re-sent. flytepropeller/v1.16.8 pkg/controller/nodes/executor.go ``isEligibleForRetry`` allows
    ``retries + 1`` attempts (``MinAttempts``, compiler/transformers/k8s/utils.go) counting only
    attempts that did not fail for a SYSTEM reason, while ``retry_attempt`` counts every attempt
    (node_exec_context.go ``CurrentAttempt``): ``retries - retry_attempt`` more attempts are left at
    least, more if earlier ones failed for a system reason. A node's own retries in the workflow
    (``with_overrides(retries=...)``), which the request does not carry, take precedence over the
    task's when not 0 (compiler/transformers/k8s/utils.go ``computeRetryStrategy``).
    """
    teid = getattr(task_execution_metadata, "task_execution_id", None)
    metadata = getattr(task_template, "metadata", None)
    if teid is None or metadata is None:
        return None
    strategy = getattr(metadata, "retries", None)
    retries = int(getattr(strategy, "retries", 0) or 0)
    attempt = int(getattr(teid, "retry_attempt", 0) or 0)
    left = retries - attempt
    if left > 0:
        return (
            f"propeller fails this attempt (attempt {attempt + 1} of the task's {retries + 1}, retries={retries}) "
            f"and starts the next: at least {left} more attempt{'s' if left > 1 else ''} left"
        )
    return (
        f"no attempt is left: this was attempt {attempt + 1} and the task has retries={retries}, so the task "
        "fails here (unless its workflow overrides the node's retries, or an earlier attempt failed for a "
        "system reason, which propeller does not count)"
    )


def says_attempts_left(create: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """For a connector's ``async def create(self, task_template, ..., task_execution_metadata, ...)``:
    an error leaving it ends with :func:`attempts_left`, keeping its type (callers, and flytekit's
    connector service, which sends ``str(error)`` to propeller, see the same exception).
    Hand-written: flytekit's connector service says nothing of the kind."""
    signature = inspect.signature(create)

    @functools.wraps(create)
    async def wrapped(*args: Any, **kwargs: Any) -> T:
        try:
            return await create(*args, **kwargs)
        except Exception as error:
            bound = signature.bind_partial(*args, **kwargs).arguments
            extra = bound.get("kwargs") or {}
            template = bound.get("task_template", extra.get("task_template", (bound.get("args") or (None,))[0]))
            metadata = bound.get("task_execution_metadata", extra.get("task_execution_metadata"))
            said = attempts_left(template, metadata)
            if said is not None and error.args and isinstance(error.args[0], str) and said not in error.args[0]:
                error.args = (f"{error.args[0]}; {said}", *error.args[1:])
            raise

    return wrapped


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


def in_chain(error: BaseException, holds: Callable[[BaseException], bool], *, implicit: bool) -> bool:
    """Whether ``holds`` is true of ``error`` or of an error it was raised from (``__cause__``: the
    plugins and our wrappers raise theirs ``from`` the call's own), and, with ``implicit``, of one it
    was raised while handling (``__context__``). A chain is walked once, even if it loops."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        if holds(link):
            return True
        seen.add(id(link))
        link = (link.__cause__ or link.__context__) if implicit else link.__cause__
    return False

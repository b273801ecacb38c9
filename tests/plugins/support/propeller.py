"""What FlytePropeller does around a connector call, reproduced with flytekit's own pieces.

Serialize the task to its TaskTemplate, write inputs.pb, render the container placeholders, call
the AsyncAgentService over gRPC, and read outputs.pb back into Python values.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections import OrderedDict
from typing import Any

from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, identifier_pb2, literals_pb2
from flytekit import FlyteContextManager
from flytekit.configuration import DataConfig, Image, ImageConfig, SerializationSettings
from flytekit.core.data_persistence import FileAccessProvider
from flytekit.core.type_engine import TypeEngine
from flytekit.extend.backend.utils import is_terminal_phase, render_task_template
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate
from flytekit.tools.translator import get_serializable
from propeller_polling import PollingSettings

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cdao/ml:1.0.0"


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def serialize(task: Any, project: str = "ml", domain: str = "development", version: str = "v1") -> TaskTemplate:
    settings = SerializationSettings(
        image_config=ImageConfig(default_image=Image(name="default", fqn=IMAGE.split(":", maxsplit=1)[0], tag="1.0.0")),
        project=project,
        domain=domain,
        version=version,
    )
    return get_serializable(OrderedDict(), settings, task).template


def file_access() -> FileAccessProvider:
    return FileAccessProvider(tempfile.mkdtemp(), tempfile.gettempdir(), data_config=DataConfig.auto())


def write_inputs(task: Any, prefix: str, **kwargs: Any) -> LiteralMap:
    ctx = FlyteContextManager.current_context()
    lm = TypeEngine.dict_to_literal_map(ctx, kwargs, task.python_interface.inputs)
    fa = file_access()
    local = fa.get_random_local_path()
    with open(local, "wb") as f:
        f.write(lm.to_flyte_idl().SerializeToString())
    fa.put_data(local, f"{prefix}/inputs.pb")
    return lm


def read_outputs(task: Any, prefix: str) -> dict[str, Any]:
    fa = file_access()
    local = fa.get_random_local_path()
    fa.get_data(f"{prefix}/outputs.pb", local)
    pb = literals_pb2.LiteralMap()
    with open(local, "rb") as f:
        pb.ParseFromString(f.read())
    ctx = FlyteContextManager.current_context()
    return TypeEngine.literal_map_to_kwargs(ctx, LiteralMap.from_flyte_idl(pb), task.python_interface.outputs)


def execution_metadata(name: str, node: str = "n0", retry: int = 0) -> agent_pb2.TaskExecutionMetadata:
    ex = identifier_pb2.WorkflowExecutionIdentifier(project="ml", domain="development", name=name)
    teid = identifier_pb2.TaskExecutionIdentifier(
        task_id=identifier_pb2.Identifier(resource_type=identifier_pb2.TASK, project="ml", domain="development"),
        node_execution_id=identifier_pb2.NodeExecutionIdentifier(node_id=node, execution_id=ex),
        retry_attempt=retry,
    )
    return agent_pb2.TaskExecutionMetadata(task_execution_id=teid, namespace="ml-development")


@functools.cache
def _propeller_deadline() -> float:
    # Propeller gives every connector call (CreateTask, GetTask, DeleteTask) defaultTimeout
    # (connector/client.go getFinalContext, called by plugin.go for each, at flyteplugins/v1.16.8);
    # values.yaml sets it, read where the polling stand-in reads it.
    return PollingSettings.from_values().timeout_seconds


def create_task(stub: Any, template: TaskTemplate, prefix: str, inputs: LiteralMap | None, meta: Any) -> bytes:
    """CreateTask as propeller sends it, with its deadline: an answer propeller would drop is an error here."""
    # Only a container has placeholders to render; tasks without one (a transform job) go as they are.
    rendered = render_task_template(template, prefix) if template.container is not None else template
    req = agent_pb2.CreateTaskRequest(
        inputs=inputs.to_flyte_idl() if inputs is not None else None,
        template=rendered.to_flyte_idl(),
        output_prefix=prefix,
        task_execution_metadata=meta,
    )
    return stub.CreateTask(req, timeout=_propeller_deadline()).resource_meta


def execute_task_sync(
    stub: Any, template: TaskTemplate, prefix: str, inputs: LiteralMap | None, meta: Any
) -> agent_pb2.Resource:
    """ExecuteTaskSync as propeller sends it to a synchronous connector, with its deadline: a stream of
    two requests, the header (template, output prefix, task execution metadata) then the inputs, and
    the resource from the first answer's header (flyteplugins/v1.16.8
    go/tasks/plugins/webapi/connector/plugin.go ``Create``, its isSync branch, and ``ExecuteTaskSync``)."""
    rendered = render_task_template(template, prefix) if template.container is not None else template
    header = agent_pb2.CreateRequestHeader(
        template=rendered.to_flyte_idl(), output_prefix=prefix, task_execution_metadata=meta
    )
    requests = [
        agent_pb2.ExecuteTaskSyncRequest(header=header),
        agent_pb2.ExecuteTaskSyncRequest(inputs=inputs.to_flyte_idl() if inputs is not None else None),
    ]
    answers = stub.ExecuteTaskSync(iter(requests), timeout=_propeller_deadline())
    return next(iter(answers)).header.resource


def category(task_type: str) -> agent_pb2.TaskCategory:
    return agent_pb2.TaskCategory(name=task_type, version=0)


def get_task(stub: Any, task_type: str, resource_meta: bytes) -> agent_pb2.Resource:
    """GetTask as propeller sends it, with its deadline."""
    req = agent_pb2.GetTaskRequest(task_category=category(task_type), resource_meta=resource_meta)
    return stub.GetTask(req, timeout=_propeller_deadline()).resource


def delete_task(stub: Any, task_type: str, resource_meta: bytes) -> None:
    """DeleteTask as propeller sends it, with its deadline."""
    req = agent_pb2.DeleteTaskRequest(task_category=category(task_type), resource_meta=resource_meta)
    stub.DeleteTask(req, timeout=_propeller_deadline())


def poll_until_terminal(stub: Any, task_type: str, resource_meta: bytes, timeout: float = 90.0):
    return wait_for(
        lambda: r if is_terminal_phase((r := get_task(stub, task_type, resource_meta)).phase) else None,
        timeout=timeout,
        interval=0.5,
    )


PHASE = execution_pb2.TaskExecution


def poll_like_propeller(
    stub: Any, tasks: list[tuple[str, bytes]], *, workers: int, resync: float, duration: float, deadline: float
) -> list[list[tuple[float, Any]]]:
    """GetTask every task the way propeller's connector plugin does, for ``duration`` seconds: each
    task's GetTask answers (time since the start, ``Resource`` or ``grpc.RpcError``), by task.

    Propeller keeps one auto-refresh cache for every connector task type, enqueues every task each
    ``resync`` seconds except one still queued (flytestdlib ``cache/in_memory_auto_refresh.go``
    ``enqueueBatches``, ``inProcessing``, which forgets an entry older than five resyncs) and has
    ``workers`` goroutines take tasks from that one FIFO queue (client-go ``util/workqueue``,
    ``doc.go``: "Fair: items processed in the order in which they are added"), each waiting for its
    GetTask before the next (flyteplugins ``go/tasks/pluginmachinery/internal/webapi/cache.go``
    ``NewResourceCache``, ``caching.workers``). A worker takes the task off ``processing`` when it
    takes it from the queue, before its GetTask (``sync``: ``w.processing.Delete`` before
    ``w.syncCb``), so a task whose GetTask outlasts a resync is sent again meanwhile (all at
    flyteplugins/v1.16.8).
    Its rate limiter is left out: it bounds how often a worker may start, not how long one is held.
    The workers are gRPC futures, not threads: this process also runs the service being measured.
    """
    import queue  # noqa: PLC0415
    from collections import deque  # noqa: PLC0415

    import grpc  # noqa: PLC0415

    answers: list[list[tuple[float, Any]]] = [[] for _ in tasks]
    waiting: deque[int] = deque()
    queued: dict[int, float] = {}  # in_memory_auto_refresh.go's ``processing``: when it was enqueued
    done: queue.Queue[tuple[int, Any]] = queue.Queue()
    busy = 0
    start = time.monotonic()
    next_resync = start

    def send(index: int) -> None:
        task_type, meta = tasks[index]
        req = agent_pb2.GetTaskRequest(task_category=category(task_type), resource_meta=meta)
        future = stub.GetTask.future(req, timeout=deadline)

        def finished(f: Any, index: int = index) -> None:
            try:
                done.put((index, f.result().resource))
            except grpc.RpcError as exc:
                done.put((index, exc))

        future.add_done_callback(finished)

    while True:
        now = time.monotonic()
        if now >= next_resync and now - start < duration:
            for index in range(len(tasks)):
                if index not in queued or now - queued[index] > 5 * resync:
                    queued[index] = now
                    waiting.append(index)
            next_resync += resync
        while busy < workers and waiting:
            index = waiting.popleft()
            queued.pop(index, None)
            busy += 1
            send(index)
        if busy == 0 and now - start >= duration:
            return answers
        try:
            index, answer = done.get(timeout=max(0.001, min(next_resync - time.monotonic(), 0.05)))
        except queue.Empty:
            continue
        busy -= 1
        answers[index].append((time.monotonic() - start, answer))

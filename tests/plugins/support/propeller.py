"""What FlytePropeller does around a connector call, reproduced with flytekit's own pieces.

Serialize the task to its TaskTemplate, write inputs.pb, render the container placeholders, call
the AsyncAgentService over gRPC, and read outputs.pb back into Python values.
"""

from __future__ import annotations

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


def create_task(stub: Any, template: TaskTemplate, prefix: str, inputs: LiteralMap | None, meta: Any) -> bytes:
    # Only a container has placeholders to render; tasks without one (a transform job) go as they are.
    rendered = render_task_template(template, prefix) if template.container is not None else template
    req = agent_pb2.CreateTaskRequest(
        inputs=inputs.to_flyte_idl() if inputs is not None else None,
        template=rendered.to_flyte_idl(),
        output_prefix=prefix,
        task_execution_metadata=meta,
    )
    return stub.CreateTask(req, timeout=60).resource_meta


def category(task_type: str) -> agent_pb2.TaskCategory:
    return agent_pb2.TaskCategory(name=task_type, version=0)


def get_task(stub: Any, task_type: str, resource_meta: bytes) -> agent_pb2.Resource:
    req = agent_pb2.GetTaskRequest(task_category=category(task_type), resource_meta=resource_meta)
    return stub.GetTask(req, timeout=60).resource


def delete_task(stub: Any, task_type: str, resource_meta: bytes) -> None:
    stub.DeleteTask(
        agent_pb2.DeleteTaskRequest(task_category=category(task_type), resource_meta=resource_meta), timeout=60
    )


def poll_until_terminal(stub: Any, task_type: str, resource_meta: bytes, timeout: float = 90.0):
    return wait_for(
        lambda: r if is_terminal_phase((r := get_task(stub, task_type, resource_meta)).phase) else None,
        timeout=timeout,
        interval=0.5,
    )


PHASE = execution_pb2.TaskExecution

"""SDK side of Codeweave: the task config and the task class (task type shared with the connector)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from flytekit import PythonFunctionTask
from flytekit.configuration import SerializationSettings
from flytekit.extend import TaskPlugins
from flytekit.extend.backend.base_connector import AsyncConnectorExecutorMixin

from cdao_connectors._local import LocalDispatchMixin
from cdao_connectors._quantity import check_quantity
from cdao_connectors.codeweave.contract import GPU_TYPES, MAX_GPUS_PER_JOB

CODEWEAVE_TASK_TYPE = "cdao-codeweave-gpu"


@dataclass(frozen=True)
class CodeweaveGPU:
    """Where and how big a Codeweave job is; validated when the task is decorated."""

    gpu_type: str
    gpus: int = 1
    cpu: str = "4"
    memory: str = "32Gi"

    def __post_init__(self) -> None:
        if self.gpu_type not in GPU_TYPES:
            raise ValueError(f"gpu_type={self.gpu_type!r} is not offered by Codeweave; choose one of {GPU_TYPES}")
        if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or not 1 <= self.gpus <= MAX_GPUS_PER_JOB:
            raise ValueError(f"gpus={self.gpus!r} must be an integer from 1 to {MAX_GPUS_PER_JOB} on Codeweave")
        check_quantity(self.cpu, "cpu")
        check_quantity(self.memory, "memory")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CodeweaveTask(LocalDispatchMixin, AsyncConnectorExecutorMixin, PythonFunctionTask[CodeweaveGPU]):
    _connector_module = "cdao_connectors.codeweave.connector"

    def __init__(self, task_config: CodeweaveGPU, task_function: Any, **kwargs: Any):
        super().__init__(task_config=task_config, task_function=task_function, task_type=CODEWEAVE_TASK_TYPE, **kwargs)

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        return self.task_config.to_dict()


TaskPlugins.register_pythontask_plugin(CodeweaveGPU, CodeweaveTask)

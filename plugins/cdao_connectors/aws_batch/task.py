"""SDK side of AWS Batch: the job shape and the task class (task type shared with the connector).

flytekitplugins-awsbatch only configures Flyte's Go ``aws-batch`` plugin, whose queue comes from
flyteadmin's execution-queue attributes; the per-task spot/on-demand choice, job definition reuse
and shared status polling need a connector, so the task type here is our own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from flytekit import PythonFunctionTask
from flytekit.configuration import SerializationSettings
from flytekit.extend import TaskPlugins
from flytekit.extend.backend.base_connector import AsyncConnectorExecutorMixin

from cdao_connectors._aws_limits import BATCH_GPUS, BATCH_MEMORY_MIB, BATCH_TIMEOUT_SECONDS, BATCH_VCPUS
from cdao_connectors._local import LocalDispatchMixin
from cdao_connectors._quantity import memory_mib, quantity_value

BATCH_TASK_TYPE = "cdao-aws-batch"


@dataclass(frozen=True)
class BatchJob:
    spot: bool = True
    vcpus: int = 1
    memory: str = "2Gi"
    gpus: int = 0
    timeout_seconds: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spot, bool):
            raise ValueError(f"spot={self.spot!r} must be True (spot queue) or False (on-demand queue)")
        BATCH_VCPUS.check("vcpus", self.vcpus)
        BATCH_GPUS.check("gpus", self.gpus)
        BATCH_MEMORY_MIB.check("memory", int(quantity_value(self.memory, "memory") // 2**20), written=self.memory)
        if self.timeout_seconds is not None:
            BATCH_TIMEOUT_SECONDS.check("timeout_seconds", self.timeout_seconds)

    @property
    def memory_mib(self) -> int:
        return memory_mib(self.memory)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchTask(LocalDispatchMixin, AsyncConnectorExecutorMixin, PythonFunctionTask[BatchJob]):
    _connector_module = "cdao_connectors.aws_batch.connector"

    def __init__(self, task_config: BatchJob, task_function: Any, **kwargs: Any):
        super().__init__(task_config=task_config, task_function=task_function, task_type=BATCH_TASK_TYPE, **kwargs)

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        return self.task_config.to_dict()


TaskPlugins.register_pythontask_plugin(BatchJob, BatchTask)

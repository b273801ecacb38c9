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

from cdao_connectors._local import LocalDispatchMixin
from cdao_connectors._quantity import memory_mib, quantity_value

BATCH_TASK_TYPE = "cdao-aws-batch"

# botocore batch 2016-08-10 JobTimeout.attemptDurationSeconds: "The minimum value for the timeout is
# 60 seconds." There is no maximum (AWS Batch User Guide, "Job timeouts",
# https://docs.aws.amazon.com/batch/latest/userguide/job_timeouts.html; its 14 days concern Fargate,
# and the stack's compute environments are EC2/SPOT).
MIN_TIMEOUT_SECONDS = 60
# botocore batch 2016-08-10 service-2.json, ResourceRequirement.value (type="MEMORY"): "You must
# specify at least 4 MiB of memory for a job."
MIN_MEMORY_MIB = 4


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
        for name in ("vcpus", "gpus"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "vcpus" else 0):
                raise ValueError(f"{name}={value!r} must be an integer >= {1 if name == 'vcpus' else 0}")
        if quantity_value(self.memory, "memory") < MIN_MEMORY_MIB * 2**20:
            raise ValueError(
                f"memory={self.memory!r} is under AWS Batch's minimum of {MIN_MEMORY_MIB} MiB "
                "(SubmitJob ResourceRequirement MEMORY)"
            )
        timeout = self.timeout_seconds
        if timeout is not None and timeout < MIN_TIMEOUT_SECONDS:
            raise ValueError(
                f"timeout_seconds={timeout!r} is under AWS Batch's minimum of {MIN_TIMEOUT_SECONDS}s "
                "(SubmitJob JobTimeout.attemptDurationSeconds)"
            )

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

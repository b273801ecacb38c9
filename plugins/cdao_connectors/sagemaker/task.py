"""SDK side of SageMaker, built on flytekitplugins-awssagemaker's Pythonic-mode tasks.

Hand-written here, and why:
* spot training: the plugin's ``SageMakerTraining`` has no ``EnableManagedSpotTraining``, so
  spot training is a task type of ours whose connector extends the plugin's request builder;
* local runs: the plugin's Pythonic tasks always go through the connector under ``pyflyte run``;
  the CDAO SDK runs bodies in-process unless ``CDAO_LOCAL_EXECUTION=connector`` (see ``_local``).
Processing keeps the plugin's own task type and connector.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import botocore.session
from flytekit.extend import TaskPlugins
from flytekitplugins.awssagemaker_processing import SageMakerProcessing, SageMakerProcessingTask
from flytekitplugins.awssagemaker_training import SageMakerTraining, SageMakerTrainingTask

from cdao_connectors._local import LocalDispatchMixin

SAGEMAKER_TRAINING_TASK_TYPE = "cdao-sagemaker-training"
# A model package served by the task image in a transform job (see ``transform``).
BATCH_TRANSFORM_TASK_TYPE = "cdao-sagemaker-batch-transform"
# The plugin's Pythonic processing type, served by the plugin's own connector.
SAGEMAKER_PROCESSING_TASK_TYPE = SageMakerProcessingTask._TASK_TYPE


# botocore sagemaker 2017-07-24 service-2.json, StoppingCondition.MaxRuntimeInSeconds documentation:
# "The maximum value is 28 days." (the shape's metadata states only its minimum, 1).
TRAINING_MAX_RUNTIME_SECONDS = 28 * 24 * 3600


@functools.cache
def api_maximum(shape: str, member: str) -> int:
    """The ``max`` botocore's SageMaker model (2017-07-24, installed with boto3) gives ``shape.member``;
    read from the model rather than copied, so the limit follows the installed botocore."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.shape_for(shape).members[member].metadata["max"]


def _check_at_most(field: str, value: int, maximum: int, source: str) -> None:
    if value > maximum:
        raise ValueError(f"{field}={value} is over SageMaker's {maximum} ({source})")


@dataclass
class Training(SageMakerTraining):
    """The plugin's training config, also refusing a runtime SageMaker refuses (the plugin checks
    only the minimums: ``PythonicJobConfig.__post_init__``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_at_most(
            "max_runtime_in_seconds",
            self.max_runtime_in_seconds,
            TRAINING_MAX_RUNTIME_SECONDS,
            "CreateTrainingJob StoppingCondition.MaxRuntimeInSeconds: 28 days",
        )


@dataclass
class SpotTraining(Training):
    """The plugin's training config plus managed spot training and checkpoints."""

    use_spot_instances: bool = True
    max_wait_in_seconds: int | None = None
    checkpoint_s3_uri: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_wait_in_seconds is not None and self.max_wait_in_seconds < self.max_runtime_in_seconds:
            raise ValueError(
                f"max_wait_in_seconds={self.max_wait_in_seconds} must be >= max_runtime_in_seconds="
                f"{self.max_runtime_in_seconds} (SageMaker counts spot waiting inside the wait budget)"
            )
        if self.checkpoint_s3_uri is not None and not self.checkpoint_s3_uri.startswith("s3://"):
            raise ValueError(f"checkpoint_s3_uri={self.checkpoint_s3_uri!r} must be an s3:// URI")


class SpotTrainingTask(LocalDispatchMixin, SageMakerTrainingTask):
    _TASK_TYPE = SAGEMAKER_TRAINING_TASK_TYPE
    _connector_module = "cdao_connectors.sagemaker.connector"


@dataclass
class Processing(SageMakerProcessing):
    """The plugin's processing config (a subclass so it maps to the in-process-locally task), also
    refusing a runtime or volume CreateProcessingJob refuses (the plugin checks only the minimums)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        limits = (
            ("max_runtime_in_seconds", "ProcessingStoppingCondition", "MaxRuntimeInSeconds"),
            ("volume_size_in_gb", "ProcessingClusterConfig", "VolumeSizeInGB"),
        )
        for field, shape, member in limits:
            _check_at_most(
                field, getattr(self, field), api_maximum(shape, member), f"CreateProcessingJob {shape}.{member}"
            )


class ProcessingTask(LocalDispatchMixin, SageMakerProcessingTask):
    _connector_module = "flytekitplugins.awssagemaker_processing.connector"


TaskPlugins.register_pythontask_plugin(SpotTraining, SpotTrainingTask)
TaskPlugins.register_pythontask_plugin(Processing, ProcessingTask)

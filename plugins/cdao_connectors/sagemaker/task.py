"""SDK side of SageMaker, built on flytekitplugins-awssagemaker's Pythonic-mode tasks.

Hand-written here, and why:
* spot training: the plugin's ``SageMakerTraining`` has no ``EnableManagedSpotTraining``, so
  spot training is a task type of ours whose connector extends the plugin's request builder;
* local runs: the plugin's Pythonic tasks always go through the connector under ``pyflyte run``;
  the CDAO SDK runs bodies in-process unless ``CDAO_LOCAL_EXECUTION=connector`` (see ``_local``).
Processing keeps the plugin's own task type and connector.
"""

from __future__ import annotations

from dataclasses import dataclass

from flytekit.extend import TaskPlugins
from flytekitplugins.awssagemaker_processing import SageMakerProcessing, SageMakerProcessingTask
from flytekitplugins.awssagemaker_training import SageMakerTraining, SageMakerTrainingTask

from cdao_connectors._aws_limits import (
    SAGEMAKER_PROCESSING_MAX_RUNTIME_SECONDS,
    SAGEMAKER_PROCESSING_VOLUME_SIZE_GB,
    SAGEMAKER_TRAINING_MAX_RUNTIME_SECONDS,
    SAGEMAKER_TRAINING_MAX_WAIT_SECONDS,
    SAGEMAKER_TRAINING_VOLUME_SIZE_GB,
)
from cdao_connectors._local import LocalDispatchMixin

SAGEMAKER_TRAINING_TASK_TYPE = "cdao-sagemaker-training"
# A model package served by the task image in a transform job (see ``transform``).
BATCH_TRANSFORM_TASK_TYPE = "cdao-sagemaker-batch-transform"
# The plugin's Pythonic processing type, served by the plugin's own connector.
SAGEMAKER_PROCESSING_TASK_TYPE = SageMakerProcessingTask._TASK_TYPE


@dataclass
class Training(SageMakerTraining):
    """The plugin's training config, also refusing a runtime or volume SageMaker refuses (the plugin
    checks only the minimums: ``PythonicJobConfig.__post_init__``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        SAGEMAKER_TRAINING_MAX_RUNTIME_SECONDS.check("max_runtime_in_seconds", self.max_runtime_in_seconds)
        SAGEMAKER_TRAINING_VOLUME_SIZE_GB.check("volume_size_in_gb", self.volume_size_in_gb)


@dataclass
class SpotTraining(Training):
    """The plugin's training config plus managed spot training and checkpoints."""

    use_spot_instances: bool = True
    max_wait_in_seconds: int | None = None
    checkpoint_s3_uri: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_wait_in_seconds is not None:
            SAGEMAKER_TRAINING_MAX_WAIT_SECONDS.check("max_wait_in_seconds", self.max_wait_in_seconds)
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
        SAGEMAKER_PROCESSING_MAX_RUNTIME_SECONDS.check("max_runtime_in_seconds", self.max_runtime_in_seconds)
        SAGEMAKER_PROCESSING_VOLUME_SIZE_GB.check("volume_size_in_gb", self.volume_size_in_gb)


class ProcessingTask(LocalDispatchMixin, SageMakerProcessingTask):
    _connector_module = "flytekitplugins.awssagemaker_processing.connector"


TaskPlugins.register_pythontask_plugin(SpotTraining, SpotTrainingTask)
TaskPlugins.register_pythontask_plugin(Processing, ProcessingTask)

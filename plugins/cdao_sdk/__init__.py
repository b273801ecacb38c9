"""CDAO SDK: task decorators and configure/run/monitor on top of flytekit.

See :mod:`cdao_sdk.routing` for which platform runs which task, :mod:`cdao_sdk.pools` for the EKS
node pools, and :mod:`cdao_sdk.settings` for what ``configure`` records.
"""

from flytekit import workflow

from cdao_sdk.client import configure, configure_sagemaker, monitor, monitor_sagemaker_jobs, run
from cdao_sdk.decorators import (
    batch_task,
    cpu_task,
    gpu_task,
    sagemaker_batch_transform_task,
    sagemaker_endpoint,
    sagemaker_processing_task,
    sagemaker_task,
    sagemaker_training_task,
    spark_task,
    task,
)
from cdao_sdk.model_package import package_model

# A SageMaker pipeline is an ordinary Flyte workflow of SageMaker tasks; the seeds import it by this name.
sagemaker_workflow = workflow

__all__ = [
    "batch_task",
    "configure",
    "configure_sagemaker",
    "cpu_task",
    "gpu_task",
    "monitor",
    "monitor_sagemaker_jobs",
    "package_model",
    "run",
    "sagemaker_batch_transform_task",
    "sagemaker_endpoint",
    "sagemaker_processing_task",
    "sagemaker_task",
    "sagemaker_training_task",
    "sagemaker_workflow",
    "spark_task",
    "task",
    "workflow",
]

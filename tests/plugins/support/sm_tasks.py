"""SageMaker tasks for the tests; the region is the environment's when they are serialised."""

from __future__ import annotations

from cdao_sdk import sagemaker_training_task

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cdao/ml:1.0.0"


@sagemaker_training_task(
    instance_type="ml.g5.xlarge",
    execution_role_arn=ROLE,
    container_image=IMAGE,
    max_runtime_seconds=1800,
    checkpoint_s3_uri="s3://flyte-data/checkpoints",
)
def fit(epochs: int) -> float:
    return 0.5 * epochs

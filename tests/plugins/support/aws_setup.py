"""Provision what infra/ creates for the connectors, inside moto."""

from __future__ import annotations

import contextlib
import json

import boto3
import requests
from cdao_connector_resources import ATTEMPT_KEY, SWEEP_AFTER, SWEEP_INDEX, SWEEP_QUEUE_ATTRIBUTE

SPOT_QUEUE = "cdao-batch-spot"
ON_DEMAND_QUEUE = "cdao-batch-on-demand"


def provision_batch(endpoint: str, region: str) -> dict[str, str]:
    # Without Docker, moto's full Batch fails every job; its simple mode marks them SUCCEEDED.
    requests.post(f"{endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10).raise_for_status()
    iam = boto3.client("iam", region_name=region)
    try:
        role = iam.create_role(
            RoleName="cdao-batch-service",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
        )["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="cdao-batch-service")["Role"]["Arn"]
    batch = boto3.client("batch", region_name=region)
    existing = {q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]}
    if SPOT_QUEUE not in existing:
        env = batch.create_compute_environment(
            computeEnvironmentName="cdao-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
        )["computeEnvironmentArn"]
        for name in (SPOT_QUEUE, ON_DEMAND_QUEUE):
            batch.create_job_queue(
                jobQueueName=name,
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
            )
    return {"CDAO_BATCH_SPOT_QUEUE": SPOT_QUEUE, "CDAO_BATCH_ON_DEMAND_QUEUE": ON_DEMAND_QUEUE}


ATTEMPT_TABLE = "cdao-test-connector-attempts"


def provision_attempt_table(region: str, table: str = ATTEMPT_TABLE) -> dict[str, str]:
    """The table infra/components/compute.py declares: partition key ``attempt`` (string), on demand,
    with the sparse sweep index (keys only) whose names cdao_connector_resources owns (the planned
    table itself is created in moto by tests/infra/test_connector_attempts.py)."""
    dynamodb = boto3.client("dynamodb", region_name=region)
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
        dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=[
                {"AttributeName": ATTEMPT_KEY, "AttributeType": "S"},
                {"AttributeName": SWEEP_QUEUE_ATTRIBUTE, "AttributeType": "S"},
                {"AttributeName": SWEEP_AFTER, "AttributeType": "N"},
            ],
            KeySchema=[{"AttributeName": ATTEMPT_KEY, "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": SWEEP_INDEX,
                    "KeySchema": [
                        {"AttributeName": SWEEP_QUEUE_ATTRIBUTE, "KeyType": "HASH"},
                        {"AttributeName": SWEEP_AFTER, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    return {"CDAO_ATTEMPT_TABLE": table}


def create_transform_jobs(region: str, model: str, names: list[str]) -> None:
    """A SageMaker model and one batch transform job per name on it, each writing to
    ``s3://flyte-data/out/<name>`` (what the transform connector's metadata points at)."""
    sm = boto3.client("sagemaker", region_name=region)
    sm.create_model(
        ModelName=model,
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
    )
    for name in names:
        sm.create_transform_job(
            TransformJobName=name,
            ModelName=model,
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://flyte-data/in"}}},
            TransformOutput={"S3OutputPath": f"s3://flyte-data/out/{name}"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )


def create_sagemaker_jobs(region: str, kind: str, names: list[str]) -> None:
    """One SageMaker `kind` ("training" or "processing") job per name, shaped as the SDK's Pythonic
    tasks start them: one ml.m5.large, 30 GB, an hour's limit."""
    sm = boto3.client("sagemaker", region_name=region)
    role, image = "arn:aws:iam::123456789012:role/sm", f"123456789012.dkr.ecr.{region}.amazonaws.com/m:1"
    resources = {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}
    for name in names:
        if kind == "training":
            sm.create_training_job(
                TrainingJobName=name,
                RoleArn=role,
                AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
                OutputDataConfig={"S3OutputPath": "s3://flyte-data/out"},
                ResourceConfig=resources,
                StoppingCondition={"MaxRuntimeInSeconds": 3600},
            )
        else:
            sm.create_processing_job(
                ProcessingJobName=name,
                RoleArn=role,
                AppSpecification={"ImageUri": image},
                ProcessingResources={"ClusterConfig": resources},
                StoppingCondition={"MaxRuntimeInSeconds": 3600},
            )

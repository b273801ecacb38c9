"""SageMaker: spot training through the plugin-based connector, and the endpoint status map, on moto."""

from __future__ import annotations

import asyncio
import uuid

import boto3
import pytest
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.emr.task import EMR_SERVERLESS_TASK_TYPE, EMR_SPARK_TASK_TYPE
from cdao_connectors.sagemaker.connector import SafeEndpointConnector
from cdao_connectors.sagemaker.task import SAGEMAKER_PROCESSING_TASK_TYPE, SAGEMAKER_TRAINING_TASK_TYPE
from flyteidl.admin import agent_pb2
from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekitplugins.awssagemaker_inference.connector import SageMakerEndpointConnector, SageMakerEndpointMetadata
from moto.sagemaker.models import sagemaker_backends
from propeller import PHASE, create_task, execution_metadata, get_task, serialize, write_inputs

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
ACCOUNT = "123456789012"


def test_spot_training_job_request_and_no_false_success(aws_env, grpc_stubs):
    # Imported once aws_env has set AWS_REGION: the decorator reads the region when it runs.
    import sm_tasks  # noqa: PLC0415

    stub, _ = grpc_stubs
    template = serialize(sm_tasks.fit)
    assert template.type == SAGEMAKER_TRAINING_TASK_TYPE
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(sm_tasks.fit, prefix, epochs=3)
    meta = create_task(stub, template, prefix, lm, execution_metadata("sm1"))

    sm = boto3.client("sagemaker", region_name=REGION)
    jobs = sm.list_training_jobs()["TrainingJobSummaries"]
    name = next(j["TrainingJobName"] for j in jobs if j["TrainingJobName"] in str(meta))
    job = sm.describe_training_job(TrainingJobName=name)
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}
    assert job["CheckpointConfig"]["S3Uri"] == "s3://flyte-data/checkpoints"
    assert job["RoleArn"] == sm_tasks.ROLE
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"

    # moto completes the job at once without running it: no outputs.pb, so not a success.
    res = get_task(stub, SAGEMAKER_TRAINING_TASK_TYPE, meta)
    assert res.phase == PHASE.FAILED
    assert "outputs.pb" in res.message


def _run(coro):
    # Not asyncio.run: it clears the thread's current event loop on exit, which breaks later tests
    # (Pulumi's mocks) that rely on asyncio.get_event_loop() in the main thread.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _endpoint(name: str) -> SageMakerEndpointMetadata:
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker-exec",
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return SageMakerEndpointMetadata(config={"EndpointName": name}, region=REGION)


def test_endpoint_statuses_beyond_the_plugins_three(aws_env):
    assert isinstance(ConnectorRegistry.get_connector("sagemaker-endpoint"), SafeEndpointConnector)
    meta = _endpoint("fraud-model")
    endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints["fraud-model"]

    ready = _run(SafeEndpointConnector().get(meta))
    assert ready.phase == PHASE.SUCCEEDED
    assert "#/endpoints/fraud-model" in ready.log_links[0].uri

    endpoint.endpoint_status = "Updating"
    with pytest.raises(KeyError):  # the gap in flytekitplugins-awssagemaker this module closes
        _run(SageMakerEndpointConnector().get(meta))
    assert _run(SafeEndpointConnector().get(meta)).phase == PHASE.RUNNING

    endpoint.endpoint_status = "SomethingNew"
    assert _run(SafeEndpointConnector().get(meta)).phase == PHASE.RUNNING
    endpoint.endpoint_status = "UpdateRollbackFailed"
    assert _run(SafeEndpointConnector().get(meta)).phase == PHASE.FAILED


def test_list_agents_advertises_every_task_type(grpc_stubs):
    _, metadata = grpc_stubs
    agents = metadata.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents
    types = {c.name for a in agents for c in a.supported_task_categories}
    assert {
        CODEWEAVE_TASK_TYPE,
        BATCH_TASK_TYPE,
        EMR_SPARK_TASK_TYPE,
        EMR_SERVERLESS_TASK_TYPE,
        SAGEMAKER_TRAINING_TASK_TYPE,
        SAGEMAKER_PROCESSING_TASK_TYPE,
        "sagemaker-transform-job",
        "sagemaker-endpoint",
    } <= types
    assert not any(a.is_sync for a in agents if a.name.startswith("CDAO"))

"""SageMaker: spot training through the plugin-based connector, the endpoint status map, one job
per attempt and quota refusals, on moto and botocore's Stubber."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from aws_setup import create_transform_jobs
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.emr.task import EMR_SERVERLESS_TASK_TYPE, EMR_SPARK_TASK_TYPE
from cdao_connectors.sagemaker import connector as sagemaker_connector
from cdao_connectors.sagemaker.connector import SafeEndpointConnector
from cdao_connectors.sagemaker.task import (
    BATCH_TRANSFORM_TASK_TYPE,
    SAGEMAKER_PROCESSING_TASK_TYPE,
    SAGEMAKER_TRAINING_TASK_TYPE,
)
from cdao_connectors.sagemaker.transform import run_locally
from cdao_sdk import sagemaker_batch_transform_task
from connector_calls import run_get
from connector_calls import run_to_end as _run
from flyteidl.admin import agent_pb2
from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekit.types.file import FlyteFile
from flytekitplugins.awssagemaker_inference.connector import SageMakerEndpointConnector, SageMakerEndpointMetadata
from moto.sagemaker.models import sagemaker_backends
from propeller import IMAGE, PHASE, create_task, execution_metadata, get_task, serialize, write_inputs
from transform_packages import build_package

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
ACCOUNT = "123456789012"


def test_spot_training_job_request_and_no_false_success(aws_env, grpc_stubs):
    import sm_tasks  # noqa: PLC0415  (the region comes from aws_env's AWS_REGION at serialisation)

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
        BATCH_TRANSFORM_TASK_TYPE,
        "sagemaker-endpoint",
    } <= types
    assert not any(a.is_sync for a in agents if a.name.startswith("CDAO"))


def test_batch_transform_serves_the_package_and_hands_on_its_predictions(aws_env, grpc_stubs, tmp_path: Path):
    stub, _ = grpc_stubs
    role = "arn:aws:iam::123456789012:role/sagemaker-exec"
    score = sagemaker_batch_transform_task(
        "tests.score_rows",
        execution_role_arn=role,
        region=REGION,
        output_s3_path="s3://flyte-data/transform",
        input_filter="$[1:]",
        join_source="Input",
        output_filter="$[0,-2]",
        env_inputs={"threshold": float},
    )
    template = serialize(score)
    assert template.type == BATCH_TRANSFORM_TASK_TYPE
    s3 = boto3.client("s3", region_name=REGION)
    run = uuid.uuid4().hex
    s3.upload_file(str(build_package(tmp_path)), "flyte-data", f"{run}/model.tar.gz")
    s3.put_object(Bucket="flyte-data", Key=f"{run}/rows.csv", Body=b"id-1,1,2\nid-2,3,4\n")
    model_uri, data_uri = f"s3://flyte-data/{run}/model.tar.gz", f"s3://flyte-data/{run}/rows.csv"
    prefix = f"s3://flyte-data/metadata/{run}"
    inputs = write_inputs(score, prefix, model=FlyteFile(model_uri), data=FlyteFile(data_uri), threshold=0.5)
    meta = create_task(stub, template, prefix, inputs, execution_metadata(f"tr-{run[:8]}"))

    sm = boto3.client("sagemaker", region_name=REGION)
    (summary,) = [j for j in sm.list_transform_jobs()["TransformJobSummaries"] if run[:8] in j["TransformJobName"]]
    job = sm.describe_transform_job(TransformJobName=summary["TransformJobName"])
    assert job["DataProcessing"] == {"InputFilter": "$[1:]", "OutputFilter": "$[0,-2]", "JoinSource": "Input"}
    assert job["Environment"] == {"THRESHOLD": "0.5"}
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == data_uri
    output = job["TransformOutput"]["S3OutputPath"]
    assert output == f"s3://flyte-data/transform/{job['TransformJobName']}"
    model = sm.describe_model(ModelName=job["ModelName"])
    # The registered task image serves the package the workflow produced.
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == model_uri
    assert model["ExecutionRoleArn"] == role

    # Propeller repeating the create of this attempt names the same model and job (moto, unlike
    # SageMaker, accepts the duplicate; the next test covers SageMaker's refusal).
    create_task(stub, template, prefix, inputs, execution_metadata(f"tr-{run[:8]}"))
    jobs = [j["TransformJobName"] for j in sm.list_transform_jobs()["TransformJobSummaries"]]
    assert [j for j in jobs if run[:8] in j] == [summary["TransformJobName"]]

    # moto marks the job Completed without running it: no predictions, so not a success.
    res = get_task(stub, BATCH_TRANSFORM_TASK_TYPE, meta)
    assert res.phase == PHASE.FAILED
    assert "wrote nothing" in res.message

    # Play SageMaker's part with the local transform, then the connector hands the output on.
    s3.download_file("flyte-data", f"{run}/model.tar.gz", str(tmp_path / "model-from-s3.tar.gz"))
    s3.download_file("flyte-data", f"{run}/rows.csv", str(tmp_path / "rows.csv"))
    run_locally(
        score.task_config, tmp_path / "model-from-s3.tar.gz", tmp_path / "rows.csv", job["Environment"], tmp_path / "o"
    )
    key = output.removeprefix("s3://flyte-data/")
    s3.upload_file(str(tmp_path / "o" / "rows.csv.out"), "flyte-data", f"{key}/rows.csv.out")
    res = get_task(stub, BATCH_TRANSFORM_TASK_TYPE, meta)
    assert res.phase == PHASE.SUCCEEDED
    assert res.outputs.literals["predictions"].scalar.blob.uri == output
    assert s3.get_object(Bucket="flyte-data", Key=f"{key}/rows.csv.out")["Body"].read() == b"id-1,21\nid-2,43\n"
    assert any("#/transform-jobs/" in link.uri for link in res.log_links)


def test_a_repeated_create_accepts_sagemakers_already_exists(aws_env, monkeypatch):
    """SageMaker refuses a second model or job of one name; for a repeated CreateTask that is success."""
    score = sagemaker_batch_transform_task(
        "tests.score_again",
        execution_role_arn="arn:aws:iam::123456789012:role/sm",
        region=REGION,
        output_s3_path="s3://flyte-data/transform",
    )
    sm = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sm)
    stubber.add_client_error(
        "create_model", "ValidationException", 'Cannot create already existing model "arn:aws:sagemaker:x"'
    )
    stubber.add_client_error(
        "create_transform_job",
        "ValidationException",
        "Job name must be unique within an AWS account and region, and a job with this name already exists",
    )
    stubber.add_response("describe_transform_job", _described_transform("InProgress"))
    stubber.add_client_error("create_model", "ValidationException", "Could not access model data at s3://x")
    inputs = write_inputs(
        score, "s3://flyte-data/metadata/again", model=FlyteFile("s3://b/m.tar.gz"), data=FlyteFile("s3://b/d.csv")
    )
    connector = sagemaker_connector.BatchTransformConnector()
    monkeypatch.setattr(connector.backend, "aws", lambda service, region: sm)
    with stubber:
        again = (serialize(score), "s3://flyte-data/metadata/again", inputs, execution_metadata("again"))
        meta = connector.create_sync(*again)
        assert meta.job_name.startswith("flyte-again-n0-0-")
        with pytest.raises(ClientError, match="Could not access model data"):
            connector.create_sync(*again)


def _described_transform(status: str) -> dict:
    """A DescribeTransformJob answer with the members botocore's model requires."""
    return {
        "TransformJobName": "j",
        "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:transform-job/j",
        "TransformJobStatus": status,
        "ModelName": "j",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/d.csv"}}},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CreationTime": "2026-01-01T00:00:00Z",
    }


def test_a_repeated_create_of_a_stopped_transform_job_fails_only_the_attempt(aws_env, monkeypatch):
    """A stopped job of the attempt's name: its first CreateTask gave up and the job was stopped
    (cdao_connectors._backends). Adopting it would answer FAILED, a permanent failure of the task
    (flyteplugins connector/plugin.go ``Status`` at flyteplugins/v1.16.8); an error fails only the
    attempt (internal/webapi/launcher.go ``launch``)."""
    score = sagemaker_batch_transform_task(
        "tests.score_stopped",
        execution_role_arn="arn:aws:iam::123456789012:role/sm",
        region=REGION,
        output_s3_path="s3://flyte-data/transform",
    )
    sm = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sm)
    stubber.add_client_error("create_model", "ValidationException", 'Cannot create already existing model "x"')
    stubber.add_client_error("create_transform_job", "ResourceInUse", "a job with this name already exists")
    stubber.add_response("describe_transform_job", _described_transform("Stopped"))
    inputs = write_inputs(
        score, "s3://flyte-data/metadata/stopped", model=FlyteFile("s3://b/m.tar.gz"), data=FlyteFile("s3://b/d.csv")
    )
    connector = sagemaker_connector.BatchTransformConnector()
    monkeypatch.setattr(connector.backend, "aws", lambda service, region: sm)
    with stubber, pytest.raises(RuntimeError, match=r"was stopped .*next attempt"):
        connector.create_sync(serialize(score), "s3://flyte-data/metadata/stopped", inputs, execution_metadata("s"))


def test_a_repeated_transform_create_whose_check_is_throttled_answers_the_job(aws_env, monkeypatch):
    """The attempt's job exists (SageMaker refused a second one of its name); a throttled Describe
    of it must not turn the CreateTask into an error, which fails the attempt and leaves the job
    with nobody to stop it (launcher.go, plugin.go ``Delete`` at flyteplugins/v1.16.8)."""
    score = sagemaker_batch_transform_task(
        "tests.score_unchecked",
        execution_role_arn="arn:aws:iam::123456789012:role/sm",
        region=REGION,
        output_s3_path="s3://flyte-data/transform",
    )
    sm = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sm)
    stubber.add_client_error("create_model", "ValidationException", 'Cannot create already existing model "x"')
    stubber.add_client_error("create_transform_job", "ResourceInUse", "a job with this name already exists")
    stubber.add_client_error("describe_transform_job", "ThrottlingException", "Rate exceeded", http_status_code=400)
    inputs = write_inputs(
        score, "s3://flyte-data/metadata/unchecked", model=FlyteFile("s3://b/m.tar.gz"), data=FlyteFile("s3://b/d.csv")
    )
    connector = sagemaker_connector.BatchTransformConnector()
    monkeypatch.setattr(connector.backend, "aws", lambda service, region: sm)
    with stubber:
        meta = connector.create_sync(
            serialize(score), "s3://flyte-data/metadata/unchecked", inputs, execution_metadata("u")
        )
        stubber.assert_no_pending_responses()
    assert meta.job_name.startswith("flyte-u-n0-0-")


def test_training_job_deleted_outside_flyte_is_failed_with_the_reason(aws_env, grpc_stubs):
    """SageMaker answers Describe* of a job that no longer exists with ValidationException
    "Requested resource not found." although the model declares ResourceNotFound
    (https://github.com/aws/aws-sdk/issues/165); moto says "Could not find training job"."""
    import sm_tasks  # noqa: PLC0415

    stub, _ = grpc_stubs
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(sm_tasks.fit, prefix, epochs=1)
    meta = create_task(stub, serialize(sm_tasks.fit), prefix, lm, execution_metadata(f"gone-{uuid.uuid4().hex[:6]}"))
    jobs = sagemaker_backends[ACCOUNT][REGION].training_jobs
    name = next(n for n in jobs if n in str(meta))
    del jobs[name]
    gone = get_task(stub, SAGEMAKER_TRAINING_TASK_TYPE, meta)
    assert gone.phase == PHASE.FAILED
    assert name in gone.message and "deleted outside Flyte" in gone.message


def test_transform_job_deleted_outside_flyte_is_failed_with_the_reason(aws_env, grpc_stubs):
    stub, _ = grpc_stubs
    meta = sagemaker_connector.BatchTransformMetadata(
        job_name="flyte-deleted-elsewhere", region=REGION, output_uri="s3://flyte-data/transform/x"
    ).encode()
    gone = get_task(stub, BATCH_TRANSFORM_TASK_TYPE, meta)
    assert gone.phase == PHASE.FAILED
    assert "flyte-deleted-elsewhere" in gone.message and "deleted outside Flyte" in gone.message


def test_endpoint_deleted_outside_flyte_is_failed_with_the_reason(aws_env):
    meta = SageMakerEndpointMetadata(config={"EndpointName": "cdao-deleted-endpoint"}, region=REGION)
    gone = _run(SafeEndpointConnector().get(meta))
    assert gone.phase == PHASE.FAILED and "cdao-deleted-endpoint" in gone.message


def test_transform_get_tasks_share_one_list_of_in_progress_jobs(aws_env, monkeypatch):
    # One DescribeTransformJob per GetTask cost N calls per round (p99 655-940 ms at 1000 jobs).
    # ListTransformJobs pages carry TransformJobStatus and FailureReason (botocore sagemaker/2017-07-24).
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "60")
    names = [f"shared-view-{i}" for i in range(15)]
    create_transform_jobs(REGION, "shared-view", names)
    for name in names:
        # moto completes a transform job at once; these are still running.
        sagemaker_backends[ACCOUNT][REGION].transform_jobs[name].transform_job_status = "InProgress"
    metas = [sagemaker_connector.BatchTransformMetadata(n, REGION, f"s3://flyte-data/out/{n}") for n in names]
    connector = sagemaker_connector.BatchTransformConnector()
    calls: list[str] = []
    connector.backend.aws("sagemaker", REGION).meta.events.register(
        "before-call.sagemaker.*", lambda model, **_: calls.append(model.name)
    )
    assert [run_get(connector, m).phase for m in metas] == [PHASE.RUNNING] * 15
    cache = connector.status_cache(REGION, 60.0)
    calls.clear()
    failed = sagemaker_backends[ACCOUNT][REGION].transform_jobs[names[0]]
    failed.transform_job_status, failed.failure_reason = "Failed", "ClientError: out of memory"
    cache.refresh_ahead(older_than=0.0)  # one polling round's refresh
    assert calls == ["ListTransformJobs", "DescribeTransformJob"]  # the one that left InProgress
    calls.clear()
    phases = [run_get(connector, m) for m in metas]
    assert calls == []  # the round's GetTasks read the shared view
    assert phases[0].phase == PHASE.FAILED and "out of memory" in phases[0].message
    assert [p.phase for p in phases[1:]] == [PHASE.RUNNING] * 14
    cache.refresh_ahead(older_than=0.0)
    assert calls == ["ListTransformJobs"]  # a failed job stays failed: never asked again


# The endpoint, tuning and inference recommender task types (values.yaml supportedTaskTypes) are
# async connectors (AsyncConnectorBase: flytekitplugins awssagemaker_inference/connector.py,
# awssagemaker_hyperparameter_tuning/connector.py, awssagemaker_inference_recommender/connector.py,
# whose get() is one Describe). Once their status is known, AWS throttling must not spend
# propeller's error budget (cdao_connectors._deadlines.PROPELLER_MAX_SYSTEM_FAILURES): they answer
# the last known status, marked stale, as every other connector does.
_CREATED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
# Each Describe's answer with every member botocore's sagemaker/2017-07-24 model marks required
# (Stubber checks it), in a status the plugin maps to RUNNING.
_DESCRIBED = {
    "sagemaker-endpoint": (
        "describe_endpoint",
        {"EndpointName": "ep-1"},
        {
            "EndpointName": "ep-1",
            "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/ep-1",
            "EndpointStatus": "Creating",
            "CreationTime": _CREATED,
            "LastModifiedTime": _CREATED,
        },
    ),
    "sagemaker-hyperparameter-tuning-job": (
        "describe_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobName": "hpo-1"},
        {
            "HyperParameterTuningJobName": "hpo-1",
            "HyperParameterTuningJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:hyper-parameter-tuning-job/hpo-1",
            "HyperParameterTuningJobConfig": {
                "Strategy": "Bayesian",
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
            },
            "HyperParameterTuningJobStatus": "InProgress",
            "CreationTime": _CREATED,
            "TrainingJobStatusCounters": {"InProgress": 2},
            "ObjectiveStatusCounters": {"Pending": 2},
        },
    ),
    "sagemaker-inference-recommender-job": (
        "describe_inference_recommendations_job",
        {"JobName": "ir-1"},
        {
            "JobName": "ir-1",
            "JobType": "Default",
            "JobArn": f"arn:aws:sagemaker:{REGION}:123456789012:inference-recommendations-job/ir-1",
            "RoleArn": "arn:aws:iam::123456789012:role/r",
            "Status": "IN_PROGRESS",
            "CreationTime": _CREATED,
            "LastModifiedTime": _CREATED,
            "InputConfig": {},
        },
    ),
}


@pytest.mark.parametrize("task_type", sorted(_DESCRIBED))
def test_endpoint_tuning_and_recommender_tasks_answer_a_known_status_while_aws_throttles(
    aws_env, monkeypatch, task_type
):
    from botocore.config import Config  # noqa: PLC0415
    from cdao_connectors import _deadlines  # noqa: PLC0415

    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "0.001")  # no background pass: every GetTask refreshes
    method, name, described = _DESCRIBED[task_type]
    connector = type(ConnectorRegistry.get_connector(task_type))()
    meta = connector.metadata_type(config=dict(name), region=REGION)
    client = boto3.client("sagemaker", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    failures = _deadlines.PROPELLER_MAX_SYSTEM_FAILURES + 2
    with Stubber(client) as stub:
        stub.add_response(method, described, name)
        for _ in range(failures):
            # AWS's throttling answer (HTTP 400, the SageMaker API reference's "Common Errors").
            stub.add_client_error(method, "ThrottlingException", "Rate exceeded", 400, None, name)
        monkeypatch.setattr(connector.backend, "aws", lambda service, region, **_: client)
        assert _run(connector.get(meta)).phase == PHASE.RUNNING  # known
        for _ in range(failures):
            time.sleep(0.002)  # past max_age (1 ms): the GetTask refreshes, and fails
            resource = _run(connector.get(meta))
            assert resource.phase == PHASE.RUNNING, resource.message
            assert "last known status" in resource.message and "ThrottlingException" in resource.message
        stub.assert_no_pending_responses()


_TRAINING_REQUEST = {
    # A create_training_job request as flytekitplugins-awssagemaker 1.16.31's SageMakerTrainingJobTask
    # documents it: its name made unique by ``{idempotence_token}`` (awssagemaker_training/task.py).
    "TrainingJobName": "fit-{idempotence_token}",
    "RoleArn": "arn:aws:iam::123456789012:role/sagemaker-exec",
    "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "OutputDataConfig": {"S3OutputPath": "s3://flyte-data/models"},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
}


def _request_template(task_type: str, config: dict) -> object:
    from flytekitplugins.awssagemaker_batch_transform.task import SageMakerTransformJobTask  # noqa: PLC0415
    from flytekitplugins.awssagemaker_hyperparameter_tuning.task import (  # noqa: PLC0415
        SageMakerHyperParameterTuningJobTask,
    )
    from flytekitplugins.awssagemaker_inference import SageMakerEndpointTask  # noqa: PLC0415
    from flytekitplugins.awssagemaker_inference_recommender.task import (  # noqa: PLC0415
        SageMakerInferenceRecommenderJobTask,
    )
    from flytekitplugins.awssagemaker_processing.task import SageMakerProcessingJobTask  # noqa: PLC0415
    from flytekitplugins.awssagemaker_training.task import SageMakerTrainingJobTask  # noqa: PLC0415

    task_class = {
        "sagemaker-training-job": SageMakerTrainingJobTask,
        "sagemaker-processing-job": SageMakerProcessingJobTask,
        "sagemaker-hyperparameter-tuning-job": SageMakerHyperParameterTuningJobTask,
        "sagemaker-transform-job": SageMakerTransformJobTask,
        "sagemaker-inference-recommender-job": SageMakerInferenceRecommenderJobTask,
        "sagemaker-endpoint": SageMakerEndpointTask,
    }
    return serialize(task_class[task_type](name=f"tests.{task_type}", config=config, region=REGION))


def _create(connector, task_type: str, config: dict, retry: int) -> object:
    import copy  # noqa: PLC0415

    template = _request_template(task_type, copy.deepcopy(config))
    prefix = f"s3://flyte-data/metadata/giveup/{task_type}/{retry}"
    meta = execution_metadata("giveup", retry=retry)
    return _run(connector.create(task_template=template, output_prefix=prefix, task_execution_metadata=meta))


def test_the_next_training_attempt_after_a_give_up_starts_a_new_job(aws_env):
    """Attempt 0's give-up stopped its job; propeller starts attempt 1 afresh (launcher.go ``launch``
    at flyteplugins/v1.16.8). Its job must not be the stopped one, whose FAILED "Stopped" would fail
    the whole task (plugin.go ``Status``): the plugin's ``{idempotence_token}`` hashes only the
    rendered request (boto3_mixin.py ``_call``) and its create takes ResourceInUse as its job
    (awssagemaker_training/connector.py ``create``)."""
    connector = type(ConnectorRegistry.get_connector("sagemaker-training-job"))()
    first = _create(connector, "sagemaker-training-job", _TRAINING_REQUEST, retry=0)
    sm = boto3.client("sagemaker", region_name=REGION)
    # Attempt 0's give-up stopped it (moto 5 has no StopTrainingJob: its status is set in moto).
    sagemaker_backends[ACCOUNT][REGION].training_jobs[first.config["TrainingJobName"]].training_job_status = "Stopped"
    second = _create(connector, "sagemaker-training-job", _TRAINING_REQUEST, retry=1)
    assert second.config["TrainingJobName"] != first.config["TrainingJobName"]
    assert sm.describe_training_job(TrainingJobName=second.config["TrainingJobName"])["TrainingJobStatus"] not in (
        "Stopping",
        "Stopped",
    )
    # A repeated CreateTask of one attempt still gets that attempt's job.
    again = _create(connector, "sagemaker-training-job", _TRAINING_REQUEST, retry=1)
    assert again.config["TrainingJobName"] == second.config["TrainingJobName"]


def test_the_next_endpoint_attempt_after_a_give_up_creates_a_new_endpoint(aws_env):
    """As for training jobs; the endpoint plugin adopts "Cannot create already existing" whatever
    the name (awssagemaker_inference/connector.py ``create``), so attempt 1 would follow attempt
    0's endpoint while the give-up deletes it."""
    _endpoint("giveup-base")  # its model and endpoint config
    request = {"EndpointName": "ep-{idempotence_token}", "EndpointConfigName": "giveup-base"}
    connector = type(ConnectorRegistry.get_connector("sagemaker-endpoint"))()
    first = _create(connector, "sagemaker-endpoint", request, retry=0)
    sagemaker_backends[ACCOUNT][REGION].endpoints[first.config["EndpointName"]].endpoint_status = "Deleting"
    second = _create(connector, "sagemaker-endpoint", request, retry=1)
    assert second.config["EndpointName"] != first.config["EndpointName"]


def _stubbed_sagemaker(connector, monkeypatch) -> tuple[object, Stubber]:
    """The connector's SageMaker client answered by a Stubber; its other clients (the attempt table) as they are."""
    sm = boto3.client("sagemaker", region_name=REGION)
    real = connector.backend.aws
    monkeypatch.setattr(
        connector.backend,
        "aws",
        lambda service, region, **kw: sm if service == "sagemaker" else real(service, region, **kw),
    )
    return sm, Stubber(sm)


def test_an_endpoint_of_a_fixed_name_being_deleted_fails_only_the_attempt(aws_env, monkeypatch):
    """A name without ``{idempotence_token}`` is the same for every attempt; the plugin takes
    "Cannot create already existing" as its endpoint (awssagemaker_inference/connector.py
    ``create``). An endpoint a give-up is deleting must fail the attempt, not be answered."""
    connector = type(ConnectorRegistry.get_connector("sagemaker-endpoint"))()
    _, stubber = _stubbed_sagemaker(connector, monkeypatch)
    # SageMaker's answer to CreateEndpoint of an existing name (the message the plugin matches).
    stubber.add_client_error(
        "create_endpoint",
        "ValidationException",
        'Cannot create already existing endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/fixed".',
    )
    stubber.add_response(
        "describe_endpoint",
        {
            "EndpointName": "fixed",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/fixed",
            "EndpointStatus": "Deleting",
            "CreationTime": "2026-01-01T00:00:00Z",
            "LastModifiedTime": "2026-01-01T00:00:00Z",
        },
    )
    request = {"EndpointName": "fixed", "EndpointConfigName": "fixed"}
    with stubber, pytest.raises(RuntimeError, match=r"(?i)endpoint fixed, which is Deleting.*next attempt"):
        _create(connector, "sagemaker-endpoint", request, retry=1)


def test_an_endpoint_refused_for_quota_is_a_create_error_naming_it(aws_env, monkeypatch):
    """The plugin answers ``ResourceLimitExceeded`` as a created endpoint (awssagemaker_inference/
    connector.py ``create``); its GetTask then reports it "deleted outside Flyte?", the wrong cause."""
    connector = type(ConnectorRegistry.get_connector("sagemaker-endpoint"))()
    _, stubber = _stubbed_sagemaker(connector, monkeypatch)
    # SageMaker's quota refusal (the API model's ResourceLimitExceeded; the message the plugin matches).
    quota = (
        "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0 Instances, with current "
        "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to "
        "request an increase for this quota."
    )
    stubber.add_client_error("create_endpoint", "ResourceLimitExceeded", quota)
    request = {"EndpointName": "over-quota", "EndpointConfigName": "c"}
    with stubber, pytest.raises(RuntimeError, match=r"EndpointName=over-quota.*quota.*ml.g5.xlarge for endpoint usage"):
        _create(connector, "sagemaker-endpoint", request, retry=0)


def test_a_repeated_training_create_of_a_stopped_job_fails_only_the_attempt(aws_env, monkeypatch):
    """A repeat of the attempt's CreateTask after its give-up stopped the job (propeller lost its
    state): the plugin takes ``ResourceInUse`` (in CreateTrainingJob's errors, botocore
    ``sagemaker/2017-07-24``) as its job; the Stopped job must fail the attempt, not be answered."""
    connector = type(ConnectorRegistry.get_connector("sagemaker-training-job"))()
    _, stubber = _stubbed_sagemaker(connector, monkeypatch)
    stubber.add_client_error("create_training_job", "ResourceInUse", "Training job names must be unique")
    stubber.add_response(
        "describe_training_job",
        {
            "TrainingJobName": "fit-0",
            "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/fit-0",
            "ModelArtifacts": {"S3ModelArtifacts": ""},
            "TrainingJobStatus": "Stopped",
            "SecondaryStatus": "Stopped",
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {"VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "CreationTime": "2026-01-01T00:00:00Z",
        },
    )
    with stubber, pytest.raises(RuntimeError, match=r"(?i)TrainingJob fit-.*, which is Stopped.*next attempt"):
        _create(connector, "sagemaker-training-job", _TRAINING_REQUEST, retry=0)
    stubber.assert_no_pending_responses()


_ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
# Per request-based task type: its create method, a minimal request botocore's SageMaker model
# (2017-07-24) accepts, with the name built on ``{idempotence_token}`` as the plugin's task docs
# show, the name field, and the create's answer.
_REQUEST_BASED = {
    "sagemaker-training-job": ("create_training_job", _TRAINING_REQUEST, "TrainingJobName", "TrainingJobArn"),
    "sagemaker-processing-job": (
        "create_processing_job",
        {
            "ProcessingJobName": "prep-{idempotence_token}",
            "ProcessingResources": {
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
            },
            "AppSpecification": {"ImageUri": IMAGE},
            "RoleArn": _ROLE,
        },
        "ProcessingJobName",
        "ProcessingJobArn",
    ),
    "sagemaker-hyperparameter-tuning-job": (
        "create_hyper_parameter_tuning_job",
        {
            "HyperParameterTuningJobName": "hpo-{idempotence_token}",
            "HyperParameterTuningJobConfig": {
                "Strategy": "Random",
                "ResourceLimits": {"MaxParallelTrainingJobs": 1, "MaxNumberOfTrainingJobs": 2},
            },
            "TrainingJobDefinition": {
                "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                "RoleArn": _ROLE,
                "OutputDataConfig": {"S3OutputPath": "s3://flyte-data/models"},
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            },
        },
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobArn",
    ),
    "sagemaker-transform-job": (
        "create_transform_job",
        {
            "TransformJobName": "score-{idempotence_token}",
            "ModelName": "m",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/d"}}},
            "TransformOutput": {"S3OutputPath": "s3://b/out"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        },
        "TransformJobName",
        "TransformJobArn",
    ),
    "sagemaker-inference-recommender-job": (
        "create_inference_recommendations_job",
        {"JobName": "rec-{idempotence_token}", "JobType": "Default", "RoleArn": _ROLE, "InputConfig": {}},
        "JobName",
        "JobArn",
    ),
    "sagemaker-endpoint": (
        "create_endpoint",
        {"EndpointName": "ep-{idempotence_token}", "EndpointConfigName": "c"},
        "EndpointName",
        "EndpointArn",
    ),
}


@pytest.mark.parametrize("task_type", sorted(_REQUEST_BASED))
def test_every_request_based_task_names_a_new_job_per_attempt(aws_env, monkeypatch, task_type):
    """Every request-based connector of the plugin names its job with a token of the rendered
    request only (boto3_mixin.py ``_call``); two attempts of one task must name two jobs, and a
    repeat of one attempt its one job. The requests sent are read as botocore has them."""
    method, request, name_field, arn_field = _REQUEST_BASED[task_type]
    connector = type(ConnectorRegistry.get_connector(task_type))()
    sm, stubber = _stubbed_sagemaker(connector, monkeypatch)
    sent: list[dict] = []
    sm.meta.events.register(
        f"provide-client-params.sagemaker.{sm.meta.method_to_api_mapping[method]}",
        lambda params, **_: sent.append(dict(params)),
    )
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:x/{task_type}"
    with stubber:
        for retry in (0, 1, 1):
            stubber.add_response(method, {arn_field: arn})
            _create(connector, task_type, request, retry)
    names = [params[name_field] for params in sent]
    assert names[0] != names[1] and names[1] == names[2], names
    assert all({tag["Key"] for tag in params["Tags"]} == {"flyte-attempt", "flyte-node"} for params in sent)


def test_a_batch_transform_refused_for_quota_names_the_job(aws_env, monkeypatch):
    """SageMaker's quota refusal of the transform job (ResourceLimitExceeded, in CreateTransformJob's
    errors in botocore's model) is a CreateTask error naming the task's job and keeping AWS's message."""
    from cdao_connectors.sagemaker._plugin_clients import QuotaExceeded  # noqa: PLC0415

    score = sagemaker_batch_transform_task(
        "tests.score_quota",
        execution_role_arn="arn:aws:iam::123456789012:role/sm",
        region=REGION,
        output_s3_path="s3://flyte-data/transform",
    )
    sm = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sm)
    stubber.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"})
    quota = (
        "The account-level service limit 'ml.m5.large for transform job usage' is 0 Instances, with current "
        "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to "
        "request an increase for this quota."
    )
    stubber.add_client_error("create_transform_job", "ResourceLimitExceeded", quota)
    prefix = "s3://flyte-data/metadata/quota"
    inputs = write_inputs(score, prefix, model=FlyteFile("s3://b/m.tar.gz"), data=FlyteFile("s3://b/d.csv"))
    connector = sagemaker_connector.BatchTransformConnector()
    monkeypatch.setattr(connector.backend, "aws", lambda service, region: sm)
    with stubber, pytest.raises(QuotaExceeded, match=r"TransformJobName=flyte-q-n0-0-.*transform job usage"):
        connector.create_sync(serialize(score), prefix, inputs, execution_metadata("q"))

"""GetTask of EMR Serverless runs and SageMaker training, processing and transform jobs reads one
shared, short-lived view fed by the List APIs, not a Describe per job and poll.

moto implements ListJobRuns (``states`` and ``createdAtAfter`` filters, no paging:
moto/emrserverless/models.py ``list_job_runs``) and ListTrainingJobs / ListProcessingJobs
(``StatusEquals``, ``CreationTimeAfter``, ``NextToken`` paging over all jobs before filtering:
moto/sagemaker/models.py). ListJobRuns' paging, which moto does not do, is tested with botocore's
Stubber and pages shaped by the service model (botocore emr-serverless/2021-07-13
ListJobRunsResponse: ``jobRuns`` of JobRunSummary, ``nextToken``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_setup import create_sagemaker_jobs
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from cdao_connectors import _deadlines, _status_cache
from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector, job_runs
from cdao_connectors.sagemaker import _job_statuses
from cdao_connectors.sagemaker.connector import SpotTrainingConnector
from cdao_connectors.sagemaker.task import SAGEMAKER_PROCESSING_TASK_TYPE
from connector_calls import run_to_end as _run
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekitplugins.awsemrserverless.connector import EMRServerlessJobMetadata
from flytekitplugins.awssagemaker_inference.pythonic_base import PythonicJobMetadata
from moto.emrserverless.models import emrserverless_backends
from moto.sagemaker.models import sagemaker_backends

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/r"


def _record_calls(client: Any, service: str) -> list[str]:
    calls: list[str] = []
    client.meta.events.register(f"before-call.{service}.*", lambda model, **_: calls.append(model.name))
    return calls


def test_emr_serverless_get_tasks_share_one_listing_of_live_runs(aws_env, monkeypatch):
    # One GetJobRun per GetTask: p99 227 ms at 200 runs in flight (plugins/benchmarks).
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "60")
    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="listed", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    ids = [
        client.start_job_run(
            applicationId=app, executionRoleArn=ROLE, jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}}
        )["jobRunId"]
        for _ in range(8)
    ]
    runs = {run.id: run for run in emrserverless_backends[ACCOUNT][REGION].job_runs[app]}
    for run_id in ids:
        runs[run_id].state = "RUNNING"  # moto ends a run at once; these are still running
    connector = IdempotentEMRServerlessConnector()
    calls = _record_calls(connector.backend.aws("emr-serverless", REGION), "emr-serverless")
    metas = [EMRServerlessJobMetadata(application_id=app, job_run_id=i, region=REGION) for i in ids]

    assert [_run(connector.get(m)).phase for m in metas] == [TaskExecution.RUNNING] * 8
    assert calls == ["GetJobRun"] * 8  # first sight: each run read once
    failed, gone = runs[ids[0]], runs[ids[1]]
    failed.state, failed.state_details = "FAILED", "Driver exited with code 1"
    emrserverless_backends[ACCOUNT][REGION].job_runs[app].remove(gone)  # deleted outside Flyte
    cache = connector.status_cache(REGION, 60.0)
    calls.clear()
    cache.refresh_ahead(older_than=0.0)  # one polling round's refresh
    assert sorted(calls) == ["GetJobRun", "GetJobRun", "ListJobRuns"]  # the two no longer listed as live

    calls.clear()
    resources = [_run(connector.get(m)) for m in metas]
    assert calls == []  # the round's GetTasks read the shared view
    assert resources[0].phase == TaskExecution.FAILED and "Driver exited with code 1" in resources[0].message
    assert resources[1].phase == TaskExecution.FAILED and "deleted outside Flyte" in resources[1].message
    assert [r.phase for r in resources[2:]] == [TaskExecution.RUNNING] * 6
    cache.refresh_ahead(older_than=0.0)
    assert calls == ["ListJobRuns", "GetJobRun"]  # the failed run is never asked again; the gone one is


def _summary(run_id: str, state: str, created: datetime) -> dict[str, Any]:
    """A JobRunSummary with every member the service model marks required (Stubber checks it)."""
    return {
        "applicationId": "app1",
        "id": run_id,
        "arn": f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/app1/jobruns/{run_id}",
        "createdBy": ROLE,
        "createdAt": created,
        "updatedAt": created,
        "executionRole": ROLE,
        "state": state,
        "stateDetails": f"job run {state.lower()}",
        "releaseLabel": "emr-7.5.0",
    }


def test_emr_serverless_listing_pages_and_narrows_by_the_oldest_tracked_run(aws_env):
    client = boto3.client("emr-serverless", region_name=REGION)  # every call answered by the Stubber
    oldest = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    known = {("app1", "r1"): {"createdAt": oldest}, ("app1", "r2"): {"createdAt": oldest + timedelta(hours=1)}}
    expected = {
        "applicationId": "app1",
        "states": ["SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "CANCELLING", "QUEUED"],
        "maxResults": 50,
        "createdAtAfter": oldest - timedelta(seconds=1),
    }
    with Stubber(client) as stub:
        stub.add_response(
            "list_job_runs", {"jobRuns": [_summary("r1", "RUNNING", oldest)], "nextToken": "p2"}, expected
        )
        stub.add_response(
            "list_job_runs", {"jobRuns": [_summary("r2", "PENDING", oldest)]}, {**expected, "nextToken": "p2"}
        )
        ended = {**_summary("r3", "FAILED", oldest), "stateDetails": "out of memory"}
        ended["jobRunId"] = ended.pop("id")
        ended["jobDriver"] = {"sparkSubmit": {"entryPoint": "s3://b/e.py"}}
        stub.add_response(
            "get_job_run", {"jobRun": ended}, {"applicationId": "app1", "jobRunId": "r3"}
        )  # not listed as live: read by id
        stub.add_client_error(
            "get_job_run",
            "ResourceNotFoundException",
            "Job run r4 does not exist",
            404,
            None,
            {"applicationId": "app1", "jobRunId": "r4"},
        )
        found = job_runs(
            client,
            [("app1", "r1"), ("app1", "r2"), ("app1", "r3"), ("app1", "r4")],
            listing=True,
            known=known.get,
        )
        stub.assert_no_pending_responses()
    assert {key[1]: run["state"] for key, run in found.items()} == {"r1": "RUNNING", "r2": "PENDING", "r3": "FAILED"}


def _training_jobs(names: list[str]) -> None:
    create_sagemaker_jobs(REGION, "training", names)
    for name in names:
        sagemaker_backends[ACCOUNT][REGION].training_jobs[name].training_job_status = "InProgress"


def _processing_jobs(names: list[str]) -> None:
    create_sagemaker_jobs(REGION, "processing", names)
    for name in names:
        sagemaker_backends[ACCOUNT][REGION].processing_jobs[name].processing_job_status = "InProgress"


def _fail(kind: str, name: str) -> None:
    backend = sagemaker_backends[ACCOUNT][REGION]
    if kind == "training":
        job = backend.training_jobs[name]
        job.training_job_status, job.failure_reason = "Failed", "AlgorithmError: out of memory"
    else:
        job = backend.processing_jobs[name]
        job.processing_job_status, job.failure_reason = "Failed", "AlgorithmError: out of memory"


@pytest.mark.parametrize("kind", ["training", "processing"])
def test_sagemaker_get_tasks_share_one_paged_listing_of_jobs_in_progress(aws_env, monkeypatch, kind):
    # One Describe per GetTask: p99 271 ms (training) and 201 ms (processing) at 200 jobs in flight.
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "60")
    monkeypatch.setattr(_job_statuses, "LIST_PAGE", 2)  # moto pages like SageMaker; five jobs make three pages
    names = [f"listed-{kind}-{i}" for i in range(5)]
    (_training_jobs if kind == "training" else _processing_jobs)(names)
    if kind == "training":
        connector = SpotTrainingConnector()
    else:
        connector = type(ConnectorRegistry.get_connector(SAGEMAKER_PROCESSING_TASK_TYPE))()
    calls = _record_calls(connector.backend.aws("sagemaker", REGION), "sagemaker")
    metas = [PythonicJobMetadata(job_name=n, output_prefix=f"s3://flyte-data/{n}", region=REGION) for n in names]
    describe = "DescribeTrainingJob" if kind == "training" else "DescribeProcessingJob"
    listing = "ListTrainingJobs" if kind == "training" else "ListProcessingJobs"

    assert [_run(connector.get(m)).phase for m in metas] == [TaskExecution.RUNNING] * 5
    assert calls == [describe] * 5  # first sight
    _fail(kind, names[0])
    kinds = {"training": _job_statuses.TRAINING, "processing": _job_statuses.PROCESSING}
    cache = connector.status_caches((kinds[kind], REGION), 60.0)
    calls.clear()
    cache.refresh_ahead(older_than=0.0)
    listed = [c for c in calls if c == listing]
    assert len(listed) >= 2 and calls.count(describe) == 1  # paged; only the failed job described

    calls.clear()
    resources = [_run(connector.get(m)) for m in metas]
    assert calls == []
    assert resources[0].phase == TaskExecution.FAILED and "out of memory" in resources[0].message
    assert [r.phase for r in resources[1:]] == [TaskExecution.RUNNING] * 4


def test_a_throttled_listing_keeps_the_last_status_and_a_throttled_first_read_is_an_error(aws_env, monkeypatch):
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "60")
    names = ["throttled-0", "throttled-1"]
    _training_jobs(names)
    connector = SpotTrainingConnector()
    # A client that does not retry, so each stubbed throttling answer is one call.
    client = boto3.client("sagemaker", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    monkeypatch.setattr(connector.backend, "aws", lambda service, region, **_: client)
    first = PythonicJobMetadata(job_name=names[0], output_prefix="s3://flyte-data/t0", region=REGION)
    assert _run(connector.get(first)).phase == TaskExecution.RUNNING
    cache = connector.status_caches((_job_statuses.TRAINING, REGION), 60.0)
    with Stubber(client) as stub:
        stub.add_client_error("list_training_jobs", "ThrottlingException", "Rate exceeded", 400)
        with pytest.raises(ClientError, match="ThrottlingException"):
            cache.refresh_ahead(older_than=0.0)
        # The last answer stays, within its age bound: a throttled refresh is not a status.
        assert _run(connector.get(first)).phase == TaskExecution.RUNNING
        stub.add_client_error("describe_training_job", "ThrottlingException", "Rate exceeded", 400)
        second = PythonicJobMetadata(job_name=names[1], output_prefix="s3://flyte-data/t1", region=REGION)
        # A job never read yet cannot be answered: the GetTask fails (propeller retries), never FAILED.
        with pytest.raises(Exception, match="ThrottlingException"):
            _run(connector.get(second))
        stub.assert_no_pending_responses()


# More failed refreshes than propeller tolerates GetTask errors in a task's life (test_error_budget.py).
_FAILURES = _deadlines.PROPELLER_MAX_SYSTEM_FAILURES + 2


def _throttled_client(service: str, method: str, code: str = "ThrottlingException") -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    stub = Stubber(client)
    for _ in range(_FAILURES):
        # HTTP 400 for both, as AWS's "Common Errors" list them (ThrottlingException,
        # AccessDeniedException; e.g. https://docs.aws.amazon.com/sagemaker/latest/APIReference/CommonErrors.html).
        stub.add_client_error(method, code, "Rate exceeded" if code == "ThrottlingException" else "Not authorized", 400)
    return client, stub


def _known_plugin_jobs(monkeypatch) -> list[tuple[Any, Any, str, str]]:
    """A RUNNING SageMaker training job and EMR Serverless run whose status the plugin-based
    connectors know: (connector, metadata, AWS service, the status call) of each."""
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "0.001")  # no background pass: every GetTask refreshes
    _training_jobs(["budget-0"])
    training = SpotTrainingConnector()
    training_meta = PythonicJobMetadata(job_name="budget-0", output_prefix="s3://flyte-data/b0", region=REGION)
    assert _run(training.get(training_meta)).phase == TaskExecution.RUNNING  # known, from moto

    emr = boto3.client("emr-serverless", region_name=REGION)
    app = emr.create_application(name="budget", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    run_id = emr.start_job_run(
        applicationId=app, executionRoleArn=ROLE, jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}}
    )["jobRunId"]
    emrserverless_backends[ACCOUNT][REGION].job_runs[app][-1].state = "RUNNING"
    serverless = IdempotentEMRServerlessConnector()
    run_meta = EMRServerlessJobMetadata(application_id=app, job_run_id=run_id, region=REGION)
    assert _run(serverless.get(run_meta)).phase == TaskExecution.RUNNING
    return [
        (training, training_meta, "sagemaker", "describe_training_job"),
        (serverless, run_meta, "emr-serverless", "get_job_run"),
    ]


def test_plugin_connectors_answer_a_known_status_while_aws_throttles(aws_env, monkeypatch):
    """The plugin-based GetTasks (SageMaker training, EMR Serverless) answer the last known status,
    saying it is stale and why, for more failed refreshes than propeller tolerates errors."""
    for connector, meta, service, method in _known_plugin_jobs(monkeypatch):
        client, stub = _throttled_client(service, method)
        monkeypatch.setattr(connector.backend, "aws", lambda service, region, client=client, **_: client)
        with stub:
            for _ in range(_FAILURES):
                time.sleep(0.002)  # past max_age (1 ms): the GetTask refreshes, and fails
                resource = _run(connector.get(meta))
                assert resource.phase == TaskExecution.RUNNING, resource.message
                assert "last known status" in resource.message and "ThrottlingException" in resource.message
            stub.assert_no_pending_responses()


def test_plugin_connectors_end_stale_answers_once_a_refusal_outlasts_the_grace(aws_env, monkeypatch):
    """AccessDenied (a role change) is no transient trouble: past the grace every GetTask is an
    error naming it, so propeller's error budget drains and the task fails with that message."""
    monkeypatch.setattr(_status_cache, "REFUSAL_GRACE_SECONDS", 0.2)
    for connector, meta, service, method in _known_plugin_jobs(monkeypatch):
        client, stub = _throttled_client(service, method, "AccessDeniedException")
        monkeypatch.setattr(connector.backend, "aws", lambda service, region, client=client, **_: client)
        with stub:
            time.sleep(0.002)
            resource = _run(connector.get(meta))
            assert resource.phase == TaskExecution.RUNNING and "AccessDeniedException" in resource.message
            time.sleep(0.25)
            with pytest.raises(Exception, match=r"refused for .*AccessDeniedException"):
                _run(connector.get(meta))


def test_a_deleted_application_neither_stalls_the_other_runs_nor_keeps_its_own_running(aws_env, monkeypatch):
    """One refresh pass lists every application's live runs; an application deleted outside Flyte
    makes its ListJobRuns fail (moto emrserverless/models.py ``list_job_runs``:
    ResourceNotFoundException). Its runs are then read by GetJobRun, which declares
    ResourceNotFoundException for a run that is gone (botocore emr-serverless/2021-07-13), and the
    other applications' runs are refreshed as usual."""
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "60")
    client = boto3.client("emr-serverless", region_name=REGION)
    backend = emrserverless_backends[ACCOUNT][REGION]
    metas = []
    for name in ("kept", "deleted"):
        app = client.create_application(name=name, releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
        run_id = client.start_job_run(
            applicationId=app, executionRoleArn=ROLE, jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}}
        )["jobRunId"]
        backend.job_runs[app][-1].state = "RUNNING"
        metas.append(EMRServerlessJobMetadata(application_id=app, job_run_id=run_id, region=REGION))
    connector = IdempotentEMRServerlessConnector()
    assert [_run(connector.get(m)).phase for m in metas] == [TaskExecution.RUNNING] * 2
    kept, deleted = metas
    backend.job_runs[kept.application_id][-1].state = "SUCCESS"
    del backend.job_runs[deleted.application_id], backend.applications[deleted.application_id]

    connector.status_cache(REGION, 60.0).refresh_ahead(older_than=0.0)
    gone = _run(connector.get(deleted))
    assert gone.phase == TaskExecution.FAILED and deleted.application_id in gone.message
    assert _run(connector.get(kept)).phase != TaskExecution.RUNNING  # refreshed despite the other


# One bad key fails only its own jobs: a batched refresh answers Unreadable for the keys it could not
# read and the others' statuses as usual (cdao_connectors._status_cache). Every refusal below is an
# error code the API reference lists for the call.


def test_one_clusters_failed_list_steps_leaves_the_other_clusters_steps_refreshed(aws_env):
    """ListSteps of an unknown cluster id is InvalidRequestException (HTTP 400,
    https://docs.aws.amazon.com/emr/latest/APIReference/API_ListSteps.html); the review found it
    failed the background pass for every cluster."""
    from cdao_connectors.emr.connector import _list_steps  # noqa: PLC0415

    client = boto3.client("emr", region_name=REGION)
    step = {"Id": "s-good", "Name": "flyte-x", "Status": {"State": "RUNNING"}}  # a StepSummary
    live = ["PENDING", "CANCEL_PENDING", "RUNNING"]
    with Stubber(client) as stub:
        stub.add_client_error(
            "list_steps", "InvalidRequestException", "Cluster id 'j-gone' is not valid.", 400, None,
            {"ClusterId": "j-gone", "StepStates": live},
        )  # fmt: skip
        stub.add_response("list_steps", {"Steps": [step]}, {"ClusterId": "j-good", "StepStates": live})
        found = _list_steps(client, [("j-gone", "s-1"), ("j-good", "s-good")], listing=True)
        stub.assert_no_pending_responses()
    assert found[("j-good", "s-good")] == step
    assert isinstance(found[("j-gone", "s-1")], _status_cache.Unreadable)
    assert "InvalidRequestException" in str(found[("j-gone", "s-1")].error)


def test_one_applications_throttled_listing_or_one_refused_run_leaves_the_others_refreshed(aws_env):
    client = boto3.client("emr-serverless", region_name=REGION)
    created = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    live = ["SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "CANCELLING", "QUEUED"]
    with Stubber(client) as stub:
        stub.add_client_error(
            "list_job_runs", "ThrottlingException", "Rate exceeded", 400, None,
            {"applicationId": "app0", "states": live, "maxResults": 50},
        )  # fmt: skip
        stub.add_response(
            "list_job_runs", {"jobRuns": [_summary("r1", "RUNNING", created)]},
            {"applicationId": "app1", "states": live, "maxResults": 50},
        )  # fmt: skip
        stub.add_client_error(
            "get_job_run", "AccessDeniedException", "Not authorized", 400, None,
            {"applicationId": "app1", "jobRunId": "r2"},
        )  # fmt: skip
        found = job_runs(client, [("app0", "r0"), ("app1", "r1"), ("app1", "r2")], listing=True)
        stub.assert_no_pending_responses()
    assert found[("app1", "r1")]["state"] == "RUNNING"
    assert isinstance(found[("app0", "r0")], _status_cache.Unreadable)
    assert isinstance(found[("app1", "r2")], _status_cache.Unreadable)


def test_one_sagemaker_jobs_refused_describe_leaves_the_other_jobs_refreshed(aws_env):
    client = boto3.client("sagemaker", region_name=REGION)
    created = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    # Every member DescribeTransformJob's output marks required (botocore sagemaker/2017-07-24).
    described = {
        "TransformJobName": "tj-good",
        "TransformJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/tj-good",
        "TransformJobStatus": "Completed",
        "ModelName": "m",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in"}}},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CreationTime": created,
    }
    with Stubber(client) as stub:
        stub.add_response(
            "list_transform_jobs", {"TransformJobSummaries": []}, {"StatusEquals": "InProgress", "MaxResults": 100}
        )
        stub.add_client_error(
            "describe_transform_job", "ValidationException", "1 validation error detected", 400, None,
            {"TransformJobName": "tj-bad"},
        )  # fmt: skip
        stub.add_response("describe_transform_job", described, {"TransformJobName": "tj-good"})
        found = _job_statuses.job_statuses(client, _job_statuses.TRANSFORM, ["tj-bad", "tj-good"], listing=True)
        stub.assert_no_pending_responses()
    assert found["tj-good"]["TransformJobStatus"] == "Completed"
    assert isinstance(found["tj-bad"], _status_cache.Unreadable)


def test_an_unreadable_key_keeps_its_last_status_while_the_others_are_refreshed():
    refused = ClientError({"Error": {"Code": "InvalidRequestException", "Message": "not valid"}}, "ListSteps")

    def describe(keys: list[str]) -> dict[str, Any]:
        return {k: _status_cache.Unreadable(refused) if k == "bad" else {"state": "COMPLETED"} for k in keys}

    cache = _status_cache.StatusCache(describe, max_age=60.0, batch=10)
    for key in ("bad", "good"):
        cache.seed(key, {"state": "RUNNING"})
    with pytest.raises(ClientError):  # the pass reports what it could not read
        cache.refresh_ahead(older_than=0.0)
    assert cache.peek("good") == {"state": "COMPLETED"}
    assert cache.peek("bad") == {"state": "RUNNING"}

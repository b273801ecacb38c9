"""AWS Batch connector against moto running as a real server, called over gRPC like propeller."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import batch_tasks
import boto3
import pytest
from aws_setup import ON_DEMAND_QUEUE, SPOT_QUEUE, provision_attempt_table, provision_batch
from cdao_connectors._backends import _endpoint_override
from cdao_connectors._status_cache import StatusCache
from cdao_connectors.aws_batch.connector import BatchConnector, BatchJobMetadata
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.config import ConnectorConfigError
from connector_calls import run_get
from moto.batch.models import batch_backends
from propeller import PHASE, create_task, delete_task, execution_metadata, get_task, serialize, write_inputs
from throttling_proxy import ThrottlingProxy

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture
def batch_env(aws_env, moto_endpoint, monkeypatch) -> Iterator[None]:
    for k, v in {**provision_batch(moto_endpoint, REGION), **provision_attempt_table(REGION)}.items():
        monkeypatch.setenv(k, v)
    # Each GetTask must see moto's latest state in these tests.
    monkeypatch.setenv("CDAO_BATCH_STATUS_REFRESH_SECONDS", "0.001")
    yield


def _moto_job(job_id: str):
    return batch_backends[ACCOUNT][REGION]._jobs[job_id]


def _submit(stub, task, name: str, **inputs):
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(task, prefix, **inputs)
    meta = create_task(stub, serialize(task), prefix, lm, execution_metadata(name))
    return meta, json.loads(meta), prefix


def test_queue_per_task_and_job_definition_reused(batch_env, grpc_stubs):
    stub, _ = grpc_stubs
    _, spot1, _ = _submit(stub, batch_tasks.preprocess, "b1", path="s3://x/raw.csv")
    _, spot2, _ = _submit(stub, batch_tasks.featurize, "b2", path="s3://x/raw.csv")
    _, ondemand, _ = _submit(stub, batch_tasks.etl, "b3", n=3)
    assert spot1["job_queue"] == spot2["job_queue"] == SPOT_QUEUE
    assert ondemand["job_queue"] == ON_DEMAND_QUEUE

    batch = boto3.client("batch", region_name=REGION)
    jobs = {
        j["jobId"]: j for j in batch.describe_jobs(jobs=[spot1["job_id"], spot2["job_id"], ondemand["job_id"]])["jobs"]
    }
    # Same image and shape: one job definition; a different shape gets its own.
    assert jobs[spot1["job_id"]]["jobDefinition"] == jobs[spot2["job_id"]]["jobDefinition"]
    assert jobs[ondemand["job_id"]]["jobDefinition"] != jobs[spot1["job_id"]]["jobDefinition"]
    etl_def = batch.describe_job_definitions(jobDefinitions=[jobs[ondemand["job_id"]]["jobDefinition"]])[
        "jobDefinitions"
    ][0]
    reqs = {r["type"]: r["value"] for r in etl_def["containerProperties"]["resourceRequirements"]}
    assert reqs == {"VCPU": "8", "MEMORY": "32768", "GPU": "1"}
    command = jobs[spot1["job_id"]]["container"]["command"]
    assert command[0] == "pyflyte-execute"
    assert jobs[ondemand["job_id"]]["timeout"] == {"attemptDurationSeconds": 3600}


def test_retried_create_makes_one_job(batch_env, grpc_stubs):
    stub, _ = grpc_stubs
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(batch_tasks.preprocess, prefix, path="s3://x/a")
    template = serialize(batch_tasks.preprocess)
    first = json.loads(create_task(stub, template, prefix, lm, execution_metadata("retry")))
    again = json.loads(create_task(stub, template, prefix, lm, execution_metadata("retry")))
    assert first["job_id"] == again["job_id"]
    named = boto3.client("batch", region_name=REGION).list_jobs(
        jobQueue=SPOT_QUEUE, filters=[{"name": "JOB_NAME", "values": [first["job_name"]]}]
    )["jobSummaryList"]
    assert len(named) == 1
    # The next attempt (retry_attempt=1) is a different job.
    prefix2 = prefix + "-1"
    write_inputs(batch_tasks.preprocess, prefix2, path="s3://x/a")
    retry = json.loads(create_task(stub, template, prefix2, lm, execution_metadata("retry", retry=1)))
    assert retry["job_id"] != first["job_id"]


def test_success_needs_outputs_and_restarted_connector_resumes(batch_env, grpc_stubs):
    stub, _ = grpc_stubs
    meta, decoded, prefix = _submit(stub, batch_tasks.preprocess, "outs", path="s3://x/b")
    # moto's Batch does not run the container, so no outputs.pb: never report that as success.
    res = get_task(stub, BATCH_TASK_TYPE, meta)
    assert res.phase == PHASE.FAILED
    assert "outputs.pb" in res.message
    # The container's work, done by hand: with outputs.pb present the job is a success, and a new
    # connector (restarted pod) resumes from the resource metadata alone.
    write_inputs(batch_tasks.preprocess, prefix + "-o", path="irrelevant")
    boto3.client("s3", region_name=REGION).copy_object(
        Bucket="flyte-data",
        Key=prefix.removeprefix("s3://flyte-data/") + "/outputs.pb",
        CopySource={"Bucket": "flyte-data", "Key": prefix.removeprefix("s3://flyte-data/") + "-o/inputs.pb"},
    )
    fresh = BatchConnector()
    resumed = run_get(fresh, BatchJobMetadata.decode(meta))
    assert resumed.phase == PHASE.SUCCEEDED
    links = [link.uri for link in resumed.log_links]
    assert any(f"#jobs/detail/{decoded['job_id']}" in u for u in links)
    assert any("cloudwatch" in u and "aws$252Fbatch$252Fjob" in u for u in links)


def test_spot_reclamation_is_retryable_other_failures_are_not(batch_env, grpc_stubs):
    stub, _ = grpc_stubs
    meta, decoded, _ = _submit(stub, batch_tasks.preprocess, "spot", path="s3://x/c")
    job = _moto_job(decoded["job_id"])
    job.status = "FAILED"
    job.job_stopped_reason = "Host EC2 (instance i-0123456789abcdef0) terminated."
    res = get_task(stub, BATCH_TASK_TYPE, meta)
    assert res.phase == PHASE.RETRYABLE_FAILED
    assert "reclaimed" in res.message

    # A FAILED job never changes (AWS Batch User Guide, "Job states"), and its status is kept for
    # good: the other failure is another job's.
    meta, decoded, _ = _submit(stub, batch_tasks.preprocess, "spot-other", path="s3://x/d")
    job = _moto_job(decoded["job_id"])
    job.status = "FAILED"
    job.job_stopped_reason = "Essential container in task exited"
    failed = get_task(stub, BATCH_TASK_TYPE, meta)
    assert failed.phase == PHASE.FAILED
    assert "Essential container" in failed.message


def test_unknown_status_waits_instead_of_crashing(batch_env):
    # moto cannot hold a status outside Batch's seven, so DescribeJobs is answered by a function here.
    connector = BatchConnector()
    connector._caches[REGION] = StatusCache(
        lambda ids: {i: {"jobId": i, "status": "PAUSED_FOR_MAINTENANCE"} for i in ids}, max_age=0.001, batch=100
    )
    meta = BatchJobMetadata("job-1", "flyte-x", SPOT_QUEUE, REGION, "s3://flyte-data/p", True)
    unknown = run_get(connector, meta)
    assert unknown.phase == PHASE.RUNNING
    assert "PAUSED_FOR_MAINTENANCE" in unknown.message


def test_delete_terminates_the_job(batch_env, grpc_stubs):
    stub, _ = grpc_stubs
    meta, decoded, _ = _submit(stub, batch_tasks.etl, "abort", n=1)
    job = _moto_job(decoded["job_id"])
    job.status = "RUNNING"
    assert get_task(stub, BATCH_TASK_TYPE, meta).phase == PHASE.RUNNING
    delete_task(stub, BATCH_TASK_TYPE, meta)
    assert job.stop is True
    assert "Aborted by Flyte" in job.job_stopped_reason


def test_throttling_is_backed_off_not_failed(batch_env, moto_endpoint, monkeypatch):
    proxy = ThrottlingProxy(moto_endpoint, throttle_next=3).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        connector = BatchConnector()  # fresh clients pick up the proxy endpoint
        prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
        meta = connector.create_sync(serialize(batch_tasks.featurize), prefix, None, None)
        assert proxy.throttled == 3
        assert _moto_job(meta.job_id).job_name == meta.job_name
        proxy.throttle_next = 2
        time.sleep(0.01)  # older than the 1 ms cache age set for these tests: GetTask must call AWS
        # moto finished the job without outputs.pb: FAILED, but answered rather than raised. The
        # backed-off DescribeJobs may outlast the wait a GetTask gives it (_status_cache
        # KNOWN_STATUS_WAIT_SECONDS): until it answers, GetTask answers the last known status.
        deadline = time.monotonic() + 10
        while (resource := run_get(connector, meta)).phase != PHASE.FAILED and time.monotonic() < deadline:
            assert resource.phase == PHASE.QUEUED and "last known status" in resource.message, resource.message
            time.sleep(0.05)
        assert resource.phase == PHASE.FAILED, resource.message
        assert proxy.throttled == 5
    finally:
        proxy.stop()


def test_missing_queue_config_names_the_variable(batch_env, monkeypatch):
    monkeypatch.delenv("CDAO_BATCH_ON_DEMAND_QUEUE")
    with pytest.raises(ConnectorConfigError, match="CDAO_BATCH_ON_DEMAND_QUEUE"):
        BatchConnector().create_sync(serialize(batch_tasks.etl), "s3://flyte-data/x", None, None)


class _SlowDescribeJobs:
    """A Batch client whose DescribeJobs answers like moto (the job ids given, RUNNING) after
    ``delay`` seconds (0.3: a throttled or distant Batch API)."""

    def __init__(self) -> None:
        self.calls = 0
        self.delay = 0.3

    def describe_jobs(self, jobs: list[str]) -> dict:
        self.calls += 1
        time.sleep(self.delay)
        return {"jobs": [{"jobId": j, "jobName": j, "status": "RUNNING"} for j in jobs]}


def test_get_task_of_a_tracked_job_never_waits_for_a_status_refresh(batch_env, monkeypatch):
    # Pollers must not queue behind the refresh of every tracked job (p99 583 ms at 1000 tasks):
    # tracked entries are refreshed ahead, in the background, before they expire.
    monkeypatch.setenv("CDAO_BATCH_STATUS_REFRESH_SECONDS", "1.2")
    connector = BatchConnector()
    slow = _SlowDescribeJobs()
    # Backend.aws keeps a client per (service, region, for_creates, endpoint the environment names).
    connector.backend._clients[("batch", REGION, False, _endpoint_override("batch"))] = slow
    metas = [
        BatchJobMetadata(f"job-{i}", f"flyte-{i}", SPOT_QUEUE, REGION, "s3://flyte-data/p", True) for i in range(20)
    ]
    # First sight of each job: one inline refresh each, which the cache is meant to do and which is
    # not measured; answered at once, as 20 slow ones would add 6 s to the test and prove nothing.
    slow.delay = 0.0
    for meta in metas:
        run_get(connector, meta)
    first_sight = slow.calls
    slow.delay = 0.3
    worst = 0.0
    until = time.monotonic() + 3.0  # more than two max_age periods
    while time.monotonic() < until:
        for meta in metas:
            start = time.monotonic()
            assert run_get(connector, meta).phase == PHASE.RUNNING
            worst = max(worst, time.monotonic() - start)
        time.sleep(0.02)
    assert slow.calls > first_sight  # statuses were refreshed meanwhile
    assert worst < 0.15, f"a GetTask waited {worst:.2f}s for DescribeJobs"

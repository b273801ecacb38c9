"""The attempt table's sweep: a job whose task attempt nobody follows any more is stopped by a
surviving replica (plugins/cdao_connectors/_attempts.py "Sweeping", _sweeper.py).

Before it, three faults of one kind (issue #16's third review): a SubmitJob that AWS carried out
after botocore's read timeout left a job nobody stopped; a create in flight when its replica ended
(SIGTERM past the shutdown's budget, SIGKILL, an OOM kill) left one too, with messages promising a
cancel that never came; and the count of such jobs lived in the ending process only, so the alert
watching it could not fire. DynamoDB is moto as a server, made as atomic as DynamoDB for conditional
writes (support/moto_atomic.py); the sweep index is created as infra/ declares it (support/aws_setup.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from typing import Any

import batch_tasks
import boto3
import grpc
import pytest
import requests
from aws_setup import SPOT_QUEUE, provision_batch
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from cdao_connector_resources import SWEEP_AFTER, SWEEP_QUEUE_ATTRIBUTE
from cdao_connectors._attempts import (
    LEASE_SECONDS,
    SWEEP_FIND_SECONDS,
    SWEEP_GRACE_SECONDS,
    SWEEP_RECHECK_SECONDS,
    AbandonedBeforeSending,
    AttemptAbandoned,
    AttemptAnswers,
    AttemptLedger,
    SweepTarget,
    name_the_job,
)
from cdao_connectors._sweeper import sweep_once
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from connector_calls import run_to_end
from connector_processes import ConnectorProcess
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub
from prometheus_client import REGISTRY
from propeller import create_task, execution_metadata, serialize, write_inputs
from sweeping import RawBody, armed

REGION = "us-east-1"


def _meta(execution: str):
    from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415

    return TaskExecutionMetadata.from_flyte_idl(execution_metadata(execution))


def _ledger(clock=time.time) -> AttemptLedger:
    return AttemptLedger(boto3.client("dynamodb", region_name=REGION), os.environ["CDAO_ATTEMPT_TABLE"], clock=clock)


def _later(seconds: float):
    """A clock ``seconds`` ahead of now (epoch seconds): the sweep as it runs that much later."""
    return lambda: time.time() + seconds


def _item(attempt: str) -> dict[str, Any]:
    return boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=os.environ["CDAO_ATTEMPT_TABLE"], Key={"attempt": {"S": attempt}}, ConsistentRead=True
    )["Item"]


def _in_sweep_index(attempt: str) -> bool:
    item = _item(attempt)
    return SWEEP_QUEUE_ATTRIBUTE in item and SWEEP_AFTER in item


def _batch_jobs() -> dict:
    from moto.batch.models import batch_backends  # noqa: PLC0415

    return dict(batch_backends["123456789012"][REGION]._jobs)


def _swept(backend: str) -> float:
    return REGISTRY.get_sample_value("cdao_jobs_swept_total", {"backend": backend}) or 0.0


def _left_running(backend: str) -> float:
    return REGISTRY.get_sample_value("cdao_jobs_left_running_total", {"backend": backend}) or 0.0


def _until(predicate, timeout: float = 15.0):
    give_up = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < give_up, "condition not met in time"
        time.sleep(0.05)
    return value


@pytest.fixture
def batch_env(sweep_table, moto_endpoint, monkeypatch) -> None:
    for k, v in provision_batch(moto_endpoint, REGION).items():
        monkeypatch.setenv(k, v)


def _target(**lookup: Any) -> SweepTarget:
    return SweepTarget("AWS Batch", BATCH_TASK_TYPE, 0, lookup=lookup)


# ---------------------------------------------------------------------------------------------
# The fault: a job AWS makes after the create's read timeout.


def test_a_submit_aws_carries_out_after_the_read_timeout_is_stopped_by_the_sweeper(
    batch_env, moto_endpoint, monkeypatch, fresh_connectors
):
    """A SubmitJob held past botocore's read timeout (the throttling proxy holds it, then forwards
    it: AWS carries it out after the caller stopped waiting) fails its CreateTask, the create's
    look-up by name finds nothing yet, and the job AWS then makes ran with nobody to stop it
    (propeller never DeleteTasks a job it got no resource_meta for: connector/plugin.go ``Delete``
    at flyteplugins/v1.16.8). The claim stays in the sweep index, due SWEEP_RECHECK_SECONDS later;
    the sweep then finds the job by the attempt's name and terminates it. The read timeout is cut
    from 20 s to 0.5 s and the sweep's clock set ahead, so this takes ~2 s."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors.aws_batch.connector import BatchConnector  # noqa: PLC0415
    from throttling_proxy import ThrottlingProxy  # noqa: PLC0415

    monkeypatch.setattr(
        _backends,
        "AWS_CREATE_CLIENT_CONFIG",
        Config(connect_timeout=3, read_timeout=0.5, retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
    proxy.delay_paths, proxy.delay_seconds = ("/v1/submitjob",), 1.5
    monkeypatch.setenv("AWS_ENDPOINT_URL_BATCH", proxy.url)
    connector = BatchConnector()
    fresh_connectors(connector)
    template, prefix = serialize(batch_tasks.preprocess), f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    swept_before = _swept(connector.backend.name)
    try:
        proxy.delay_paths = ()
        run_to_end(connector.create(template, prefix, None, _meta(f"warm-{uuid.uuid4().hex[:6]}")))  # its definition
        proxy.delay_paths = ("/v1/submitjob",)
        before = set(_batch_jobs())
        meta = _meta(f"late-submit-{uuid.uuid4().hex[:6]}")
        with pytest.raises(Exception, match=r"[Rr]ead timeout"):
            run_to_end(connector.create(template, prefix, None, meta))
        (late,) = _until(lambda: [j for i, j in _batch_jobs().items() if i not in before])
    finally:
        proxy.stop()
        monkeypatch.delenv("AWS_ENDPOINT_URL_BATCH")  # the sweep reaches Batch as any replica does
    assert not late.stop, "the late job was stopped before any sweep"
    attempt = f"batch/{late.job_name}"
    assert _in_sweep_index(attempt)
    assert float(_item(attempt)[SWEEP_AFTER]["N"]) <= time.time() + SWEEP_RECHECK_SECONDS

    assert attempt not in {s.attempt for s in sweep_once(_ledger())}  # not due yet
    swept = [s for s in sweep_once(_ledger(_later(SWEEP_RECHECK_SECONDS + 1))) if s.attempt == attempt]

    assert [s.outcome for s in swept] == ["cancelled"]
    assert swept[0].job.job_id == late.job_id
    assert _batch_jobs()[late.job_id].stop, "the sweep did not terminate the late job"
    assert not _in_sweep_index(attempt)
    assert _item(attempt)["swept"]["S"] == "cancelled"
    assert _swept(connector.backend.name) == swept_before + 1


# ---------------------------------------------------------------------------------------------
# The attempt's place in the sweep index, from the claim to the answer or the give-up.


def test_a_claim_is_in_the_sweep_index_until_its_createtask_answers(batch_env):
    """A claim is due when its lease ends (its claimant is gone by then, never merely slow); the
    answer that propeller then follows takes it out, so the sweeper never stops a followed job."""
    ledger = _ledger()
    attempt = f"batch/flyte-{uuid.uuid4().hex}"
    assert ledger.once(attempt, lambda: {"job_id": "j-1"}, lambda: None, 1, sweep=_target(job_name="n")) == {
        "job_id": "j-1"
    }
    assert _in_sweep_index(attempt)
    assert abs(float(_item(attempt)[SWEEP_AFTER]["N"]) - (time.time() + LEASE_SECONDS)) < 30
    ledger.answer(attempt, time.time())
    assert not _in_sweep_index(attempt)
    assert attempt not in _ledger(_later(LEASE_SECONDS + 1)).due(1000)


def test_a_create_aws_refused_leaves_nothing_to_sweep_and_one_without_an_answer_is_swept_soon(batch_env):
    """An AWS error answered (a ClientError) made no job: the claim leaves the index. Any other
    failure (a timeout, a dropped connection) may hide a job AWS makes: due after
    SWEEP_RECHECK_SECONDS rather than at the lease's end."""
    ledger = _ledger()
    refused, lost = f"batch/flyte-{uuid.uuid4().hex}", f"batch/flyte-{uuid.uuid4().hex}"

    def refuse() -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "ClientException", "Message": "bad queue"}}, "SubmitJob")

    def time_out() -> dict[str, Any]:
        raise TimeoutError("read timeout")

    with pytest.raises(ClientError):
        ledger.once(refused, refuse, lambda: None, 1, sweep=_target(job_name="r"))
    with pytest.raises(TimeoutError):
        ledger.once(lost, time_out, lambda: None, 1, sweep=_target(job_name="l"))
    assert not _in_sweep_index(refused)
    assert _in_sweep_index(lost)
    assert float(_item(lost)[SWEEP_AFTER]["N"]) <= time.time() + SWEEP_RECHECK_SECONDS
    assert lost in _ledger(_later(SWEEP_RECHECK_SECONDS + 1)).due(1000)


def test_the_sweeper_waits_for_a_live_claimants_lease(batch_env):
    """Due, yet its claimant's lease still runs (a claimant creating now): not claimed; claimed once
    the lease has run out."""
    ledger = _ledger()
    attempt = f"batch/flyte-{uuid.uuid4().hex}"
    entered, release = threading.Event(), threading.Event()

    def slow_create() -> dict[str, Any]:
        entered.set()
        assert release.wait(10)
        return {"job_id": "j-slow"}

    owner = threading.Thread(target=lambda: ledger.once(attempt, slow_create, lambda: None, 1, sweep=_target()))
    owner.start()
    try:
        assert entered.wait(10)
        ledger.sweep_later(attempt, time.time())  # due now, while the lease (LEASE_SECONDS) runs
        assert attempt in _ledger(_later(1)).due(1000)
        assert _ledger(_later(1)).claim_for_sweep(attempt, 60) is None
        assert _ledger(_later(LEASE_SECONDS + 1)).claim_for_sweep(attempt, 60) is not None
    finally:
        release.set()
        owner.join(10)


def test_an_answer_and_the_sweepers_claim_exclude_each_other_in_either_order(batch_env):
    """DynamoDB orders the two conditional writes: an answer first takes the attempt out of the
    index and the claim finds nothing; a claim first marks the attempt abandoned and the answer is
    refused (the CreateTask fails its attempt instead of answering a job being stopped)."""
    late = _later(LEASE_SECONDS + 1)
    answered, claimed = f"batch/flyte-{uuid.uuid4().hex}", f"batch/flyte-{uuid.uuid4().hex}"
    for attempt in (answered, claimed):
        _ledger().once(attempt, lambda: {"job_id": "j"}, lambda: None, 1, sweep=_target())

    _ledger().answer(answered, time.time())
    assert _ledger(late).claim_for_sweep(answered, 60) is None

    assert _ledger(late).claim_for_sweep(claimed, 60) is not None
    with pytest.raises(AttemptAbandoned):
        _ledger().answer(claimed, time.time())


def test_a_job_not_found_is_looked_for_again_until_it_cannot_appear_any_more(batch_env, monkeypatch):
    """No job under the attempt's name yet: the sweep looks again SWEEP_RECHECK_SECONDS later, for
    SWEEP_FIND_SECONDS after the attempt entered the index; then it settles that no job was made."""
    attempt = f"batch/flyte-{uuid.uuid4().hex}"
    with pytest.raises(TimeoutError):
        _ledger().once(
            attempt,
            lambda: (_ for _ in ()).throw(TimeoutError("read timeout")),
            lambda: None,
            1,
            sweep=_target(region=REGION, job_queue=SPOT_QUEUE, job_name=f"flyte-never-{uuid.uuid4().hex[:8]}"),
        )
    first = [s for s in sweep_once(_ledger(_later(SWEEP_RECHECK_SECONDS + 1))) if s.attempt == attempt]
    assert [s.outcome for s in first] == ["not found yet"]
    assert _in_sweep_index(attempt)
    last = [s for s in sweep_once(_ledger(_later(SWEEP_FIND_SECONDS + 1))) if s.attempt == attempt]
    assert [s.outcome for s in last] == ["no job"]
    assert not _in_sweep_index(attempt)


# ---------------------------------------------------------------------------------------------
# Stopping: through the connector that made the job, counted where Prometheus can see it.


def _armed_give_up(batch_env_job: str) -> tuple[str, Any]:
    """A Batch job of an attempt claimed and created (its claim's lease still running), then marked
    by its CreateTask's give-up (in the index with its resource_meta), as when the replica ended
    before its cancel."""
    from cdao_connectors.aws_batch.connector import BatchJobMetadata  # noqa: PLC0415

    job = BatchJobMetadata(batch_env_job, "flyte-x", SPOT_QUEUE, REGION, "", False)
    attempt = f"batch/flyte-{uuid.uuid4().hex}"
    started = time.time()
    lookup = {"region": REGION, "job_queue": SPOT_QUEUE, "job_name": "flyte-x"}
    _ledger().once(
        attempt, lambda: {"job_id": batch_env_job}, lambda: None, 1, started_at=started, sweep=_target(**lookup)
    )
    target = SweepTarget("AWS Batch", BATCH_TASK_TYPE, 0, resource_meta=job.encode())
    assert _ledger().abandon(attempt, started_at=started, sweep=target)
    return attempt, job


def _submitted_job() -> str:
    definition = boto3.client("batch", region_name=REGION).register_job_definition(
        jobDefinitionName=f"sweep-{uuid.uuid4().hex[:6]}",
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 128, "command": ["sleep", "600"]},
    )["jobDefinitionArn"]
    return boto3.client("batch", region_name=REGION).submit_job(
        jobName="flyte-x", jobQueue=SPOT_QUEUE, jobDefinition=definition
    )["jobId"]


def test_a_give_ups_job_is_swept_through_its_connectors_deletetask_after_the_grace(batch_env):
    """A give-up's mark puts the job, encoded as propeller would receive it, in the index due after
    SWEEP_GRACE_SECONDS (the late cancel's own tries come first); the sweep decodes it with the
    connector's metadata_type and stops it through the connector's DeleteTask path."""
    attempt, job = _armed_give_up(_submitted_job())
    assert attempt not in {s.attempt for s in sweep_once(_ledger())}  # the late cancel's time first
    swept = [s for s in sweep_once(_ledger(_later(SWEEP_GRACE_SECONDS + 1))) if s.attempt == attempt]
    assert [(s.outcome, s.job) for s in swept] == [("cancelled", job)]
    assert _batch_jobs()[job.job_id].stop


def test_a_job_its_backend_refuses_to_stop_is_counted_as_left_running_by_the_sweeping_replica(
    batch_env, monkeypatch, caplog
):
    """A refusal that is not "not now" (a job the backend will not stop) is final: the surviving
    replica counts it in cdao_jobs_left_running_total, which its ServiceMonitor scrapes (the alert
    ConnectorJobLeftRunning), logs it for an operator, and settles the attempt. A "not now"
    (throttled) leaves it due again."""
    from cdao_connectors.aws_batch import connector as batch_connector  # noqa: PLC0415

    refusal: list[Exception] = []

    def refuse(self, resource_meta):
        raise refusal[0]

    monkeypatch.setattr(batch_connector.BatchConnector, "delete_sync", refuse)
    backend = batch_connector.CONNECTOR.backend.name
    refused, throttled = _armed_give_up("job-refused"), _armed_give_up("job-throttled")
    later = _ledger(_later(SWEEP_GRACE_SECONDS + 1))
    before = _left_running(backend)

    refusal[:] = [ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "TerminateJob")]
    again = [s.outcome for s in sweep_once(later) if s.attempt == throttled[0]]
    refusal[:] = [ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "TerminateJob")]
    with caplog.at_level(logging.ERROR, logger="cdao_connectors"):
        final = [s.outcome for s in sweep_once(_ledger(_later(SWEEP_GRACE_SECONDS + SWEEP_RECHECK_SECONDS + 2)))]

    assert again == ["retrying"]
    assert _left_running(backend) == before + 2  # both refused for good on the second pass
    assert final.count("left running") == 2
    assert not _in_sweep_index(refused[0]) and not _in_sweep_index(throttled[0])
    assert any("job-refused" in r.getMessage() and "stopped by hand" in r.getMessage() for r in caplog.records)


def test_an_attempt_no_replica_here_can_sweep_is_tried_for_an_hour_then_counted_as_left_running(sweep_table):
    """An attempt whose connector this replica does not serve (armed by a replica of another
    version) is due again after the claim's hold, so that a replica that serves it sweeps it; after
    SWEEP_GIVE_UP_SECONDS it is counted as left running and settled, not retried for the 90 days the
    item lives."""
    from cdao_connectors._metrics import OTHER_BACKEND  # noqa: PLC0415
    from cdao_connectors._sweeper import SWEEP_GIVE_UP_SECONDS, SWEEP_HOLD_SECONDS  # noqa: PLC0415

    backend = f"retired-{uuid.uuid4().hex[:6]}"  # a backend this replica does not serve
    other_before = REGISTRY.get_sample_value("cdao_jobs_left_running_total", {"backend": OTHER_BACKEND})
    assert other_before is not None  # exported from 0: the alert's increase() sees its first count
    attempt = f"retired/{uuid.uuid4().hex}"
    _ledger().abandon(attempt, sweep=SweepTarget(backend, "a-task-type-nobody-serves", 0, resource_meta=b"{}"))
    first = sweep_once(_ledger(_later(SWEEP_GRACE_SECONDS + 1)))
    assert first == [] and _in_sweep_index(attempt)
    assert attempt in _ledger(_later(SWEEP_GRACE_SECONDS + SWEEP_HOLD_SECONDS + 2)).due(1000)
    last = sweep_once(_ledger(_later(SWEEP_GIVE_UP_SECONDS + 1)))
    assert [(s.attempt, s.outcome) for s in last] == [(attempt, "left running")]
    # Counted under the label exported from 0, not a new series the alert would not see; the log names it.
    assert _left_running(OTHER_BACKEND) == other_before + 1
    assert REGISTRY.get_sample_value("cdao_jobs_left_running_total", {"backend": backend}) is None
    assert not _in_sweep_index(attempt)


def test_a_deduplicating_backends_give_up_is_swept_through_its_own_connector(
    sweep_table, fresh_connectors, tmp_path, monkeypatch
):
    """A backend whose API deduplicates the create (here Codeweave, its idempotency key) has its
    job recorded by the give-up's mark (AttemptAnswers.cancelling) before the cancel; a cancel that
    never ran (its replica ended) leaves it to the sweep, which cancels the job through the
    Codeweave connector (the fake implements cdao_connectors.codeweave.contract)."""
    from cdao_connectors.codeweave.connector import CodeweaveConnector, CodeweaveJobMetadata  # noqa: PLC0415
    from codeweave_fake import CodeweaveFake, FakeJob, serving_codeweave  # noqa: PLC0415

    with serving_codeweave(CodeweaveFake(api_key="k", base_env={}), tmp_path, monkeypatch) as fake:
        connector = CodeweaveConnector()
        fresh_connectors(connector)
        fake.jobs["cw-1"] = FakeJob(id="cw-1", spec={"name": "flyte-swept"}, status="RUNNING")
        job = CodeweaveJobMetadata("cw-1", "s3://flyte-data/out", False)
        answers = AttemptAnswers(connector.backend, f"codeweave/{uuid.uuid4().hex}", connector.task_category)

        async def replica_ends_first(resource_meta: Any) -> None:
            raise RuntimeError("the replica ended before its cancel")

        with pytest.raises(RuntimeError, match="ended before"):
            run_to_end(answers.cancelling(replica_ends_first)(job))
        assert answers.swept and _in_sweep_index(answers.item)
        swept = [s for s in sweep_once(_ledger(_later(SWEEP_GRACE_SECONDS + 1))) if s.attempt == answers.item]
        assert [(s.outcome, s.job) for s in swept] == [("cancelled", job)]
        assert fake.jobs["cw-1"].status == "CANCELLED", fake.jobs["cw-1"]


def test_a_createtask_whose_answer_cannot_be_recorded_fails_and_cancels_its_job(batch_env, monkeypatch):
    """Answered unrecorded, the job would stay in the sweep index and be swept while propeller
    follows it: the CreateTask fails (its attempt; the next one starts anew) and the job is
    cancelled as a give-up's is, marked abandoned first."""
    from cdao_connectors.aws_batch.connector import BatchConnector  # noqa: PLC0415

    def throttled(self, attempt, started_at):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    connector = BatchConnector()
    template, prefix = serialize(batch_tasks.preprocess), f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    run_to_end(connector.create(template, prefix, None, _meta(f"warm-{uuid.uuid4().hex[:6]}")))
    monkeypatch.setattr(AttemptLedger, "answer", throttled)
    before = set(_batch_jobs())

    async def create_then_wait_for_the_cancel():
        with pytest.raises(RuntimeError, match="could not record"):
            await connector.create(template, prefix, None, _meta(f"unrecorded-{uuid.uuid4().hex[:6]}"))
        for _ in range(200):
            made = [j for i, j in _batch_jobs().items() if i not in before]
            if made and made[0].stop:
                return made
            await asyncio.sleep(0.05)
        return [j for i, j in _batch_jobs().items() if i not in before]

    (job,) = run_to_end(create_then_wait_for_the_cancel())
    assert job.stop, "the job of the unrecorded answer runs on"
    assert "abandoned" in _item(f"batch/{job.job_name}")


# ---------------------------------------------------------------------------------------------
# End to end: a replica killed mid-create, a surviving replica's own sweeper.


def test_a_replica_killed_mid_create_has_its_job_stopped_by_a_surviving_replicas_sweeper(batch_env, moto_endpoint):
    """Two real ``pyflyte serve connector`` replicas. One is SIGKILLed (an OOM kill, or SIGKILL at
    the end of the grace period) while its SubmitJob is held by the throttling proxy, which then
    forwards it: AWS makes a job nobody follows, and no code of the dead replica runs. The claim's
    sweep is due when its lease ends (LEASE_SECONDS); the test moves the item's due time to now
    instead of waiting 5 minutes. The other replica, started as the Deployment starts it with
    ``CDAO_SWEEP_PERIOD_SECONDS=1``, terminates the job on its own thread and exports the count on
    its metrics port. Takes ~12 s (two processes start in parallel)."""
    from throttling_proxy import ThrottlingProxy  # noqa: PLC0415

    proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
    proxy.delay_paths, proxy.delay_seconds = ("/v1/submitjob",), 4.0
    env = provision_batch(moto_endpoint, REGION)
    doomed = ConnectorProcess({**env, "AWS_ENDPOINT_URL_BATCH": proxy.url})
    survivor = ConnectorProcess({**env, "CDAO_SWEEP_PERIOD_SECONDS": "1"})
    try:
        doomed.wait_ready()
        template, prefix = serialize(batch_tasks.preprocess), f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
        inputs = write_inputs(batch_tasks.preprocess, prefix, path="s3://x/raw.csv")
        before = set(_batch_jobs())

        def send() -> None:
            with grpc.insecure_channel(doomed.target) as channel, pytest.raises(grpc.RpcError):
                create_task(AsyncAgentServiceStub(channel), template, prefix, inputs, execution_metadata("killed"))

        sender = threading.Thread(target=send)
        sender.start()
        _until(lambda: any("/v1/submitjob" in path for _, path in proxy.received), timeout=30)
        doomed._process.send_signal(signal.SIGKILL)
        (job,) = _until(lambda: [j for i, j in _batch_jobs().items() if i not in before], timeout=15)
        sender.join(10)
        attempt = f"batch/{job.job_name}"
        assert _in_sweep_index(attempt) and not job.stop
        boto3.client("dynamodb", region_name=REGION).update_item(
            TableName=os.environ["CDAO_ATTEMPT_TABLE"],
            Key={"attempt": {"S": attempt}},
            UpdateExpression=f"SET {SWEEP_AFTER} = :now, lease_until = :now",
            ExpressionAttributeValues={":now": {"N": str(time.time())}},
        )
        survivor.wait_ready()
        _until(lambda: _batch_jobs()[job.job_id].stop, timeout=20)
        assert _item(attempt)["swept"]["S"] == "cancelled"
        metrics = requests.get(f"http://127.0.0.1:{survivor.prometheus_port}/metrics", timeout=5).text
        assert 'cdao_jobs_swept_total{backend="AWS Batch"} 1.0' in metrics, survivor.log(None)
    finally:
        proxy.stop()
        for process in (doomed, survivor):
            process.stop()


# ---------------------------------------------------------------------------------------------
# What a replica's shutdown says of the jobs it leaves.


def test_a_shutdown_leaves_to_the_sweeper_what_the_sweep_index_holds_and_counts_the_rest(
    sweep_table, monkeypatch, caplog
):
    """SIGTERM's give-ups (finish_shutdown, milliseconds): creates still running at the end whose
    attempt is in the sweep index are logged as the sweep's, naming the attempt, and not counted
    by the ending replica. A claimed one (Batch, EMR) is there with its lookup by name; one of a
    backend whose job is unknown until the create answers is there from before its create (its
    seed as the lookup), and the surviving replica's sweep, unable to find that job, counts it as
    left running and logs the attempt for an operator. Only a create with no record is counted by
    the ending replica itself. Before, every one was counted in a process about to end, and the
    messages promised a cancel the process ended before making."""
    from cdao_connectors import _backends, _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import Backend, create_within_deadline, finish_shutdown  # noqa: PLC0415
    from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE  # noqa: PLC0415
    from propeller import category  # noqa: PLC0415

    monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", _deadlines.MARGIN_SECONDS + 0.05)
    monkeypatch.setattr(_deadlines, "DELETE_TASK_SECONDS", 0.2)
    monkeypatch.setattr(_backends, "_refusing_creates", False)
    caplog.set_level("WARNING", logger="cdao_connectors")
    claimed_b, deduplicated_b, unrecorded_b = (f"{n}-{uuid.uuid4().hex[:6]}" for n in ("claimed", "dedup", "none"))
    before = {b: _left_running(b) for b in (claimed_b, deduplicated_b, unrecorded_b)}
    seed = f"s3://flyte-data/metadata/x|p|d|exec-{uuid.uuid4().hex[:6]}|n0|0"
    claimed = AttemptAnswers(
        Backend(claimed_b), f"batch/flyte-{uuid.uuid4().hex}", category(BATCH_TASK_TYPE), claimed=True
    )
    deduplicated = AttemptAnswers(
        Backend(deduplicated_b), f"codeweave/{uuid.uuid4().hex}", category(CODEWEAVE_TASK_TYPE), seed=seed
    )

    async def scenario() -> None:
        hung = asyncio.Event()

        async def never_ends() -> str:
            # The request sent, its answer never comes: a create names its job before (name_the_job).
            name_the_job({"name": "job-never-seen"}, findable=False)
            await hung.wait()
            return "job-never-seen"

        async def stop(job: str) -> None:
            return None

        in_flight = [
            asyncio.ensure_future(create_within_deadline(never_ends(), stop, backend=claimed_b, answers=claimed)),
            asyncio.ensure_future(
                create_within_deadline(never_ends(), stop, backend=deduplicated_b, answers=deduplicated)
            ),
            asyncio.ensure_future(create_within_deadline(never_ends(), stop, backend=unrecorded_b)),
        ]
        await asyncio.sleep(0.1)  # the deduplicating create's record is written before it starts
        await asyncio.wait_for(finish_shutdown(0.5), 3)
        await asyncio.gather(*in_flight, return_exceptions=True)
        # A surviving replica's sweep, once the attempt is due (the creates never end: their replica did).
        swept = await asyncio.get_running_loop().run_in_executor(
            None, lambda: sweep_once(_ledger(_later(LEASE_SECONDS + 1)))
        )
        hung.set()
        return swept

    swept = run_to_end(scenario())
    counted = {b: _left_running(b) - before[b] for b in before}
    # The ending replica counts only the create with no record; the sweep counts the job it cannot find.
    assert counted == {claimed_b: 0.0, deduplicated_b: 1.0, unrecorded_b: 1.0}
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    for answers, fate in ((claimed, "sweeper stops it"), (deduplicated, "sweep counts it as left running")):
        assert any(
            level == "WARNING" and answers.item in m and "sweep index" in m and fate in m for level, m in messages
        ), messages
    assert any(level == "ERROR" and unrecorded_b in m and "stopped by hand" in m for level, m in messages), messages
    assert {(s.attempt, s.outcome) for s in swept} >= {(deduplicated.item, "left running")}
    assert any(level == "ERROR" and seed in m and "stopped by hand" in m for level, m in messages), messages


@pytest.mark.parametrize(
    ("status", "refused"),
    [(400, True), (429, True), (500, False), (503, False)],
)
def test_only_a_refusal_by_aws_takes_a_failed_creates_attempt_out_of_the_sweep_index(sweep_table, status, refused):
    """A 4xx answer (a refusal: the request must change) made nothing; a 5xx says AWS failed to
    complete the request, not that it had no effect, so the attempt stays in the index and its job
    is looked for. Also through an error raised from AWS's (EMR's StepCapReached is)."""
    attempt = f"batch/flyte-{uuid.uuid4().hex}"
    answer = ClientError(
        {"Error": {"Code": "SomeError", "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SubmitJob"
    )

    def create() -> dict[str, Any]:
        raise RuntimeError("wrapped") from answer

    with pytest.raises(RuntimeError):
        _ledger().once(attempt, create, lambda: None, 1, sweep=_target(job_name="n"))
    assert _in_sweep_index(attempt) is not refused


def test_a_sweep_under_way_is_not_an_rpc_a_shutdown_waits_for_nor_its_loop_the_services(batch_env, monkeypatch):
    """The sweeper stops a job through the connector's DeleteTask path on its own thread's event
    loop. A shutdown finds the service's loop through the calls it serves (pending_work_loop): had
    the sweep's DeleteTask counted as one, a SIGTERM during a sweep would run the shutdown on the
    sweeper's loop and miss every create of the service's."""
    from cdao_connectors._backends import pending_work_loop  # noqa: PLC0415
    from cdao_connectors.aws_batch import connector as batch_connector  # noqa: PLC0415

    entered, release = threading.Event(), threading.Event()

    def held(self, resource_meta):
        entered.set()
        assert release.wait(10)

    monkeypatch.setattr(batch_connector.BatchConnector, "delete_sync", held)
    attempt, _ = _armed_give_up("job-held")
    sweeping = threading.Thread(target=lambda: sweep_once(_ledger(_later(SWEEP_GRACE_SECONDS + 1))))
    sweeping.start()
    try:
        assert entered.wait(10)
        assert pending_work_loop() is None
    finally:
        release.set()
        sweeping.join(10)
    assert _item(attempt)["swept"]["S"] == "cancelled"


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (ClientError({"Error": {"Code": "ValidationException", "Message": "bad"}}, "CreateTrainingJob"), False),
        (
            ClientError(
                {"Error": {"Code": "InternalFailure", "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                "CreateTrainingJob",
            ),
            True,
        ),
        (ReadTimeoutError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com/"), True),
        (EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com/"), False),
        (ValueError("a field of the task's own config"), False),
    ],
    ids=["refused", "5xx", "read-timeout", "never-sent", "own-error"],
)
def test_a_deduplicating_create_that_may_have_made_its_job_stays_in_the_sweep_index(sweep_table, error, kept):
    """A backend whose job is known only from the create's answer (SageMaker, EMR Serverless,
    Codeweave) records the attempt before the create; a create that failed without a clear answer
    (AWS's 5xx, an answer lost after the request was sent) keeps it there, so that a surviving
    replica counts and logs the job nobody can follow; a refusal, a request never sent or an error
    of our own made nothing and takes it out (no alert for those)."""
    from cdao_connectors._backends import Backend  # noqa: PLC0415
    from propeller import category  # noqa: PLC0415

    answers = AttemptAnswers(
        Backend(f"dedup-{uuid.uuid4().hex[:6]}"), f"sagemaker/{uuid.uuid4().hex}", category("sagemaker"), seed="s"
    )

    async def create() -> Any:
        raise error

    with pytest.raises(type(error)):
        run_to_end(answers.answering(create()))
    assert _in_sweep_index(answers.item) is kept
    assert answers.swept is kept


def test_a_failing_sweep_is_counted_for_the_platforms_alert(aws_env, monkeypatch):
    """A pass that cannot read the sweep index (here: no such table) is logged and counted in
    cdao_sweep_failures_total, which the platform's alert ConnectorSweepFailing watches under the
    name prometheus_client exports (``<name>_total``), by its ``stage`` label: while the sweep
    fails, no job is counted as left running, so the other alert stays quiet."""
    import yaml  # noqa: PLC0415
    from cdao_connectors import _metrics  # noqa: PLC0415
    from cdao_connectors._sweeper import sweep_pass  # noqa: PLC0415
    from connector_processes import DEPLOYMENT  # noqa: PLC0415

    monkeypatch.setenv("CDAO_ATTEMPT_TABLE", f"cdao-test-no-such-table-{uuid.uuid4().hex[:6]}")
    series = f"{_metrics.SWEEP_FAILURES_NAME}_total"
    before = REGISTRY.get_sample_value(series, {"stage": "pass"})
    assert before is not None  # exported from 0
    sweep_pass()
    assert REGISTRY.get_sample_value(series, {"stage": "pass"}) == before + 1

    rules_file = DEPLOYMENT.parents[2] / "observability" / "dashboards" / "alert-rules.yaml"
    rules = [r for g in yaml.safe_load(rules_file.read_text())["spec"]["groups"] for r in g["rules"]]
    (rule,) = [r for r in rules if r.get("alert") == "ConnectorSweepFailing"]
    assert rule["expr"] == f"sum by (stage) (increase({series}[10m])) > 0", rule["expr"]
    assert _metrics.SWEEP_FAILURES._labelnames == ("stage",)


@pytest.mark.parametrize("value", ["-1", "0.5", "1e-9", "nan", "inf", "often", "301", "1e20"])
def test_a_sweep_period_that_is_not_off_nor_a_second_or_more_is_refused_naming_it(monkeypatch, value):
    """0 turns a replica's sweeper off; anything under a second would send a Query every few
    milliseconds per replica, anything over a claim's lease would leave due attempts waiting longer
    than it (1e20 even killed the sweeper's thread: time.sleep's OverflowError). The service
    refuses to start with it (cdao_connectors.service)."""
    from cdao_connectors.config import ConnectorConfigError, sweep_period_seconds  # noqa: PLC0415

    monkeypatch.setenv("CDAO_SWEEP_PERIOD_SECONDS", value)
    with pytest.raises(ConnectorConfigError, match=f"CDAO_SWEEP_PERIOD_SECONDS={value!r}"):
        sweep_period_seconds()
    for fine, seconds in (("0", 0.0), ("1", 1.0), ("300", 300.0), ("", 60.0)):
        monkeypatch.setenv("CDAO_SWEEP_PERIOD_SECONDS", fine)
        assert sweep_period_seconds() == seconds


def test_a_retried_aws_create_whose_first_try_lost_its_answer_stays_in_the_sweep_index(sweep_table, monkeypatch):
    """botocore retries a create (the deduplicating backends' client, 4 tries) and raises only the
    last try's error: a first try AWS carried out without its answer reaching us (a read timeout),
    then tries throttled (HTTP 400), ended in a throttling error, which alone says nothing was made.
    Every try is judged (botocore's needs-retry event, emitted after each, botocore 1.40
    endpoint.py _needs_retry): the attempt stays in the sweep index. The client is the backend's
    own (Backend.aws); the tries are answered by a before-send hook, as botocore lets one."""
    from botocore.awsrequest import AWSResponse  # noqa: PLC0415

    backend, sagemaker, answers = _retrying_sagemaker(monkeypatch)
    tries: list[int] = []

    def answer(request, **_: Any):
        tries.append(1)
        if len(tries) == 1:
            raise ReadTimeoutError(endpoint_url=request.url)
        body = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
        return AWSResponse(request.url, 400, {"x-amzn-query-error": "ThrottlingException;Sender"}, RawBody(body))

    sagemaker.meta.events.register("before-send.sagemaker.CreateTrainingJob", answer)

    async def create() -> Any:
        return await backend.run(lambda: sagemaker.create_training_job(**_TRAINING))

    with pytest.raises(ClientError) as raised:
        run_to_end(answers.answering(create()))
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert len(tries) > 1, "botocore did not retry"
    assert _in_sweep_index(answers.item)


def _retrying_sagemaker(monkeypatch) -> tuple[Any, Any, AttemptAnswers]:
    """A backend of its own, its shared SageMaker client (Backend.aws, with the needs-retry hook)
    retrying once instead of the service's four times (AWS_CLIENT_CONFIG's max_attempts counts
    retries: botocore args.py ``_compute_retry_max_attempts``; the same judgement, without seconds of
    backoff), and a SageMaker attempt's record, as the plugin's create makes it."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors._backends import Backend  # noqa: PLC0415
    from propeller import category  # noqa: PLC0415

    monkeypatch.setattr(_backends, "AWS_CLIENT_CONFIG", Config(retries={"total_max_attempts": 2, "mode": "standard"}))
    backend = Backend(f"retried-{uuid.uuid4().hex[:6]}")
    answers = AttemptAnswers(backend, f"sagemaker/{uuid.uuid4().hex}", category("sagemaker"), seed="s")
    return backend, backend.aws("sagemaker", REGION), answers


_TRAINING = {
    "TrainingJobName": "flyte-retried",
    "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
    "RoleArn": "arn:aws:iam::123456789012:role/sm",
    "OutputDataConfig": {"S3OutputPath": "s3://flyte-data/out"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
    "StoppingCondition": {"MaxRuntimeInSeconds": 60},
}


def _create_on_a_codeweave_server(
    answer: Any, *, timeout_seconds: float, max_retries: int
) -> tuple[Any, list[bytes], str]:
    """A Codeweave create of a new attempt's job (``AttemptAnswers.answering``, judged by the Codeweave
    connector's ``codeweave_may_have_made_a_job``) against a local server playing ``POST /jobs``, whose
    n-th request (from 1) is answered ``answer(n)``: (HTTP status, body, seconds to wait first).
    Returns what the create raised, the bodies posted, and the attempt's item."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

    from cdao_connectors._backends import Backend  # noqa: PLC0415
    from cdao_connectors.codeweave.connector import codeweave_may_have_made_a_job  # noqa: PLC0415
    from cdao_connectors.codeweave.contract import CodeweaveClient  # noqa: PLC0415
    from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE  # noqa: PLC0415
    from propeller import category  # noqa: PLC0415

    made: list[bytes] = []

    class Codeweave(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            made.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            status, body, wait = answer(len(made))
            time.sleep(wait)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Codeweave)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = Backend(f"codeweave-{uuid.uuid4().hex[:6]}")
    address = f"http://127.0.0.1:{server.server_address[1]}"
    client = CodeweaveClient(address, "k", timeout_seconds=timeout_seconds, max_retries=max_retries)
    answers = AttemptAnswers(
        backend, f"codeweave/{uuid.uuid4().hex}", category(CODEWEAVE_TASK_TYPE), seed="s",
        may_have_made=codeweave_may_have_made_a_job,
    )  # fmt: skip

    async def create() -> Any:
        return await backend.run(client.create_job, {"name": "flyte-codeweave"})

    try:
        run_to_end(answers.answering(create()))
    except Exception as exc:
        return exc, made, answers.item
    finally:
        server.shutdown()
        client.close()
    pytest.fail("the create answered a job")


def test_a_retried_codeweave_create_whose_first_try_lost_its_answer_stays_in_the_sweep_index(sweep_table):
    """Codeweave's client retries a create (urllib3's Retry, with its idempotency key) and raises
    only the last answer: a first POST that made the job and timed out, then 429s, ended in a 429.
    Every try is judged (urllib3 calls Retry.increment after each failed one): the attempt stays in
    the sweep index. A local server plays Codeweave: it makes the job, answers too late, then 429."""
    from cdao_connectors.codeweave.contract import CodeweaveError  # noqa: PLC0415

    def answer(n: int) -> tuple[int, bytes, float]:
        if n == 1:  # the job is made; the answer comes after the client's timeout
            return 201, b'{"id": "cw-1", "status": "QUEUED"}', 0.6
        return 429, b'{"error": "slow down"}', 0.0

    raised, made, item = _create_on_a_codeweave_server(answer, timeout_seconds=0.3, max_retries=2)
    assert isinstance(raised, CodeweaveError) and raised.status == 429, raised
    assert len(made) == 3
    assert _in_sweep_index(item)


def test_a_retried_read_before_a_refused_create_leaves_nothing_in_the_sweep_index(sweep_table, monkeypatch):
    """Only the tries of a job-starting operation are judged: a read made within the create (EMR
    Serverless's GetApplication, here a DescribeTrainingJob) that got a 5xx and was retried says
    nothing of the job, and a create AWS then refused (400) made none. Before, any 5xx within the
    create kept the attempt, and a surviving replica paged for a job never made."""
    from botocore.awsrequest import AWSResponse  # noqa: PLC0415

    backend, sagemaker, answers = _retrying_sagemaker(monkeypatch)
    reads: list[int] = []

    def read(request, **_: Any):
        reads.append(1)
        if len(reads) == 1:
            return AWSResponse(request.url, 500, {}, RawBody(b'{"__type": "InternalFailure", "message": "x"}'))
        return None  # the retry reaches moto

    def refuse(request, **_: Any):
        body = b'{"__type": "ValidationException", "message": "bad request"}'
        return AWSResponse(request.url, 400, {"x-amzn-query-error": "ValidationException;Sender"}, RawBody(body))

    sagemaker.meta.events.register("before-send.sagemaker.DescribeTrainingJob", read)
    sagemaker.meta.events.register("before-send.sagemaker.CreateTrainingJob", refuse)

    def create_after_a_read() -> Any:
        with contextlib.suppress(ClientError):  # moto knows no such job: the read itself is what counts
            sagemaker.describe_training_job(TrainingJobName="flyte-retried")
        return sagemaker.create_training_job(**_TRAINING)

    async def create() -> Any:
        return await backend.run(create_after_a_read)

    with pytest.raises(ClientError):
        run_to_end(answers.answering(create()))
    assert len(reads) == 2, "botocore did not retry the read"
    assert not _in_sweep_index(answers.item)


def test_a_malformed_sweep_period_stops_the_service_with_one_line_naming_it():
    """The service refuses to start (exit 1) with a one-line error naming the variable, not a traceback."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    done = subprocess.run(
        [sys.executable, "-c", "import cdao_connectors.service"],
        env={**os.environ, "CDAO_SWEEP_PERIOD_SECONDS": "often"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("cdao connector service:")
    assert "CDAO_SWEEP_PERIOD_SECONDS='often'" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_answered_attempt_left_in_the_sweep_index_is_never_swept(batch_env):
    """A replica of the previous version answers without taking the attempt out of the index (a
    rollout runs both), and a record made before a create can land after a later CreateTask's
    answer took it out: either way propeller follows the job. The sweep never claims an answered
    attempt not since marked abandoned; it takes it out of the index and stops nothing."""
    attempt, job = f"batch/flyte-{uuid.uuid4().hex}", _submitted_job()
    lookup = {"region": REGION, "job_queue": SPOT_QUEUE, "job_name": "flyte-x"}
    _ledger().once(attempt, lambda: {"job_id": job}, lambda: None, 1, sweep=_target(**lookup))
    boto3.client("dynamodb", region_name=REGION).update_item(  # the earlier version's answer
        TableName=os.environ["CDAO_ATTEMPT_TABLE"],
        Key={"attempt": {"S": attempt}},
        UpdateExpression="SET answered_from = :s",
        ExpressionAttributeValues={":s": {"N": str(time.time())}},
    )
    swept = [s for s in sweep_once(_ledger(_later(LEASE_SECONDS + 1))) if s.attempt == attempt]
    assert [s.outcome for s in swept] == ["answered"]
    assert not _batch_jobs()[job].stop
    assert not _in_sweep_index(attempt)


def test_only_the_latest_createtasks_answer_takes_its_record_out_of_the_sweep_index(sweep_table):
    """Propeller follows the answer of the last CreateTask it sent for an attempt (it re-sends only
    after losing its state). A repeat's record before its create (AttemptLedger.intend) stays in the
    sweep index, and stays claimable, when the answer recorded next is an earlier CreateTask's (one
    still in flight when the repeat came): should the repeat then fail or its replica end, that
    job is nobody's. The repeat's own answer, or a later one's, takes it out."""
    ledger, later = _ledger(), _ledger(_later(LEASE_SECONDS + 1))
    target = SweepTarget("SageMaker", "sagemaker-training-job", 0, lookup={"attempt_seed": "s"})
    now = time.time()
    for answered_at, kept in ((now - 5, True), (now, False), (now + 5, False)):
        attempt = f"sagemaker/{uuid.uuid4().hex}"
        ledger.intend(attempt, target, now)
        ledger.answer(attempt, answered_at)
        assert _in_sweep_index(attempt) is kept, answered_at - now
        assert (later.claim_for_sweep(attempt, SWEEP_GRACE_SECONDS) is not None) is kept
        assert later.disarm_answered(attempt) is False


def test_a_repeats_record_keeps_the_jobs_name_and_starts_the_sweeps_windows_afresh(sweep_table):
    """A repeat's record before its create (AttemptLedger.intend) must not drop the job's name an
    earlier CreateTask of the attempt recorded (name_the_job): should the repeat's replica end
    before naming it again, the sweep could only count the job. And the sweep's windows (looking
    for the job, retrying its stop) count from this record, not from the first CreateTask's, which
    may be long past: looked up once and not listed yet, the job would be taken as never made."""
    ledger = _ledger()
    attempt = f"sagemaker/{uuid.uuid4().hex}"
    target = SweepTarget("SageMaker", "sagemaker-training-job", 0, lookup={"attempt_seed": "s"})
    first = time.time() - 2 * SWEEP_FIND_SECONDS
    AttemptLedger(ledger._db, os.environ["CDAO_ATTEMPT_TABLE"], clock=lambda: first).intend(attempt, target, first)
    named = {"attempt_seed": "s", "name_field": "TrainingJobName", "name": "fit-1", "attempt_tag": "t"}
    ledger.name(attempt, named)
    ledger.answer(attempt, first)
    ledger.intend(attempt, target, time.time())
    item = _item(attempt)
    assert SweepTarget.of(item).lookup == {**named, "named_at": float(item["sweep_named_at"]["N"])}
    assert float(item["sweep_since"]["N"]) > first + SWEEP_FIND_SECONDS


def _codeweave_create_of_a_new_attempt(connector):
    import cw_tasks  # noqa: PLC0415

    template, prefix = serialize(cw_tasks.scale), f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    return connector.create(template, prefix, None, _meta(f"cw-swept-{uuid.uuid4().hex[:6]}"))


def test_a_codeweave_create_reaching_its_request_after_the_sweep_took_its_attempt_sends_nothing(
    sweep_table, fresh_connectors, tmp_path, monkeypatch
):
    """Codeweave's create records its job's name and idempotency key just before its POST
    (name_the_job). A create that reaches the POST only after the sweep took its attempt (its thread
    waited past the record's lease: every Codeweave worker hung) is refused there and sends nothing,
    and the sweep, which saw no request named, settles the attempt as having no job rather than
    paging an operator. Before, the sweep counted the attempt as left running (an alert) and the
    POST then made a job after it."""
    from cdao_connectors.codeweave.connector import CodeweaveConnector  # noqa: PLC0415
    from codeweave_fake import CodeweaveFake, serving_codeweave  # noqa: PLC0415

    create_sync, entered, go = CodeweaveConnector.create_sync, threading.Event(), threading.Event()

    def late(self, *args, **kwargs):
        entered.set()
        assert go.wait(10), "never released"
        return create_sync(self, *args, **kwargs)

    monkeypatch.setattr(CodeweaveConnector, "create_sync", late)
    with serving_codeweave(CodeweaveFake(api_key="k", base_env={}, run_jobs=False), tmp_path, monkeypatch) as fake:
        connector = CodeweaveConnector()
        fresh_connectors(connector)
        before = _left_running(connector.backend.name)

        async def scenario():
            create = asyncio.ensure_future(_codeweave_create_of_a_new_attempt(connector))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, entered.wait, 10), "the create never started"
            swept = await loop.run_in_executor(None, lambda: sweep_once(_ledger(_later(LEASE_SECONDS + 1))))
            go.set()
            (outcome,) = await asyncio.gather(create, return_exceptions=True)
            return swept, outcome

        swept, outcome = run_to_end(scenario())
        assert fake.jobs == {}, "the create's request went out after the sweep took its attempt"
        assert isinstance(outcome, AbandonedBeforeSending), outcome
        assert [s.outcome for s in swept] == ["no job"]
        assert _left_running(connector.backend.name) == before


def test_a_codeweave_create_whose_answer_was_lost_is_counted_with_its_job_named(
    sweep_table, fresh_connectors, tmp_path, monkeypatch, caplog
):
    """Codeweave's API looks a job up by its id only, so the sweep cannot find a job whose create
    lost its answer: it counts it as left running (an alert), and its log names what an operator
    searches Codeweave's jobs for: the job's name and idempotency key, recorded before the POST."""
    from cdao_connectors.codeweave.connector import CodeweaveConnector  # noqa: PLC0415
    from cdao_connectors.codeweave.contract import CodeweaveClient  # noqa: PLC0415
    from codeweave_fake import CodeweaveFake, serving_codeweave  # noqa: PLC0415

    create_job = CodeweaveClient.create_job

    def answer_lost(self, spec):
        create_job(self, spec)
        raise requests.ReadTimeout("Read timed out: the answer was lost")

    monkeypatch.setattr(CodeweaveClient, "create_job", answer_lost)
    caplog.set_level("ERROR", logger="cdao_connectors")
    with serving_codeweave(CodeweaveFake(api_key="k", base_env={}, run_jobs=False), tmp_path, monkeypatch) as fake:
        connector = CodeweaveConnector()
        fresh_connectors(connector)
        before = _left_running(connector.backend.name)
        with pytest.raises(requests.ReadTimeout):
            run_to_end(_codeweave_create_of_a_new_attempt(connector))
        (job,) = fake.jobs.values()
        swept = sweep_once(_ledger(_later(LEASE_SECONDS + 1)))
    assert [s.outcome for s in swept] == ["left running"]
    assert _left_running(connector.backend.name) == before + 1
    logged = [m for r in caplog.records if "stopped by hand" in (m := r.getMessage()) and "sweeper" in m]
    assert logged and all(job.spec["name"] in m and job.spec["idempotency_key"] in m for m in logged), logged


def test_a_create_whose_job_name_cannot_be_recorded_sends_no_request(
    sweep_table, fresh_connectors, tmp_path, monkeypatch
):
    """The sweep takes an attempt whose create named no job for one that sent no request: a create
    that cannot record the name (DynamoDB throttled) must therefore not send it. The CreateTask
    fails naming why (the attempt; its next one starts anew) and no job exists."""
    from cdao_connectors.codeweave.connector import CodeweaveConnector  # noqa: PLC0415
    from codeweave_fake import CodeweaveFake, serving_codeweave  # noqa: PLC0415

    def throttled(self, attempt, lookup):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    monkeypatch.setattr(AttemptLedger, "name", throttled)
    with serving_codeweave(CodeweaveFake(api_key="k", base_env={}, run_jobs=False), tmp_path, monkeypatch) as fake:
        connector = CodeweaveConnector()
        with pytest.raises(RuntimeError, match=r"could not record the name .* not sent"):
            run_to_end(_codeweave_create_of_a_new_attempt(connector))
        assert fake.jobs == {}


def test_an_attempt_an_older_connector_recorded_unnamed_is_still_counted(sweep_table, fresh_connectors):
    """A record without the mark that its create sends only once named (written by a replica of an
    earlier version, mid-rollout) may hide a job sent unnamed: the sweep still counts it as left
    running, for an operator, rather than settling it as never made."""
    from cdao_connectors.codeweave.connector import CodeweaveConnector  # noqa: PLC0415

    connector = CodeweaveConnector()
    fresh_connectors(connector)
    category = connector.task_category
    attempt = f"codeweave/{uuid.uuid4().hex}"
    seed_only = SweepTarget(connector.backend.name, category.name, category.version, {"attempt_seed": "s"})
    _ledger().intend(attempt, seed_only, time.time())
    swept = [s for s in sweep_once(_ledger(_later(LEASE_SECONDS + 1))) if s.attempt == attempt]
    assert [s.outcome for s in swept] == ["left running"]


@pytest.mark.parametrize(
    "body",
    [b'{"id": "cw-1"}', b"null", b'[{"id": "cw-1", "status": "QUEUED"}]', b"<html>created</html>"],
    ids=["no status", "null", "a list", "not JSON"],
)
def test_a_codeweave_create_answered_2xx_with_an_unreadable_body_stays_in_the_sweep_index(sweep_table, body):
    """A 2xx to ``POST /jobs`` says Codeweave made the job (cdao_connectors/codeweave/contract.py);
    a body the client cannot read as the contract's job object hides only its id. The create fails
    naming the status Codeweave answered (not a bare TypeError, nor "HTTP 200" for a 201), and the
    attempt stays in the sweep index, counted for an operator, instead of being settled as having
    made no job."""
    from cdao_connectors.codeweave.contract import CodeweaveError  # noqa: PLC0415

    raised, _, item = _create_on_a_codeweave_server(lambda n: (201, body, 0.0), timeout_seconds=2, max_retries=0)
    assert isinstance(raised, CodeweaveError) and raised.status == 201 and "HTTP 201" in str(raised), raised
    assert _in_sweep_index(item)


# ---------------------------------------------------------------------------------------------
# Issue #16 ("nothing lost"): an abort whose cancel the backend refuses. Propeller retries a
# DeleteTask that errors only for max-workflow-retries rounds of its abort, then fails the workflow
# ("Workflow abort failed") and never sends it again (flytepropeller/v1.16.8
# pkg/controller/workflow/executor.go HandleAbortedWorkflow); the job then ran with nobody to stop it.


def _refusing_terminate(code: str, status: int) -> Any:
    """A botocore ``before-send`` handler answering Batch's TerminateJob with AWS's error ``code``
    (HTTP ``status``) as Batch's REST-JSON protocol carries it: the code in the
    ``x-amzn-ErrorType`` header (botocore ``parsers.py`` ``RestJSONParser._inject_error_code``;
    IAM's refusal of an action is ``AccessDeniedException``, HTTP 403)."""
    from botocore.awsrequest import AWSResponse  # noqa: PLC0415

    def answer(request, **_: Any) -> AWSResponse:
        body = RawBody(b'{"message": "refused by the test"}')
        return AWSResponse(request.url, status, {"x-amzn-ErrorType": code}, body)

    return answer


@pytest.fixture
def aborted_batch_job(batch_env, fresh_connectors, monkeypatch):
    """A fresh Batch connector (served for the sweep too) whose AWS calls are tried once, a running
    Batch job of it, and a switch refusing its TerminateJob: ``refuse(code, status)``, ``refuse(None)``
    to let it through."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors.aws_batch.connector import BatchConnector, BatchJobMetadata  # noqa: PLC0415

    monkeypatch.setattr(_backends, "AWS_CLIENT_CONFIG", Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    connector = BatchConnector()
    fresh_connectors(connector)
    job = BatchJobMetadata(_submitted_job(), "flyte-x", SPOT_QUEUE, REGION, "", False)
    client = connector.backend.aws("batch", REGION)
    handlers: list[Any] = []

    def refuse(code: str | None, status: int = 403) -> None:
        while handlers:
            client.meta.events.unregister("before-send.batch.TerminateJob", handlers.pop())
        if code is not None:
            handlers.append(_refusing_terminate(code, status))
            client.meta.events.register("before-send.batch.TerminateJob", handlers[-1])

    yield connector, job, refuse
    refuse(None)


def _cancel_item(connector, job) -> str:
    from cdao_connectors._attempts import refused_cancel_item  # noqa: PLC0415

    return refused_cancel_item(connector.task_category.name, connector.task_category.version, job.encode())


def test_an_abort_whose_cancel_is_refused_leaves_its_job_to_the_sweep(aborted_batch_job):
    """Propeller's DeleteTask refused (TerminateJob AccessDenied after a role change) answers its
    error and keeps the job in the sweep index with its resource_meta, due CANCEL_SWEEP_DELAY_SECONDS
    after the first refusal however often propeller's retries are refused again; once the role is
    back, the sweep stops the job through the connector's DeleteTask path and counts it as swept."""
    from cdao_connectors._attempts import CANCEL_SWEEP_DELAY_SECONDS  # noqa: PLC0415

    connector, job, refuse = aborted_batch_job
    item = _cancel_item(connector, job)
    refuse("AccessDeniedException")
    with pytest.raises(ClientError, match="AccessDenied"):
        run_to_end(connector.delete(resource_meta=job))
    due = _item(item)[SWEEP_AFTER]
    with pytest.raises(ClientError, match="AccessDenied"):
        run_to_end(connector.delete(resource_meta=job))  # propeller's retry, refused again
    assert _in_sweep_index(item) and _item(item)[SWEEP_AFTER] == due  # not pushed back
    assert _item(item)["sweep_resource_meta"]["B"] == job.encode()
    assert item not in {s.attempt for s in sweep_once(_ledger())}  # propeller's retries come first
    assert not _batch_jobs()[job.job_id].stop

    refuse(None)
    before = _swept(connector.backend.name)
    swept = [s for s in sweep_once(_ledger(_later(CANCEL_SWEEP_DELAY_SECONDS + 1))) if s.attempt == item]
    assert [(s.outcome, s.job) for s in swept] == [("cancelled", job)]
    assert _batch_jobs()[job.job_id].stop
    assert _swept(connector.backend.name) == before + 1
    assert not _in_sweep_index(item)


def test_an_abort_whose_retry_succeeds_takes_its_job_out_of_the_sweep(aborted_batch_job):
    """A refused DeleteTask that propeller's retry then carries out (throttling that passed) takes
    the job out of the sweep index: the sweep never stops, nor counts, a job already stopped."""
    from cdao_connectors._attempts import CANCEL_SWEEP_DELAY_SECONDS  # noqa: PLC0415

    connector, job, refuse = aborted_batch_job
    item = _cancel_item(connector, job)
    refuse("ThrottlingException", 400)
    with pytest.raises(ClientError, match="Throttling"):
        run_to_end(connector.delete(resource_meta=job))
    assert _in_sweep_index(item)
    refuse(None)
    run_to_end(connector.delete(resource_meta=job))
    assert _batch_jobs()[job.job_id].stop
    assert not _in_sweep_index(item)
    before = _swept(connector.backend.name)
    assert item not in {s.attempt for s in sweep_once(_ledger(_later(CANCEL_SWEEP_DELAY_SECONDS + 1)))}
    assert _swept(connector.backend.name) == before


def test_an_abort_refused_for_good_is_counted_as_left_running_by_the_sweep(aborted_batch_job, caplog):
    """A refusal that stays (the role is not put back) is counted in cdao_jobs_left_running_total by
    the sweeping replica (the alert ConnectorJobLeftRunning) and logged for an operator; the sweep's
    own refused cancel records nothing more (only propeller's DeleteTask does)."""
    from cdao_connectors._attempts import CANCEL_SWEEP_DELAY_SECONDS  # noqa: PLC0415

    connector, job, refuse = aborted_batch_job
    item = _cancel_item(connector, job)
    refuse("AccessDeniedException")
    with pytest.raises(ClientError):
        run_to_end(connector.delete(resource_meta=job))
    before = _left_running(connector.backend.name)
    with caplog.at_level(logging.ERROR, logger="cdao_connectors"):
        swept = [s for s in sweep_once(_ledger(_later(CANCEL_SWEEP_DELAY_SECONDS + 1))) if s.attempt == item]
    assert [s.outcome for s in swept] == ["left running"]
    assert _left_running(connector.backend.name) == before + 1
    assert any(job.job_id in r.getMessage() and "stopped by hand" in r.getMessage() for r in caplog.records)
    assert not _in_sweep_index(item) and _item(item)["swept"]["S"].startswith("left running")
    assert sweep_once(_ledger(_later(2 * CANCEL_SWEEP_DELAY_SECONDS))) == []


def test_an_abort_refused_whose_job_cannot_be_recorded_is_counted_as_left_running(aborted_batch_job, monkeypatch):
    """When the attempt table cannot record the refused cancel (here it does not exist), nobody else
    will see the job once propeller gives the abort up: it is counted as left running at once."""
    connector, job, refuse = aborted_batch_job
    monkeypatch.setenv("CDAO_ATTEMPT_TABLE", f"cdao-test-missing-{uuid.uuid4().hex[:8]}")
    refuse("AccessDeniedException")
    before = _left_running(connector.backend.name)
    with pytest.raises(ClientError, match="AccessDenied"):  # the cancel's error is still the answer
        run_to_end(connector.delete(resource_meta=job))
    assert _left_running(connector.backend.name) == before + 1
    with pytest.raises(ClientError, match="AccessDenied"):  # propeller's retry: one job, counted once
        run_to_end(connector.delete(resource_meta=job))
    assert _left_running(connector.backend.name) == before + 1


def test_every_served_connectors_deletetask_leaves_a_refused_cancel_to_the_sweep():
    """Every async connector the service serves (each task type values.yaml routes to it) keeps a
    job whose abort it could not carry out in the sweep index (``_backends.aborting``)."""
    from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry  # noqa: PLC0415

    served = [c for c in ConnectorRegistry._REGISTRY.values() if isinstance(c, AsyncConnectorBase)]
    assert len(served) >= 8, [type(c).__name__ for c in served]
    missing = [type(c).__name__ for c in served if not getattr(type(c).delete, "keeps_refused_cancels", False)]
    assert missing == []


def test_an_emr_abort_refused_for_a_running_step_is_swept_once_emr_accepts(sweep_table, fresh_connectors):
    """EMR's CancelSteps answering FAILED for a step still RUNNING (botocore emr/2009-03-31
    CancelStepsInfo; moto implements neither answer, so botocore's Stubber plays EMR, checked
    against that model) fails propeller's DeleteTask and keeps the step in the sweep index; the
    sweep's cancel, answered SUBMITTED, stops it and counts it as swept."""
    from botocore.stub import Stubber  # noqa: PLC0415
    from cdao_connectors._attempts import CANCEL_SWEEP_DELAY_SECONDS  # noqa: PLC0415
    from cdao_connectors.emr.connector import EMRConnector, EMRStepMetadata  # noqa: PLC0415

    connector = EMRConnector()
    fresh_connectors(connector)
    step = EMRStepMetadata("j-1", f"s-{uuid.uuid4().hex[:8]}", False, REGION, "s3://flyte-data/x", False)
    item = _cancel_item(connector, step)
    cancel = {"ClusterId": "j-1", "StepIds": [step.step_id], "StepCancellationOption": "TERMINATE_PROCESS"}
    with Stubber(connector.backend.aws("emr", REGION)) as emr:
        refused = {"StepId": step.step_id, "Status": "FAILED", "Reason": "cannot be cancelled"}
        emr.add_response("cancel_steps", {"CancelStepsInfoList": [refused]}, cancel)
        running = {"Step": {"Id": step.step_id, "Status": {"State": "RUNNING"}}}
        emr.add_response("describe_step", running, {"ClusterId": "j-1", "StepId": step.step_id})
        with pytest.raises(RuntimeError, match="EMR refused to cancel step"):
            run_to_end(connector.delete(resource_meta=step))
        assert _in_sweep_index(item)

        emr.add_response("cancel_steps", {"CancelStepsInfoList": [{"StepId": step.step_id, "Status": "SUBMITTED"}]})
        before = _swept(connector.backend.name)
        swept = [s for s in sweep_once(_ledger(_later(CANCEL_SWEEP_DELAY_SECONDS + 1))) if s.attempt == item]
        emr.assert_no_pending_responses()
    assert [(s.outcome, s.job) for s in swept] == [("cancelled", step)]
    assert _swept(connector.backend.name) == before + 1


def test_aborts_refused_by_a_hung_backend_are_all_kept_for_the_sweep(
    sweep_table, fresh_connectors, monkeypatch, short_deadlines
):
    """Propeller aborts 40 Batch jobs while TerminateJob hangs: every cancel runs out of the
    DeleteTask's deadline, its thread held on. Each job's record in the sweep index must not wait
    behind those threads (the backend's 32): before, the records failed with the cancels and all 40
    jobs were counted as left running at once, while propeller still retried their aborts."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors._attempts import refused_cancel_item  # noqa: PLC0415
    from cdao_connectors.aws_batch.connector import BatchConnector, BatchJobMetadata  # noqa: PLC0415

    monkeypatch.setattr(_backends, "AWS_CLIENT_CONFIG", Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    connector = BatchConnector()
    fresh_connectors(connector)
    released = threading.Event()
    connector.backend.aws("batch", REGION).meta.events.register(
        "before-send.batch.TerminateJob",
        lambda **_: released.wait(30),  # released once all answered
    )
    jobs = [BatchJobMetadata(str(uuid.uuid4()), "flyte-x", "q", REGION, "", False) for _ in range(40)]
    before = _left_running(connector.backend.name)

    async def abort_all() -> list[Any]:
        return await asyncio.gather(*(connector.delete(resource_meta=j) for j in jobs), return_exceptions=True)

    try:
        answers = run_to_end(abort_all())
    finally:
        released.set()
    assert all(isinstance(a, Exception) for a in answers)
    category = connector.task_category
    kept = {i["attempt"]["S"] for i in armed()}
    assert {refused_cancel_item(category.name, category.version, j.encode()) for j in jobs} <= kept
    assert _left_running(connector.backend.name) == before


def test_a_give_ups_refused_late_cancel_is_not_also_left_to_the_sweep(sweep_table, fresh_connectors, monkeypatch):
    """A give-up's late cancel goes through the connector's DeleteTask path too, but it handles its
    own refusals: refused for good, it counts the job as left running itself. It must not also
    record the job for the refused-abort sweep, which would count the same job a second time."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors._attempts import refused_cancel_item  # noqa: PLC0415
    from cdao_connectors.aws_batch.connector import BatchConnector, BatchJobMetadata  # noqa: PLC0415

    connector = BatchConnector()
    fresh_connectors(connector)

    def refused(self, resource_meta):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "TerminateJob")

    monkeypatch.setattr(BatchConnector, "delete_sync", refused)
    job = BatchJobMetadata(str(uuid.uuid4()), "flyte-x", "q", REGION, "", False)
    before = _left_running(connector.backend.name)

    async def give_up() -> None:
        _backends._stop_in_background(job, connector.delete, connector.backend.name, lambda e: False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(asyncio.gather(*[t for t in _backends._LATE_CANCELS if t.get_loop() is loop]), 10)

    run_to_end(give_up())
    assert _left_running(connector.backend.name) == before + 1
    category = connector.task_category
    assert refused_cancel_item(category.name, category.version, job.encode()) not in {
        i["attempt"]["S"] for i in armed()
    }

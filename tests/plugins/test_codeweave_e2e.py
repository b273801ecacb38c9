"""Codeweave end to end: a real flytekit task, serialized, sent through the connector over gRPC to a
Codeweave fake that runs its pyflyte-execute command, with outputs in moto's S3."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cw_tasks
import grpc
import propeller
import pytest
from cdao_connectors.codeweave.connector import CodeweaveConnector, CodeweaveJobMetadata
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.config import ConnectorConfigError
from codeweave_fake import CodeweaveFake, FakeJob, serving_codeweave
from connector_calls import run_get
from propeller import (
    PHASE,
    create_task,
    delete_task,
    execution_metadata,
    get_task,
    poll_until_terminal,
    read_outputs,
    serialize,
    wait_for,
    write_inputs,
)

pytestmark = pytest.mark.e2e

API_KEY = "cw-test-key-123"


@pytest.fixture
def codeweave(aws_env, tmp_path, monkeypatch) -> Iterator[CodeweaveFake]:
    fake = CodeweaveFake(api_key=API_KEY, base_env={**aws_env, "PYTHONPATH": str(Path(propeller.__file__).parent)})
    with serving_codeweave(fake, tmp_path, monkeypatch):
        yield fake


def _prefix() -> str:
    return f"s3://flyte-data/metadata/{uuid.uuid4().hex}"


def test_task_runs_on_codeweave_and_outputs_come_back(codeweave, grpc_stubs):
    stub, _ = grpc_stubs
    template = serialize(cw_tasks.scale)
    assert template.type == CODEWEAVE_TASK_TYPE
    prefix = _prefix()
    inputs = write_inputs(cw_tasks.scale, prefix, values=[1, 2, 3], factor=1.5)

    meta = create_task(stub, template, prefix, inputs, execution_metadata("e2e1"))
    job = next(iter(codeweave.jobs.values()))
    assert job.spec["resources"]["gpu"] == {"type": "nvidia-a100-80gb", "count": 2}
    assert job.spec["resources"]["memory"] == "64Gi"
    assert job.spec["command"][0] == "pyflyte-execute"
    assert f"{prefix}/inputs.pb" in job.spec["command"]

    resource = poll_until_terminal(stub, CODEWEAVE_TASK_TYPE, meta)
    assert resource.phase == PHASE.SUCCEEDED, resource.message + job.log.decode(errors="replace")
    assert resource.log_links[0].uri == f"{codeweave.url}/jobs/{job.id}/logs"
    assert read_outputs(cw_tasks.scale, prefix) == {"o0": 9.0, "o1": "scaled 3 values"}


def test_user_error_is_a_failure_not_success(codeweave, grpc_stubs):
    stub, _ = grpc_stubs
    prefix = _prefix()
    inputs = write_inputs(cw_tasks.explode, prefix, x=7)
    meta = create_task(stub, serialize(cw_tasks.explode), prefix, inputs, execution_metadata("e2e2"))
    resource = poll_until_terminal(stub, CODEWEAVE_TASK_TYPE, meta)
    # A user exception's error.pb is NON_RECOVERABLE: FAILED, never run again (test_job_outcome.py).
    assert resource.phase == PHASE.FAILED, resource
    assert "bad input 7" in resource.message


def test_retried_create_makes_one_job_and_throttling_is_backed_off(codeweave, grpc_stubs):
    stub, _ = grpc_stubs
    prefix = _prefix()
    inputs = write_inputs(cw_tasks.sleepy, prefix, seconds=0)
    template = serialize(cw_tasks.sleepy)
    codeweave.throttle_next = 3  # the first three requests get 429 + Retry-After
    first = create_task(stub, template, prefix, inputs, execution_metadata("e2e3"))
    second = create_task(stub, template, prefix, inputs, execution_metadata("e2e3"))
    assert codeweave.throttled == 3
    assert len(codeweave.jobs) == 1
    assert json.loads(first)["job_id"] == json.loads(second)["job_id"]
    assert poll_until_terminal(stub, CODEWEAVE_TASK_TYPE, second).phase == PHASE.SUCCEEDED


def test_delete_cancels_the_remote_job(codeweave, grpc_stubs):
    stub, _ = grpc_stubs
    prefix = _prefix()
    inputs = write_inputs(cw_tasks.sleepy, prefix, seconds=120)
    meta = create_task(stub, serialize(cw_tasks.sleepy), prefix, inputs, execution_metadata("e2e4"))
    job = next(iter(codeweave.jobs.values()))
    assert get_task(stub, CODEWEAVE_TASK_TYPE, meta).phase in (PHASE.QUEUED, PHASE.RUNNING)
    delete_task(stub, CODEWEAVE_TASK_TYPE, meta)
    wait_for(lambda: job.proc.poll() is not None, timeout=10)
    assert job.status == "CANCELLED"
    assert codeweave.running_processes() == []
    # A job cancelled outside Flyte's abort path is never reported as success.
    assert get_task(stub, CODEWEAVE_TASK_TYPE, meta).phase == PHASE.FAILED


def test_a_repeated_create_of_an_attempt_whose_job_was_cancelled_fails_only_the_attempt(codeweave, grpc_stubs):
    """A CreateTask that gave up has its late job cancelled (cdao_connectors._backends); should
    propeller, having lost its state, send that attempt's CreateTask again, the idempotency key
    names the cancelled job. Adopting it would answer FAILED, a permanent failure of the task
    (flyteplugins connector/plugin.go ``Status`` at flyteplugins/v1.16.8): the CreateTask errors
    instead, which fails only the attempt (internal/webapi/launcher.go ``launch``)."""
    stub, _ = grpc_stubs
    prefix = _prefix()
    inputs = write_inputs(cw_tasks.sleepy, prefix, seconds=120)
    template = serialize(cw_tasks.sleepy)
    meta = create_task(stub, template, prefix, inputs, execution_metadata("e2e-gave-up"))
    delete_task(stub, CODEWEAVE_TASK_TYPE, meta)  # as the give-up's cancel does
    (job,) = codeweave.jobs.values()
    with pytest.raises(grpc.RpcError) as refused:
        create_task(stub, template, prefix, inputs, execution_metadata("e2e-gave-up"))
    assert job.id in refused.value.details() and "next attempt" in refused.value.details()
    assert list(codeweave.jobs) == [job.id]


def test_restarted_connector_resumes_and_unknown_status_does_not_crash(codeweave, grpc_stubs):
    stub, _ = grpc_stubs
    prefix = _prefix()
    inputs = write_inputs(cw_tasks.sleepy, prefix, seconds=1)
    meta = create_task(stub, serialize(cw_tasks.sleepy), prefix, inputs, execution_metadata("e2e5"))
    job = next(iter(codeweave.jobs.values()))

    job.forced_status = "PREEMPTED_BY_MAINTENANCE"
    unknown = get_task(stub, CODEWEAVE_TASK_TYPE, meta)
    assert unknown.phase == PHASE.RUNNING
    assert "PREEMPTED_BY_MAINTENANCE" in unknown.message
    job.forced_status = None

    # A brand-new connector instance (the pod restarted) only has the resource metadata.
    fresh = CodeweaveConnector()
    resumed = wait_for(
        lambda: r if (r := run_get(fresh, CodeweaveJobMetadata.decode(meta))).phase == PHASE.SUCCEEDED else None,
        timeout=60,
    )
    assert resumed.phase == PHASE.SUCCEEDED
    assert read_outputs(cw_tasks.sleepy, prefix) == {"o0": 1}


def test_missing_api_key_secret_is_a_clear_error(codeweave, monkeypatch, tmp_path):
    monkeypatch.setenv("FLYTE_SECRETS_DEFAULT_DIR", str(tmp_path / "nothing-mounted"))
    with pytest.raises(ConnectorConfigError, match="codeweave_api_key"):
        run_get(CodeweaveConnector(), CodeweaveJobMetadata("x", "s3://b/p", False))
    monkeypatch.delenv("CDAO_CODEWEAVE_ENDPOINT")
    with pytest.raises(ConnectorConfigError, match="CDAO_CODEWEAVE_ENDPOINT"):
        run_get(CodeweaveConnector(), CodeweaveJobMetadata("x", "s3://b/p", False))


def test_local_run_through_the_connector_when_asked(codeweave, monkeypatch):
    """``CDAO_LOCAL_EXECUTION=connector pyflyte run``: the local call goes through the connector."""
    monkeypatch.setenv("CDAO_LOCAL_EXECUTION", "connector")
    before = len(codeweave.jobs)
    assert cw_tasks.scale(values=[2, 2], factor=2.0) == (8.0, "scaled 2 values")
    assert len(codeweave.jobs) == before + 1


def test_get_tasks_reuse_one_http_connection(codeweave):
    # A new HTTP session per call paid a TCP (TLS, against the real API) handshake per GetTask.
    connector = CodeweaveConnector()
    with codeweave.lock:
        codeweave.jobs["reused"] = FakeJob(id="reused", spec={"name": "reused"}, status="RUNNING")
    meta = CodeweaveJobMetadata("reused", _prefix(), False)
    for _ in range(20):
        time.sleep(0.002)  # past CDAO_STATUS_REFRESH_SECONDS (1 ms here): every GetTask reads the job
        assert run_get(connector, meta).phase == PHASE.RUNNING
    assert len(codeweave.requests) == 20
    assert len(codeweave.connections) == 1


def test_the_environment_is_read_once_per_client_not_per_request(codeweave, monkeypatch):
    """requests reads proxies (scanning every environment variable) and the CA bundle from the
    environment on every request of a Session that trusts it (requests 2.34 sessions.py
    ``merge_environment_settings``): a quarter of a Codeweave GetTask's CPU, more in a pod whose
    environment lists its namespace's Services. The client reads it once; a proxy set there
    still carries every request."""
    import requests.sessions  # noqa: PLC0415
    from cdao_connectors.codeweave.contract import CodeweaveClient  # noqa: PLC0415

    reads: list[str] = []
    original = requests.sessions.get_environ_proxies

    def counting(url, no_proxy=None):
        reads.append(url)
        return original(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    with codeweave.lock:
        codeweave.jobs["env-once"] = FakeJob(id="env-once", spec={"name": "env-once"}, status="RUNNING")
    client = CodeweaveClient(codeweave.url, API_KEY)
    for _ in range(20):
        assert client.get_job("env-once").status == "RUNNING"
    assert len(reads) <= 1, f"the environment was read {len(reads)} times for 20 requests"

    # The fake as the forward proxy: it receives the request line with the absolute URL.
    monkeypatch.setenv("HTTP_PROXY", codeweave.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = CodeweaveClient("http://codeweave.invalid", API_KEY, max_retries=0)
    codeweave.requests.clear()
    proxied.get_job("env-once")
    assert codeweave.requests == [("GET", "http://codeweave.invalid/jobs/env-once")]


def test_a_known_job_is_answered_stale_while_codeweave_throttles(codeweave, production_status_waits):
    """Propeller fails a task after ``maxSystemFailures`` GetTask errors in its life (flyteplugins
    go/tasks/pluginmachinery/internal/webapi/cache.go at v1.16.8): a job whose status is known is
    answered with it, marked stale, while Codeweave answers 429 to every retry. One read: the
    client's own backoff makes it about 1.4 s, and test_error_budget.py proves the count."""
    codeweave.jobs["cw-known"] = FakeJob(id="cw-known", spec={"name": "known"}, status="RUNNING")
    connector = CodeweaveConnector()
    meta = CodeweaveJobMetadata(job_id="cw-known", output_prefix=_prefix(), has_outputs=False)
    assert run_get(connector, meta).phase == PHASE.RUNNING
    codeweave.throttle_next = 10_000
    time.sleep(0.002)  # past CDAO_STATUS_REFRESH_SECONDS (1 ms here)
    stale = run_get(connector, meta)
    # The read is still backing off: the GetTask answered without waiting for it.
    assert stale.phase == PHASE.RUNNING and "last known status" in stale.message, stale.message
    # Once it has failed, the stale answer says why.
    stale = wait_for(lambda: r if "429" in (r := run_get(connector, meta)).message else None, timeout=10)
    assert stale.phase == PHASE.RUNNING and "last known status" in stale.message


def test_a_refused_key_ends_the_stale_answers_with_an_error_naming_it(codeweave, monkeypatch):
    """A 401 (the API key was revoked) is not Codeweave being busy: past the grace the GetTask is
    an error naming it, so propeller's error budget drains and the task fails with that message
    instead of reading RUNNING until its timeout (cdao_connectors._status_cache)."""
    from cdao_connectors import _status_cache  # noqa: PLC0415

    monkeypatch.setattr(_status_cache, "REFUSAL_GRACE_SECONDS", 0.2)
    codeweave.jobs["cw-revoked"] = FakeJob(id="cw-revoked", spec={"name": "revoked"}, status="RUNNING")
    connector = CodeweaveConnector()
    meta = CodeweaveJobMetadata(job_id="cw-revoked", output_prefix=_prefix(), has_outputs=False)
    assert run_get(connector, meta).phase == PHASE.RUNNING
    codeweave.api_key = "revoked"  # every request of the mounted key now answers 401
    time.sleep(0.002)
    stale = run_get(connector, meta)
    assert stale.phase == PHASE.RUNNING and "HTTP 401" in stale.message, stale.message
    time.sleep(0.25)
    with pytest.raises(_status_cache.StatusRefused, match="HTTP 401"):
        run_get(connector, meta)

"""A job whose status is known never spends propeller's error budget on transient AWS trouble.

Propeller fails a task once more than ``webApi.caching.maxSystemFailures`` of its GetTasks errored in
its whole life, never reset by a success (flyteplugins
``go/tasks/pluginmachinery/internal/webapi/cache.go`` at flyteplugins/v1.16.8: ``SyncFailureCount++``
on every ``client.Get`` error; PhaseSystemFailure past ``MaxSystemFailures``). So a GetTask of a
known job answers its last status, marked stale with the reason, however many refreshes fail; only a
job nothing is known about is an error. AWS's refusals are botocore Stubber errors with AWS's own
throttling code (``ThrottlingException``, botocore ``retries/standard.py``
``ThrottledRetryableChecker``), answered by a client that does not retry so one answer is one call.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from cdao_connectors import _deadlines, _status_cache
from cdao_connectors._status_cache import StatusCache
from cdao_connectors.aws_batch.connector import BatchConnector, BatchJobMetadata
from cdao_connectors.emr.connector import EMRConnector, EMRStepMetadata
from cdao_connectors.sagemaker.connector import BatchTransformConnector, BatchTransformMetadata
from connector_calls import run_get
from flyteidl.core.execution_pb2 import TaskExecution
from propeller_polling import FLYTE_VALUES, PollingSettings, connector_service_values, go_duration

REGION = "us-east-1"
# More failed refreshes than propeller tolerates GetTask errors: each would have been one.
FAILURES = _deadlines.PROPELLER_MAX_SYSTEM_FAILURES + 2


def test_propellers_error_budget_is_the_one_the_connectors_are_built_for():
    caching = connector_service_values()["webApi"]["caching"]
    assert caching["maxSystemFailures"] == _deadlines.PROPELLER_MAX_SYSTEM_FAILURES
    assert caching["resyncInterval"] == f"{_deadlines.PROPELLER_RESYNC_SECONDS:g}s"
    # The section is decoded as a whole: size stays at flyteplugins' default
    # (go/tasks/plugins/webapi/connector/config.go at flyteplugins/v1.16.8); workers is sized in
    # test_propeller_polling.py.
    assert caching["size"] == 500000


def _chart_values(chart: str, version: str) -> dict[str, Any]:
    """A pinned chart's own values, from the chart cache the platform tests own
    (tests/platform/support/chart_cache.py: ``$CDAO_CHART_CACHE``, else ../shared/charts)."""
    support = str(Path(__file__).resolve().parents[1] / "platform" / "support")
    if support not in sys.path:
        sys.path.append(support)
    from chart_cache import default_values  # noqa: PLC0415

    return default_values(chart, version)


def _merged(chart: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """``ours`` over ``chart`` as Helm coalesces values: maps merge key by key, anything else replaces."""
    merged = dict(chart)
    for key, value in ours.items():
        below = merged.get(key)
        merged[key] = _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def propellers_abort_budget_seconds() -> float:
    """The least time propeller keeps re-sending an abort's DeleteTask that errors, from its first
    error to its last try, for a workflow with no system error before the abort, with the propeller
    config our values render (``configmap.core.propeller``,
    merged over the chart's; the chart renders it as ``core.yaml``, templates/propeller/configmap.yaml
    at v1.16.8). flytepropeller/v1.16.8: a round whose abort errors records one more
    ``FailedAttempts`` (pkg/controller/handler.go ``RecordSystemError``) and returns the error while
    ``FailedAttempts <= max-workflow-retries`` (pkg/controller/workflow/executor.go
    ``HandleAbortedWorkflow``), so ``max-workflow-retries + 1`` rounds error, and one more tries
    the cleanup once again and fails the workflow whatever its answer; the item is never
    ``Forget``-ed after an error (pkg/controller/workers.go), and each enqueue of the written workflow
    (controller.go ``enqueueFlyteWorkflow``, ``AddRateLimited``) waits at least the queue's
    exponential failure delay (workqueue.go ``maxof``: client-go's ItemExponentialFailureRateLimiter,
    ``base-delay * 2^n`` up to ``max-delay``). The rounds' own time (each DeleteTask up to its deadline)
    only adds to it."""
    chart = _chart_values("flyte-core", "v1.16.8")["configmap"]["core"]["propeller"]
    ours = yaml.safe_load(FLYTE_VALUES.read_text())["configmap"].get("core", {}).get("propeller", {})
    propeller = _merged(chart, ours)
    queue = propeller["queue"]["queue"]
    assert queue["type"] in {"maxof", "exponential"}, queue  # the failure backoff applies
    base = go_duration(queue["base-delay"], "queue.queue.base-delay")
    cap = go_duration(queue["max-delay"], "queue.queue.max-delay")
    retries = int(propeller["max-workflow-retries"])
    return sum(min(base * 2**n, cap) for n in range(retries + 1))


def test_a_refused_abort_is_swept_while_propeller_still_retries_it_and_until_after():
    """A DeleteTask whose cancel fails keeps its job in the sweep index, due
    CANCEL_SWEEP_DELAY_SECONDS later (cdao_connectors._backends.aborting): the sweep must start while
    propeller still retries the abort (a refusal for good then pages at once, not after propeller's
    hour), and its "not now" retries (SWEEP_GIVE_UP_SECONDS from the first refusal) must outlast
    propeller's least abort budget, so a job is counted as left running only once nobody tries."""
    from cdao_connectors._attempts import CANCEL_SWEEP_DELAY_SECONDS  # noqa: PLC0415
    from cdao_connectors._sweeper import SWEEP_GIVE_UP_SECONDS  # noqa: PLC0415

    budget = propellers_abort_budget_seconds()
    assert 50 * 60 < budget < 60 * 60, budget  # the ~55 minutes the comments state
    assert budget / 4 > CANCEL_SWEEP_DELAY_SECONDS
    assert budget <= SWEEP_GIVE_UP_SECONDS


def test_waiting_for_a_hung_backend_holds_at_most_half_of_propellers_workers(production_status_waits):
    """Propeller's GetTask callers are ``caching.workers`` goroutines shared by every connector task
    type, started at most ``readRateLimiter.qps`` times a second (flyteplugins
    go/tasks/pluginmachinery/internal/webapi/cache.go ``NewResourceCache``; defaults workers 10 and
    qps 10 in go/tasks/plugins/webapi/connector/config.go, both at flyteplugins/v1.16.8). A known
    job's GetTask waits at most KNOWN_STATUS_WAIT_SECONDS for its backend: with every task on a hung
    backend, that must leave half of the workers to the others."""
    settings = PollingSettings.from_values()
    assert _status_cache.KNOWN_STATUS_WAIT_SECONDS * settings.qps <= settings.workers / 2
    # A first sight waits longer, but less than propeller's deadline for the GetTask.
    assert _status_cache.FIRST_SIGHT_WAIT_SECONDS < _deadlines.GET_TASK_SECONDS - _deadlines.MARGIN_SECONDS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttled(ids: list[str]) -> dict[str, Any]:
    raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeJobs")


def test_a_known_status_outlives_more_failed_refreshes_than_propeller_tolerates():
    clock = Clock()
    cache = StatusCache(_throttled, max_age=5.0, batch=100, clock=clock)
    cache.seed("job-1", {"status": "RUNNING"})
    for _ in range(FAILURES):
        clock.now += 30.0  # propeller's resync interval
        known = cache.get("job-1")
        assert known.value == {"status": "RUNNING"}
        assert known.stale is not None and "ThrottlingException" in known.stale and "s old" in known.stale
    with pytest.raises(ClientError, match="ThrottlingException"):
        cache.get("never-seen")  # nothing known: an error is the only honest answer


def test_with_a_background_refresh_a_tracked_job_never_waits_for_aws():
    clock = Clock()
    calls: list[list[str]] = []

    def describe(ids: list[str]) -> dict[str, Any]:
        calls.append(ids)
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeJobs")

    cache = StatusCache(describe, max_age=5.0, batch=100, period=3600.0, clock=clock)
    cache.seed("job-1", {"status": "RUNNING"})
    clock.now += 1.0
    with pytest.raises(ClientError):
        cache.refresh_ahead(older_than=0.0)  # the background pass fails
    clock.now += 60.0
    known = cache.get("job-1")
    assert known.value == {"status": "RUNNING"} and "ThrottlingException" in (known.stale or "")
    assert len(calls) == 1 and cache.inline_refreshes == 0


# AWS's answer to a call the role may not make: AccessDeniedException, HTTP 400 (the "Common Errors"
# of every AWS API reference, e.g. https://docs.aws.amazon.com/batch/latest/APIReference/CommonErrors.html).
ACCESS_DENIED = ("AccessDeniedException", "User is not authorized to perform this action", 400)
THROTTLED = ("ThrottlingException", "Rate exceeded", 400)


def _stubbed(service: str, method: str, n: int, error: tuple[str, str, int] = THROTTLED) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    stub = Stubber(client)
    for _ in range(n):
        stub.add_client_error(method, *error)
    stub.activate()
    return client, stub


def _assert_stale_answers(get: Any, phase: int) -> None:
    for _ in range(FAILURES):
        time.sleep(0.002)  # past max_age (1 ms): every GetTask refreshes, and fails
        resource = get()
        assert resource.phase == phase
        assert "last known status" in resource.message and "ThrottlingException" in resource.message


def _caching_connector(kind: str, monkeypatch, error: tuple[str, str, int], n: int) -> tuple[Any, Any, int, Stubber]:
    """A connector of ``kind`` knowing its job RUNNING, whose next ``n`` status calls AWS answers
    ``error``: the connector, the job's metadata, its phase, and the Stubber (to deactivate)."""
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "0.001")  # no background pass: every GetTask refreshes
    monkeypatch.setenv("CDAO_BATCH_STATUS_REFRESH_SECONDS", "0.001")
    monkeypatch.setenv("CDAO_BATCH_SPOT_QUEUE", "spot")
    monkeypatch.setenv("CDAO_BATCH_ON_DEMAND_QUEUE", "on-demand")
    if kind == "batch":
        connector: Any = BatchConnector()
        meta: Any = BatchJobMetadata("job-1", "flyte-x", "q", REGION, "s3://flyte-data/p", False)
        # What SubmitJob's answer seeds (BatchConnector.create_sync), then a DescribeJobs shape.
        connector.status_cache(REGION, 0.001).seed("job-1", {"jobId": "job-1", "status": "RUNNING"})
        client, stub = _stubbed("batch", "describe_jobs", n, error)
        phase = TaskExecution.RUNNING
    elif kind == "emr":
        connector = EMRConnector()
        meta = EMRStepMetadata("j-1", "s-1", False, REGION, "s3://flyte-data/p", False)
        # A ListSteps StepSummary (botocore emr/2009-03-31): Id, Name, Status.State.
        step = {"Id": "s-1", "Name": "flyte", "Status": {"State": "RUNNING"}}
        connector.status_cache(REGION, 0.001).seed(("j-1", "s-1"), step)
        client, stub = _stubbed("emr", "list_steps", n, error)
        phase = TaskExecution.RUNNING
    else:
        connector = BatchTransformConnector()
        meta = BatchTransformMetadata("tj-1", REGION, "s3://flyte-data/out")
        described = {"TransformJobName": "tj-1", "TransformJobStatus": "InProgress"}  # DescribeTransformJob's
        connector.status_cache(REGION, 0.001).seed("tj-1", described)
        client, stub = _stubbed("sagemaker", "describe_transform_job", n, error)
        phase = TaskExecution.RUNNING
    monkeypatch.setattr(connector.backend, "aws", lambda service, region, **_: client)
    return connector, meta, phase, stub


@pytest.mark.parametrize("kind", ["batch", "emr", "transform"])
def test_every_caching_connector_answers_a_known_status_while_aws_throttles(aws_env, monkeypatch, kind):
    connector, meta, phase, stub = _caching_connector(kind, monkeypatch, THROTTLED, FAILURES)
    try:
        _assert_stale_answers(lambda: run_get(connector, meta), phase)
    finally:
        stub.deactivate()


@pytest.mark.parametrize("kind", ["batch", "emr", "transform"])
def test_a_refusal_that_lasts_ends_the_stale_answers_with_an_error_naming_it(aws_env, monkeypatch, kind):
    """AccessDenied after a role change would otherwise answer the last RUNNING until the task's
    timeout. Past the grace the GetTask is an error naming the refusal: propeller's error budget
    drains and the task fails with that message (_status_cache, REFUSAL_GRACE_SECONDS)."""
    monkeypatch.setattr(_status_cache, "REFUSAL_GRACE_SECONDS", 0.2)
    connector, meta, phase, stub = _caching_connector(kind, monkeypatch, ACCESS_DENIED, 100)
    try:
        time.sleep(0.002)
        stale = run_get(connector, meta)  # within the grace: an operator may still fix the role
        assert stale.phase == phase and "last known status" in stale.message and "AccessDenied" in stale.message
        time.sleep(0.25)
        with pytest.raises(_status_cache.StatusRefused, match="AccessDeniedException") as refused:
            run_get(connector, meta)
        assert "refused for" in str(refused.value)
    finally:
        stub.deactivate()


def test_transient_trouble_between_refusals_does_not_restart_their_clock_and_an_answer_does():
    clock = Clock()
    errors = iter(["AccessDeniedException", "ThrottlingException", "AccessDeniedException", None, "AccessDenied"])

    def describe(ids: list[str]) -> dict[str, Any]:
        code = next(errors)
        if code is None:
            return {i: {"status": "RUNNING"} for i in ids}
        raise ClientError({"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "X")

    cache = StatusCache(describe, max_age=0.5, batch=100, clock=clock)
    cache.seed("job-1", {"status": "RUNNING"})
    grace = _status_cache.REFUSAL_GRACE_SECONDS
    for step in (1, grace / 2):  # refused, then throttled: still within the grace
        clock.now += step
        assert cache.get("job-1").stale
    clock.now += grace / 2 + 1  # refused again, past the grace since the first refusal
    with pytest.raises(_status_cache.StatusRefused):
        cache.get("job-1")
    clock.now += 10
    assert cache.get("job-1").stale is None  # an answer: the role was fixed
    clock.now += 10
    assert "AccessDenied" in cache.get("job-1").stale  # refused again: a new grace


def test_gettasks_that_wait_for_aws_and_stale_answers_are_counted_for_prometheus():
    """The service exports both on its Prometheus port; plugins/benchmarks/get_task_latency.py
    reads them to report how often a GetTask waited for AWS."""
    from prometheus_client import REGISTRY  # noqa: PLC0415

    def sample(metric: str) -> float:
        return REGISTRY.get_sample_value(f"{metric}_total", {"cache": "budget-counted"}) or 0.0

    clock = Clock()
    cache = StatusCache(_throttled, max_age=5.0, batch=100, clock=clock, name="budget-counted")
    cache.seed("job-1", {"status": "RUNNING"})
    clock.now += 30.0
    assert cache.get("job-1").stale
    assert (sample("cdao_status_inline_refreshes"), sample("cdao_status_stale_answers")) == (1.0, 1.0)

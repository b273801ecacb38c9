"""The sweep of EMR Serverless job runs whose CreateTask never answered them (plugins/cdao_connectors/_attempts.py
"Sweeping", cdao_connectors.emr.serverless ``IdempotentEMRServerlessConnector.swept_job``).

EMR Serverless deduplicates StartJobRun by its clientToken, so a run is known only from the
create's answer; a create that lost that answer (a read timeout after EMR Serverless started the
run, a 5xx) or whose replica ended mid-create left a run that the sweep could only count: nobody
cancelled it. The create now records the application, the run's name and the attempt's
``flyte-attempt`` tag just before StartJobRun is sent, and the sweep cancels the application's run
of that name created since then whose tags hold the attempt's (a task's runs all share its name).

EMR Serverless is moto as a server, with three of its answers made as AWS gives them: a run's
``createdAt`` is its creation time (botocore emr-serverless/2021-07-13 ``JobRun.createdAt``, "The
date and time when the job run was created"; moto 5.2.5 ``emrserverless/models.py`` ``JobRun``
truncates it to midnight UTC, which ``createdAtAfter`` then filters out), and a run goes on after
StartJobRun (moto's start ``SUCCESS``, its ``JOB_STATUS``), and StartJobRun with a client token
it has seen answers that run (botocore marks ``clientToken`` an ``idempotencyToken``; moto starts
another).
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import boto3
import emr_tasks
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from cdao_connectors._attempts import LEASE_SECONDS, JobCannotBeFound
from cdao_connectors._sweeper import sweep_once
from connector_calls import run_to_end
from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekit.extend.backend.utils import render_task_template
from prometheus_client import REGISTRY
from propeller import execution_metadata, serialize, write_inputs
from sweeping import RawBody, armed, ledger

REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture
def application(aws_env, monkeypatch) -> str:
    """A started application like infra/'s, whose runs moto makes as AWS does (module docstring)."""
    from moto.core.utils import utcnow  # noqa: PLC0415
    from moto.emrserverless.models import EMRServerlessBackend, JobRun  # noqa: PLC0415

    made = JobRun.__init__

    def made_now(self, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self.created_at = self.updated_at = utcnow()

    monkeypatch.setattr(JobRun, "__init__", made_now)
    monkeypatch.setattr("moto.emrserverless.models.JOB_STATUS", "RUNNING")
    started = EMRServerlessBackend.start_job_run

    def idempotent(backend, application_id, client_token, *args: Any, **kwargs: Any) -> Any:
        # StartJobRun's clientToken is an idempotencyToken (botocore emr-serverless/2021-07-13): a
        # token seen before answers its run; moto stores the token without deduplicating.
        seen = [r for r in backend.job_runs.get(application_id, []) if r.client_token == client_token]
        return seen[0] if seen else started(backend, application_id, client_token, *args, **kwargs)

    monkeypatch.setattr(EMRServerlessBackend, "start_job_run", idempotent)
    client = boto3.client("emr-serverless", region_name=REGION)
    return client.create_application(name="cdao-sweep", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]


def _runs(application: str) -> dict[str, str]:
    """Each run of ``application`` moto holds, by id: its state."""
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    return {r.id: r.state for r in emrserverless_backends[ACCOUNT][REGION].job_runs.get(application, [])}


def _swept_count(backend: str) -> float:
    return REGISTRY.get_sample_value("cdao_jobs_swept_total", {"backend": backend}) or 0.0


def _connector(fresh_connectors) -> Any:
    connector = type(ConnectorRegistry.get_connector("emr_serverless"))()
    fresh_connectors(connector)
    return connector


def _create(connector, application: str, execution: str, retry: int = 0, tags: dict[str, str] | None = None) -> Any:
    """The connector's create as the service runs a CreateTask of ``emr_tasks.on_serverless`` on
    ``application``, with the task's ``tags`` (propeller renders the container's placeholders first)."""
    prefix = f"s3://flyte-data/metadata/{execution}/{retry}"
    template = copy.deepcopy(serialize(emr_tasks.on_serverless))
    template.custom["application_id"] = application
    if tags is not None:
        template.custom["tags"] = tags
    return run_to_end(
        connector.create(
            task_template=render_task_template(template, prefix),
            output_prefix=prefix,
            inputs=write_inputs(emr_tasks.on_serverless, prefix, rows=1),
            task_execution_metadata=execution_metadata(execution, retry=retry),
        )
    )


def _lose_the_answer(client, operation: str) -> None:
    """EMR Serverless carries ``operation`` out (moto), then its answer is lost: botocore's read
    timeout, raised after the call (``after-call``), so it is not retried."""

    def lost(http_response, **_: Any) -> None:
        raise ReadTimeoutError(endpoint_url=http_response.url)

    client.meta.events.register(f"after-call.emr-serverless.{operation}", lost)


def test_a_run_whose_create_lost_its_answer_is_cancelled_by_the_sweep(sweep_table, application, fresh_connectors):
    """The fault: EMR Serverless started the run, StartJobRun's answer was lost; the CreateTask
    failed (its attempt fails, the next one starts a new run), and the run went on with nobody to
    cancel it: the sweep could only count it. Other tasks' runs going on fill the listing's first
    page (50 runs: ``ListJobRunsRequest.maxResults`` max 50), so the attempt's is found on the next."""
    client = boto3.client("emr-serverless", region_name=REGION)
    for i in range(50):
        client.start_job_run(
            applicationId=application,
            clientToken=f"other-{i}",
            executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/cdao-emr-job",
            jobDriver={"sparkSubmit": {"entryPoint": "s3://flyte-data/other.py"}},
            name="another-task",
        )
    others = set(_runs(application))
    connector = _connector(fresh_connectors)

    _lose_the_answer(connector.backend.aws("emr-serverless", REGION), "StartJobRun")
    with pytest.raises(Exception, match="Read timeout"):
        _create(connector, application, f"lost{uuid.uuid4().hex[:8]}")
    ((run, state),) = {r: s for r, s in _runs(application).items() if r not in others}.items()
    assert state == "RUNNING"

    swept_before = _swept_count(connector.backend.name)
    swept = sweep_once(ledger(LEASE_SECONDS + 1))
    assert [s.outcome for s in swept] == ["cancelled"], swept
    assert swept[0].job.job_run_id == run
    assert _runs(application) == {run: "CANCELLED"} | dict.fromkeys(others, "RUNNING")
    assert _swept_count(connector.backend.name) == swept_before + 1
    assert armed() == []


@pytest.mark.parametrize("state", ["SUBMITTED", "PENDING", "SCHEDULED", "QUEUED"])
def test_a_run_not_yet_running_whose_create_lost_its_answer_is_cancelled_by_the_sweep(
    sweep_table, application, fresh_connectors, state
):
    """A run goes through SUBMITTED, PENDING and SCHEDULED before RUNNING, and waits QUEUED while the
    application runs as many as its concurrency allows (``JobRunState``, botocore
    emr-serverless/2021-07-13): each is going on and is cancelled. moto's runs start in one state
    (its ``JOB_STATUS``), so the run is set to ``state`` there."""
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    _lose_the_answer(connector.backend.aws("emr-serverless", REGION), "StartJobRun")
    with pytest.raises(Exception, match="Read timeout"):
        _create(connector, application, f"{state.lower()}{uuid.uuid4().hex[:8]}")
    (run,) = emrserverless_backends[ACCOUNT][REGION].job_runs[application]
    run.state = state
    assert [s.outcome for s in sweep_once(ledger(LEASE_SECONDS + 1))] == ["cancelled"]
    assert _runs(application) == {run.id: "CANCELLED"}


def test_the_runbooks_listing_of_runs_left_running_names_the_states_the_sweep_cancels() -> None:
    """plugins/README.md tells an operator how to find an EMR Serverless run left running; its
    ``--states`` are the connector's one list of the states of a run going on (a QUEUED run, left
    out, was never listed)."""
    import re  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from cdao_connectors.emr.serverless import _SWEPT_RUN_STATES  # noqa: PLC0415

    readme = (Path(__file__).resolve().parents[2] / "plugins/README.md").read_text()
    (states,) = re.findall(r"aws emr-serverless list-job-runs [^`]*--states ([A-Z ]+)`", readme)
    assert sorted(states.split()) == sorted(_SWEPT_RUN_STATES)


@pytest.mark.usefixtures("one_try")  # the 500 below would otherwise be retried after a backoff, to the same end
def test_a_run_of_another_attempt_of_the_task_is_never_cancelled(sweep_table, application, fresh_connectors):
    """Every run of a task bears its name (the plugin names the run after the task). When this
    attempt's StartJobRun gets no clear answer (a 5xx: it may or may not have started a run) while
    the task's previous attempt's run goes on, that run is not this attempt's and is left alone:
    its tags say whose it is."""
    connector = _connector(fresh_connectors)
    execution = f"other{uuid.uuid4().hex[:8]}"
    _create(connector, application, execution, retry=0)  # answered: propeller follows it
    (other,) = _runs(application)
    assert armed() == [], "an answered create left its attempt in the sweep index"

    def unavailable(request, **_: Any) -> AWSResponse:
        body = b'{"message": "try again"}'  # InternalServerException: ListJobRuns/StartJobRun errors
        return AWSResponse(request.url, 500, {"x-amzn-ErrorType": "InternalServerException"}, RawBody(body))

    client = connector.backend.aws("emr-serverless", REGION)
    client.meta.events.register("before-send.emr-serverless.StartJobRun", unavailable)
    with pytest.raises(Exception, match="InternalServerException"):
        _create(connector, application, execution, retry=1)
    assert len(armed()) == 1

    swept = sweep_once(ledger(LEASE_SECONDS + 1))
    assert [s.outcome for s in swept] == ["not found yet"], swept
    assert _runs(application) == {other: "RUNNING"}


def test_a_lookup_that_cannot_tell_the_attempts_run_is_left_to_an_operator(aws_env, fresh_connectors) -> None:
    """A create whose StartJobRun was never named made nothing to find, and a lookup without the
    attempt's tag (the attempt table is read as stored: one recorded by a connector that let a run
    start untagged) names runs that may be another attempt's: neither is looked up, and the sweep
    counts the attempt for an operator."""
    connector = _connector(fresh_connectors)
    with pytest.raises(JobCannotBeFound, match="never named"):
        connector.swept_job({"attempt_seed": "s"}, None)
    lookup = {"application_id": "00f0000000000000", "name": "t", "region": REGION, "attempt_tag": None}
    with pytest.raises(JobCannotBeFound, match="00f0000000000000"):
        connector.swept_job(lookup, None)


# A run holds at most 200 tags (botocore emr-serverless/2021-07-13 ``TagMap`` max 200); the plugin adds
# its two (flytekitplugins-awsemrserverless connector.py ``FLYTE_TAGS``, ``_merge_tags``) and the
# connector the attempt's.
_MOST_TASK_TAGS = 200 - 2 - 1


def test_a_task_whose_tags_leave_no_room_for_the_attempts_is_refused_before_any_run(
    sweep_table, application, fresh_connectors
):
    """A run that cannot carry the attempt's tag could never be told from another attempt's, so a
    create whose answer is lost would leave it running for an operator (``cdao_jobs_left_running_total``,
    which pages). Its CreateTask is refused instead, naming the field and the limit, before anything
    starts: no run, nothing for the sweep."""
    connector = _connector(fresh_connectors)
    _lose_the_answer(connector.backend.aws("emr-serverless", REGION), "StartJobRun")
    with pytest.raises(ValueError, match=r"EMRServerless\.tags holds 198 tags.* over EMR Serverless's 200"):
        _create(
            connector,
            application,
            f"tags{uuid.uuid4().hex[:8]}",
            tags={f"k{i}": "v" for i in range(_MOST_TASK_TAGS + 1)},
        )
    assert _runs(application) == {}
    assert armed() == []
    assert sweep_once(ledger(LEASE_SECONDS + 1)) == []


def test_a_run_with_as_many_tags_as_a_task_may_give_carries_the_attempts_and_is_swept(
    sweep_table, application, fresh_connectors
):
    """The most tags a task may give still leave room for the attempt's: its run carries it, and a
    run whose create lost its answer is cancelled by the sweep."""
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    _lose_the_answer(connector.backend.aws("emr-serverless", REGION), "StartJobRun")
    with pytest.raises(Exception, match="Read timeout"):
        _create(
            connector, application, f"tags{uuid.uuid4().hex[:8]}", tags={f"k{i}": "v" for i in range(_MOST_TASK_TAGS)}
        )
    (run,) = emrserverless_backends[ACCOUNT][REGION].job_runs[application]
    assert len(run.tags) == 200 and "flyte-attempt" in run.tags
    assert [s.outcome for s in sweep_once(ledger(LEASE_SECONDS + 1))] == ["cancelled"]
    assert _runs(application) == {run.id: "CANCELLED"}


@pytest.mark.usefixtures("one_try")
def test_a_run_a_repeat_long_after_cannot_answer_is_still_cancelled(
    sweep_table, application, fresh_connectors, monkeypatch
):
    """Propeller lost its state and re-sent the attempt's CreateTask ten minutes after the first
    one started run R; the repeat's StartJobRun (the attempt's client token: EMR Serverless answers
    R) got no answer, so the attempt fails and nobody follows R. The sweep must look for runs from
    when the attempt's run was first named, not from the repeat's record, or R is never listed."""
    connector = _connector(fresh_connectors)
    execution = f"late{uuid.uuid4().hex[:8]}"
    _create(connector, application, execution)
    (run,) = _runs(application)
    now = time.time
    monkeypatch.setattr(time, "time", lambda: now() + 600)  # the repeat, ten minutes later

    def unavailable(request, **_: Any) -> AWSResponse:
        body = b'{"message": "try again"}'
        return AWSResponse(request.url, 500, {"x-amzn-ErrorType": "InternalServerException"}, RawBody(body))

    connector.backend.aws("emr-serverless", REGION).meta.events.register(
        "before-send.emr-serverless.StartJobRun", unavailable
    )
    with pytest.raises(Exception, match="InternalServerException"):
        _create(connector, application, execution)
    swept = sweep_once(ledger(LEASE_SECONDS + 1))
    assert [s.outcome for s in swept] == ["cancelled"], swept
    assert _runs(application)[run] == "CANCELLED"


def test_a_run_is_found_though_the_connectors_clock_runs_ahead_of_emr_serverless(
    sweep_table, application, fresh_connectors, monkeypatch
):
    """The run's ``createdAt`` is EMR Serverless's clock, the time its attempt was named the
    connector's (the attempt table's, time.time): with the connector's clock two minutes ahead, a
    listing from that time alone would miss the run the attempt started."""
    connector = _connector(fresh_connectors)
    _lose_the_answer(connector.backend.aws("emr-serverless", REGION), "StartJobRun")
    now = time.time
    monkeypatch.setattr(time, "time", lambda: now() + 120)
    with pytest.raises(Exception, match="Read timeout"):
        _create(connector, application, f"ahead{uuid.uuid4().hex[:8]}")
    (run,) = _runs(application)
    assert [s.outcome for s in sweep_once(ledger(LEASE_SECONDS + 1))] == ["cancelled"]
    assert _runs(application)[run] == "CANCELLED"


def _application_state(application: str, state: str) -> None:
    """Sets ``application``'s state in moto (ApplicationState, botocore emr-serverless/2021-07-13):
    moto starts an application at once, AWS takes minutes, in STARTING."""
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    emrserverless_backends[ACCOUNT][REGION].applications[application].state = state


def _pending(application: str) -> Any:
    """A CreateTask's answer while its application was still starting (the plugin defers the
    submission to get(): ``pending_job_request``, connector.py ``create``), with the attempt's token."""
    from flytekitplugins.awsemrserverless.connector import EMRServerlessJobMetadata  # noqa: PLC0415

    request = {
        "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/cdao-emr-job",
        "job_driver": {"sparkSubmit": {"entryPoint": "s3://flyte-data/e.py"}},
        "client_token": uuid.uuid4().hex,
        "name": "pending-task",
    }
    return EMRServerlessJobMetadata(
        application_id=application, job_run_id="", region=REGION, pending_job_request=request
    )


def test_a_deferred_run_is_never_submitted_after_its_deletetask(sweep_table, application, fresh_connectors):
    """Propeller aborts while the application is starting: DeleteTask finds no run to cancel. A
    GetTask it had queued before (its cache deletes the task only on the next sync: flytestdlib
    cache/in_memory_auto_refresh.go ``DeleteDelayed``, flyteplugins/v1.16.8 webapi core.go
    ``Finalize``) comes once the application started: it must not submit the run, nobody would
    follow it; and a DeleteTask after a GetTask submitted it cancels it."""
    from flyteidl.core.execution_pb2 import TaskExecution  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    _application_state(application, "STARTING")
    aborted = _pending(application)
    run_to_end(connector.delete(aborted))
    _application_state(application, "STARTED")
    assert run_to_end(connector.get(aborted)).phase == TaskExecution.ABORTED
    assert _runs(application) == {}

    followed = _pending(application)
    assert run_to_end(connector.get(followed)).phase == TaskExecution.RUNNING
    (run,) = _runs(application)
    other_replica = type(connector)()
    # Its DeleteTask read the application as starting just before the GetTask submitted the run:
    # an error (propeller retries the DeleteTask), then the run is cancelled.
    _application_state(application, "STARTING")
    with pytest.raises(Exception, match="submitted the pending request"):
        run_to_end(other_replica.delete(followed))
    _application_state(application, "STARTED")
    run_to_end(other_replica.delete(followed))
    assert _runs(application) == {run: "CANCELLED"}


def _refused(code: str, protocol: str) -> Any:
    """A botocore ``before-send`` handler answering AWS's refusal ``code`` (HTTP 400) as the
    service's protocol carries it: DynamoDB's JSON 1.0 names it in the body's ``__type``, EMR
    Serverless's REST-JSON in the ``x-amzn-ErrorType`` header (botocore ``parsers.py``
    ``BaseJSONParser._do_error_parse`` / ``RestJSONParser._inject_error_code``)."""

    def answer(request, **_: Any) -> AWSResponse:
        if protocol == "json":
            body = b'{"__type": "com.amazonaws.dynamodb.v20120810#%s", "message": "slow down"}' % code.encode()
            return AWSResponse(request.url, 400, {}, RawBody(body))
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": code}, RawBody(b'{"message": "slow down"}'))

    return answer


@pytest.fixture
def one_try(monkeypatch) -> None:
    """Each AWS call tried once: a refusal below is answered at once, not after botocore's backoff
    (``total_max_attempts`` counts the first try; ``max_attempts`` counts retries only: botocore
    ``config.py`` ``Config`` retries)."""
    from botocore.config import Config  # noqa: PLC0415
    from cdao_connectors import _backends  # noqa: PLC0415

    monkeypatch.setattr(_backends, "AWS_CLIENT_CONFIG", Config(retries={"total_max_attempts": 1, "mode": "standard"}))


@pytest.mark.usefixtures("one_try")
def test_a_deferred_run_waits_while_the_attempt_table_throttles(sweep_table, application, fresh_connectors):
    """The deferred StartJobRun is sent only after the attempt table recorded the submission. While
    DynamoDB throttles that write (ProvisionedThroughputExceededException, botocore dynamodb
    2012-08-10 UpdateItem's errors), no run exists yet: each GetTask answers the run as still
    waiting instead of an error (each spends one of propeller's maxSystemFailures, never given
    back: flyteplugins/v1.16.8 ``internal/webapi/cache.go`` ``SyncResource``), and the first
    GetTask after the throttling submits it."""
    from flyteidl.core.execution_pb2 import TaskExecution  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    throttled = _refused("ProvisionedThroughputExceededException", "json")
    dynamodb = connector.backend.aws("dynamodb", REGION)
    dynamodb.meta.events.register("before-send.dynamodb.UpdateItem", throttled)
    pending = _pending(application)
    for _ in range(3):
        resource = run_to_end(connector.get(pending))
        assert resource.phase == TaskExecution.RUNNING, resource.message
        assert "attempt table" in resource.message and "ProvisionedThroughputExceeded" in resource.message
    assert _runs(application) == {}
    dynamodb.meta.events.unregister("before-send.dynamodb.UpdateItem", throttled)
    assert run_to_end(connector.get(pending)).phase == TaskExecution.RUNNING
    assert list(_runs(application).values()) == ["RUNNING"]


@pytest.mark.usefixtures("one_try")
def test_a_deferred_run_waits_while_its_applications_state_cannot_be_read(
    sweep_table, application, fresh_connectors, monkeypatch
):
    """Before the deferred StartJobRun the plugin reads the application's state (GetApplication,
    boto_handler.py ``start_application_if_needed``). Throttled, or slower than the GetTask's budget,
    that read made every GetTask an error (one of propeller's maxSystemFailures each); the run is
    answered as still waiting, within the GetTask's deadline, and submitted once the read answers."""
    import threading  # noqa: PLC0415

    from cdao_connectors import _status_cache  # noqa: PLC0415
    from flyteidl.core.execution_pb2 import TaskExecution  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    client = connector.backend.aws("emr-serverless", REGION)
    pending = _pending(application)
    throttled = _refused("ThrottlingException", "rest-json")
    client.meta.events.register("before-send.emr-serverless.GetApplication", throttled)
    resource = run_to_end(connector.get(pending))
    assert resource.phase == TaskExecution.RUNNING and "ThrottlingException" in resource.message, resource.message
    client.meta.events.unregister("before-send.emr-serverless.GetApplication", throttled)

    # A read that outlasts the budget (botocore's backoff of a throttled account, a hung endpoint):
    # the GetTask answers within a status read's first-sight wait, the bound propeller's workers are
    # sized by (test_propeller_polling.py), shortened so the test waits 0.5 s.
    first_sight = _status_cache.FIRST_SIGHT_WAIT_SECONDS
    monkeypatch.setattr(_status_cache, "FIRST_SIGHT_WAIT_SECONDS", 0.5)
    released = threading.Event()

    def hung(request, **_: Any) -> None:
        released.wait(5)

    client.meta.events.register("before-send.emr-serverless.GetApplication", hung)
    try:
        start = time.monotonic()
        resource = run_to_end(connector.get(pending))
        took = time.monotonic() - start
    finally:
        released.set()
        client.meta.events.unregister("before-send.emr-serverless.GetApplication", hung)
    assert resource.phase == TaskExecution.RUNNING and "did not answer" in resource.message, resource.message
    assert "0.5 s wait" in resource.message, resource.message  # the wait it had, not propeller's deadline
    assert 0.45 < took < _status_cache.FIRST_SIGHT_WAIT_SECONDS + 0.4, took
    assert _runs(application) == {}
    monkeypatch.setattr(_status_cache, "FIRST_SIGHT_WAIT_SECONDS", first_sight)
    assert run_to_end(connector.get(pending)).phase == TaskExecution.RUNNING
    assert list(_runs(application).values()) == ["RUNNING"]


def test_a_deferred_run_carries_the_attempts_tag_so_a_repeats_lost_answer_is_swept(
    sweep_table, application, fresh_connectors
):
    """The CreateTask found the application starting and deferred the submission (connector.py
    ``create``); a GetTask submitted it later. Propeller then lost its state and re-sent the
    attempt's CreateTask, whose StartJobRun (the attempt's client token: EMR Serverless answers that
    run) lost its answer: the attempt fails and nobody follows the run. The sweep finds it only by
    the attempt's tag, which the deferred request must carry as every run of an attempt does."""
    from flyteidl.core.execution_pb2 import TaskExecution  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    execution = f"deferred{uuid.uuid4().hex[:8]}"
    _application_state(application, "STARTING")
    pending = _create(connector, application, execution)
    assert not pending.job_run_id and pending.pending_job_request
    _application_state(application, "STARTED")
    assert run_to_end(connector.get(pending)).phase == TaskExecution.RUNNING
    (run,) = _runs(application)

    _lose_the_answer(connector.backend.aws("emr-serverless", REGION), "StartJobRun")
    with pytest.raises(Exception, match="Read timeout"):
        _create(connector, application, execution)
    assert list(_runs(application)) == [run]
    assert [s.outcome for s in sweep_once(ledger(LEASE_SECONDS + 1))] == ["cancelled"]
    assert _runs(application) == {run: "CANCELLED"}


@pytest.mark.usefixtures("one_try")
def test_a_deferred_startjobrun_refused_for_now_waits_for_the_next_poll(sweep_table, application, fresh_connectors):
    """The deferred StartJobRun itself throttled (or a 5xx): no run may exist, and the next poll's
    StartJobRun, with the request's client token, answers the one this may have started; so the
    GetTask answers the run as waiting, not an error (one of propeller's maxSystemFailures each,
    flyteplugins/v1.16.8 ``internal/webapi/cache.go`` ``SyncResource``)."""
    from flyteidl.core.execution_pb2 import TaskExecution  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    client = connector.backend.aws("emr-serverless", REGION)
    pending = _pending(application)
    throttled = _refused("ThrottlingException", "rest-json")
    client.meta.events.register("before-send.emr-serverless.StartJobRun", throttled)
    for _ in range(2):
        resource = run_to_end(connector.get(pending))
        assert resource.phase == TaskExecution.RUNNING and "StartJobRun" in resource.message, resource.message
    client.meta.events.unregister("before-send.emr-serverless.StartJobRun", throttled)
    assert run_to_end(connector.get(pending)).phase == TaskExecution.RUNNING
    assert list(_runs(application).values()) == ["RUNNING"]


@pytest.mark.usefixtures("one_try")
def test_an_abort_of_a_deferred_run_no_gettask_submitted_sends_nothing(sweep_table, application, fresh_connectors):
    """The CreateTask deferred the submission; the application started; the execution is aborted
    before any GetTask submitted the run. The plugin's delete() would submit the request to learn its
    run and cancel it (connector.py ``delete``): a run started only to be cancelled, left running
    when that cancel is refused. The abort records the cancel instead: no StartJobRun, no run, and a
    GetTask propeller queued before the abort answers ABORTED."""
    from flyteidl.core.execution_pb2 import TaskExecution  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    client = connector.backend.aws("emr-serverless", REGION)
    sent: list[str] = []
    client.meta.events.register("before-send.emr-serverless.StartJobRun", lambda **_: sent.append("StartJobRun"))
    client.meta.events.register("before-send.emr-serverless.CancelJobRun", _refused("ThrottlingException", "rest-json"))
    pending = _pending(application)
    run_to_end(connector.delete(pending))
    assert sent == [] and _runs(application) == {}
    assert run_to_end(connector.get(pending)).phase == TaskExecution.ABORTED
    assert sent == [] and _runs(application) == {}


def test_an_abort_after_another_replicas_gettask_submitted_the_run_cancels_it(
    sweep_table, application, fresh_connectors
):
    """A GetTask on one replica submitted the deferred run; propeller's abort reaches another, which
    never saw the run: the submission's record tells it a run exists, and the request's client token
    answers that run (an idempotencyToken, botocore emr-serverless/2021-07-13), which it cancels."""
    from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector  # noqa: PLC0415
    from flyteidl.core.execution_pb2 import TaskExecution  # noqa: PLC0415

    connector = _connector(fresh_connectors)
    pending = _pending(application)
    assert run_to_end(connector.get(pending)).phase == TaskExecution.RUNNING
    (run,) = _runs(application)
    run_to_end(IdempotentEMRServerlessConnector().delete(pending))  # another replica: no run known
    assert _runs(application) == {run: "CANCELLED"}

"""The sweep of SageMaker jobs whose CreateTask never answered them (plugins/cdao_connectors/_attempts.py
"Sweeping", cdao_connectors.sagemaker._plugin_clients ``find_attempts_job``).

SageMaker deduplicates a create by its name, so its job is known only from the create's answer; a
create that lost that answer (a read timeout after SageMaker carried it out, a 5xx) or whose replica
ended mid-create left a job that the sweep could only count: nobody stopped it. The create's request
now records its rendered name and the attempt's ``flyte-attempt`` tag just before it is sent, and
the sweep stops the job of that name when its tag is the attempt's (a fixed name is every attempt's,
and an endpoint of it may serve production).

SageMaker is moto as a server, except the calls moto 5.2.5 lacks (StopTrainingJob), answered by a
botocore ``before-send`` hook as the API reference defines them (an empty body, HTTP 200).
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError
from cdao_connectors._attempts import (
    LEASE_SECONDS,
    SWEEP_GRACE_SECONDS,
    SWEEP_RECHECK_SECONDS,
    AttemptLedger,
    JobCannotBeFound,
)
from cdao_connectors._sweeper import sweep_once
from connector_calls import run_to_end
from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekit.extend.backend.utils import render_task_template
from moto.sagemaker.models import sagemaker_backends
from prometheus_client import REGISTRY
from propeller import IMAGE, execution_metadata, serialize
from sweeping import RawBody, armed, ledger

REGION = "us-east-1"
ACCOUNT = "123456789012"
_ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"


def _lose_the_answer(client, operation: str) -> None:
    """SageMaker carries ``operation`` out (moto), then its answer is lost: botocore's read timeout,
    raised after the call (``after-call``), so it is not retried."""

    def lost(http_response, **_: Any) -> None:
        raise ReadTimeoutError(endpoint_url=http_response.url)

    client.meta.events.register(f"after-call.sagemaker.{operation}", lost, unique_id=f"lose-{operation}")


def _refuse(client, operation: str, status: int, error: str) -> None:
    """SageMaker answers every ``operation`` with HTTP ``status`` and the error code ``error`` (the
    JSON protocol's error shape, botocore ``parsers.py`` ``BaseJSONParser``), without carrying it out."""

    def refused(request, **_: Any) -> AWSResponse:
        body = json.dumps({"__type": error, "message": "refused by the test"}).encode()
        return AWSResponse(request.url, status, {}, RawBody(body))

    client.meta.events.register(f"before-send.sagemaker.{operation}", refused)


@pytest.fixture
def one_try(monkeypatch) -> None:
    """The connectors' AWS clients made from here on try once: a 5xx would otherwise be retried with
    seconds of backoff, to the same end (every try is judged alike: _attempts.note_try_without_answer)."""
    from botocore.config import Config  # noqa: PLC0415
    from cdao_connectors import _backends  # noqa: PLC0415

    # total_max_attempts counts the first try; max_attempts counts retries only (botocore args.py
    # ``_compute_retry_max_attempts``).
    monkeypatch.setattr(_backends, "AWS_CLIENT_CONFIG", Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def _answer_stop(client, operation: str, name_field: str, stopped: list[str]) -> None:
    """``operation`` (StopTrainingJob, StopTransformJob) as the API reference defines it (no output
    members: HTTP 200, ``{}``), and its effect on moto's job (Stopping): moto 5.2.5 lacks both."""
    jobs, status = {
        "StopTrainingJob": ("training_jobs", "training_job_status"),
        "StopTransformJob": ("transform_jobs", "transform_job_status"),
    }[operation]

    def stop(request, **_: Any) -> AWSResponse:
        name = json.loads(request.body)[name_field]
        stopped.append(name)
        setattr(getattr(sagemaker_backends[ACCOUNT][REGION], jobs)[name], status, "Stopping")
        return AWSResponse(request.url, 200, {}, RawBody(b"{}"))

    client.meta.events.register(f"before-send.sagemaker.{operation}", stop)


def _training_template(name: str, tags: Any = None, inputs: dict[str, type] | None = None) -> Any:
    """A request-based training task naming its job ``name`` (sm_tasks.training_job_task), serialised."""
    import sm_tasks  # noqa: PLC0415

    return serialize(sm_tasks.training_job_task(name, REGION, tags, inputs))


def _endpoint_template(name: str, config: str) -> Any:
    from flytekitplugins.awssagemaker_inference import SageMakerEndpointTask  # noqa: PLC0415

    request = {"EndpointName": name, "EndpointConfigName": config}
    return serialize(SageMakerEndpointTask(name=f"tests.sweep_{uuid.uuid4().hex[:6]}", config=request, region=REGION))


def _endpoint_config(name: str) -> str:
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model(ModelName=name, PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=_ROLE)
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    return name


def _transform_task(execution: str) -> tuple[Any, Any]:
    from cdao_sdk import sagemaker_batch_transform_task  # noqa: PLC0415
    from flytekit.types.file import FlyteFile  # noqa: PLC0415
    from propeller import write_inputs  # noqa: PLC0415

    score = sagemaker_batch_transform_task(
        f"tests.sweep_{execution}", execution_role_arn=_ROLE, region=REGION, output_s3_path="s3://flyte-data/transform"
    )
    inputs = write_inputs(
        score,
        f"s3://flyte-data/metadata/{execution}/0",
        model=FlyteFile("s3://flyte-data/m.tar.gz"),
        data=FlyteFile("s3://flyte-data/d.csv"),
    )
    return serialize(score), inputs


def _swept_count(backend: str) -> float:
    return REGISTRY.get_sample_value("cdao_jobs_swept_total", {"backend": backend}) or 0.0


def _fresh(task_type: str, fresh_connectors) -> Any:
    connector = type(ConnectorRegistry.get_connector(task_type))()
    fresh_connectors(connector)
    return connector


def _create(connector, template, execution: str, retry: int = 0, inputs: Any = None) -> Any:
    """The connector's create as the service runs a CreateTask (propeller renders a container's
    placeholders first, tests/plugins/support/propeller.py)."""
    prefix = f"s3://flyte-data/metadata/{execution}/{retry}"
    template = copy.deepcopy(template)
    return run_to_end(
        connector.create(
            task_template=render_task_template(template, prefix) if template.container is not None else template,
            output_prefix=prefix,
            inputs=inputs,
            task_execution_metadata=execution_metadata(execution, retry=retry),
        )
    )


def _existing(jobs: str) -> set[str]:
    return set(getattr(sagemaker_backends[ACCOUNT][REGION], jobs))


@pytest.mark.parametrize("kind", ["request-based training", "Pythonic training", "batch transform", "endpoint"])
def test_a_job_whose_create_lost_its_answer_is_stopped_by_the_sweep(sweep_table, fresh_connectors, kind):
    """The fault: SageMaker made the job (or endpoint), its answer was lost; the CreateTask failed
    (its attempt fails, the next one makes a new job), and the job ran on with nobody to stop it:
    the sweep could only count it. Every kind of connector making one is covered: the plugin's
    request-based and Pythonic jobs, its endpoint, and the batch transform connector written here."""
    import sm_tasks  # noqa: PLC0415
    from cdao_connectors.sagemaker.task import BATCH_TRANSFORM_TASK_TYPE, SAGEMAKER_TRAINING_TASK_TYPE  # noqa: PLC0415

    execution = f"lost{uuid.uuid4().hex[:8]}"
    inputs, stopped = None, []
    if kind == "request-based training":
        connector = _fresh("sagemaker-training-job", fresh_connectors)
        template, operation, jobs = (
            _training_template(f"fit-{execution}-{{idempotence_token}}"),
            "TrainingJob",
            "training_jobs",
        )
    elif kind == "Pythonic training":
        connector = _fresh(SAGEMAKER_TRAINING_TASK_TYPE, fresh_connectors)
        template, operation, jobs = serialize(sm_tasks.fit), "TrainingJob", "training_jobs"
    elif kind == "batch transform":
        connector = _fresh(BATCH_TRANSFORM_TASK_TYPE, fresh_connectors)
        (template, inputs), operation, jobs = _transform_task(execution), "TransformJob", "transform_jobs"
    else:
        connector = _fresh("sagemaker-endpoint", fresh_connectors)
        config = _endpoint_config(f"cfg-{execution}")
        template = _endpoint_template(f"ep-{execution}-{{idempotence_token}}", config)
        operation, jobs = "Endpoint", "endpoints"
    sm = connector.backend.aws("sagemaker", REGION)
    _lose_the_answer(sm, f"Create{operation}")
    if operation != "Endpoint":  # moto has DeleteEndpoint
        _answer_stop(sm, f"Stop{operation}", f"{operation}Name", stopped)
    before = _existing(jobs)
    with pytest.raises(Exception, match="Read timeout"):
        _create(connector, template, execution, inputs=inputs)
    (name,) = _existing(jobs) - before

    swept_before = _swept_count(connector.backend.name)
    # Due a minute after the create failed: nobody will answer the job (not after a lease's 300 s).
    assert [s.outcome for s in sweep_once(ledger(SWEEP_RECHECK_SECONDS - 1))] == []
    swept = sweep_once(ledger(SWEEP_RECHECK_SECONDS + 1))
    assert [s.outcome for s in swept] == ["cancelled"], swept
    if operation == "Endpoint":
        assert name not in _existing(jobs)
    else:
        assert stopped == [name]
    assert _swept_count(connector.backend.name) == swept_before + 1
    assert armed() == []


def test_a_production_endpoint_of_the_attempts_fixed_name_is_never_deleted(sweep_table, fresh_connectors, one_try):
    """An endpoint task of a fixed name (no ``{idempotence_token}``) names an endpoint production
    may be serving. When the attempt's create gets no clear answer (a 5xx), the endpoint of that
    name is not the attempt's (it carries no tag of it), and the sweep leaves it alone."""
    serving = f"prod-{uuid.uuid4().hex[:8]}"
    config = _endpoint_config(serving)
    boto3.client("sagemaker", region_name=REGION).create_endpoint(EndpointName=serving, EndpointConfigName=config)
    connector = _fresh("sagemaker-endpoint", fresh_connectors)

    _refuse(connector.backend.aws("sagemaker", REGION), "CreateEndpoint", 500, "InternalFailure")
    with pytest.raises(Exception, match="InternalFailure"):
        _create(connector, _endpoint_template(serving, config), f"deploy{uuid.uuid4().hex[:6]}")
    assert len(armed()) == 1
    swept = sweep_once(ledger(LEASE_SECONDS + 1))
    assert [s.outcome for s in swept] == ["not found yet"], swept
    assert serving in _existing("endpoints")


def test_a_job_of_the_attempts_name_made_by_another_attempt_is_never_stopped(sweep_table, fresh_connectors, one_try):
    """A fixed name (no ``{idempotence_token}``) is every attempt's: SageMaker refuses a second job of
    it. When this attempt's create gets no clear answer (a 5xx) while a job of that name exists from
    another attempt, that job is not this attempt's and is left alone: its tag says whose it is."""
    connector = _fresh("sagemaker-training-job", fresh_connectors)
    sm = connector.backend.aws("sagemaker", REGION)
    stopped: list[str] = []
    _answer_stop(sm, "StopTrainingJob", "TrainingJobName", stopped)
    fixed = f"fixed-{uuid.uuid4().hex[:8]}"
    template = _training_template(fixed)
    _create(connector, template, "another", retry=0)  # attempt 0 of another execution made it
    for item in armed():
        pytest.fail(f"an answered create left {item} in the sweep index")

    _refuse(sm, "CreateTrainingJob", 503, "ServiceUnavailable")
    with pytest.raises(Exception, match="ServiceUnavailable"):
        _create(connector, template, f"mine{uuid.uuid4().hex[:6]}", retry=0)
    assert len(armed()) == 1

    swept = sweep_once(ledger(LEASE_SECONDS + 1))
    assert [s.outcome for s in swept] == ["not found yet"], swept
    assert stopped == []


def test_a_lookup_that_cannot_tell_the_attempts_job_is_left_to_an_operator() -> None:
    """A create whose request was never named made nothing to find, and one whose request carried no
    attempt's tag (recorded by an earlier version of the connector, which sent such requests) names
    a job that may be another's: neither is looked up by name, and the sweep counts the attempt for
    an operator."""
    from cdao_connectors.sagemaker._plugin_clients import find_attempts_job  # noqa: PLC0415

    class NoCalls:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"called {name}")

    with pytest.raises(JobCannotBeFound, match="never named"):
        find_attempts_job(NoCalls(), {"attempt_seed": "s"})
    lookup = {"name_field": "TrainingJobName", "name": "fit-1", "region": REGION, "attempt_tag": None}
    with pytest.raises(JobCannotBeFound, match="TrainingJobName=fit-1"):
        find_attempts_job(NoCalls(), lookup)


@pytest.mark.parametrize(
    ("status", "error"), [(500, "InternalFailure"), (400, "ThrottlingException")], ids=["no-answer", "refused"]
)
def test_a_repeated_createtask_that_fails_leaves_the_attempts_job_to_the_sweep(
    sweep_table, fresh_connectors, one_try, status, error
):
    """Propeller re-sends an attempt's CreateTask only once it lost its state, so the first
    CreateTask's answer is lost to it; when the repeat then fails, without a clear answer (a 5xx, its
    replica ending alike) or refused (throttled: it made nothing itself), propeller fails the attempt
    and nobody follows the job the first one made. The repeat's record (made before its create,
    after the first answer) must keep that job in the sweep: the first answer no longer speaks for
    the attempt."""
    connector = _fresh("sagemaker-training-job", fresh_connectors)
    sm = connector.backend.aws("sagemaker", REGION)
    stopped: list[str] = []
    _answer_stop(sm, "StopTrainingJob", "TrainingJobName", stopped)
    execution = f"again{uuid.uuid4().hex[:8]}"
    template = _training_template(f"fit-{execution}-{{idempotence_token}}")
    first = _create(connector, template, execution)
    assert armed() == []

    _refuse(sm, "CreateTrainingJob", status, error)
    with pytest.raises(Exception, match=error):
        _create(connector, template, execution)
    swept = sweep_once(ledger(LEASE_SECONDS + 1))
    assert [s.outcome for s in swept] == ["cancelled"], swept
    assert stopped == [first.config["TrainingJobName"]]


def _already_exists(client, operation: str, what: str) -> None:
    """SageMaker's refusal of a second resource of one name: the endpoint's (``ValidationException``
    "Cannot create already existing endpoint", which the plugin takes as its endpoint:
    awssagemaker_inference/connector.py ``create``); moto 5.2.5 makes a second one instead."""

    def refused(request, **_: Any) -> AWSResponse:
        message = f'Cannot create already existing {what} "arn:aws:sagemaker:{REGION}:{ACCOUNT}:{what}/x".'
        body = json.dumps({"__type": "ValidationException", "message": message}).encode()
        return AWSResponse(request.url, 400, {}, RawBody(body))

    client.meta.events.register(f"before-send.sagemaker.{operation}", refused)


@pytest.fixture
def add_tags_overwrites(monkeypatch) -> None:
    """AddTags as SageMaker does it: "Adds or overwrites one or more tags ... Tag keys must be unique
    per resource" (SageMaker API reference, AddTags,
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_AddTags.html); moto 5.2.5 appends
    a second tag of the key instead (moto/sagemaker/models.py ``add_tags``)."""
    from moto.sagemaker.models import SageMakerModelBackend  # noqa: PLC0415

    def add_tags(self, arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
        resource = self._get_resource_from_arn(arn)
        given = {t["Key"] for t in tags}
        resource.tags = [t for t in resource.tags if t["Key"] not in given] + list(tags)
        return resource.tags

    monkeypatch.setattr(SageMakerModelBackend, "add_tags", add_tags)


# Who made the serving endpoint of a fixed name another execution's CreateTask is answered: a person
# (untagged), or another execution through the connector (tagged as its attempt and node).
_MAKERS = ["a person", "another execution"]


def _serving_endpoint(maker: str, connector: Any) -> tuple[str, str]:
    """An endpoint of a fixed name ``prod-...`` serving, made by ``maker`` (:data:`_MAKERS`); its name
    and its endpoint config's."""
    serving = f"prod-{uuid.uuid4().hex[:8]}"
    config = _endpoint_config(serving)
    if maker == "a person":
        boto3.client("sagemaker", region_name=REGION).create_endpoint(EndpointName=serving, EndpointConfigName=config)
    else:
        _create(connector, _endpoint_template(serving, config), f"serve{uuid.uuid4().hex[:6]}")
        assert _tags_on_endpoint(serving)  # the connector's flyte-attempt and flyte-node tags
    return serving, config


def _tags_on_endpoint(name: str) -> list[dict[str, str]]:
    sm = boto3.client("sagemaker", region_name=REGION)
    return sm.list_tags(ResourceArn=sm.describe_endpoint(EndpointName=name)["EndpointArn"])["Tags"]


def _endpoint_made_by_attempt_0(fresh_connectors) -> tuple[Any, Any, str, str]:
    """An endpoint task of a fixed name whose attempt 0 made its endpoint and lost CreateEndpoint's
    answer (attempt 0 failed); SageMaker answers the next create "already exists". The connector,
    the task's template, the execution and the endpoint's name."""
    connector = _fresh("sagemaker-endpoint", fresh_connectors)
    sm = connector.backend.aws("sagemaker", REGION)
    execution = f"adopt{uuid.uuid4().hex[:6]}"
    fixed = f"serve-{execution}"
    template = _endpoint_template(fixed, _endpoint_config(f"cfg-{execution}"))
    _lose_the_answer(sm, "CreateEndpoint")
    with pytest.raises(Exception, match="Read timeout"):
        _create(connector, template, execution, retry=0)
    sm.meta.events.unregister("after-call.sagemaker.CreateEndpoint", unique_id="lose-CreateEndpoint")
    _already_exists(sm, "CreateEndpoint", "endpoint")
    return connector, template, execution, fixed


def test_an_endpoint_the_next_attempt_adopted_is_never_deleted_by_the_sweep(
    sweep_table, fresh_connectors, add_tags_overwrites
):
    """An endpoint task of a fixed name: attempt 0's CreateEndpoint made the endpoint and lost its
    answer, so attempt 0 failed; propeller's attempt 1 is answered "already exists" and follows that
    endpoint (the plugin adopts it). Attempt 0's sweep must leave it: deleting it would fail the
    attempt that follows it, or take a serving endpoint down."""
    connector, template, execution, fixed = _endpoint_made_by_attempt_0(fresh_connectors)
    followed = _create(connector, template, execution, retry=1)
    assert followed.config["EndpointName"] == fixed

    assert [s.outcome for s in sweep_once(ledger(SWEEP_RECHECK_SECONDS + 1))] == ["not found yet"]
    assert fixed in _existing("endpoints")
    # Attempt 1 took it over (its flyte-attempt tag): the execution's abort deletes it.
    run_to_end(connector.delete(followed))
    assert fixed not in _existing("endpoints")


def test_an_endpoint_the_next_attempt_could_not_take_over_is_not_answered_and_is_swept(
    sweep_table, fresh_connectors, add_tags_overwrites, one_try
):
    """As above, but attempt 1's take-over (AddTags) is throttled: answered, the endpoint would keep
    attempt 0's tag and attempt 0's sweep would delete it while propeller follows it. Attempt 1
    fails instead, and attempt 0's sweep deletes the endpoint nobody follows."""
    connector, template, execution, fixed = _endpoint_made_by_attempt_0(fresh_connectors)
    _refuse(connector.backend.aws("sagemaker", REGION), "AddTags", 400, "ThrottlingException")
    with pytest.raises(Exception, match="ThrottlingException"):
        _create(connector, template, execution, retry=1)
    # Attempt 0's sweep deletes its endpoint; attempt 1's finds none of its own (not yet, then never).
    assert sorted(s.outcome for s in sweep_once(ledger(SWEEP_RECHECK_SECONDS + 1))) == ["cancelled", "not found yet"]
    assert fixed not in _existing("endpoints")


@pytest.mark.usefixtures("sweep_table", "add_tags_overwrites")
@pytest.mark.parametrize("replica", ["lives on", "ends before its cancel"])
@pytest.mark.parametrize("maker", _MAKERS)
def test_a_createtask_that_adopted_an_endpoint_never_deletes_it_when_giving_up(
    fresh_connectors, maker, replica, monkeypatch
):
    """A CreateTask answered an existing endpoint of its fixed name (a person's, or another
    execution's serving production) that fails to record its answer gives up as at its deadline:
    it stops only what it made, never the endpoint it adopted; nor does the sweep, should the
    give-up fail to take the attempt out of the sweep index (DynamoDB still throttling), or its
    replica end before its give-up's cancel ran (the sweep alone then decides). Nor does either
    re-tag it: another execution's endpoint is not an earlier attempt's of this node."""
    from cdao_connectors._attempts import AttemptAnswers  # noqa: PLC0415

    if replica == "ends before its cancel":

        def never_cancelling(self: Any, cancel: Any) -> Any:
            async def ended(resource_meta: Any) -> None:
                return None

            return ended

        monkeypatch.setattr(AttemptAnswers, "cancelling", never_cancelling)
    connector = _fresh("sagemaker-endpoint", fresh_connectors)
    serving, config = _serving_endpoint(maker, connector)
    tags = _tags_on_endpoint(serving)
    _already_exists(connector.backend.aws("sagemaker", REGION), "CreateEndpoint", "endpoint")

    def throttled(self, attempt, started_at):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    template = _endpoint_template(serving, config)

    async def give_up_and_let_its_cancel_run() -> None:
        with pytest.raises(RuntimeError, match="could not record"):
            await connector.create(
                task_template=template,
                output_prefix="s3://flyte-data/metadata/deploy/0",
                task_execution_metadata=execution_metadata(f"deploy{uuid.uuid4().hex[:6]}"),
            )
        # The give-up's cancel runs in the background, on this loop: let it finish.
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=30)

    with pytest.MonkeyPatch.context() as throttling:
        throttling.setattr(AttemptLedger, "answer", throttled)
        throttling.setattr(AttemptLedger, "settle", lambda self, *a, **k: throttled(self, None, None))
        run_to_end(give_up_and_let_its_cancel_run())
    assert serving in _existing("endpoints")
    # Nor counted as stopped: the give-up recorded no target for what it adopted.
    assert [s.outcome for s in sweep_once(ledger(LEASE_SECONDS + SWEEP_GRACE_SECONDS + 1))] == ["not found yet"]
    assert serving in _existing("endpoints")
    assert _tags_on_endpoint(serving) == tags


def test_a_create_whose_attempt_the_sweep_took_before_its_request_went_out_sends_nothing(
    sweep_table, fresh_connectors, monkeypatch
):
    """A create's request can wait behind its backend's busy threads past the record's lease; the
    sweep then takes the attempt, nothing named yet: no request went out, so it settles the attempt
    as having no job, paging nobody. The request must not go out after that: the job it made would
    be nobody's, the sweep having settled the attempt."""
    import threading  # noqa: PLC0415

    from cdao_connectors.sagemaker import _plugin_clients  # noqa: PLC0415

    connector = _fresh("sagemaker-training-job", fresh_connectors)
    released, waiting = threading.Event(), threading.Event()
    naming = _plugin_clients._name_the_job

    def queued(*args: Any, **kwargs: Any) -> None:
        waiting.set()
        assert released.wait(30)
        naming(*args, **kwargs)

    monkeypatch.setattr(_plugin_clients, "_name_the_job", queued)
    execution = f"late{uuid.uuid4().hex[:6]}"
    failed: list[BaseException] = []

    def create() -> None:
        try:
            _create(connector, _training_template(f"fit-{execution}-{{idempotence_token}}"), execution)
        except Exception as exc:
            failed.append(exc)

    creating = threading.Thread(target=create)
    creating.start()
    assert waiting.wait(30)
    assert [s.outcome for s in sweep_once(ledger(LEASE_SECONDS + 1))] == ["no job"]
    released.set()
    creating.join(30)
    assert [type(e).__name__ for e in failed] == ["AbandonedBeforeSending"], failed
    assert not [name for name in _existing("training_jobs") if execution in name]


@pytest.mark.parametrize("findable", [True, False])
def test_only_a_job_the_sweep_can_tell_is_said_to_be_stopped_by_it(sweep_table, findable):
    """A create that named its job (name_the_job) before failing without an answer is in the sweep
    index either way; the shutdown's and the give-up's messages say a surviving replica stops it only
    when the lookup can tell the attempt's job (the request carried the attempt's tag), else that it
    is counted for an operator (cdao_connectors._backends ``left_running``)."""
    from cdao_connectors._attempts import AttemptAnswers, name_the_job  # noqa: PLC0415
    from cdao_connectors._backends import Backend  # noqa: PLC0415
    from propeller import category  # noqa: PLC0415

    backend = Backend(f"named-{uuid.uuid4().hex[:6]}")
    answers = AttemptAnswers(backend, f"sagemaker/{uuid.uuid4().hex}", category("sagemaker"), seed="s")

    async def create() -> Any:
        lookup = {"name_field": "TrainingJobName", "name": "fit-1", "attempt_tag": "t" if findable else None}
        await backend.run(lambda: name_the_job(lookup, findable=findable))
        raise ReadTimeoutError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com/")

    with pytest.raises(ReadTimeoutError):
        run_to_end(answers.answering(create()))
    assert answers.swept
    assert answers.findable is findable


@pytest.mark.parametrize("maker", _MAKERS)
def test_an_abort_deletes_the_endpoint_its_createtask_made_and_never_one_it_adopted(
    sweep_table, fresh_connectors, add_tags_overwrites, maker
):
    """Propeller's abort of an execution sends DeleteTask with the CreateTask's answer (connector/
    plugin.go ``Abort`` at flyteplugins/v1.16.8). An endpoint task of a fixed name answered "already
    exists" for a person's endpoint, or another execution's (the plugin adopts it), must leave that
    endpoint serving and its tags as they are; one it made itself is deleted."""
    connector = _fresh("sagemaker-endpoint", fresh_connectors)
    serving, config = _serving_endpoint(maker, connector)
    tags = _tags_on_endpoint(serving)
    made = _create(connector, _endpoint_template(f"own-{serving}", config), f"own{uuid.uuid4().hex[:6]}")
    _already_exists(connector.backend.aws("sagemaker", REGION), "CreateEndpoint", "endpoint")
    adopted = _create(connector, _endpoint_template(serving, config), f"deploy{uuid.uuid4().hex[:6]}")
    run_to_end(connector.delete(adopted))
    run_to_end(connector.delete(made))
    assert serving in _existing("endpoints")
    assert _tags_on_endpoint(serving) == tags
    assert f"own-{serving}" not in _existing("endpoints")


def _user_tags(count: int) -> list[dict[str, str]]:
    return [{"Key": f"team-{i}", "Value": "ml"} for i in range(count)]


def _tags_on_training_job(name: str) -> list[dict[str, str]]:
    sm = boto3.client("sagemaker", region_name=REGION)
    return sm.list_tags(ResourceArn=sm.describe_training_job(TrainingJobName=name)["TrainingJobArn"])["Tags"]


@pytest.mark.parametrize(
    ("tags", "inputs", "error"),
    [
        (_user_tags(49), None, "49 tags"),
        ("{inputs.tags}", {"tags": "[]"}, "placeholder"),
        ([{"Key": "{inputs.key}", "Value": "mine"}], {"key": "flyte-attempt"}, "flyte-attempt"),
    ],
    ids=["no room", "Tags placeholder", "reserved key rendered"],
)
def test_a_request_that_cannot_carry_the_attempts_tags_is_refused_before_it_is_sent(
    sweep_table, fresh_connectors, tags, inputs, error
):
    """A request whose ``Tags`` cannot take the connector's ``flyte-attempt`` and ``flyte-node`` tags
    (SageMaker takes at most 50: botocore ``sagemaker/2017-07-24`` ``TagList`` max 50; a placeholder
    for the whole list; a placeholder rendering a reserved key) made a job nobody could tell from
    another's: its sweep could only count it left running, paging an operator, and its abort could
    not check whose the job was. It is refused before anything is sent, naming the field, and leaves
    nothing to sweep."""
    from flytekit import FlyteContextManager  # noqa: PLC0415
    from flytekit.core.type_engine import TypeEngine  # noqa: PLC0415

    connector = _fresh("sagemaker-training-job", fresh_connectors)
    execution = f"tags{uuid.uuid4().hex[:8]}"
    types = dict.fromkeys(inputs or {}, str)
    template = _training_template(f"fit-{execution}-{{idempotence_token}}", tags, types or None)
    literals = TypeEngine.dict_to_literal_map(FlyteContextManager.current_context(), inputs, types) if inputs else None
    with pytest.raises(ValueError, match=rf"Tags.*{error}|{error}.*Tags"):
        _create(connector, template, execution, inputs=literals)
    assert not [name for name in _existing("training_jobs") if execution in name]
    assert armed() == []


def test_a_request_of_48_tags_carries_the_attempts_tags_and_its_job_is_swept(sweep_table, fresh_connectors):
    """48 tags of the task's own leave room for the connector's two: the request carries them, and
    the job whose create lost its answer is found and stopped by the sweep."""
    connector = _fresh("sagemaker-training-job", fresh_connectors)
    sm = connector.backend.aws("sagemaker", REGION)
    stopped: list[str] = []
    _answer_stop(sm, "StopTrainingJob", "TrainingJobName", stopped)
    _lose_the_answer(sm, "CreateTrainingJob")
    execution = f"tags{uuid.uuid4().hex[:8]}"
    with pytest.raises(Exception, match="Read timeout"):
        _create(connector, _training_template(f"fit-{execution}-{{idempotence_token}}", _user_tags(48)), execution)
    (name,) = [name for name in _existing("training_jobs") if execution in name]
    assert len(_tags_on_training_job(name)) == 50
    assert [s.outcome for s in sweep_once(ledger(SWEEP_RECHECK_SECONDS + 1))] == ["cancelled"]
    assert stopped == [name]


def test_a_tasks_own_flyte_attempt_or_flyte_node_tag_is_replaced_by_the_connectors(sweep_table, fresh_connectors):
    """SageMaker's tag keys are unique per resource (API reference, Tag: "Tag keys must be unique per
    resource", https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_Tag.html). A task's own
    ``flyte-attempt`` or ``flyte-node`` tag would make its job look like another attempt's, which
    that attempt's abort or sweep would stop, or that this one could take over: the keys hold the
    connector's values, once each, as EMR Serverless's ``flyte-attempt`` does; the task's other tags
    stay."""
    connector = _fresh("sagemaker-training-job", fresh_connectors)
    execution = f"forge{uuid.uuid4().hex[:8]}"
    forged = [
        {"Key": "flyte-attempt", "Value": "another-attempts"},
        {"Key": "team", "Value": "ml"},
        {"Key": "flyte-node", "Value": "another-nodes"},
    ]
    made = _create(connector, _training_template(f"fit-{execution}-{{idempotence_token}}", forged), execution)
    tags = _tags_on_training_job(made.config["TrainingJobName"])
    assert sorted(t["Key"] for t in tags) == ["flyte-attempt", "flyte-node", "team"]
    assert {t["Value"] for t in tags}.isdisjoint({"another-attempts", "another-nodes"})


def test_a_take_over_between_the_sweeps_check_and_its_delete_leaves_the_endpoint(
    sweep_table, fresh_connectors, add_tags_overwrites
):
    """Attempt 0's sweep checks the endpoint's tags (ListTags) on its own thread, then deletes it
    through DeleteTask, which may wait for a free thread of the connector's backend. Attempt 1's
    take-over (re-tagging the endpoint as its own: ``_adopt``) may land in between; the delete must
    then leave the endpoint attempt 1 follows: DeleteTask checks the tag again right before it."""
    from cdao_connectors._common import ATTEMPT_TAG_KEY, attempt_seed, attempt_tag_value  # noqa: PLC0415

    connector, template, execution, fixed = _endpoint_made_by_attempt_0(fresh_connectors)
    prefix = f"s3://flyte-data/metadata/{execution}/1"
    attempt_1 = attempt_tag_value(attempt_seed(template, prefix, execution_metadata(execution, retry=1)))
    taken_over: list[str] = []

    def take_over(parsed, **_: Any) -> None:
        if not taken_over:  # the sweep's own check answered first; then attempt 1 re-tags
            sm = boto3.client("sagemaker", region_name=REGION)
            arn = sm.describe_endpoint(EndpointName=fixed)["EndpointArn"]
            sm.add_tags(ResourceArn=arn, Tags=[{"Key": ATTEMPT_TAG_KEY, "Value": attempt_1}])
            taken_over.append(arn)

    connector.backend.aws("sagemaker", REGION).meta.events.register("after-call.sagemaker.ListTags", take_over)
    swept_before = _swept_count(connector.backend.name)
    # Settled, not counted as stopped by the sweep: attempt 1 follows the endpoint.
    assert [s.outcome for s in sweep_once(ledger(SWEEP_RECHECK_SECONDS + 1))] == ["another attempt's"]
    assert _swept_count(connector.backend.name) == swept_before
    assert taken_over
    assert fixed in _existing("endpoints")
    assert {"Key": ATTEMPT_TAG_KEY, "Value": attempt_1} in _tags_on_endpoint(fixed)


def _stop_answering(client: Any, message: str, *, describe_too: bool = False) -> None:
    """StopTrainingJob (and, ``describe_too``, DescribeTrainingJob) answered SageMaker's
    ``ValidationException`` with ``message``, as its JSON protocol carries it (botocore ``parsers.py``
    ``BaseJSONParser._do_error_parse``: the body's ``__type``)."""
    from botocore.awsrequest import AWSResponse  # noqa: PLC0415

    def refused(request, **_: Any) -> AWSResponse:
        body = json.dumps({"__type": "ValidationException", "message": message}).encode()
        return AWSResponse(request.url, 400, {}, RawBody(body))

    client.meta.events.register("before-send.sagemaker.StopTrainingJob", refused)
    if describe_too:
        client.meta.events.register("before-send.sagemaker.DescribeTrainingJob", refused)


@pytest.mark.parametrize("mode", ["request", "pythonic"])
@pytest.mark.parametrize("how", ["ended", "deleted outside Flyte"])
def test_an_abort_of_a_training_job_that_ended_or_is_gone_is_done(sweep_table, fresh_connectors, mode, how):
    """Propeller's abort racing the job's end, or of a job deleted outside Flyte: SageMaker refuses
    StopTrainingJob with ValidationException "The request was rejected because the training job is
    in status Failed." (awslabs/benchmark-ai#928) or "Requested resource not found." (job_is_gone),
    which the plugin's delete does not match ("non-running" only). The DeleteTask is done, as
    for Batch: an error would be retried by propeller, then swept and paged for a job that ended."""
    import sm_tasks  # noqa: PLC0415
    from cdao_connectors._attempts import refused_cancel_item  # noqa: PLC0415
    from cdao_connectors.sagemaker.task import SAGEMAKER_TRAINING_TASK_TYPE  # noqa: PLC0415
    from moto.sagemaker.models import sagemaker_backends  # noqa: PLC0415
    from propeller import serialize  # noqa: PLC0415

    execution = f"ended{uuid.uuid4().hex[:8]}"
    if mode == "request":
        connector = _fresh("sagemaker-training-job", fresh_connectors)
        meta = _create(connector, _training_template(f"fit-{execution}-{{idempotence_token}}"), execution)
        name = meta.config["TrainingJobName"]
    else:
        connector = _fresh(SAGEMAKER_TRAINING_TASK_TYPE, fresh_connectors)
        meta = _create(connector, serialize(sm_tasks.fit), execution)
        name = meta.job_name
    client = connector.backend.aws("sagemaker", REGION)
    if how == "ended":
        sagemaker_backends[ACCOUNT][REGION].training_jobs[name].training_job_status = "Failed"
        _stop_answering(client, "The request was rejected because the training job is in status Failed.")
    else:
        _stop_answering(client, "Requested resource not found.", describe_too=True)
    run_to_end(connector.delete(meta))
    item = refused_cancel_item(connector.task_category.name, connector.task_category.version, meta.encode())
    assert item not in {i["attempt"]["S"] for i in armed()}


def test_an_abort_refused_while_the_training_job_runs_stays_an_error(sweep_table, fresh_connectors):
    """A ValidationException for a job that still runs (described again: InProgress) is a refusal:
    the DeleteTask errors, propeller retries it, and the job waits in the sweep index."""
    from cdao_connectors._attempts import refused_cancel_item  # noqa: PLC0415
    from moto.sagemaker.models import sagemaker_backends  # noqa: PLC0415

    execution = f"running{uuid.uuid4().hex[:8]}"
    connector = _fresh("sagemaker-training-job", fresh_connectors)
    meta = _create(connector, _training_template(f"fit-{execution}-{{idempotence_token}}"), execution)
    # moto ends a job at once; AWS's runs (TrainingJobStatus, botocore sagemaker/2017-07-24).
    sagemaker_backends[ACCOUNT][REGION].training_jobs[meta.config["TrainingJobName"]].training_job_status = "InProgress"
    _stop_answering(connector.backend.aws("sagemaker", REGION), "Some other reason.")
    with pytest.raises(Exception, match="Some other reason"):
        run_to_end(connector.delete(meta))
    item = refused_cancel_item(connector.task_category.name, connector.task_category.version, meta.encode())
    assert item in {i["attempt"]["S"] for i in armed()}


def _stop_refused_and_described(client: Any, stop_operation: str, describe_operation: str, described: dict) -> None:
    """``stop_operation`` answered SageMaker's ValidationException for a job not running, and
    ``describe_operation`` answered ``described`` (the JSON protocol's bodies, botocore ``parsers.py``)."""
    from botocore.awsrequest import AWSResponse  # noqa: PLC0415

    def refused(request, **_: Any) -> AWSResponse:
        body = {"__type": "ValidationException", "message": "The request was rejected because the job is in status X."}
        return AWSResponse(request.url, 400, {}, RawBody(json.dumps(body).encode()))

    def describe(request, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {}, RawBody(json.dumps(described).encode()))

    client.meta.events.register(f"before-send.sagemaker.{stop_operation}", refused)
    client.meta.events.register(f"before-send.sagemaker.{describe_operation}", describe)


def _status_enum(method: str) -> set[str]:
    from cdao_connectors.sagemaker._job_statuses import STOPPED_BY  # noqa: PLC0415

    kind = STOPPED_BY[method]
    sm = boto3.client("sagemaker", region_name=REGION)
    describe = sm.meta.service_model.operation_model(sm.meta.method_to_api_mapping[kind.describe])
    return set(describe.output_shape.members[kind.status_field].enum)


@pytest.mark.parametrize(
    "method",
    [
        "stop_training_job",
        "stop_processing_job",
        "stop_transform_job",
        "stop_hyper_parameter_tuning_job",
        "stop_inference_recommendations_job",
    ],
)
def test_every_routed_sagemaker_job_kinds_refused_stop_is_read_again(aws_env, method):
    """Each job kind a routed connector stops (training, processing, transform, tuning, inference
    recommender: values.yaml routes them all; each plugin's delete matches only "non-running") has
    its Describe and statuses from the installed botocore model: every status but the running ones
    is nothing to stop, and a refusal while it runs stays an error."""
    from cdao_connectors.sagemaker._job_statuses import STOPPED_BY, stop_found_nothing_to_stop  # noqa: PLC0415

    kind = STOPPED_BY[method]
    sm = boto3.client("sagemaker", region_name=REGION)
    stop = sm.meta.method_to_api_mapping[method]
    assert kind.name_field in sm.meta.service_model.operation_model(stop).input_shape.members
    statuses = _status_enum(method)
    assert kind.not_running <= statuses
    assert statuses - kind.not_running in ({"InProgress"}, {"PENDING", "IN_PROGRESS"})
    for status in sorted(statuses):
        client = boto3.client("sagemaker", region_name=REGION)
        _stop_refused_and_described(
            client, stop, client.meta.method_to_api_mapping[kind.describe], {kind.status_field: status}
        )
        with pytest.raises(ClientError) as refused:
            getattr(client, method)(**{kind.name_field: "job"})
        assert stop_found_nothing_to_stop(client, kind, "job", refused.value) is (status in kind.not_running), status


@pytest.mark.parametrize(("status", "done"), [("Completed", True), ("Stopping", True), ("InProgress", False)])
def test_a_batch_transform_abort_refused_is_done_only_once_the_job_no_longer_runs(
    sweep_table, fresh_connectors, status, done
):
    """The batch transform connector's DeleteTask (StopTransformJob) reads a refused job again, as
    the plugin connectors do: it used to take every ValidationException as done, a running job's too."""
    from cdao_connectors.sagemaker.connector import BatchTransformConnector, BatchTransformMetadata  # noqa: PLC0415

    connector = BatchTransformConnector()
    fresh_connectors(connector)
    client = connector.backend.aws("sagemaker", REGION)
    _stop_refused_and_described(client, "StopTransformJob", "DescribeTransformJob", {"TransformJobStatus": status})
    meta = BatchTransformMetadata(f"transform-{uuid.uuid4().hex[:8]}", REGION, "s3://flyte-data/out/t")
    if done:
        run_to_end(connector.delete(meta))
    else:
        with pytest.raises(ClientError, match="ValidationException"):
            run_to_end(connector.delete(meta))


def test_an_abort_of_an_endpoint_deleted_outside_flyte_is_done(sweep_table, fresh_connectors):
    """A person deleted the endpoint in the console; propeller then aborts its task. DeleteEndpoint
    answers ValidationException 'Could not find endpoint "arn:...".' (SageMaker's "gone" answer,
    ``_job_statuses.job_is_gone``), which the plugin's delete does not catch
    (awssagemaker_inference/connector.py ``delete``): the DeleteTask is done, as GetTask answers the
    endpoint FAILED, not an error retried by propeller and then swept and paged for an endpoint that
    does not exist."""
    from botocore.awsrequest import AWSResponse  # noqa: PLC0415
    from cdao_connectors._attempts import refused_cancel_item  # noqa: PLC0415
    from flytekitplugins.awssagemaker_inference.connector import SageMakerEndpointMetadata  # noqa: PLC0415

    connector = _fresh("sagemaker-endpoint", fresh_connectors)
    name = f"gone-{uuid.uuid4().hex[:8]}"
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}"

    def gone(request, **_: Any) -> AWSResponse:
        body = {"__type": "ValidationException", "message": f'Could not find endpoint "{arn}".'}
        return AWSResponse(request.url, 400, {}, RawBody(json.dumps(body).encode()))

    client = connector.backend.aws("sagemaker", REGION)
    for operation in ("DescribeEndpoint", "ListTags", "DeleteEndpoint"):
        client.meta.events.register(f"before-send.sagemaker.{operation}", gone)
    meta = SageMakerEndpointMetadata(config={"EndpointName": name}, region=REGION)
    run_to_end(connector.delete(meta))
    item = refused_cancel_item(connector.task_category.name, connector.task_category.version, meta.encode())
    assert item not in {i["attempt"]["S"] for i in armed()}

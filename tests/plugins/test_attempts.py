"""One job per task attempt across connector replicas (issue: two replicas, two jobs).

Two real ``pyflyte serve connector`` processes receive the same CreateTask at the same moment, as
when propeller, having lost its state before recording the first answer (a restart), sends the
attempt's CreateTask again to whichever replica while the first still runs (it never re-sends a
CreateTask that answered an error: see the last section); AWS (moto as a server) must then hold
exactly one job, step or cluster for the attempt, and both answers must name it.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import batch_tasks
import boto3
import emr_tasks
import grpc
import pytest
import yaml
from aws_setup import ATTEMPT_TABLE, SPOT_QUEUE, provision_attempt_table, provision_batch
from botocore.exceptions import ClientError
from cdao_connector_resources import SWEEP_INDEX
from cdao_connectors._attempts import AttemptInProgress, AttemptLedger, SweepTarget
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from connector_calls import run_to_end as _run_and_return
from connector_processes import DEPLOYMENT, ConnectorProcess
from flyteidl.admin import agent_pb2
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub
from flytekit.models.task import TaskExecutionMetadata
from propeller import IMAGE, category, create_task, execution_metadata, serialize, write_inputs

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
# Races per backend. Each trial is one real race of two CreateTasks between two service
# processes (~0.1-0.2 s), and a duplicate shows only in some of them: a backend's test takes seconds.
TRIALS = {"batch": 15, "emr-step": 15, "emr-cluster": 8, "sagemaker": 15, "codeweave": 15}


@pytest.fixture(scope="module")
def codeweave(tmp_path_factory) -> Iterator[Any]:
    """The Codeweave fake the replicas call, its jobs left QUEUED (no GPU free) so none runs."""
    from codeweave_fake import CodeweaveFake  # noqa: PLC0415

    fake = CodeweaveFake(api_key="cw-replicas-key", base_env={}, run_jobs=False)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def replicas(
    aws_env, moto_endpoint, codeweave, tmp_path_factory
) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    env = {
        **provision_batch(moto_endpoint, REGION),
        **provision_attempt_table(REGION),
        **codeweave.serve_for_connector(tmp_path_factory.mktemp("codeweave-secrets")),
        "CDAO_EMR_ENTRYPOINT_BUCKET": "flyte-data",
        "CDAO_EMR_SERVICE_ROLE": "EMR_DefaultRole",
        "CDAO_EMR_INSTANCE_PROFILE": "EMR_EC2_DefaultRole",
    }
    started = [ConnectorProcess(env), ConnectorProcess(env)]
    try:
        yield tuple(p.wait_ready() for p in started)  # type: ignore[misc]
    finally:
        for p in started:
            p.stop()


def _race(replicas, task, template, execution: str, *, inputs: dict[str, Any] | None = None, decode=json.loads) -> list:
    """The same CreateTask to both replicas at once (the task's ``inputs``, by default a ``path`` or
    ``rows``); their answers' ``resource_meta``, each ``decode``d."""
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    if inputs is None:
        inputs = {"path": "s3://x/raw.csv"} if "path" in task.python_interface.inputs else {"rows": 1}
    lm = write_inputs(task, prefix, **inputs)
    barrier = threading.Barrier(len(replicas))
    answers: list[Any] = [None] * len(replicas)

    def send(i: int) -> None:
        with grpc.insecure_channel(replicas[i].target) as channel:
            barrier.wait()
            try:
                answers[i] = decode(
                    create_task(AsyncAgentServiceStub(channel), template, prefix, lm, execution_metadata(execution))
                )
            except BaseException as exc:
                answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(replicas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    failed = [(i, a) for i, a in enumerate(answers) if a is None or isinstance(a, BaseException)]
    assert not failed, f"{failed}\n{replicas[failed[0][0]].log()}"
    return answers


def test_batch_one_job_per_attempt_across_two_replicas(replicas):
    batch = boto3.client("batch", region_name=REGION)
    template = serialize(batch_tasks.preprocess)
    duplicates = []
    for trial in range(TRIALS["batch"]):
        a, b = _race(replicas, batch_tasks.preprocess, template, f"dup-batch-{trial}-{uuid.uuid4().hex[:6]}")
        listed = batch.list_jobs(jobQueue=SPOT_QUEUE, filters=[{"name": "JOB_NAME", "values": [a["job_name"]]}])
        jobs = [j["jobId"] for j in listed["jobSummaryList"]]
        if a["job_id"] != b["job_id"] or len(jobs) != 1:
            duplicates.append((trial, a["job_id"], b["job_id"], jobs))
    assert duplicates == [], f"{len(duplicates)}/{TRIALS['batch']} attempts started more than one job: {duplicates}"


def test_emr_one_step_per_attempt_across_two_replicas(replicas):
    emr = boto3.client("emr", region_name=REGION)
    cluster = emr.run_job_flow(
        Name="cdao-shared-spark-dup",
        ReleaseLabel="emr-7.5.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    template = serialize(emr_tasks.on_cluster)
    template.custom["cluster_id"] = cluster
    duplicates = []
    for trial in range(TRIALS["emr-step"]):
        a, b = _race(replicas, emr_tasks.on_cluster, template, f"dup-step-{trial}-{uuid.uuid4().hex[:6]}")
        steps = len(emr.list_steps(ClusterId=cluster)["Steps"])
        if a["step_id"] != b["step_id"] or steps != trial + 1 + len(duplicates):
            duplicates.append((trial, a["step_id"], b["step_id"], steps))
    assert duplicates == [], f"{len(duplicates)}/{TRIALS['emr-step']} attempts added more than one step: {duplicates}"


def test_emr_one_transient_cluster_per_attempt_across_two_replicas(replicas):
    emr = boto3.client("emr", region_name=REGION)
    template = serialize(emr_tasks.on_transient)
    duplicates = []
    for trial in range(TRIALS["emr-cluster"]):
        a, b = _race(replicas, emr_tasks.on_transient, template, f"dup-cluster-{trial}-{uuid.uuid4().hex[:6]}")
        name = emr.describe_cluster(ClusterId=a["cluster_id"])["Cluster"]["Name"]
        named = [
            c["Id"] for p in emr.get_paginator("list_clusters").paginate() for c in p["Clusters"] if c["Name"] == name
        ]
        if a["cluster_id"] != b["cluster_id"] or len(named) != 1:
            duplicates.append((trial, a["cluster_id"], b["cluster_id"], named))
    assert duplicates == [], (
        f"{len(duplicates)}/{TRIALS['emr-cluster']} attempts started more than one cluster: {duplicates}"
    )


# ---------------------------------------------------------------------------------------------
# The claim protocol's other paths, against DynamoDB in moto.
@pytest.fixture
def ledger_table(aws_env) -> str:
    provision_attempt_table(REGION)
    return ATTEMPT_TABLE


def _ledger(table: str, clock=time.time) -> AttemptLedger:
    return AttemptLedger(boto3.client("dynamodb", region_name=REGION), table, clock=clock)


def test_the_moto_server_applies_a_conditional_write_atomically_as_dynamodb_does(ledger_table):
    """The harness must be as atomic as DynamoDB (support/moto_atomic.py): of 8 simultaneous
    ``attribute_not_exists`` claims of one attempt, exactly one wins. Without the lock, moto's
    read-check-write lost 8 of 200 such rounds to a second winner with a short thread switch
    interval, the interleaving a loaded 2-core machine gives; the interval is shortened here so the
    race shows within 60 rounds (about 3 s: fewer rounds let a broken harness pass too often; it
    failed 2 runs of 2 without the lock, with 1 and 5 doubled rounds)."""
    import sys  # noqa: PLC0415

    clients = [boto3.client("dynamodb", region_name=REGION) for _ in range(8)]
    doubled = 0
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for trial in range(60):
            attempt = f"atomic-{uuid.uuid4().hex}-{trial}"
            won: list[int] = []
            start = threading.Barrier(len(clients))

            def claim(i: int, attempt: str = attempt, won: list[int] = won, start: threading.Barrier = start) -> None:
                start.wait()
                try:
                    clients[i].put_item(
                        TableName=ledger_table,
                        Item={"attempt": {"S": attempt}, "owner": {"S": str(i)}},
                        ConditionExpression="attribute_not_exists(attempt)",
                    )
                    won.append(i)
                except ClientError as exc:
                    assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"

            threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(clients))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert won, "no claim won"
            doubled += len(won) > 1
    finally:
        sys.setswitchinterval(interval)
    assert doubled == 0, f"{doubled}/60 rounds had more than one winning conditional write"


def test_a_repeated_create_returns_the_recorded_job_without_creating(ledger_table):
    attempt = f"t/{uuid.uuid4().hex}"
    first = _ledger(ledger_table).once(attempt, lambda: {"job_id": "j-1"}, lambda: None, 1)
    again = _ledger(ledger_table).once(attempt, lambda: pytest.fail("created twice"), lambda: None, 1)
    assert first == again == {"job_id": "j-1"}


def test_a_create_waiting_on_a_live_claim_gets_an_error_not_a_job(ledger_table):
    attempt = f"t/{uuid.uuid4().hex}"
    started, release = threading.Event(), threading.Event()

    def slow_create():
        started.set()
        release.wait(10)
        return {"job_id": "j-slow"}

    owner = threading.Thread(target=lambda: _ledger(ledger_table).once(attempt, slow_create, lambda: None, 1))
    owner.start()
    started.wait(10)
    with pytest.raises(AttemptInProgress, match=attempt):
        _ledger(ledger_table).once(attempt, lambda: pytest.fail("second job"), lambda: None, 0.3)
    release.set()
    owner.join(10)
    assert _ledger(ledger_table).once(attempt, lambda: pytest.fail("second job"), lambda: None, 1) == {
        "job_id": "j-slow"
    }


def test_a_dead_owners_claim_is_taken_over_and_its_job_found_by_name(ledger_table):
    attempt = f"t/{uuid.uuid4().hex}"
    dead = _ledger(ledger_table)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    # The owner claimed, created the job, and died before recording it.
    dynamodb.put_item(
        TableName=ledger_table,
        Item={"attempt": {"S": attempt}, "owner": {"S": "gone"}, "lease_until": {"N": str(time.time() - 1)}},
    )
    del dead
    found = _ledger(ledger_table).once(attempt, lambda: pytest.fail("second job"), lambda: {"job_id": "j-dead"}, 1)
    assert found == {"job_id": "j-dead"}


def test_a_failed_create_lets_the_next_create_try_again_after_looking_first(ledger_table):
    attempt = f"t/{uuid.uuid4().hex}"

    def throttled():
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "SubmitJob")

    with pytest.raises(ClientError):
        _ledger(ledger_table).once(attempt, throttled, lambda: None, 1)
    looked = []
    result = _ledger(ledger_table).once(attempt, lambda: {"job_id": "j-2"}, lambda: looked.append(1), 1)
    assert result == {"job_id": "j-2"} and looked == [1]


def test_a_job_whose_record_is_throttled_is_answered_not_orphaned(ledger_table):
    """The job exists once create() returned; a throttled record of it must not turn the CreateTask
    into an error, which fails the attempt and leaves the job with nobody to stop it (launcher.go
    at flyteplugins/v1.16.8)."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    client = boto3.client("dynamodb", region_name=REGION)

    def throttle_the_record(params, **_):
        if params.get("UpdateExpression") == "SET #r = :r":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    client.meta.events.register("provide-client-params.dynamodb.UpdateItem", throttle_the_record)
    attempt = f"t/{uuid.uuid4().hex}"
    assert AttemptLedger(client, ledger_table).once(attempt, lambda: {"job_id": "j-1"}, lambda: None, 1) == {
        "job_id": "j-1"
    }


def test_infra_declares_the_table_and_grants_exactly_the_calls_the_ledger_makes(ledger_table):
    from tests.infra import plans  # noqa: PLC0415  (plans the stack only for this test)

    client = boto3.client("dynamodb", region_name=REGION)
    made: set[str] = set()
    client.meta.events.register("before-call.dynamodb", lambda model, **_: made.add(f"dynamodb:{model.name}"))
    ledger = AttemptLedger(client, ledger_table)
    attempt = f"t/{uuid.uuid4().hex}"
    with pytest.raises(RuntimeError):
        ledger.once(attempt, lambda: (_ for _ in ()).throw(RuntimeError("create failed")), lambda: None, 1)
    ledger.once(attempt, lambda: {"job_id": "j"}, lambda: None, 1)
    answered = f"cw/{uuid.uuid4().hex}"  # the order of a deduplicating backend's answers and give-up
    ledger.answer(answered, 1.0)
    ledger.abandon(answered, started_at=1.0, sweep=SweepTarget("test", "test-task", 0, resource_meta=b"{}"))
    # The sweeper's calls (cdao_connectors._sweeper): find the due attempts, claim, re-arm, settle.
    swept = AttemptLedger(client, ledger_table, clock=lambda: time.time() + 3600)
    assert answered in swept.due(100)
    assert swept.claim_for_sweep(answered, 60) is not None
    swept.sweep_later(answered, 0)
    swept.settle(answered, "cancelled")

    run = plans.planned("dev")
    table = next(r for r in run.registrations if r.type == "aws:dynamodb/table:Table")
    assert table.inputs["hashKey"] == "attempt"
    assert {"name": "attempt", "type": "S"} in table.inputs["attributes"]
    assert table.inputs["ttl"] == {"enabled": True, "attributeName": "expires_at"}
    policy = next(r for r in run.registrations if r.name == "workload-identity-connector" and "policy" in r.inputs)
    statements = [s for s in json.loads(policy.inputs["policy"])["Statement"] if "dynamodb" in json.dumps(s)]
    assert set().union(*(s["Action"] for s in statements)) == made
    arn = f"arn:aws:dynamodb:{REGION}:111122223333:table/{table.inputs['name']}"
    granted = {action: s["Resource"] for s in statements for action in s["Action"]}
    assert granted == {
        "dynamodb:GetItem": [arn],
        "dynamodb:PutItem": [arn],
        "dynamodb:UpdateItem": [arn],
        "dynamodb:Query": [f"{arn}/index/{SWEEP_INDEX}"],
    }


def test_emr_serverless_both_replicas_send_one_client_token_per_attempt(replicas):
    """StartJobRun's ``clientToken`` is its idempotency token (botocore emr-serverless/2021-07-13
    marks it ``idempotencyToken``): AWS starts one run per token. moto stores the token but does not
    deduplicate, so what is checked is the part the connector owns: both replicas send the same one."""
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-dup-spark", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app
    differing = []
    for trial in range(TRIALS["emr-step"]):
        a, b = _race(replicas, emr_tasks.on_serverless, template, f"dup-emrs-{trial}-{uuid.uuid4().hex[:6]}")
        runs = {r.id: r for r in emrserverless_backends["123456789012"][REGION].job_runs[app]}
        tokens = {runs[a["job_run_id"]].client_token, runs[b["job_run_id"]].client_token}
        if len(tokens) != 1:
            differing.append((trial, tokens))
    assert differing == [], f"replicas sent different client tokens for one attempt: {differing}"


def test_sagemaker_training_both_replicas_name_one_job_per_attempt(replicas):
    """The plugin's request-based training job, its name built with ``{idempotence_token}``: a hash
    of the rendered request (flytekitplugins-awssagemaker 1.16.31 awssagemaker_inference/
    boto3_mixin.py ``_call``), which carries the attempt's ``flyte-attempt`` tag
    (cdao_connectors.sagemaker._plugin_clients). SageMaker holds one training job per name and
    refuses a second CreateTrainingJob of it with ``ResourceInUse`` (botocore 1.40.61
    data/sagemaker/2017-07-24/service-2.json ``CreateTrainingJob`` errors), which the plugin answers
    as its job (awssagemaker_training/connector.py ``create``). moto 5.2.5 replaces a job of the
    same name instead (moto/sagemaker/models.py ``create_training_job``:
    ``self.training_jobs[training_job_name] = training_job``), so what is checked is the part the
    connector owns: both replicas name the same job, and one job of the attempt's name exists."""
    import cloudpickle  # noqa: PLC0415
    import sm_tasks  # noqa: PLC0415
    from moto.sagemaker.models import sagemaker_backends  # noqa: PLC0415

    jobs = sagemaker_backends["123456789012"][REGION].training_jobs
    differing = []
    for trial in range(TRIALS["sagemaker"]):
        execution = f"dup-sm-{trial}-{uuid.uuid4().hex[:6]}"
        task = sm_tasks.training_job_task(f"fit-{execution}-{{idempotence_token}}", REGION)
        a, b = _race(replicas, task, serialize(task), execution, inputs={}, decode=cloudpickle.loads)
        names = {a.config["TrainingJobName"], b.config["TrainingJobName"]}
        made = [name for name in list(jobs) if name.startswith(f"fit-{execution}-")]
        if len(names) != 1 or len(made) != 1:
            differing.append((trial, names, made))
    assert differing == [], f"replicas named more than one training job for one attempt: {differing}"


def test_codeweave_both_replicas_send_one_idempotency_key_per_attempt(replicas, codeweave):
    """Codeweave starts one job per ``idempotency_key`` and answers a repeated create that job
    (cdao_connectors/codeweave/contract.py ``POST /jobs``; no Codeweave library or public API
    reference exists, and the fake implements that contract). The fake deduplicates whatever the
    connector sends, so the check is the keys it received: both replicas POST the attempt's job
    with one key, and both are answered the one job that key made."""
    import cw_tasks  # noqa: PLC0415

    template = serialize(cw_tasks.scale)
    differing = []
    for trial in range(TRIALS["codeweave"]):
        execution = f"dup-cw-{trial}-{uuid.uuid4().hex[:6]}"
        a, b = _race(replicas, cw_tasks.scale, template, execution, inputs={"values": [1, 2], "factor": 0.5})
        # readable_execution_name: the execution, node and retry of the attempt
        posted = [p for p in list(codeweave.posted) if p["labels"]["flyte-execution"] == f"{execution}-n0-0"]
        keys = {p["idempotency_key"] for p in posted}
        jobs = {codeweave.by_key[k] for k in keys}
        if len(posted) != 2 or len(keys) != 1 or {a["job_id"], b["job_id"]} != jobs:
            differing.append((trial, len(posted), keys, a["job_id"], b["job_id"]))
    assert differing == [], f"replicas sent more than one idempotency key for one attempt: {differing}"


def test_a_submit_whose_answer_is_lost_answers_the_job_it_started(aws_env, moto_endpoint, monkeypatch):
    """A timeout or dropped connection may hide a SubmitJob that AWS carried out; botocore would
    re-send it and start a second job. The submit is not re-sent, nor may the CreateTask answer an
    error: propeller would fail the attempt and never stop that job (launcher.go, plugin.go
    ``Delete`` at flyteplugins/v1.16.8). The create finds the job by its name and answers it."""
    from cdao_connectors.aws_batch.connector import BatchConnector  # noqa: PLC0415
    from throttling_proxy import ThrottlingProxy  # noqa: PLC0415

    for k, v in {**provision_batch(moto_endpoint, REGION), **provision_attempt_table(REGION)}.items():
        monkeypatch.setenv(k, v)
    proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
    proxy.lose_answers_to = ("/v1/submitjob",)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    execution = f"lost-{uuid.uuid4().hex[:6]}"
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    template = serialize(batch_tasks.preprocess)
    connector = BatchConnector()
    try:
        meta = connector.create_sync(template, prefix, None, execution_metadata(execution))
        proxy.lose_answers_to = ()
        again = connector.create_sync(template, prefix, None, execution_metadata(execution))
    finally:
        proxy.stop()
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    assert proxy.lost == 1
    listed = boto3.client("batch", region_name=REGION).list_jobs(
        jobQueue=SPOT_QUEUE, filters=[{"name": "JOB_NAME", "values": [meta.job_name]}]
    )
    assert [j["jobId"] for j in listed["jobSummaryList"]] == [meta.job_id] == [again.job_id]


# ---------------------------------------------------------------------------------------------
# What a replica logs when a call fails, as the Deployment configures flytekit's loggers.


def test_a_failed_get_task_is_logged_as_one_json_line(replicas):
    """``pyflyte serve connector`` without ``-v`` sets flytekit's logger to CRITICAL unless
    FLYTE_SDK_LOGGING_LEVEL says otherwise (flytekit 1.16.31 clis/sdk_in_container/utils.py
    ``ErrorHandlingCommand.invoke``, loggers.py ``get_level_from_cli_verbosity``), which drops the
    error ``connector_service._handle_exception`` logs for every failed call; and outside a task
    execution flytekit logs through rich (loggers.py ``initialize_global_loggers``), wrapped at 80
    columns over many lines, unless FLYTE_SDK_RICH_TRACEBACKS=0 picks its JSON formatter. The
    replicas run with the Deployment's settings (connector_processes.deployment_logging_env)."""
    request = agent_pb2.GetTaskRequest(task_category=category(BATCH_TASK_TYPE), resource_meta=b"not json")
    with grpc.insecure_channel(replicas[0].target) as channel, pytest.raises(grpc.RpcError) as failed:
        AsyncAgentServiceStub(channel).GetTask(request, timeout=10)
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    records = [json.loads(line) for line in replicas[0].log(tail=None).splitlines() if line.startswith("{")]
    logged = [r for r in records if f"failed to get {BATCH_TASK_TYPE} task" in r.get("message", "")]
    assert logged, replicas[0].log()
    assert logged[-1]["levelname"] == "ERROR" and logged[-1]["name"] == "flytekit"
    assert "Traceback" in logged[-1]["message"]  # the whole error, in one record


# ---------------------------------------------------------------------------------------------
# A CreateTask that answers an error is never re-sent: propeller fails the attempt and starts the
# next one under a new retry_attempt (flyteplugins go/tasks/pluginmachinery/internal/webapi/
# launcher.go ``launch`` -> core.PhaseInfoRetryableFailure, at flyteplugins/v1.16.8), and never
# DeleteTasks a job it got no resource_meta for (go/tasks/plugins/webapi/connector/plugin.go
# ``Delete``). What the create still starts must therefore be cancelled by the connector.


def _batch_jobs() -> dict:
    from moto.batch.models import batch_backends  # noqa: PLC0415

    return dict(batch_backends["123456789012"][REGION]._jobs)


def _run(coro) -> None:
    _run_and_return(coro)


async def _until(predicate, timeout: float = 10.0):
    """Polls without blocking the event loop, on which the late create's cancel runs."""
    give_up = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < give_up, "condition not met in time"
        await asyncio.sleep(0.05)
    return value


class GaveUpBatch:
    """A Batch connector whose SubmitJob goes through a throttling proxy, for CreateTasks that give up
    while their submit still lands. Each scenario takes ~1.5 s: the throttled submit must outlive a
    deadline (1.3 s less the 1 s margin, standing for propeller's 30 s) and then finish."""

    def __init__(self, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
        from cdao_connectors.aws_batch.connector import BatchConnector  # noqa: PLC0415
        from throttling_proxy import ThrottlingProxy  # noqa: PLC0415

        for k, v in {**provision_batch(moto_endpoint, REGION), **provision_attempt_table(REGION)}.items():
            monkeypatch.setenv(k, v)
        self.proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
        # The job's status cache reads Batch in the background through the proxy too.
        self.proxy.throttle_paths = ("/v1/submitjob",)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BATCH", self.proxy.url)
        self._monkeypatch = monkeypatch
        self._execution = f"gave-up-{uuid.uuid4().hex[:6]}"
        self.prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
        self.template = serialize(batch_tasks.preprocess)
        self.connector = BatchConnector()

    def meta(self, retry: int):
        from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415

        return TaskExecutionMetadata.from_flyte_idl(execution_metadata(self._execution, retry=retry))

    async def give_up(self) -> tuple[Any, set[str]]:
        """One CreateTask that answers an error while its submit lands: the late job, once
        TerminateJob reached it, and the jobs there were before."""
        from cdao_connectors import _deadlines  # noqa: PLC0415
        from cdao_connectors._backends import BackendDeadlineExceeded  # noqa: PLC0415

        await self.connector.create(self.template, self.prefix, None, self.meta(retry=9))  # the job definition
        before = set(_batch_jobs())
        self._monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 1.3)
        self.proxy.throttle_next = 2  # create_once backs off 0.2 + 0.4 s: the 3rd submit lands after the 0.3 s budget
        with pytest.raises(BackendDeadlineExceeded, match="propeller does not re-send a failed CreateTask"):
            await self.connector.create(self.template, self.prefix, None, self.meta(retry=0))
        late = await _until(lambda: [j for i, j in _batch_jobs().items() if i not in before])
        assert len(late) == 1
        await _until(lambda: late[0].stop)  # TerminateJob reached Batch
        return late[0], before


@pytest.fixture
def gave_up_batch(aws_env, moto_endpoint, monkeypatch) -> Iterator[GaveUpBatch]:
    batch = GaveUpBatch(moto_endpoint, monkeypatch)
    try:
        yield batch
    finally:
        batch.proxy.stop()


def test_a_late_batch_job_is_terminated_even_when_marking_its_attempt_fails(gave_up_batch, monkeypatch):
    """The cancel of a job started after its CreateTask gave up marks the attempt abandoned first;
    a throttled ledger write must not leave the job running (nobody else would stop it)."""

    def throttled_abandon(self, key, **kwargs):
        # DynamoDB's throttling answer (AWS "Common Errors": ThrottlingException, HTTP 400).
        raise ClientError(
            {
                "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "UpdateItem",
        )

    monkeypatch.setattr(AttemptLedger, "abandon", throttled_abandon)
    _run(gave_up_batch.give_up())  # TerminateJob reached Batch all the same


def _cancels_refused(monkeypatch, refusals: int, error: ClientError) -> list[str]:
    """TerminateJob answers ``error`` to the first ``refusals`` cancels, then is Batch's own;
    returns the job ids asked, one per cancel. The late cancel's backoff is shortened to 20 ms."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors.aws_batch.connector import BatchConnector  # noqa: PLC0415

    monkeypatch.setattr(_backends, "LATE_CANCEL_FIRST_DELAY", 0.02)
    asked: list[str] = []
    terminate = BatchConnector.delete_sync

    def refusing(self, resource_meta):
        asked.append(resource_meta.job_id)
        if len(asked) <= refusals:
            raise error
        return terminate(self, resource_meta)

    monkeypatch.setattr(BatchConnector, "delete_sync", refusing)
    return asked


def test_a_throttled_late_cancel_is_tried_again_until_the_job_is_terminated(gave_up_batch, monkeypatch):
    """TerminateJob throttled for the first 3 cancels of a job started after its CreateTask gave up:
    tried once, the job would run on with nobody to stop it; tried again with backoff, it stops.
    Takes ~1.5 s (GaveUpBatch): the one end-to-end proof that the retried cancel reaches Batch; the
    retry's rules are checked in milliseconds below."""
    asked = _cancels_refused(monkeypatch, 3, _throttled("TerminateJob"))
    late, _ = _run_and_return(gave_up_batch.give_up())  # returns once TerminateJob reached Batch
    assert asked == [late.job_id] * 4


def _late_cancel_tries(monkeypatch, refusal: ClientError, caplog) -> tuple[list[str], set[str]]:
    """A create finishing after its CreateTask gave up, its every cancel refused with ``refusal``:
    the cancels tried and what was logged as needing an operator. On create_within_deadline itself,
    not a backend: what is checked is the retry's own rule, in milliseconds."""
    from cdao_connectors import _backends, _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import BackendDeadlineExceeded, create_within_deadline  # noqa: PLC0415

    monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", _deadlines.MARGIN_SECONDS + 0.05)
    monkeypatch.setattr(_backends, "LATE_CANCEL_FIRST_DELAY", 0.01)
    caplog.set_level("WARNING", logger="cdao_connectors._backends")
    tries: list[str] = []

    async def scenario() -> set[str]:
        release = asyncio.Event()

        async def create() -> str:
            await release.wait()
            return "job-late-1"

        async def terminate(job: str) -> None:
            tries.append(job)
            raise refusal

        with pytest.raises(BackendDeadlineExceeded):
            await create_within_deadline(create(), terminate, backend="AWS Batch")
        release.set()
        return await _until(lambda: {r.getMessage() for r in caplog.records if "stopped by hand" in r.getMessage()})

    return tries, _run_and_return(scenario())


def test_a_late_cancel_refused_for_good_is_logged_with_its_job_not_retried(monkeypatch, caplog):
    """A refusal that is not "not now" (AccessDenied stays until someone changes the policy) is not
    tried again: the job's resource_meta is logged for an operator."""
    denied = ClientError(
        {
            "Error": {"Code": "AccessDeniedException", "Message": "not authorized"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "TerminateJob",
    )
    tries, (logged,) = _late_cancel_tries(monkeypatch, denied, caplog)
    assert tries == ["job-late-1"] and "job-late-1" in logged and "(1 tries)" in logged


def test_a_late_cancel_throttled_past_its_budget_is_logged_with_its_job(monkeypatch, caplog):
    """Throttled for longer than LATE_CANCEL_SECONDS: tried a bounded number of times, then logged."""
    from cdao_connectors import _backends  # noqa: PLC0415

    monkeypatch.setattr(_backends, "LATE_CANCEL_SECONDS", 0.2)
    tries, (logged,) = _late_cancel_tries(monkeypatch, _throttled("TerminateJob"), caplog)
    assert 1 < len(tries) < 10 and "job-late-1" in logged


def test_a_late_cancel_sees_throttling_inside_a_plugins_wrapped_error(monkeypatch):
    """flytekitplugins-awssagemaker raises ``CustomException(..., e) from e`` for every ClientError
    of its calls (boto3_mixin.py ``_call``, 1.16.31), and its ``delete`` re-raises it: a throttled
    stop of a SageMaker job must be tried again all the same."""
    from cdao_connectors import _backends, _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import BackendDeadlineExceeded, create_within_deadline  # noqa: PLC0415
    from flytekitplugins.awssagemaker_inference.boto3_mixin import CustomException  # noqa: PLC0415

    monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", _deadlines.MARGIN_SECONDS + 0.05)
    monkeypatch.setattr(_backends, "LATE_CANCEL_FIRST_DELAY", 0.01)
    tries: list[str] = []

    async def scenario() -> None:
        release = asyncio.Event()

        async def create() -> str:
            await release.wait()
            return "flyte-job-1"

        async def stop(job: str) -> None:
            tries.append(job)
            if len(tries) < 3:
                error = _throttled("StopTrainingJob")
                raise CustomException(f"An error occurred: {error}", "", error) from error

        with pytest.raises(BackendDeadlineExceeded):
            await create_within_deadline(create(), stop, backend="SageMaker training")
        release.set()  # the create finishes after its CreateTask gave up
        await _until(lambda: len(tries) == 3)

    _run(scenario())
    assert tries == ["flyte-job-1"] * 3


def _hold_the_give_ups_mark_until_the_repeat_is_answered(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Holds every give-up's abandoned mark (``AttemptLedger.abandon``) until the test sets the second
    event (the repeated CreateTask was answered); the first is set when a mark is reached."""
    mark_reached, repeat_answered = threading.Event(), threading.Event()
    abandon = AttemptLedger.abandon

    def abandon_after_the_repeat(self, attempt, **kwargs):
        mark_reached.set()
        assert repeat_answered.wait(10), "the repeated CreateTask was not answered"
        return abandon(self, attempt, **kwargs)

    monkeypatch.setattr(AttemptLedger, "abandon", abandon_after_the_repeat)
    return mark_reached, repeat_answered


def _note_give_ups(monkeypatch) -> threading.Event:
    """Set once a give-up's cancel (``AttemptAnswers.cancelling``: mark the attempt abandoned, then
    cancel the job unless a later CreateTask was answered it) has ended, whatever it did."""
    from cdao_connectors._attempts import AttemptAnswers  # noqa: PLC0415

    ended = threading.Event()
    cancelling = AttemptAnswers.cancelling

    def noting(self, cancel):
        give_up = cancelling(self, cancel)

        async def noted(resource_meta):
            try:
                return await give_up(resource_meta)
            finally:
                ended.set()

        return noted

    monkeypatch.setattr(AttemptAnswers, "cancelling", noting)
    return ended


def test_a_repeat_answered_the_job_keeps_it_running_when_the_give_up_marks_after(gave_up_batch, monkeypatch):
    """The race between the ledger recording the late job and the give-up marking its attempt
    abandoned: a repeated CreateTask arriving in between (propeller lost its state) used to be
    answered the job that the give-up then terminated, so its GetTask answered FAILED, a permanent
    failure of the task (connector/plugin.go ``Status`` at flyteplugins/v1.16.8). The repeat's answer
    is the one propeller records (it re-sends only after losing its state): the job must run on.
    Ordered with events: the give-up's mark waits until the repeat has been answered. Takes ~1.5 s
    (GaveUpBatch): the race is between the connector's own record, mark and terminate, so it runs
    the real give-up; the ledger's ordering alone is checked in milliseconds below."""
    from cdao_connectors import _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import BackendDeadlineExceeded  # noqa: PLC0415

    batch = gave_up_batch
    mark_reached, repeat_answered = _hold_the_give_ups_mark_until_the_repeat_is_answered(monkeypatch)
    gave_up = _note_give_ups(monkeypatch)

    async def scenario():
        await batch.connector.create(batch.template, batch.prefix, None, batch.meta(retry=9))  # the job definition
        monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 1.3)
        batch.proxy.throttle_next = 2  # as GaveUpBatch.give_up: the submit lands after the budget
        with pytest.raises(BackendDeadlineExceeded):
            await batch.connector.create(batch.template, batch.prefix, None, batch.meta(retry=0))
        assert await asyncio.get_running_loop().run_in_executor(None, mark_reached.wait, 10)  # the job is recorded
        monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 30.0)
        again = await batch.connector.create(batch.template, batch.prefix, None, batch.meta(retry=0))
        repeat_answered.set()
        assert await asyncio.get_running_loop().run_in_executor(None, gave_up.wait, 10)
        return again

    again = _run_and_return(scenario())
    job = _batch_jobs()[again.job_id]
    assert not job.stop, f"the job answered to the repeat was terminated: {job.job_stopped_reason}"


def test_the_ledger_orders_a_repeat_and_a_give_up_either_way(ledger_table):
    """Whichever of the two conditional writes comes first wins: a repeat answered first keeps the
    job (the give-up marks nothing and so cancels nothing); a give-up marked first refuses the repeat."""
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415

    first, second = f"t/{uuid.uuid4().hex}", f"t/{uuid.uuid4().hex}"
    for attempt in (first, second):
        _ledger(ledger_table).once(attempt, lambda: {"job_id": "j-1"}, lambda: None, 1)
    assert _ledger(ledger_table).once(first, lambda: pytest.fail("second job"), lambda: None, 1) == {"job_id": "j-1"}
    assert _ledger(ledger_table).abandon(first) is False
    assert _ledger(ledger_table).abandon(second) is True
    with pytest.raises(AttemptAbandoned, match=second):
        _ledger(ledger_table).once(second, lambda: pytest.fail("second job"), lambda: None, 1)


def test_codeweaves_late_cancels_are_tried_again_on_codeweaves_own_not_now_answers():
    """Codeweave is no AWS service: its "not now" is HTTP 429 or a 5xx (the statuses its client
    retries, codeweave/contract.py) or a DeleteTask deadline run out; a 403 stays until someone
    changes the key. The late cancel's retry (create_within_deadline) asks the connector."""
    from cdao_connectors._backends import BackendDeadlineExceeded  # noqa: PLC0415
    from cdao_connectors.codeweave.connector import CodeweaveConnector  # noqa: PLC0415
    from cdao_connectors.codeweave.contract import CodeweaveError  # noqa: PLC0415

    connector = CodeweaveConnector()
    assert connector.is_transient_error(CodeweaveError(429, "slow down"))
    assert connector.is_transient_error(CodeweaveError(503, "unavailable"))
    assert connector.is_transient_error(BackendDeadlineExceeded("Codeweave did not answer DeleteTask"))
    assert not connector.is_transient_error(CodeweaveError(403, "forbidden"))


def test_a_batch_create_that_gave_up_leaves_no_job_running(gave_up_batch, monkeypatch):
    """SubmitJob throttled past the CreateTask deadline: the CreateTask answers an error, the submit
    still goes through, and its job is terminated; a re-send of that attempt (propeller lost its
    state) is refused rather than adopting the terminated job."""
    from cdao_connectors import _deadlines  # noqa: PLC0415
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415

    batch = gave_up_batch

    async def scenario() -> None:
        late, before = await batch.give_up()
        assert "Aborted by Flyte" in late.job_stopped_reason

        monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 30.0)
        with pytest.raises(AttemptAbandoned, match=late.job_id):
            await batch.connector.create(batch.template, batch.prefix, None, batch.meta(retry=0))
        assert set(_batch_jobs()) - before == {late.job_id}  # the re-send started nothing

    _run(scenario())


def _emr_clusters() -> dict:
    from moto.emr.models import emr_backends  # noqa: PLC0415

    return dict(emr_backends["123456789012"][REGION].clusters)


@pytest.fixture
def transient_emr_env(aws_env, monkeypatch) -> None:
    for k, v in {
        **provision_attempt_table(REGION),
        "CDAO_EMR_ENTRYPOINT_BUCKET": "flyte-data",
        "CDAO_EMR_SERVICE_ROLE": "EMR_DefaultRole",
        "CDAO_EMR_INSTANCE_PROFILE": "EMR_EC2_DefaultRole",
    }.items():
        monkeypatch.setenv(k, v)


def test_an_emr_create_that_gave_up_leaves_no_cluster_running(transient_emr_env, moto_endpoint, monkeypatch):
    """RunJobFlow of a transient cluster throttled past the CreateTask deadline: the cluster it
    still starts is terminated. Takes ~1.5 s, as the Batch case above."""
    from cdao_connectors import _deadlines  # noqa: PLC0415
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415
    from cdao_connectors._backends import BackendDeadlineExceeded  # noqa: PLC0415
    from cdao_connectors.emr.connector import EMRConnector  # noqa: PLC0415
    from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415
    from throttling_proxy import ThrottlingProxy  # noqa: PLC0415

    proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_EMR", proxy.url)
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"emr-gave-up-{uuid.uuid4().hex[:6]}"))
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    template = serialize(emr_tasks.on_transient)
    connector = EMRConnector()
    before = set(_emr_clusters())

    async def scenario() -> None:
        monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 1.3)
        proxy.throttle_next = 2  # create_once backs off 0.2 + 0.4 s: RunJobFlow lands after the 0.3 s budget
        with pytest.raises(BackendDeadlineExceeded, match="propeller does not re-send a failed CreateTask"):
            await connector.create(template, prefix, None, meta)
        late = await _until(lambda: [c for i, c in _emr_clusters().items() if i not in before])
        assert len(late) == 1
        await _until(lambda: late[0].state == "TERMINATED")
        monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 30.0)
        with pytest.raises(AttemptAbandoned, match=late[0].id):
            await connector.create(template, prefix, None, meta)
        assert set(_emr_clusters()) - before == {late[0].id}

    try:
        _run(scenario())
    finally:
        proxy.stop()


def test_a_transient_cluster_whose_step_is_not_listed_is_terminated(transient_emr_env, monkeypatch):
    """RunJobFlow answers only the cluster's id (botocore emr/2009-03-31 RunJobFlowOutput): the step
    is found with ListSteps. Should ListSteps not list it yet (not documented either way; the stand-
    in below makes it so), the create fails, and so the attempt: its cluster must not keep running."""
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415
    from cdao_connectors.emr.connector import EMRConnector  # noqa: PLC0415

    monkeypatch.setattr(EMRConnector, "_find_step", staticmethod(lambda emr, cluster_id, name: None))
    execution = execution_metadata(f"emr-no-step-{uuid.uuid4().hex[:6]}")
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    template = serialize(emr_tasks.on_transient)
    connector = EMRConnector()
    before = set(_emr_clusters())
    with pytest.raises(RuntimeError, match=r"lists no step .* terminated"):
        connector.create_sync(template, prefix, None, execution)
    (started,) = [c for i, c in _emr_clusters().items() if i not in before]
    assert started.state == "TERMINATED"
    with pytest.raises(AttemptAbandoned, match=started.id):
        connector.create_sync(template, prefix, None, execution)
    assert set(_emr_clusters()) - before == {started.id}


def _throttled(operation: str) -> ClientError:
    """AWS's throttling answer (AWS "Common Errors": ThrottlingException, HTTP 400), as botocore raises it."""
    return ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        operation,
    )


def test_a_transient_cluster_whose_step_listing_fails_is_terminated_before_the_error(transient_emr_env, monkeypatch):
    """RunJobFlow started the cluster; its step is then found with ListSteps. A throttled ListSteps
    fails the create, so the attempt (launcher.go at flyteplugins/v1.16.8), and nobody would ever
    stop the cluster: it is terminated before the error is raised, and the attempt marked abandoned
    so that a re-send does not adopt it. ListSteps is throttled by a stand-in raising what botocore
    raises for AWS's throttling answer."""
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415
    from cdao_connectors.emr.connector import EMRConnector  # noqa: PLC0415

    def throttled(emr, cluster_id, name):
        raise _throttled("ListSteps")

    monkeypatch.setattr(EMRConnector, "_find_step", staticmethod(throttled))
    execution = execution_metadata(f"emr-unlisted-{uuid.uuid4().hex[:6]}")
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    template = serialize(emr_tasks.on_transient)
    connector = EMRConnector()
    before = set(_emr_clusters())
    with pytest.raises(ClientError, match="ThrottlingException"):
        connector.create_sync(template, prefix, None, execution)
    (started,) = [c for i, c in _emr_clusters().items() if i not in before]
    assert started.state == "TERMINATED"
    with pytest.raises(AttemptAbandoned, match=started.id):
        connector.create_sync(template, prefix, None, execution)
    assert set(_emr_clusters()) - before == {started.id}


def test_an_unlisted_transient_cluster_whose_terminate_is_throttled_is_terminated_in_the_background(
    transient_emr_env, monkeypatch
):
    """The create's own stop of the cluster it cannot follow (above) is a cancel nobody else will
    ever make: TerminateJobFlows throttled twice must not leave the cluster running, nor hold the
    CreateTask while it is tried again. The throttling is botocore's ClientError for AWS's
    answer, raised before the call is sent (a ``before-call`` handler on the shared client)."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors.emr.connector import EMRConnector  # noqa: PLC0415

    monkeypatch.setattr(_backends, "LATE_CANCEL_FIRST_DELAY", 0.01)
    monkeypatch.setattr(EMRConnector, "_find_step", staticmethod(lambda emr, cluster_id, name: None))
    connector = EMRConnector()
    terminates: list[list[str]] = []

    def throttle_twice(params, **_):
        terminates.append(params["JobFlowIds"])
        if len(terminates) <= 2:
            raise _throttled("TerminateJobFlows")

    connector.backend.aws("emr", REGION).meta.events.register(
        "provide-client-params.emr.TerminateJobFlows", throttle_twice
    )
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"emr-unstopped-{uuid.uuid4().hex[:6]}"))
    before = set(_emr_clusters())

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="lists no step"):
            await connector.create(
                serialize(emr_tasks.on_transient), f"s3://flyte-data/metadata/{uuid.uuid4().hex}", None, meta
            )
        (started,) = [c for i, c in _emr_clusters().items() if i not in before]
        await _until(lambda: started.state == "TERMINATED")
        assert terminates == [[started.id]] * 3

    _run(scenario())


def test_an_emr_serverless_run_started_after_its_create_gave_up_is_cancelled(
    transient_emr_env, moto_endpoint, monkeypatch
):
    """StartJobRun held past the CreateTask deadline, then carried out: the run is cancelled. The
    plugin's create runs on the event loop (its AWS calls on the backend's threads), unlike the
    Batch and EMR creates' one thread. Takes ~1.5 s: StartJobRun must land after a 0.3 s budget."""
    from cdao_connectors import _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import BackendDeadlineExceeded  # noqa: PLC0415
    from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector  # noqa: PLC0415
    from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415
    from moto.emrserverless import models as moto_emrs  # noqa: PLC0415
    from throttling_proxy import ThrottlingProxy  # noqa: PLC0415

    # moto starts every run as SUCCESS (moto/emrserverless/models.py JOB_STATUS); EMR Serverless
    # starts one SUBMITTED (JobRunState, botocore emr-serverless/2021-07-13), which can be cancelled.
    monkeypatch.setattr(moto_emrs, "JOB_STATUS", "SUBMITTED")
    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-late-spark", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app
    proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
    proxy.delay_paths, proxy.delay_seconds = ("/jobruns",), 0.6
    monkeypatch.setenv("AWS_ENDPOINT_URL_EMR_SERVERLESS", proxy.url)
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"emrs-gave-up-{uuid.uuid4().hex[:6]}"))
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(emr_tasks.on_serverless, prefix, rows=1)
    connector = IdempotentEMRServerlessConnector()

    def runs() -> list:
        return list(moto_emrs.emrserverless_backends["123456789012"][REGION].job_runs.get(app, []))

    async def scenario() -> None:
        monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 1.3)
        with pytest.raises(BackendDeadlineExceeded, match="propeller does not re-send a failed CreateTask"):
            await connector.create(template, lm, meta, output_prefix=prefix)
        proxy.delay_paths = ()  # the held StartJobRun goes on; the cancel need not wait
        (late,) = await _until(runs)
        await _until(lambda: late.state == "CANCELLED")

    try:
        _run(scenario())
    finally:
        proxy.stop()


def test_the_propeller_stand_in_sends_each_call_with_propellers_deadline():
    """The stand-in accepts no answer propeller would have dropped: its deadline for CreateTask,
    GetTask and DeleteTask alike is values.yaml's defaultTimeout, which propeller gives every
    connector call (connector/client.go ``getFinalContext``, called by plugin.go for each, at
    flyteplugins/v1.16.8)."""
    from propeller import delete_task, get_task  # noqa: PLC0415
    from propeller_polling import PollingSettings  # noqa: PLC0415

    sent: dict[str, float] = {}

    class Stub:
        def CreateTask(self, request, timeout):
            sent["CreateTask"] = timeout
            return agent_pb2.CreateTaskResponse(resource_meta=b"{}")

        def GetTask(self, request, timeout):
            sent["GetTask"] = timeout
            return agent_pb2.GetTaskResponse()

        def DeleteTask(self, request, timeout):
            sent["DeleteTask"] = timeout
            return agent_pb2.DeleteTaskResponse()

    create_task(Stub(), serialize(batch_tasks.preprocess), "s3://flyte-data/m/x", None, execution_metadata("d"))
    get_task(Stub(), BATCH_TASK_TYPE, b"{}")
    delete_task(Stub(), BATCH_TASK_TYPE, b"{}")
    deadline = PollingSettings.from_values().timeout_seconds
    assert sent == {"CreateTask": deadline, "GetTask": deadline, "DeleteTask": deadline}


def test_a_repeated_emr_serverless_create_of_a_cancelled_run_fails_only_the_attempt(transient_emr_env, monkeypatch):
    """Should propeller, having lost its state, repeat a CreateTask that gave up, the attempt's
    client token names the run that was cancelled. Adopting it would answer FAILED, a permanent
    failure of the task (connector/plugin.go ``Status``); the CreateTask errors instead."""
    from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector  # noqa: PLC0415
    from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415
    from moto.emrserverless import models as moto_emrs  # noqa: PLC0415

    monkeypatch.setattr(moto_emrs, "JOB_STATUS", "SUBMITTED")  # as test above: a run starts SUBMITTED
    started = moto_emrs.EMRServerlessBackend.start_job_run

    def idempotent(backend, application_id, client_token, *args, **kwargs):
        # StartJobRun's clientToken is an idempotencyToken (botocore emr-serverless/2021-07-13): a
        # token seen before answers its run. moto stores the token without deduplicating.
        seen = [r for r in backend.job_runs.get(application_id, []) if r.client_token == client_token]
        return seen[0] if seen else started(backend, application_id, client_token, *args, **kwargs)

    monkeypatch.setattr(moto_emrs.EMRServerlessBackend, "start_job_run", idempotent)
    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-again-spark", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"emrs-again-{uuid.uuid4().hex[:6]}"))
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(emr_tasks.on_serverless, prefix, rows=1)
    connector = IdempotentEMRServerlessConnector()

    async def scenario() -> None:
        first = await connector.create(template, lm, meta, output_prefix=prefix)
        await connector.delete(first)  # as the give-up's cancel does
        with pytest.raises(RuntimeError, match=rf"{first.job_run_id} .*was cancelled"):
            await connector.create(template, lm, meta, output_prefix=prefix)

    _run(scenario())
    assert len(moto_emrs.emrserverless_backends["123456789012"][REGION].job_runs[app]) == 1


def test_an_emr_serverless_run_whose_check_is_throttled_is_answered_not_orphaned(transient_emr_env, monkeypatch):
    """After StartJobRun the create reads the run once (is it a cancelled one?); a throttled read
    must not turn the CreateTask into an error, which fails the attempt and leaves the started run
    with nobody to stop it (launcher.go at flyteplugins/v1.16.8)."""
    from botocore.exceptions import ClientError  # noqa: PLC0415
    from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector  # noqa: PLC0415
    from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415
    from flytekitplugins.awsemrserverless.boto_handler import EMRServerlessHandler  # noqa: PLC0415

    async def throttled(self, **_):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetJobRun")

    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-check-spark", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"emrs-check-{uuid.uuid4().hex[:6]}"))
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(emr_tasks.on_serverless, prefix, rows=1)
    connector = IdempotentEMRServerlessConnector()
    monkeypatch.setattr(EMRServerlessHandler, "get_job_run", throttled)

    answered = []

    async def scenario() -> None:
        answered.append(await connector.create(template, lm, meta, output_prefix=prefix))

    _run(scenario())
    assert [r["id"] for r in client.list_job_runs(applicationId=app)["jobRuns"]] == [answered[0].job_run_id]


def test_a_repeated_sagemaker_create_of_a_stopped_job_fails_only_the_attempt(aws_env):
    """The plugin's pythonic jobs take SageMaker's refusal of a second job of one name as success
    (flytekitplugins-awssagemaker pythonic_base.py ``create``); when the attempt's job was stopped
    because its first CreateTask gave up, that would adopt a job answering FAILED, a permanent
    failure of the task. botocore's Stubber plays SageMaker (moto replaces a job of the same name
    instead of refusing it), its answers checked against the service model."""
    from botocore.stub import Stubber  # noqa: PLC0415

    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    connector, template = _sagemaker_processing(prefix)
    sagemaker = connector.backend.aws("sagemaker", REGION)
    with Stubber(sagemaker) as stub:
        stub.add_client_error("create_processing_job", "ResourceInUse", "Job name must be unique")
        stub.add_response(
            "describe_processing_job",
            {
                "ProcessingJobName": "j",
                "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/j",
                "ProcessingJobStatus": "Stopped",
                "ProcessingResources": {
                    "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
                },
                "AppSpecification": {"ImageUri": IMAGE},
                "CreationTime": "2026-01-01T00:00:00Z",
            },
        )
        with pytest.raises(RuntimeError, match=r"was stopped .*next attempt"):
            _run(connector.create(task_template=template, output_prefix=prefix, inputs=None))
        stub.assert_no_pending_responses()


def _sagemaker_processing(prefix: str) -> tuple[Any, Any]:
    """The plugin's processing connector as the service registers it, and a rendered template of it."""
    import cdao_connectors.service  # noqa: F401, PLC0415
    from flytekit.extend.backend.base_connector import ConnectorRegistry  # noqa: PLC0415
    from flytekit.extend.backend.utils import render_task_template  # noqa: PLC0415
    from flytekit.models.core.identifier import Identifier, ResourceType  # noqa: PLC0415
    from flytekit.models.task import TaskTemplate  # noqa: PLC0415

    task_type = "sagemaker-processing-task"
    base = serialize(emr_tasks.on_cluster)
    custom = {"execution_role_arn": "arn:aws:iam::123456789012:role/sm", "region": REGION}
    template = render_task_template(
        TaskTemplate(
            Identifier(ResourceType.TASK, "ml", "development", "t.again", "v1"),
            task_type,
            base.metadata,
            base.interface,
            custom,
            container=base.container,
        ),
        prefix,
    )
    return ConnectorRegistry.get_connector(task_type), template


def test_a_sagemaker_job_whose_check_is_throttled_fails_the_attempt_and_is_left_to_the_sweep(aws_env):
    """A job the plugin's create adopted (SageMaker's ``ResourceInUse`` for its name) is described
    (is it a stopped one? whose is it?). Answered unchecked, it could be another attempt's job,
    which that attempt's sweep would stop while propeller follows it; so a throttled Describe fails
    the CreateTask (the attempt; propeller starts the next), and the attempt stays in the sweep
    index, which stops the job should it be this attempt's own (launcher.go, plugin.go ``Delete`` at
    flyteplugins/v1.16.8: nothing else would). botocore's Stubber plays SageMaker, its answers
    checked against the service model."""
    from botocore.stub import Stubber  # noqa: PLC0415
    from cdao_connector_resources import SWEEP_QUEUE_ATTRIBUTE  # noqa: PLC0415
    from cdao_connectors._attempts import attempt_item  # noqa: PLC0415
    from cdao_connectors._common import attempt_seed  # noqa: PLC0415

    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    connector, template = _sagemaker_processing(prefix)
    with Stubber(connector.backend.aws("sagemaker", REGION)) as stub:
        stub.add_client_error("create_processing_job", "ResourceInUse", "Job name must be unique")
        stub.add_client_error("describe_processing_job", "ThrottlingException", "Rate exceeded", http_status_code=400)
        with pytest.raises(Exception, match="Rate exceeded"):
            _run(connector.create(task_template=template, output_prefix=prefix, inputs=None))
        stub.assert_no_pending_responses()
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=os.environ["CDAO_ATTEMPT_TABLE"],
        Key={"attempt": {"S": attempt_item("sagemaker", attempt_seed(template, prefix, None))}},
        ConsistentRead=True,
    )["Item"]
    assert SWEEP_QUEUE_ATTRIBUTE in item, item


# --- A repeat and a give-up's cancel, for the backends that deduplicate by key, token or name ---
#
# Codeweave's idempotency key, EMR Serverless's clientToken and SageMaker's unique names answer a
# repeated CreateTask of an attempt (propeller lost its state) the attempt's job, even while the
# give-up of the first CreateTask is cancelling it: nothing but the attempt table orders the two.
# Each scenario holds the first create's AWS (or Codeweave) call past a CreateTask deadline cut to
# 0.3 s, releases it, then holds the give-up's cancel once it is reached and sends the repeat then;
# events, not sleeps, order every step.


async def _repeat_while_the_give_up_cancels(monkeypatch, create, release_create, connector) -> Any:
    """The repeat's answer (or its AttemptAbandoned) when it arrives while the give-up's cancel
    (``connector.delete``, the DeleteTask path) is under way; the cancel is let go after it."""
    from cdao_connectors import _deadlines  # noqa: PLC0415
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415
    from cdao_connectors._backends import BackendDeadlineExceeded  # noqa: PLC0415

    cancel = connector.delete
    reached, may_go, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def held_cancel(resource_meta, **kwargs):
        reached.set()
        await may_go.wait()
        try:
            return await cancel(resource_meta, **kwargs)
        finally:
            done.set()

    monkeypatch.setattr(connector, "delete", held_cancel)
    monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 1.3)
    with pytest.raises(BackendDeadlineExceeded, match="propeller does not re-send a failed CreateTask"):
        await create()
    monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 30.0)
    release_create()
    await asyncio.wait_for(reached.wait(), 10)
    try:
        outcome = await create()
    except AttemptAbandoned as abandoned:
        outcome = abandoned
    may_go.set()
    await asyncio.wait_for(done.wait(), 10)
    return outcome


def _answered_then_cancelled(outcome: Any, cancelled: bool) -> str:
    """'' when the repeat's outcome and the job's fate agree: an error (AttemptAbandoned) and the
    job cancelled, or the job answered and running on; else what went wrong."""
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415

    if isinstance(outcome, AttemptAbandoned):
        return "" if cancelled else "the repeat was refused but the job runs on, unowned"
    return "the repeat was answered a job that the give-up then cancelled" if cancelled else ""


@pytest.fixture
def queued_codeweave(aws_env, tmp_path, monkeypatch) -> Iterator[Any]:
    """The Codeweave fake with jobs that stay QUEUED (waiting for GPUs) until cancelled."""
    from codeweave_fake import CodeweaveFake, serving_codeweave  # noqa: PLC0415

    provision_attempt_table(REGION)
    fake = CodeweaveFake(api_key="cw-attempts-key", base_env={}, run_jobs=False)
    with serving_codeweave(fake, tmp_path, monkeypatch):
        yield fake


def _held_first_codeweave_create(monkeypatch) -> threading.Event:
    """Holds the first CreateJob until the returned event is set; later ones go through."""
    from cdao_connectors.codeweave.contract import CodeweaveClient  # noqa: PLC0415

    create_job, release, calls = CodeweaveClient.create_job, threading.Event(), []

    def held(self, spec):
        calls.append(spec)
        if len(calls) == 1:
            assert release.wait(10), "the held CreateJob was never released"
        return create_job(self, spec)

    monkeypatch.setattr(CodeweaveClient, "create_job", held)
    return release


def _codeweave_create(connector):
    import cw_tasks  # noqa: PLC0415

    template = serialize(cw_tasks.scale)
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"cw-again-{uuid.uuid4().hex[:6]}"))
    return lambda: connector.create(template, prefix, None, meta)


def test_a_codeweave_repeat_while_the_give_up_cancels_is_refused_not_answered(queued_codeweave, monkeypatch):
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415
    from cdao_connectors.codeweave.connector import CodeweaveConnector  # noqa: PLC0415

    connector = CodeweaveConnector()
    release = _held_first_codeweave_create(monkeypatch)
    outcome = _run_and_return(
        _repeat_while_the_give_up_cancels(monkeypatch, _codeweave_create(connector), release.set, connector)
    )
    (job,) = queued_codeweave.jobs.values()
    assert not _answered_then_cancelled(outcome, job.status == "CANCELLED"), (outcome, job.status)
    assert isinstance(outcome, AttemptAbandoned)  # the mark comes before the cancel


def test_a_create_without_the_attempt_table_names_it_and_starts_no_job(queued_codeweave, monkeypatch):
    """The table is needed for every connector's CreateTask now; its absence is found before a job exists."""
    from cdao_connectors.codeweave.connector import CodeweaveConnector  # noqa: PLC0415
    from cdao_connectors.config import ConnectorConfigError  # noqa: PLC0415

    monkeypatch.delenv("CDAO_ATTEMPT_TABLE")
    with pytest.raises(ConnectorConfigError, match="CDAO_ATTEMPT_TABLE"):
        _run_and_return(_codeweave_create(CodeweaveConnector())())
    assert queued_codeweave.jobs == {}


def test_a_codeweave_repeat_answered_before_the_give_up_marks_keeps_its_job(queued_codeweave, monkeypatch):
    """The other order: the repeat is answered first; the give-up then marks nothing and cancels nothing."""
    from cdao_connectors import _backends, _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import BackendDeadlineExceeded  # noqa: PLC0415
    from cdao_connectors.codeweave.connector import CodeweaveConnector  # noqa: PLC0415

    connector = CodeweaveConnector()
    release = _held_first_codeweave_create(monkeypatch)
    create = _codeweave_create(connector)
    mark_reached, repeat_answered = _hold_the_give_ups_mark_until_the_repeat_is_answered(monkeypatch)

    async def scenario():
        monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 1.3)
        with pytest.raises(BackendDeadlineExceeded):
            await create()
        monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", 30.0)
        release.set()
        assert await asyncio.get_running_loop().run_in_executor(None, mark_reached.wait, 10), "no abandon mark"
        again = await create()
        repeat_answered.set()
        loop = asyncio.get_running_loop()  # earlier tests' loops may have left theirs behind
        await asyncio.wait_for(asyncio.gather(*[t for t in _backends._LATE_CANCELS if t.get_loop() is loop]), 10)
        return again

    again = _run_and_return(scenario())
    job = queued_codeweave.jobs[again.job_id]
    assert job.status == "QUEUED", "the job answered to the repeat was cancelled"


def test_an_emr_serverless_repeat_while_the_give_up_cancels_is_refused_not_answered(transient_emr_env, monkeypatch):
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415
    from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector  # noqa: PLC0415
    from flytekitplugins.awsemrserverless.boto_handler import EMRServerlessHandler  # noqa: PLC0415
    from moto.emrserverless import models as moto_emrs  # noqa: PLC0415

    monkeypatch.setattr(moto_emrs, "JOB_STATUS", "SUBMITTED")  # EMR Serverless starts a run SUBMITTED
    started = moto_emrs.EMRServerlessBackend.start_job_run

    def idempotent(backend, application_id, client_token, *args, **kwargs):
        # clientToken is an idempotencyToken (botocore emr-serverless/2021-07-13): a token seen
        # before answers its run. moto stores the token without deduplicating.
        seen = [r for r in backend.job_runs.get(application_id, []) if r.client_token == client_token]
        return seen[0] if seen else started(backend, application_id, client_token, *args, **kwargs)

    monkeypatch.setattr(moto_emrs.EMRServerlessBackend, "start_job_run", idempotent)
    start_job_run, release, calls = EMRServerlessHandler.start_job_run, asyncio.Event(), []

    async def held(self, *args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            await asyncio.wait_for(release.wait(), 10)
        return await start_job_run(self, *args, **kwargs)

    monkeypatch.setattr(EMRServerlessHandler, "start_job_run", held)
    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-race-spark", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"emrs-race-{uuid.uuid4().hex[:6]}"))
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(emr_tasks.on_serverless, prefix, rows=1)
    connector = IdempotentEMRServerlessConnector()

    outcome = _run_and_return(
        _repeat_while_the_give_up_cancels(
            monkeypatch, lambda: connector.create(template, lm, meta, output_prefix=prefix), release.set, connector
        )
    )
    (run,) = moto_emrs.emrserverless_backends["123456789012"][REGION].job_runs[app]
    assert not _answered_then_cancelled(outcome, run.state == "CANCELLED"), (outcome, run.state)
    assert isinstance(outcome, AttemptAbandoned)


def test_a_sagemaker_repeat_while_the_give_up_stops_is_refused_not_answered(aws_env, monkeypatch):
    """The plugin's pythonic processing job; botocore's Stubber plays SageMaker (moto replaces a job
    of the same name instead of refusing it), its answers checked against the service model."""
    from botocore.stub import Stubber  # noqa: PLC0415
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415

    provision_attempt_table(REGION)
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    connector, template = _sagemaker_processing(prefix)
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"sm-race-{uuid.uuid4().hex[:6]}"))
    call, release, creates = connector._call, asyncio.Event(), []

    async def held(*args, **kwargs):
        if kwargs.get("method") == "create_processing_job":
            creates.append(kwargs)
            if len(creates) == 1:
                await asyncio.wait_for(release.wait(), 10)
        return await call(*args, **kwargs)

    monkeypatch.setattr(connector, "_call", held)

    def create():
        return connector.create(task_template=template, output_prefix=prefix, inputs=None, task_execution_metadata=meta)

    described = {
        "ProcessingJobName": "j",
        "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/j",
        "ProcessingJobStatus": "InProgress",
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
        },
        "AppSpecification": {"ImageUri": IMAGE},
        "CreationTime": "2026-01-01T00:00:00Z",
    }
    stopped = []
    with Stubber(connector.backend.aws("sagemaker", REGION)) as stub:
        # The first create, late: the job is created (a new job, not described).
        stub.add_response("create_processing_job", {"ProcessingJobArn": described["ProcessingJobArn"]})
        # The repeat, while the give-up's stop is held, calls nothing: the attempt is marked
        # abandoned and its record before the create refuses it (AttemptLedger.intend).
        # The give-up's stop, let go after the repeat.
        stub.add_response("stop_processing_job", {})
        original_stop = connector.delete

        async def noting_stop(resource_meta, **kwargs):
            stopped.append(resource_meta.job_name)
            return await original_stop(resource_meta, **kwargs)

        monkeypatch.setattr(connector, "delete", noting_stop)
        outcome = _run_and_return(
            _repeat_while_the_give_up_cancels(
                monkeypatch,
                create,
                release.set,
                connector,
            )
        )
        stub.assert_no_pending_responses()
    assert not _answered_then_cancelled(outcome, bool(stopped)), (outcome, stopped)
    assert isinstance(outcome, AttemptAbandoned)


def test_the_ledger_orders_the_answers_of_a_deduplicating_backend_against_a_give_up(ledger_table):
    """An attempt whose job the API deduplicates: each CreateTask answering it records its start.
    Propeller follows the last CreateTask it sent, so a give-up marks the attempt abandoned (and
    cancels) only when no CreateTask that started after it was answered the job: its own answer,
    recorded by a create that finished after the deadline, and an earlier one, lost to propeller,
    do not count. Once marked, no CreateTask is answered."""
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415

    ledger = _ledger(ledger_table)
    alone, repeated, superseded, refused = (f"cw/{uuid.uuid4().hex}" for _ in range(4))
    ledger.answer(alone, 100.0)
    assert ledger.abandon(alone, started_at=100.0) is True
    with pytest.raises(AttemptAbandoned, match=alone):
        ledger.answer(alone, 200.0)

    ledger.answer(repeated, 200.0)  # the repeat, answered first
    ledger.answer(repeated, 100.0)  # the first create, finishing late: recorded nothing later than the repeat
    assert ledger.abandon(repeated, started_at=100.0) is False
    ledger.answer(repeated, 300.0)  # still answered: the job runs on

    ledger.answer(superseded, 100.0)  # answered, then lost with propeller's state
    assert ledger.abandon(superseded, started_at=200.0) is True  # the repeat gave up: its error is recorded

    assert ledger.abandon(refused, started_at=100.0) is True  # the create answered nothing yet
    with pytest.raises(AttemptAbandoned, match=refused):
        ledger.answer(refused, 100.0)
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=ledger_table, Key={"attempt": {"S": refused}}, ConsistentRead=True
    )["Item"]
    assert float(item["expires_at"]["N"]) > time.time() + 30 * 24 * 3600  # DynamoDB's TTL deletes it


def test_a_sagemaker_endpoint_repeat_while_the_give_up_deletes_it_is_refused_not_answered(aws_env, monkeypatch):
    """The plugin's request-based tasks name their job or endpoint in the request, and take
    SageMaker's "Cannot create already existing" for it as theirs (flytekitplugins-awssagemaker
    ``awssagemaker_inference/connector.py`` ``create``, 1.16.31): a repeat while the give-up deletes
    the endpoint must not be answered it. botocore's Stubber plays SageMaker."""
    from botocore.stub import Stubber  # noqa: PLC0415
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415
    from cdao_connectors._common import attempt_seed, attempt_tag_value  # noqa: PLC0415
    from flytekit.extend.backend.base_connector import ConnectorRegistry  # noqa: PLC0415
    from flytekit.models.core.identifier import Identifier, ResourceType  # noqa: PLC0415
    from flytekit.models.task import TaskTemplate  # noqa: PLC0415

    base = serialize(emr_tasks.on_cluster)
    name = f"ep-race-{uuid.uuid4().hex[:6]}"
    template = TaskTemplate(
        Identifier(ResourceType.TASK, "ml", "development", "t.endpoint", "v1"),
        "sagemaker-endpoint",
        base.metadata,
        base.interface,
        {"config": {"EndpointName": name, "EndpointConfigName": name}, "region": REGION},
    )
    connector = ConnectorRegistry.get_connector("sagemaker-endpoint")
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"ep-race-{uuid.uuid4().hex[:6]}"))
    call, release, creates, deleted = connector._call, asyncio.Event(), [], []

    async def held(*args, **kwargs):
        method = kwargs.get("method", args[0] if args else None)
        if method == "create_endpoint":
            creates.append(kwargs)
            if len(creates) == 1:
                await asyncio.wait_for(release.wait(), 10)
        if method == "delete_endpoint":
            deleted.append(kwargs)
        return await call(*args, **kwargs)

    monkeypatch.setattr(connector, "_call", held)

    def create():
        return connector.create(task_template=template, output_prefix=prefix, inputs=None, task_execution_metadata=meta)

    with Stubber(connector.backend.aws("sagemaker", REGION)) as stub:
        arn = f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{name}"
        stub.add_response("create_endpoint", {"EndpointArn": arn})  # the first create, late
        # The repeat, while the give-up's delete is held, calls nothing: the attempt is marked
        # abandoned and its record before the create refuses it (AttemptLedger.intend). The
        # give-up's delete, let go after the repeat, checks the endpoint is the attempt's (its
        # flyte-attempt tag: _plugin_clients ``_made_elsewhere``), then deletes it.
        described = {
            "EndpointName": name,
            "EndpointArn": arn,
            "EndpointStatus": "Creating",
            "CreationTime": "2026-12-01T00:00:00Z",
            "LastModifiedTime": "2026-12-01T00:00:00Z",
        }
        stub.add_response("describe_endpoint", described)
        own = attempt_tag_value(attempt_seed(template, prefix, meta))
        stub.add_response("list_tags", {"Tags": [{"Key": "flyte-attempt", "Value": own}]})
        stub.add_response("delete_endpoint", {})
        outcome = _run_and_return(_repeat_while_the_give_up_cancels(monkeypatch, create, release.set, connector))
        stub.assert_no_pending_responses()
    assert not _answered_then_cancelled(outcome, bool(deleted)), (outcome, deleted)
    assert isinstance(outcome, AttemptAbandoned)


def test_a_batch_transform_repeat_while_the_give_up_stops_it_is_refused_not_answered(aws_env, monkeypatch):
    """The batch-transform connector's unique job name: a repeat takes "already exists" as its job
    (its Describe still InProgress while the stop is held). botocore's Stubber plays SageMaker."""
    from botocore.stub import Stubber  # noqa: PLC0415
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415
    from cdao_connectors.sagemaker.connector import BatchTransformConnector  # noqa: PLC0415
    from cdao_sdk import sagemaker_batch_transform_task  # noqa: PLC0415
    from flytekit.types.file import FlyteFile  # noqa: PLC0415

    role = "arn:aws:iam::123456789012:role/sagemaker-exec"
    score = sagemaker_batch_transform_task(
        "tests.score_rows", execution_role_arn=role, region=REGION, output_s3_path="s3://flyte-data/transform"
    )
    template = serialize(score)
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    files = {"model": FlyteFile("s3://flyte-data/m/model.tar.gz"), "data": FlyteFile("s3://flyte-data/m/rows.csv")}
    inputs = write_inputs(score, prefix, **files)
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"tr-race-{uuid.uuid4().hex[:6]}"))
    connector = BatchTransformConnector()
    sagemaker = connector.backend.aws("sagemaker", REGION)
    create_transform_job, release, creates = sagemaker.create_transform_job, threading.Event(), []

    def held(**request):
        creates.append(request)
        if len(creates) == 1:
            assert release.wait(10), "the held CreateTransformJob was never released"
        return create_transform_job(**request)

    monkeypatch.setattr(sagemaker, "create_transform_job", held, raising=False)
    stopped = []
    stop_transform_job = sagemaker.stop_transform_job

    def noting_stop(**request):
        stopped.append(request)
        return stop_transform_job(**request)

    monkeypatch.setattr(sagemaker, "stop_transform_job", noting_stop, raising=False)
    arn = "arn:aws:sagemaker:us-east-1:123456789012:transform-job/j"
    with Stubber(sagemaker) as stub:
        # The first create, late.
        stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/j"})
        stub.add_response("create_transform_job", {"TransformJobArn": arn})
        # The repeat, while the give-up's stop is held, calls nothing: the attempt is marked
        # abandoned and its record before the create refuses it (AttemptLedger.intend).
        stub.add_response("stop_transform_job", {})  # the give-up's stop, let go after the repeat
        outcome = _run_and_return(
            _repeat_while_the_give_up_cancels(
                monkeypatch, lambda: connector.create(template, prefix, inputs, meta), release.set, connector
            )
        )
        stub.assert_no_pending_responses()
    assert not _answered_then_cancelled(outcome, bool(stopped)), (outcome, stopped)
    assert isinstance(outcome, AttemptAbandoned)


# A repeated CreateTask of an attempt (propeller lost its state) that took over the recorded Batch job
# or EMR cluster, then gives up itself (its deadline passed, or propeller cancelled the RPC): its
# error is the answer propeller records, so it fails the attempt and starts the next one. The job
# must be cancelled then, unless a CreateTask that started after the one giving up was answered it.


async def _repeat_takes_over_and_gives_up(monkeypatch, connector, template, prefix, meta) -> tuple[Any, bool]:
    """The first CreateTask's answer (lost to propeller) and whether the give-up of the repeat,
    which took the job over and was then cancelled by propeller (create_within_deadline treats a
    cancelled RPC as its deadline), cancelled it. Events order the steps: the repeat is held in the
    ledger until propeller has cancelled it, the give-up's cancel is awaited to its end."""
    from cdao_connectors._attempts import AttemptLedger  # noqa: PLC0415

    first = await connector.create(template, prefix, None, meta)
    entered, release = threading.Event(), threading.Event()
    once = AttemptLedger.once

    def held_once(self, *args, **kwargs):
        entered.set()
        assert release.wait(10), "the repeat was not released"
        return once(self, *args, **kwargs)

    monkeypatch.setattr(AttemptLedger, "once", held_once)
    cancel, gave_up = connector.delete, _note_give_ups(monkeypatch)
    cancelled = []

    async def noting_delete(resource_meta, **kwargs):
        cancelled.append(resource_meta)
        return await cancel(resource_meta, **kwargs)

    monkeypatch.setattr(connector, "delete", noting_delete)
    repeat = asyncio.ensure_future(connector.create(template, prefix, None, meta))
    assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
    repeat.cancel()  # propeller gave up on the repeat's CreateTask
    with pytest.raises(asyncio.CancelledError):
        await repeat
    release.set()
    assert await asyncio.get_running_loop().run_in_executor(None, gave_up.wait, 10)
    return first, bool(cancelled)


def test_a_batch_repeat_that_took_over_the_job_and_gives_up_terminates_it(aws_env, moto_endpoint, monkeypatch):
    from cdao_connectors.aws_batch.connector import BatchConnector  # noqa: PLC0415
    from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415

    for k, v in {**provision_batch(moto_endpoint, REGION), **provision_attempt_table(REGION)}.items():
        monkeypatch.setenv(k, v)
    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"took-over-{uuid.uuid4().hex[:6]}"))
    first, cancelled = _run_and_return(
        _repeat_takes_over_and_gives_up(
            monkeypatch,
            BatchConnector(),
            serialize(batch_tasks.preprocess),
            f"s3://flyte-data/m/{uuid.uuid4().hex}",
            meta,
        )
    )
    assert cancelled, "the job the repeat took over runs on after its CreateTask failed the attempt"
    assert _batch_jobs()[first.job_id].stop


def test_an_emr_repeat_that_took_over_the_cluster_and_gives_up_terminates_it(transient_emr_env, monkeypatch):
    from cdao_connectors.emr.connector import EMRConnector  # noqa: PLC0415
    from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415

    meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"took-over-{uuid.uuid4().hex[:6]}"))
    first, cancelled = _run_and_return(
        _repeat_takes_over_and_gives_up(
            monkeypatch,
            EMRConnector(),
            serialize(emr_tasks.on_transient),
            f"s3://flyte-data/m/{uuid.uuid4().hex}",
            meta,
        )
    )
    assert cancelled, "the cluster the repeat took over runs on after its CreateTask failed the attempt"
    assert _emr_clusters()[first.cluster_id].state == "TERMINATED"


def test_the_ledger_lets_only_the_latest_create_task_that_took_over_a_job_give_it_up(ledger_table):
    """Batch and EMR's ledger calls (once, then abandon on a give-up) ordered by the CreateTasks'
    starts: the first create's give-up (its answer lost to propeller) leaves the job to the repeat
    that took it over; that repeat's own give-up marks it, and no later CreateTask is answered it."""
    from cdao_connectors._attempts import AttemptAbandoned  # noqa: PLC0415

    attempt = f"batch/{uuid.uuid4().hex}"
    assert _ledger(ledger_table).once(attempt, lambda: {"job_id": "job-A"}, lambda: None, 1, started_at=100.0) == {
        "job_id": "job-A"
    }
    taken_over = _ledger(ledger_table).once(
        attempt, lambda: pytest.fail("second job"), lambda: None, 1, started_at=200.0
    )
    assert taken_over == {"job_id": "job-A"}
    assert _ledger(ledger_table).abandon(attempt, started_at=100.0) is False
    assert _ledger(ledger_table).abandon(attempt, started_at=200.0) is True
    with pytest.raises(AttemptAbandoned, match=attempt):
        _ledger(ledger_table).once(attempt, lambda: pytest.fail("second job"), lambda: None, 1, started_at=300.0)


# A replica shut down (HPA scale-down, a rollout: Kubernetes sends SIGTERM, then SIGKILL after the
# Deployment's terminationGracePeriodSeconds) while a late cancel waits for its next try.


def _cancelled_rpc(target: str, template, prefix: str, inputs, meta, *, timeout: float) -> None:
    """A CreateTask that propeller stops waiting for after ``timeout`` seconds (its RPC's deadline)."""
    from flytekit.extend.backend.utils import render_task_template  # noqa: PLC0415

    request = agent_pb2.CreateTaskRequest(
        inputs=inputs.to_flyte_idl(),
        template=render_task_template(template, prefix).to_flyte_idl(),
        output_prefix=prefix,
        task_execution_metadata=meta,
    )
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as failed:
        AsyncAgentServiceStub(channel).CreateTask(request, timeout=timeout)
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def _wait_until(predicate, process: ConnectorProcess, timeout: float = 30.0) -> None:
    give_up = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < give_up, f"condition not met in time:\n{process.log()}"
        time.sleep(0.05)


def test_a_replica_shut_down_finishes_its_create_refuses_new_ones_and_tries_its_pending_cancels_once_more(
    aws_env, moto_endpoint
):
    """A real ``pyflyte serve connector`` receives SIGTERM (an HPA scale-down, a rollout) while two
    late cancels wait on a throttled TerminateJob for their next try and a Batch CreateTask's
    SubmitJob is held by AWS, AWS accepting TerminateJob again. Within the Deployment's grace period:

    * the create under way finishes and its CreateTask is answered its job, which runs on, followed
      by propeller (before, the process ended at once: the CreateTask failed UNAVAILABLE and the job
      ran with nobody to stop it, nothing logged);
    * a CreateTask arriving during the shutdown starts no job and is answered an error naming the
      shutdown (propeller fails that attempt: every CreateTask error is ``PhaseInfoRetryableFailure``,
      flyteplugins ``internal/webapi/launcher.go`` ``launch`` at flyteplugins/v1.16.8), while a
      GetTask is still served;
    * each late job is terminated (tried again at once) or logged with its id as to be stopped by
      hand (a try botocore's adaptive rate limiter still holds past the DeleteTask deadline);

    and the process then ends as SIGTERM ends it. Takes ~30 s (the process's start ~7 s, two creates
    held past their RPC's deadline ~3 s each, the first refused tries ~9 s, the held SubmitJob 3 s):
    only a process of its own can be sent SIGTERM (the replicas fixture serves the other tests), and
    a late cancel waits for its next try only once a try was refused."""
    import signal  # noqa: PLC0415

    from propeller import PHASE, get_task  # noqa: PLC0415
    from throttling_proxy import ThrottlingProxy  # noqa: PLC0415

    proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
    proxy.throttle_paths = ("/v1/submitjob",)
    proxy.refuse_paths = ("/v1/terminatejob",)
    env = {**provision_batch(moto_endpoint, REGION), **provision_attempt_table(REGION)}
    process = ConnectorProcess({**env, "AWS_ENDPOINT_URL_BATCH": proxy.url})
    template = serialize(batch_tasks.preprocess)

    def create(execution: str) -> bytes:
        prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
        inputs = write_inputs(batch_tasks.preprocess, prefix, path="s3://x/raw.csv")
        with grpc.insecure_channel(process.target) as channel:
            return create_task(AsyncAgentServiceStub(channel), template, prefix, inputs, execution_metadata(execution))

    answers: dict[str, Any] = {}

    def create_in_flight() -> None:
        try:
            answers["in flight"] = json.loads(create(f"in-flight-{uuid.uuid4().hex[:6]}"))
        except grpc.RpcError as exc:
            answers["in flight"] = exc

    def submits() -> int:
        return sum(path == "/v1/submitjob" for _, path in proxy.received)

    try:
        process.wait_ready()
        followed = create(f"followed-{uuid.uuid4().hex[:6]}")  # a job propeller follows: its GetTasks go on
        before = set(_batch_jobs())
        execution = f"shut-down-{uuid.uuid4().hex[:6]}"
        for retry in (0, 1):
            prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
            proxy.throttle_next = 4  # create_once backs off 0.2 + 0.4 + 0.8 + 1.6 s: SubmitJob lands after the RPC
            inputs = write_inputs(batch_tasks.preprocess, prefix, path="s3://x/raw.csv")
            _cancelled_rpc(
                process.target, template, prefix, inputs, execution_metadata(execution, retry=retry), timeout=1.0
            )
            _wait_until(lambda n=retry + 1: len(set(_batch_jobs()) - before) == n, process)
        # Each late cancel was refused (botocore's own retries included) and waits for its next try.
        _wait_until(lambda: process.log(None).count("refused for now, trying again") >= 2, process)
        late = {i: j for i, j in _batch_jobs().items() if i not in before}
        assert len(late) == 2
        proxy.refuse_paths = ()  # AWS accepts TerminateJob again: only a try made now stops the jobs
        proxy.delay_paths, proxy.delay_seconds = ("/v1/submitjob",), 3.0
        held = submits()
        in_flight = threading.Thread(target=create_in_flight)
        in_flight.start()
        _wait_until(lambda: submits() > held, process)
        process._process.send_signal(signal.SIGTERM)
        # Logged by the shutdown the handler started, which refused creates first.
        _wait_until(lambda: "SIGTERM: refusing new creates" in process.log(None), process)
        with pytest.raises(grpc.RpcError) as refused:
            create(f"after-sigterm-{uuid.uuid4().hex[:6]}")
        with grpc.insecure_channel(process.target) as channel:
            served = get_task(AsyncAgentServiceStub(channel), BATCH_TASK_TYPE, followed)
        in_flight.join(60)
        grace = float(
            yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        )
        code = process._process.wait(grace)
        log = process.log(None)
    finally:
        process.stop()
        proxy.stop()
    assert code == -signal.SIGTERM, log
    dropped = [i for i, job in late.items() if not job.stop and not (i in log and "stopped by hand" in log)]
    assert dropped == [], f"jobs neither terminated nor logged at shutdown: {dropped}\n{log[-4000:]}"
    assert "shutting down" in refused.value.details(), refused.value.details()
    assert served.phase != PHASE.UNDEFINED, served  # answered the job's status, not an RPC error
    answer = answers["in flight"]
    assert isinstance(answer, dict), f"the CreateTask in flight at SIGTERM was not answered its job: {answer}\n{log}"
    (job,) = [j for i, j in _batch_jobs().items() if i not in before and i not in late]  # none for the refused one
    assert answer["job_id"] == job.job_id and not job.stop, answer
    assert "finished during the shutdown" in log, log


def test_a_shutdown_tries_each_waiting_late_cancel_now_and_names_each_job_still_running(monkeypatch, caplog):
    """finish_shutdown, on create_within_deadline itself (milliseconds): two late cancels
    throttled and waiting a minute for their next try are tried at once; the one AWS refuses again
    is not retried (the process is going away) but logged with its job and returned, the other
    stopped; a create still running after its CreateTask gave up is waited for, and the job it
    starts stopped. The real process's SIGTERM is the test above."""
    from cdao_connectors import _backends, _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import (  # noqa: PLC0415
        BackendDeadlineExceeded,
        create_within_deadline,
        finish_shutdown,
    )

    monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", _deadlines.MARGIN_SECONDS + 0.05)
    monkeypatch.setattr(_backends, "LATE_CANCEL_FIRST_DELAY", 60.0)
    monkeypatch.setattr(_backends, "_refusing_creates", False)  # the shutdown sets it for the process's life
    caplog.set_level("WARNING", logger="cdao_connectors._backends")
    tries: list[str] = []
    refusing = {"job-late-1", "job-late-2", "job-of-a-closed-loop"}

    async def terminate(job: str) -> None:
        tries.append(job)
        if job in refusing:
            raise _throttled("TerminateJob")

    async def leave_a_cancel_waiting() -> None:
        # Another event loop's late cancel, left waiting when its loop closes (an earlier test of the
        # same process): a shutdown must neither wait for it nor report it.
        release = asyncio.Event()

        async def create() -> str:
            await release.wait()
            return "job-of-a-closed-loop"

        with pytest.raises(BackendDeadlineExceeded):
            await create_within_deadline(create(), terminate, backend="AWS Batch")
        release.set()
        await _until(lambda: tries == ["job-of-a-closed-loop"])

    _run_and_return(leave_a_cancel_waiting())
    tries.clear()

    async def scenario() -> tuple[list[Any], list[str]]:
        released = {job: asyncio.Event() for job in ("job-late-1", "job-late-2", "job-late-3")}

        for job, release in released.items():

            async def create(job: str = job, release: asyncio.Event = release) -> str:
                await release.wait()
                return job

            with pytest.raises(BackendDeadlineExceeded):
                await create_within_deadline(create(), terminate, backend="AWS Batch")
        released["job-late-1"].set()
        released["job-late-2"].set()
        await _until(lambda: len(tries) == 2)  # each refused once, now waiting 60 s
        refusing.discard("job-late-2")
        finishing = asyncio.ensure_future(finish_shutdown(5.0))
        await _until(lambda: len(tries) == 4)  # both tried again at once
        released["job-late-3"].set()
        return await asyncio.wait_for(finishing, 5), sorted(tries)  # tries as the shutdown ended

    assert _run_and_return(scenario()) == (
        ["job-late-1"],
        ["job-late-1", "job-late-1", "job-late-2", "job-late-2", "job-late-3"],
    )
    (by_hand,) = {r.getMessage() for r in caplog.records if "stopped by hand" in r.getMessage()}
    assert "job-late-1" in by_hand


@pytest.fixture
def scaled_shutdown(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A shutdown run on create_within_deadline itself: creates accepted until it begins, the
    give-up's cancel given 0.5 s of the budget (the DeleteTask deadline), its warnings captured."""
    from cdao_connectors import _backends, _deadlines  # noqa: PLC0415

    monkeypatch.setattr(_backends, "_refusing_creates", False)
    monkeypatch.setattr(_deadlines, "DELETE_TASK_SECONDS", 0.5)
    caplog.set_level("WARNING", logger="cdao_connectors._backends")


def test_a_shutdown_answers_the_creates_that_finish_and_gives_up_the_rest_cancelling_their_jobs(
    scaled_shutdown, caplog
):
    """finish_shutdown, on create_within_deadline itself (milliseconds; the real process's SIGTERM
    mid-create is the test above): of two creates in flight, the one that finishes within the
    creates' share of the budget answers its CreateTask its job, untouched; the other's CreateTask
    gives up at that share's end with an error naming the shutdown, and once it starts its job
    the job is cancelled, inside the budget. A create handed in after the shutdown began never runs
    and is refused with a ReplicaShuttingDown error naming the backend."""
    from cdao_connectors._backends import (  # noqa: PLC0415
        ReplicaShuttingDown,
        create_within_deadline,
        finish_shutdown,
    )

    cancelled: list[str] = []
    ran: list[str] = []

    async def cancel(job: str) -> None:
        cancelled.append(job)

    async def scenario() -> tuple[Any, Any, Any]:
        finishes, outlasts = asyncio.Event(), asyncio.Event()

        async def create(job: str, release: asyncio.Event) -> str:
            await release.wait()
            return job

        async def never_run() -> str:
            ran.append("job-after-sigterm")
            return "job-after-sigterm"

        answered = asyncio.ensure_future(create_within_deadline(create("job-answered", finishes), cancel, backend="B"))
        given_up = asyncio.ensure_future(create_within_deadline(create("job-given-up", outlasts), cancel, backend="B"))
        await asyncio.sleep(0.01)
        shutdown = asyncio.ensure_future(finish_shutdown(1.0))  # creates' share: 1.0 - 0.5 s
        await asyncio.sleep(0.1)
        finishes.set()
        refused = await asyncio.gather(create_within_deadline(never_run(), cancel, backend="B"), return_exceptions=True)
        results = await asyncio.gather(answered, given_up, return_exceptions=True)
        outlasts.set()  # the job appears after its CreateTask gave up
        await asyncio.wait_for(shutdown, 2)
        return results[0], results[1], refused[0]

    answer, give_up, refused = _run_and_return(scenario())
    assert answer == "job-answered"
    assert isinstance(give_up, ReplicaShuttingDown) and "shutting down" in str(give_up), give_up
    assert cancelled == ["job-given-up"]
    assert isinstance(refused, ReplicaShuttingDown) and str(refused).startswith("B: "), refused
    assert ran == []
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "answered 'job-answered'" in logged and "its CreateTask gives up" in logged, logged


def test_a_shutdown_gives_up_a_create_at_the_creates_share_so_that_its_jobs_cancel_ends_inside_the_budget(
    scaled_shutdown, caplog
):
    """finish_shutdown keeps the DeleteTask deadline of its budget for the cancel of a create it gives
    up: a create still running at ``budget - DELETE_TASK_SECONDS`` is given up then (its CreateTask
    answers the shutdown's error), and the job it starts right after is cancelled before the budget
    ends, so nothing is left running (before: nothing tested that share; waiting for the creates
    the whole budget left the cancel no time, and the job ran on, logged as to be stopped by hand).
    ~0.7 s: the budget is scaled to 1 s, a cancel taking 0.15 s."""
    from cdao_connectors._backends import (  # noqa: PLC0415
        ReplicaShuttingDown,
        create_within_deadline,
        finish_shutdown,
    )

    cancelled: list[str] = []

    async def cancel(job: str) -> None:
        await asyncio.sleep(0.15)  # a TerminateJob's round trip
        cancelled.append(job)

    async def scenario() -> tuple[Any, list[Any], float, float]:
        release = asyncio.Event()

        async def create() -> str:
            await release.wait()
            return "job-outlasting-the-share"

        in_flight = asyncio.ensure_future(create_within_deadline(create(), cancel, backend="B"))
        # The job appears as soon as its CreateTask gave up: only the time kept back can cancel it.
        in_flight.add_done_callback(lambda _: release.set())
        await asyncio.sleep(0.01)
        started = time.monotonic()
        shutdown = asyncio.ensure_future(finish_shutdown(1.0))
        (answer,) = await asyncio.gather(in_flight, return_exceptions=True)
        given_up_after = time.monotonic() - started
        left = await asyncio.wait_for(shutdown, 2)
        return answer, left, given_up_after, time.monotonic() - started

    answer, left, given_up_after, ended_after = _run_and_return(scenario())
    assert isinstance(answer, ReplicaShuttingDown) and "shutting down" in str(answer), answer
    assert given_up_after < 1.0 - 0.5 + 0.2, given_up_after  # at the creates' share, not the budget
    assert cancelled == ["job-outlasting-the-share"]
    assert left == [], left
    assert ended_after < 1.0 + 0.2, ended_after
    assert not [r for r in caplog.records if "stopped by hand" in r.getMessage()]


def _left_running_sample(backend: str) -> float | None:
    """``cdao_jobs_left_running_total`` for ``backend`` in this process's registry, as Prometheus
    scrapes it (None: not exported)."""
    from cdao_connectors import _metrics  # noqa: PLC0415
    from prometheus_client import REGISTRY  # noqa: PLC0415

    return REGISTRY.get_sample_value(f"{_metrics.JOBS_LEFT_RUNNING_NAME}_total", {"backend": backend})


def _left_running(backend: str) -> float:
    return _left_running_sample(backend) or 0.0


def test_every_job_a_shutdown_leaves_running_is_counted_once_for_its_backend(monkeypatch):
    """SIGTERM's give-ups (finish_shutdown, milliseconds): a create still running when the budget
    ends (its job, if it starts, runs with nobody to stop it), a late cancel whose last try is
    refused and one still under way at the end each add one to ``cdao_jobs_left_running_total``
    under their backend, which the platform's alert rule watches (before: a log line only). A job
    the shutdown stops is not counted, nor is a give-up counted again when its try ends later."""
    from cdao_connectors import _backends, _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import (  # noqa: PLC0415
        BackendDeadlineExceeded,
        create_within_deadline,
        finish_shutdown,
    )

    monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", _deadlines.MARGIN_SECONDS + 0.05)
    monkeypatch.setattr(_deadlines, "DELETE_TASK_SECONDS", 0.2)
    monkeypatch.setattr(_backends, "LATE_CANCEL_FIRST_DELAY", 60.0)
    monkeypatch.setattr(_backends, "_refusing_creates", False)
    backends = {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("create", "refused", "slow", "stopped")}
    before = {name: _left_running(b) for name, b in backends.items()}

    async def scenario() -> list[Any]:
        hung = asyncio.Event()
        slow_cancel = asyncio.Event()

        async def refuse(job: str) -> None:
            raise _throttled("TerminateJob")

        async def stop_slowly(job: str) -> None:
            await slow_cancel.wait()
            raise _throttled("TerminateJob")  # its try ends, refused, after the shutdown counted it

        async def stop(job: str) -> None:
            return None

        tries: list[str] = []

        async def refuse_once(job: str) -> None:
            tries.append(job)
            if len(tries) == 1:
                raise _throttled("TerminateJob")

        async def never_ends() -> str:
            await hung.wait()
            return "job-never-seen"

        async def job(name: str) -> str:
            return name

        # Late cancels waiting for their next try, each of another backend.
        for name, cancel in (("refused", refuse), ("slow", stop_slowly), ("stopped", refuse_once)):

            async def late(name: str = name) -> str:
                await asyncio.sleep(0.1)  # past the CreateTask's deadline
                return await job(f"job-{name}")

            with pytest.raises(BackendDeadlineExceeded):
                await create_within_deadline(late(), cancel, backend=backends[name])
        await asyncio.sleep(0.2)  # each tried (and refused) once, now waiting 60 s
        # The shutdown's own give-up: a create in flight that outlasts the whole budget.
        in_flight = asyncio.ensure_future(create_within_deadline(never_ends(), stop, backend=backends["create"]))
        await asyncio.sleep(0.01)
        left = await asyncio.wait_for(finish_shutdown(0.5), 2)
        await asyncio.gather(in_flight, return_exceptions=True)
        slow_cancel.set()  # the slow try ends after the shutdown, refused: not counted again
        hung.set()
        await asyncio.sleep(0.05)
        return left

    left = _run_and_return(scenario())
    counted = {name: _left_running(b) - before[name] for name, b in backends.items()}
    assert "job-refused" in left and "job-slow" in left, left
    assert counted == {"create": 1.0, "refused": 1.0, "slow": 1.0, "stopped": 0.0}, counted


def test_the_platforms_alert_fires_on_any_job_left_running_as_the_service_exports_it():
    """The platform's alert rule for jobs left running watches the counter the service exports, under
    the name prometheus_client gives a Counter (``<name>_total``, sampled here from the registry),
    by its ``backend`` label, and fires on any increase at once. The PrometheusRule itself is
    validated against its CRD's schema with the other rendered manifests (tests/platform)."""
    from cdao_connectors import _metrics  # noqa: PLC0415
    from prometheus_client import REGISTRY  # noqa: PLC0415

    rules_file = DEPLOYMENT.parents[2] / "observability" / "dashboards" / "alert-rules.yaml"
    rules = [r for g in yaml.safe_load(rules_file.read_text())["spec"]["groups"] for r in g["rules"]]
    (rule,) = [r for r in rules if r.get("alert") == "ConnectorJobLeftRunning"]
    _metrics.follow_jobs_left_running("a backend")
    exported = {s.name for m in REGISTRY.collect() if m.name == _metrics.JOBS_LEFT_RUNNING_NAME for s in m.samples}
    series = f"{_metrics.JOBS_LEFT_RUNNING_NAME}_total"
    assert series in exported, exported
    assert _metrics.JOBS_LEFT_RUNNING._labelnames == ("backend",)
    assert rule["expr"] == f"sum by (backend) (increase({series}[30m])) > 0", rule["expr"]
    assert "for" not in rule and "$labels.backend" in rule["annotations"]["summary"]


def test_every_served_backend_exports_its_jobs_left_running_from_zero():
    """``increase`` takes a series' first sample as its start (Prometheus querying functions), so a
    backend's count that first appeared at 1 would raise no alert: every backend a served connector
    runs on exports its count at 0 from the start."""
    from cdao_connectors._backends import Backend  # noqa: PLC0415
    from flytekit.extend.backend.base_connector import ConnectorRegistry  # noqa: PLC0415

    backends = {
        c.backend.name for c in ConnectorRegistry._REGISTRY.values() if isinstance(getattr(c, "backend", None), Backend)
    }
    assert len(backends) >= 5, backends  # Batch, EMR, EMR Serverless, Codeweave, SageMaker's
    assert {b for b in backends if _left_running_sample(b) is None} == set()
    # Another test may have counted a job of a served backend already; a backend made now has
    # nothing counted by anyone, so only its own start can have exported it.
    fresh = f"fresh backend {uuid.uuid4().hex}"
    Backend(fresh)
    assert _left_running_sample(fresh) == 0.0


def test_every_served_connector_refuses_a_create_once_its_replica_shuts_down(monkeypatch):
    """Every async connector the service registers (each backend: Batch, EMR steps and clusters,
    EMR Serverless, Codeweave, SageMaker's plugin jobs, endpoints and transforms) refuses a
    CreateTask once the shutdown began, before reading anything of it or calling its backend."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors._backends import ReplicaShuttingDown  # noqa: PLC0415
    from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry  # noqa: PLC0415

    monkeypatch.setattr(_backends, "_refusing_creates", True)
    served = [c for c in ConnectorRegistry._REGISTRY.values() if isinstance(c, AsyncConnectorBase)]
    assert len(served) >= 12, served  # the 5 CDAO task types and the plugins' (conftest imports the service)
    not_refused = []
    for connector in served:
        try:
            _run_and_return(connector.create(task_template=None, output_prefix="s3://x", task_execution_metadata=None))
        except ReplicaShuttingDown:
            continue
        except Exception as exc:  # read the template (None) or called its backend first
            not_refused.append((connector.name, exc))
        else:
            not_refused.append((connector.name, "created"))
    assert not_refused == []


# Seconds the connector container keeps serving (creates included) after its pod starts terminating,
# before its SIGTERM: propeller reaches the service through flytestdlib's `k8s://` resolver, which
# watches the Service's v1 Endpoints and routes to its `addresses` only (flytestdlib/v1.16.8
# resolver/k8s_resolver.go `resolve`); the endpoints controller drops a pod from them once it has a
# deletionTimestamp (kubernetes staging/src/k8s.io/endpointslice/util/controller_utils.go
# `ShouldPodBeInEndpoints`), "at the same time as the kubelet is starting graceful shutdown"
# (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination). Nothing
# documents how long the controller's update and the watch event take to reach propeller (well under
# a second on an idle control plane; the controller's API client is rate limited): this is the least
# the Deployment may give it.
ENDPOINT_REMOVAL_SECONDS = 5
# Kubernetes' native preStop `sleep` action: beta and on by default from 1.30, stable in 1.34
# (KEP-3960, https://www.kubernetes.dev/resources/keps/3960/). The connector's image would need no
# `sleep` binary for it.
PRESTOP_SLEEP_SINCE = (1, 30)


def test_a_replicas_shutdown_fits_inside_its_linkerd_proxys_wait_and_the_pods_grace_period():
    """Kubernetes runs a container's preStop hook before its TERM, inside terminationGracePeriodSeconds
    (https://kubernetes.io/docs/concepts/containers/container-lifecycle-hooks/#hook-handler-execution),
    each container's on its own. The connector's preStop sleep keeps it accepting CreateTasks until its
    pod's removal from the Service's Endpoints reached propeller's resolver (ENDPOINT_REMOVAL_SECONDS):
    without it, SIGTERM refused every CreateTask propeller still sent to the pod, each failing an
    attempt (a task without retries failed on every rollout). Then the shutdown's tries (each bounded
    by the DeleteTask deadline) end before the pod's Linkerd proxy gets its TERM, from which it refuses
    new requests, the service's own AWS calls and answers included
    (https://linkerd.io/2.14/tasks/graceful-shutdown/): the pod's
    ``config.alpha.linkerd.io/proxy-wait-before-exit-seconds`` delays it by a preStop sleep (linkerd2
    stable-2.14.10 ``pkg/inject/inject.go``, ``charts/partials/templates/_proxy.tpl``), started with
    the connector's, which must end inside terminationGracePeriodSeconds, when Kubernetes kills the
    pod, with time for the proxy to drain. The chart's own default waits 0 s (linkerd-control-plane
    1.16.11 ``proxy.waitBeforeExitSeconds``)."""
    from cdao_connectors import _deadlines  # noqa: PLC0415
    from cdao_connectors.service import SHUTDOWN_CANCEL_SECONDS  # noqa: PLC0415

    from infra.config import ClusterConfig  # noqa: PLC0415

    pod = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    (connector,) = [c for c in pod["spec"]["containers"] if c["name"] == "connector"]
    pre_stop = connector.get("lifecycle", {}).get("preStop", {})
    assert set(pre_stop) == {"sleep"}, f"the connector needs a preStop sleep before its SIGTERM: {pre_stop}"
    keeps_serving = pre_stop["sleep"]["seconds"]
    version = tuple(int(p) for p in ClusterConfig().kubernetes_version.split("."))
    assert version >= PRESTOP_SLEEP_SINCE, version
    annotations = pod["metadata"]["annotations"]
    linkerd = yaml.safe_load((DEPLOYMENT.parents[4] / "tests" / "platform" / "upstream" / "linkerd.yaml").read_text())
    assert annotations.get(linkerd["inject_annotation"]) == "enabled"
    proxy_wait = int(annotations[linkerd["wait_before_exit_annotation"]])
    assert _deadlines.DELETE_TASK_SECONDS + _deadlines.MARGIN_SECONDS <= SHUTDOWN_CANCEL_SECONDS
    # A create in flight at SIGTERM keeps its whole CreateTask budget (finish_shutdown gives the
    # creates the budget less the margin and the DeleteTask deadline): one that AWS holds but answers
    # in time is answered its job and followed, never given up by the shutdown alone.
    creates_share = SHUTDOWN_CANCEL_SECONDS - _deadlines.MARGIN_SECONDS - _deadlines.DELETE_TASK_SECONDS
    assert creates_share >= _deadlines.CREATE_TASK_SECONDS - _deadlines.MARGIN_SECONDS
    assert keeps_serving >= ENDPOINT_REMOVAL_SECONDS
    # The process ends up to a margin after its budget (service.py sleeps it once the work is done,
    # then signal handling and exit), and the proxy must still carry its last answers then.
    assert keeps_serving + SHUTDOWN_CANCEL_SECONDS + 2 * _deadlines.MARGIN_SECONDS <= proxy_wait <= grace - 5


def test_a_createtasks_attempt_record_makes_its_aws_client_on_the_backends_threads(aws_env, monkeypatch):
    """Every CreateTask of a backend whose API deduplicates the create records its answer in the
    attempt table (AttemptAnswers, made on the event loop as the CreateTask starts). Making the
    table's shared client there (``Backend.aws`` makes it on first use: a boto3 client's service
    model and endpoint rules, milliseconds) held every connector's GetTasks; it is made where the
    record is written, on the backend's threads."""
    import botocore.session  # noqa: PLC0415
    from cdao_connectors._attempts import AttemptAnswers, attempt_item  # noqa: PLC0415
    from cdao_connectors._backends import Backend  # noqa: PLC0415

    for k, v in provision_attempt_table(aws_env["AWS_REGION"]).items():
        monkeypatch.setenv(k, v)
    made_on: list[str] = []
    original = botocore.session.Session.create_client

    def recording(self, service_name, *args, **kwargs):
        if service_name == "dynamodb":
            made_on.append(threading.current_thread().name)
        return original(self, service_name, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", recording)

    async def created() -> str:
        return "the job"

    async def create_on_this_thread():
        answers = AttemptAnswers(
            Backend("attempt record test"), attempt_item("test", uuid.uuid4().hex), category(BATCH_TASK_TYPE)
        )
        return threading.current_thread().name, await answers.answering(created())

    loop_thread, answer = _run_and_return(create_on_this_thread())
    assert answer == "the job"
    assert made_on, "no attempt table client was made: nothing was checked"
    assert loop_thread not in made_on, f"the attempt table's client was made on the event loop's thread {loop_thread}"


def test_a_shutdown_lets_the_gettasks_and_deletetasks_being_served_finish(monkeypatch):
    """SIGTERM with nothing else pending ended the process at once, cutting off a GetTask or
    DeleteTask being served: propeller takes that as the call's failure (a GetTask's spends one of
    the task's system failures). The shutdown now finds them (pending_work_loop) and waits for each
    within its budget (finish_shutdown); milliseconds, on the handler wrapper itself."""
    from cdao_connectors import _backends  # noqa: PLC0415
    from cdao_connectors._backends import finish_shutdown, pending_work_loop, serving  # noqa: PLC0415

    monkeypatch.setattr(_backends, "_refusing_creates", False)

    @serving
    async def slow_get_task(release: asyncio.Event) -> str:
        await release.wait()
        return "RUNNING"

    async def scenario() -> tuple[bool, str, bool]:
        release = asyncio.Event()
        call = asyncio.ensure_future(slow_get_task(release))
        await asyncio.sleep(0.01)
        found = pending_work_loop() is asyncio.get_running_loop()
        shutdown = asyncio.ensure_future(finish_shutdown(5.0))
        await asyncio.sleep(0.2)
        waited = not shutdown.done()  # still waiting for the GetTask
        release.set()
        await asyncio.wait_for(shutdown, 2)
        return found, await call, waited

    assert _run_and_return(scenario()) == (True, "RUNNING", True)


def test_every_served_connector_is_waited_for_by_a_shutdown_while_it_answers():
    """Each async connector the service serves has its GetTask and DeleteTask handlers registered
    for the shutdown to wait for (``_backends.serving``): a connector added or overriding ``get`` or
    ``delete`` without it would be cut off by SIGTERM."""
    from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry  # noqa: PLC0415

    served = [c for c in ConnectorRegistry._REGISTRY.values() if isinstance(c, AsyncConnectorBase)]
    assert len(served) >= 8, [type(c).__name__ for c in served]
    missing = [
        f"{type(c).__name__}.{method}"
        for c in served
        for method in ("get", "delete")
        if not getattr(getattr(type(c), method), "waited_for_at_shutdown", False)
    ]
    assert missing == []

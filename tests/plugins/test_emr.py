"""EMR on EC2 connector against moto as a real server, through the gRPC connector service."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import boto3
import emr_tasks
import pytest
from aws_setup import provision_attempt_table
from cdao_connectors.config import ConnectorConfigError
from cdao_connectors.emr.connector import EMRConnector, EMRStepMetadata
from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector
from cdao_connectors.emr.task import EMR_SPARK_TASK_TYPE
from connector_calls import run_get
from moto.emr.models import emr_backends
from propeller import PHASE, create_task, delete_task, execution_metadata, get_task, serialize, write_inputs
from throttling_proxy import ThrottlingProxy

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture
def emr_env(aws_env, monkeypatch) -> Iterator[str]:
    """A long-running cluster like infra/ would create; its id replaces the task's placeholder."""
    emr = boto3.client("emr", region_name=REGION)
    cluster = emr.run_job_flow(
        Name="cdao-shared-spark",
        ReleaseLabel="emr-7.5.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    monkeypatch.setenv("CDAO_EMR_ENTRYPOINT_BUCKET", "flyte-data")
    for k, v in provision_attempt_table(REGION).items():
        monkeypatch.setenv(k, v)
    yield cluster


def _step(cluster_id: str, step_id: str):
    return next(s for s in emr_backends[ACCOUNT][REGION].clusters[cluster_id].steps if s.id == step_id)


def _create(stub, task, cluster: str | None, name: str):
    template = serialize(task)
    if cluster is not None:
        template.custom["cluster_id"] = cluster
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(task, prefix, rows=10)
    meta = create_task(stub, template, prefix, lm, execution_metadata(name))
    return template, prefix, lm, meta


def test_step_on_existing_cluster_lifecycle(emr_env, grpc_stubs, fresh_connectors):
    stub, _ = grpc_stubs
    template, prefix, lm, meta = _create(stub, emr_tasks.on_cluster, emr_env, "emr1")
    decoded = json.loads(meta)
    assert decoded["cluster_id"] == emr_env and decoded["transient"] is False

    emr = boto3.client("emr", region_name=REGION)
    step = emr.describe_step(ClusterId=emr_env, StepId=decoded["step_id"])["Step"]
    args = step["Config"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert "spark.executor.memory=4g" in args
    assert any(a.startswith("spark.executorEnv.YARN_CONTAINER_RUNTIME_DOCKER_IMAGE=") for a in args)
    entry = next(a for a in args if a.startswith("s3://flyte-data/flyte/emr/entrypoint-"))
    key = entry.removeprefix("s3://flyte-data/")
    assert b"pyflyte" in boto3.client("s3", region_name=REGION).get_object(Bucket="flyte-data", Key=key)["Body"].read()
    assert args[args.index(entry) + 1] == "pyflyte-execute"

    # A repeated CreateTask of the attempt finds the step by name instead of adding another.
    again = json.loads(create_task(stub, template, prefix, lm, execution_metadata("emr1")))
    assert again["step_id"] == decoded["step_id"]
    assert len(emr.list_steps(ClusterId=emr_env)["Steps"]) == 1

    moto_step = _step(emr_env, decoded["step_id"])
    moto_step.state = "PENDING"
    assert get_task(stub, EMR_SPARK_TASK_TYPE, meta).phase == PHASE.QUEUED
    moto_step.state = "RUNNING"
    running = get_task(stub, EMR_SPARK_TASK_TYPE, meta)
    assert running.phase == PHASE.RUNNING
    assert f"#/clusterDetails/{emr_env}" in running.log_links[0].uri
    moto_step.state = "SOMETHING_NEW"
    assert get_task(stub, EMR_SPARK_TASK_TYPE, meta).phase == PHASE.RUNNING
    # A step in a terminal state stays in it, and the connector never asks again: each terminal
    # state is read by a replica that has not seen the step yet.
    moto_step.state = "INTERRUPTED"
    assert get_task(stub, EMR_SPARK_TASK_TYPE, meta).phase == PHASE.RETRYABLE_FAILED
    moto_step.state = "FAILED"
    fresh_connectors(EMRConnector())
    assert get_task(stub, EMR_SPARK_TASK_TYPE, meta).phase == PHASE.FAILED
    # COMPLETED without outputs.pb: the step "succeeded" but the task did not deliver.
    moto_step.state = "COMPLETED"
    fresh_connectors(EMRConnector())
    done = get_task(stub, EMR_SPARK_TASK_TYPE, meta)
    assert done.phase == PHASE.FAILED
    assert "outputs.pb" in done.message


def test_transient_cluster_terminates_itself_and_delete_terminates_it(emr_env, grpc_stubs, monkeypatch):
    stub, _ = grpc_stubs
    monkeypatch.setenv("CDAO_EMR_SERVICE_ROLE", "EMR_DefaultRole")
    monkeypatch.setenv("CDAO_EMR_INSTANCE_PROFILE", "EMR_EC2_DefaultRole")
    _, _, _, meta = _create(stub, emr_tasks.on_transient, None, "emr2")
    decoded = json.loads(meta)
    assert decoded["transient"] is True
    emr = boto3.client("emr", region_name=REGION)
    cluster = emr.describe_cluster(ClusterId=decoded["cluster_id"])["Cluster"]
    assert cluster["AutoTerminate"] is True  # KeepJobFlowAliveWhenNoSteps=False
    groups = emr.list_instance_groups(ClusterId=decoded["cluster_id"])["InstanceGroups"]
    assert {(g["InstanceGroupType"], g["InstanceType"], g["RequestedInstanceCount"]) for g in groups} == {
        ("MASTER", "r5.2xlarge", 1),
        ("CORE", "r5.2xlarge", 4),
    }
    delete_task(stub, EMR_SPARK_TASK_TYPE, meta)
    state = emr.describe_cluster(ClusterId=decoded["cluster_id"])["Cluster"]["Status"]["State"]
    assert state in ("TERMINATING", "TERMINATED")


def test_transient_cluster_without_roles_names_the_variables(emr_env, monkeypatch):
    monkeypatch.delenv("CDAO_EMR_SERVICE_ROLE", raising=False)
    with pytest.raises(ConnectorConfigError, match="CDAO_EMR_SERVICE_ROLE"):
        EMRConnector().create_sync(serialize(emr_tasks.on_transient), "s3://flyte-data/x", None, None)


def test_retried_create_on_emr_serverless_reuses_the_client_token(aws_env, grpc_stubs):
    """EMR Serverless deduplicates StartJobRun by clientToken: a CreateTask that propeller repeats for
    the same attempt must send the same token (the plugin alone draws a new uuid each time), and a
    new attempt a new one."""
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    stub, _ = grpc_stubs
    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-test-spark", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    inputs = write_inputs(emr_tasks.on_serverless, prefix, rows=10)

    runs = []
    for retry in (0, 0, 1):
        meta = json.loads(create_task(stub, template, prefix, inputs, execution_metadata("emrs", retry=retry)))
        runs.append(meta["job_run_id"])
    by_id = {run.id: run for run in emrserverless_backends[ACCOUNT][REGION].job_runs[app]}
    tokens = [by_id[run].client_token for run in runs]
    assert tokens[0] == tokens[1], "a repeated create of one attempt must be deduplicated by AWS"
    assert tokens[2] != tokens[0], "a new attempt is a new job run"
    assert all(len(t) <= 64 for t in tokens)


def test_an_emr_serverless_createtask_answers_within_one_budget_for_its_upload_and_its_start(
    aws_env, monkeypatch, caplog
):
    """A Pythonic-mode CreateTask uploads the plugin's entrypoint (once per replica) and then sends
    StartJobRun: both must fit propeller's one CreateTask deadline, counted from the CreateTask's
    start. Each had a budget of its own, so a slow upload followed by a slow start answered after up
    to twice the deadline, when propeller had already failed the RPC with DEADLINE_EXCEEDED and its
    attempt. Budget scaled to 0.6 s, the real upload (moto's S3) and StartJobRun each held 0.4 s:
    the CreateTask answers the connector's deadline error at 0.6 s, and the run started after it is
    cancelled (moto ends a run at once, so only the cancel's start is seen). An upload that alone
    outlasts the budget starts no run at all. ~2 s: the holds must be long against a loaded
    machine's scheduling noise for the two budgets to be told apart."""
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    from cdao_connectors import _deadlines  # noqa: PLC0415
    from cdao_connectors._backends import BackendDeadlineExceeded  # noqa: PLC0415
    from flytekit.models.task import TaskExecutionMetadata  # noqa: PLC0415
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    monkeypatch.setattr(_deadlines, "CREATE_TASK_SECONDS", _deadlines.MARGIN_SECONDS + 0.6)
    caplog.set_level("WARNING", logger="cdao_connectors._backends")
    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-budget", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app

    def answer_within_the_budget(upload_seconds: float) -> tuple[float, object, list[str]]:
        caplog.clear()
        connector = IdempotentEMRServerlessConnector()
        upload, start = connector._ensure_entrypoint_on_s3, connector._start_unless_cancelled

        def slow_upload(*args, **kwargs):
            time.sleep(upload_seconds)  # on the backend's thread, as the real S3 calls
            return upload(*args, **kwargs)

        async def slow_start(*args, **kwargs):
            await asyncio.sleep(0.4)
            return await start(*args, **kwargs)

        monkeypatch.setattr(connector, "_ensure_entrypoint_on_s3", slow_upload)
        monkeypatch.setattr(connector, "_start_unless_cancelled", slow_start)
        prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
        meta = TaskExecutionMetadata.from_flyte_idl(execution_metadata(f"budget-{uuid.uuid4().hex[:6]}"))

        async def create() -> tuple[float, object]:
            started = time.monotonic()
            try:
                answer = await connector.create(
                    task_template=template,
                    inputs=None,
                    output_prefix=prefix,
                    task_execution_metadata=meta,
                )
            except Exception as exc:
                answer = exc
            took = time.monotonic() - started
            # The create goes on (a run it starts is cancelled); one refused before its start has nothing left.
            give_up = time.monotonic() + 2.0
            while upload_seconds < 0.6 and "cancelling" not in caplog.text and time.monotonic() < give_up:
                await asyncio.sleep(0.02)
            return took, answer

        took, answer = asyncio.run(create())
        states = [run.state for run in emrserverless_backends[ACCOUNT][REGION].job_runs.get(app, [])]
        return took, answer, states

    took, answer, states = answer_within_the_budget(0.4)
    assert isinstance(answer, BackendDeadlineExceeded) and "CreateTask" in str(answer), answer
    assert took < 0.6 + 0.15, f"the CreateTask answered after {took:.2f}s with a 0.6 s budget"
    assert len(states) == 1, states  # the run StartJobRun started after the give-up
    assert "CreateTask answered before its create finished; cancelling" in caplog.text, caplog.text

    took, answer, states = answer_within_the_budget(0.8)
    assert isinstance(answer, BackendDeadlineExceeded) and "no job run was started" in str(answer), answer
    assert took < 0.6 + 0.15, f"the CreateTask answered after {took:.2f}s with a 0.6 s budget"
    assert len(states) == 1, states  # no new run
    assert "cancelling" not in caplog.text, caplog.text


@pytest.fixture
def serverless_run(aws_env, grpc_stubs):
    """A RUNNING EMR Serverless job run created through CreateTask; its resource_meta."""
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    stub, _ = grpc_stubs
    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-test-spark2", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    meta = create_task(
        stub, template, prefix, write_inputs(emr_tasks.on_serverless, prefix, rows=1), execution_metadata("emrs2")
    )
    run_id = json.loads(meta)["job_run_id"]
    run = next(r for r in emrserverless_backends[ACCOUNT][REGION].job_runs[app] if r.id == run_id)
    run.state = "RUNNING"
    return stub, meta, run


_THROTTLED_OR_UNANSWERED = r"Throttl|TooManyRequests|EMR Serverless did not answer"


@pytest.mark.usefixtures("short_deadlines")
def test_emr_serverless_throttling_is_an_error_not_a_failed_job_and_cancel_is_not_lost(
    serverless_run, moto_endpoint, monkeypatch, fresh_connectors
):
    """botocore retries throttling (TooManyRequestsException is one of the codes in
    botocore/retries/standard.py ``_THROTTLED_ERROR_CODES``) and then raises; the job's state is
    unknown, not FAILED. Propeller retries a GetTask or DeleteTask that answers with an error
    (flyteplugins webapi cache.go counts it as a sync failure; DeleteTask's error fails the abort,
    which is retried), so the connector must answer with one: AWS's throttling error, or, when
    botocore's adaptive backoff outlasts propeller's deadline, the connector's retryable
    "did not answer"."""
    import grpc  # noqa: PLC0415

    stub, meta, run = serverless_run
    proxy = ThrottlingProxy(moto_endpoint, throttle_next=10_000).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    fresh_connectors(IdempotentEMRServerlessConnector())  # its AWS clients are made on the proxy
    try:
        with pytest.raises(grpc.RpcError) as got:
            get_task(stub, "emr_serverless", meta)
        assert re.search(_THROTTLED_OR_UNANSWERED, got.value.details()), got.value.details()
        with pytest.raises(grpc.RpcError) as cancelled:
            delete_task(stub, "emr_serverless", meta)
        assert re.search(_THROTTLED_OR_UNANSWERED, cancelled.value.details()), cancelled.value.details()
    finally:
        proxy.stop()
    assert proxy.throttled > 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    fresh_connectors(IdempotentEMRServerlessConnector())
    assert get_task(stub, "emr_serverless", meta).phase == PHASE.RUNNING
    assert run.state == "RUNNING"


def test_emr_serverless_run_deleted_outside_flyte_is_failed_with_the_reason(serverless_run, monkeypatch):
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    stub, meta, run = serverless_run
    app = json.loads(meta)["application_id"]
    emrserverless_backends[ACCOUNT][REGION].job_runs[app].remove(run)
    gone = get_task(stub, "emr_serverless", meta)
    assert gone.phase == PHASE.FAILED
    assert run.id in gone.message


@pytest.mark.parametrize(
    ("status", "state_after", "refused"),
    [
        ("SUBMITTED", None, False),
        # An abort racing the step's end: nothing is left to cancel.
        ("FAILED", "COMPLETED", False),
        ("FAILED", "FAILED", False),
        ("FAILED", "CANCELLED", False),
        ("FAILED", "INTERRUPTED", False),
        ("FAILED", "CANCEL_PENDING", False),
        # Refused while it still runs: propeller must retry the abort.
        ("FAILED", "RUNNING", True),
        ("FAILED", "PENDING", True),
    ],
)
def test_emr_delete_reads_cancel_steps_answer(aws_env, status, state_after, refused):
    """CancelSteps answers per step SUBMITTED or FAILED with a Reason (botocore emr/2009-03-31
    CancelStepsInfo) and acts only on PENDING or RUNNING steps (API_CancelSteps); moto implements
    neither answer, so botocore's Stubber plays EMR, checked against that model. A refused cancel is
    an error propeller retries only while the step is still PENDING or RUNNING."""
    from botocore.stub import Stubber  # noqa: PLC0415

    connector = EMRConnector()
    emr = connector.backend.aws("emr", REGION)
    answer = {"StepId": "s-1", "Status": status}
    if status == "FAILED":
        answer["Reason"] = f"Step s-1 cannot be cancelled: it is {state_after}"
    with Stubber(emr) as stubber:
        stubber.add_response(
            "cancel_steps",
            {"CancelStepsInfoList": [answer]},
            {"ClusterId": "j-1", "StepIds": ["s-1"], "StepCancellationOption": "TERMINATE_PROCESS"},
        )
        if state_after is not None:
            stubber.add_response(
                "describe_step",
                {"Step": {"Id": "s-1", "Status": {"State": state_after}}},
                {"ClusterId": "j-1", "StepId": "s-1"},
            )
        meta = EMRStepMetadata("j-1", "s-1", False, REGION, "s3://flyte-data/x", False)
        if refused:
            with pytest.raises(
                RuntimeError, match=rf"s-1 on cluster j-1, which is {state_after}: .*cannot be cancelled"
            ):
                connector.delete_sync(meta)
        else:
            connector.delete_sync(meta)
        stubber.assert_no_pending_responses()


def test_emr_serverless_hanging_answers_inside_propellers_deadline(
    serverless_run, moto_endpoint, monkeypatch, fresh_connectors, short_deadlines
):
    """With AWS not answering, GetTask still answers inside the connectors' 10 s GetTask budget
    (cdao_connectors._deadlines; propeller's own deadline is values.yaml's defaultTimeout, 30 s),
    with an error propeller retries."""
    import grpc  # noqa: PLC0415
    from flyteidl.admin import agent_pb2  # noqa: PLC0415
    from propeller import category  # noqa: PLC0415

    stub, meta, _ = serverless_run
    proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
    proxy.hanging = True
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    fresh_connectors(IdempotentEMRServerlessConnector())
    try:
        req = agent_pb2.GetTaskRequest(task_category=category("emr_serverless"), resource_meta=meta)
        with pytest.raises(grpc.RpcError) as got:
            stub.GetTask(req, timeout=short_deadlines)
    finally:
        proxy.stop()
    assert got.value.code() == grpc.StatusCode.INTERNAL, got.value
    assert "EMR Serverless did not answer" in got.value.details()


def test_emr_get_tasks_share_batched_list_steps_calls(emr_env, monkeypatch):
    # One DescribeStep per GetTask cost N calls per polling round (p99 447-568 ms at 1000 steps);
    # ListSteps by step ids answers ten a call, by states 50 a page (botocore emr/2009-03-31
    # ListStepsInput.StepIds, .Marker).
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "60")
    emr = boto3.client("emr", region_name=REGION)
    steps = [{"Name": f"s{i}", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}} for i in range(25)]
    step_ids = emr.add_job_flow_steps(JobFlowId=emr_env, Steps=steps)["StepIds"]
    metas = [EMRStepMetadata(emr_env, s, False, REGION, "s3://flyte-data/x", False) for s in step_ids]
    connector = EMRConnector()
    calls: list[str] = []
    connector.backend.aws("emr", REGION).meta.events.register(
        "provide-client-params.emr.*",
        lambda model, params, **_: calls.append(
            (model.name, tuple(params.get("StepStates", ())), tuple(params.get("StepIds", ())))
        ),
    )
    assert {run_get(connector, m).phase for m in metas} <= {PHASE.QUEUED, PHASE.RUNNING}
    calls.clear()
    for s in step_ids:
        _step(emr_env, s).state = "RUNNING"
    cache = connector.status_cache(REGION, 60.0)
    cache.refresh_ahead(older_than=0.0)  # one polling round's refresh
    # The cluster's live steps, 50 a page (ListStepsInput.Marker): not one call per ten step ids.
    assert calls == [("ListSteps", ("PENDING", "CANCEL_PENDING", "RUNNING"), ())]
    calls.clear()
    assert [run_get(connector, m).phase for m in metas] == [PHASE.RUNNING] * 25
    assert calls == []  # the round's 25 GetTasks read the shared view
    # A step that left the live states is read by id, once: a terminal step never changes.
    _step(emr_env, step_ids[0]).state = "COMPLETED"
    cache.refresh_ahead(older_than=0.0)
    assert calls == [
        ("ListSteps", ("PENDING", "CANCEL_PENDING", "RUNNING"), ()),
        ("ListSteps", (), (step_ids[0],)),
    ]
    calls.clear()
    cache.refresh_ahead(older_than=0.0)
    assert calls == [("ListSteps", ("PENDING", "CANCEL_PENDING", "RUNNING"), ())]


def _job_run(state: str) -> dict:
    """A GetJobRun answer with the members botocore emr-serverless/2021-07-13 marks required in JobRun."""
    return {
        "jobRun": {
            "applicationId": "00f0000000000000",
            "jobRunId": "00f0000000000001",
            "arn": f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/00f0000000000000/jobruns/00f0000000000001",
            "createdBy": "arn:aws:iam::123456789012:role/cdao-connector",
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
            "executionRole": "arn:aws:iam::123456789012:role/cdao-emr-job",
            "state": state,
            "stateDetails": f"Job run is {state}",
            "releaseLabel": "emr-7.5.0",
            "jobDriver": {"sparkSubmit": {"entryPoint": "s3://b/e.py"}},
        }
    }


@pytest.mark.parametrize(("state_after", "refused"), [("SUCCESS", False), ("CANCELLING", False), ("RUNNING", True)])
def test_emr_serverless_cancel_refused_because_the_run_just_ended_is_not_an_error(aws_env, state_after, refused):
    """The plugin reads the run's state, then sends CancelJobRun (boto_handler.py cancel_job_run);
    a run ending between the two makes CancelJobRun fail (ValidationException, one of the errors
    botocore's model declares for it; the message is not relied on). Only a run still going on
    makes that an error; moto cannot end a run between two calls, so botocore's Stubber plays EMR
    Serverless, checked against its model."""
    import asyncio  # noqa: PLC0415

    from botocore.stub import Stubber  # noqa: PLC0415
    from flytekitplugins.awsemrserverless.connector import EMRServerlessJobMetadata  # noqa: PLC0415

    connector = IdempotentEMRServerlessConnector()
    ids = {"applicationId": "00f0000000000000", "jobRunId": "00f0000000000001"}
    meta = EMRServerlessJobMetadata(application_id=ids["applicationId"], job_run_id=ids["jobRunId"], region=REGION)
    with Stubber(connector.backend.aws("emr-serverless", REGION)) as stubber:
        stubber.add_response("get_job_run", _job_run("RUNNING"), ids)
        stubber.add_client_error("cancel_job_run", service_error_code="ValidationException", expected_params=ids)
        stubber.add_response("get_job_run", _job_run(state_after), ids)
        loop = asyncio.new_event_loop()
        try:
            if refused:
                with pytest.raises(RuntimeError, match="EMR Serverless cancel of job run 00f0000000000001 failed"):
                    loop.run_until_complete(connector.delete(meta))
            else:
                loop.run_until_complete(connector.delete(meta))
        finally:
            loop.close()
        stubber.assert_no_pending_responses()


def test_every_emr_release_label_is_infra_s() -> None:
    """The transient EMR-on-EC2 clusters the connector creates use the same release line as the
    application (infra/components/compute.py EMR_RELEASE): the connector Deployment's
    CDAO_EMR_RELEASE_LABEL and the connector's own default must not drift from it."""
    from pathlib import Path  # noqa: PLC0415

    import yaml  # noqa: PLC0415
    from cdao_connectors.config import EMRConfig  # noqa: PLC0415

    from infra.components.compute import EMR_RELEASE  # noqa: PLC0415

    path = Path(__file__).resolve().parents[2] / "platform/addons/connectors/base/deployment.yaml"
    deployment = yaml.safe_load(path.read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CDAO_EMR_RELEASE_LABEL"] == EMR_RELEASE
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CDAO_EMR_RELEASE_LABEL", raising=False)
        mp.setenv("CDAO_AWS_REGION", "us-east-1")
        mp.setenv("CDAO_STACK", "dev")
        assert EMRConfig.from_env().release_label == EMR_RELEASE


@pytest.mark.parametrize("application", ["terminated", "deleted"])
def test_emr_serverless_run_pending_on_an_application_that_is_gone_fails_naming_it(aws_env, application):
    """A run created while the shared application was stopped is pending (the plugin keeps the
    request and submits it once the application is STARTED: connector.py ``get``). If the
    application is then terminated or deleted, the plugin's start_application_if_needed raises
    RuntimeError for a TERMINATED one (boto_handler.py, ``_APP_TERMINAL``) and GetApplication raises
    ResourceNotFoundException for one that is gone (moto emrserverless/models.py ``get_application``;
    AWS API_GetApplication's errors): the run will never start, so GetTask is FAILED naming the
    application, and DeleteTask has nothing to cancel."""
    import asyncio  # noqa: PLC0415

    from flytekitplugins.awsemrserverless.connector import EMRServerlessJobMetadata  # noqa: PLC0415
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-gone", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    client.stop_application(applicationId=app)
    client.delete_application(applicationId=app)  # TERMINATED, as AWS shows a deleted application
    if application == "deleted":
        del emrserverless_backends[ACCOUNT][REGION].applications[app]  # no longer listed at all
    pending = {
        "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/r",
        "job_driver": {"sparkSubmit": {"entryPoint": "s3://flyte-data/e.py"}},
        "client_token": "t",
    }
    meta = EMRServerlessJobMetadata(application_id=app, job_run_id="", region=REGION, pending_job_request=pending)
    connector = IdempotentEMRServerlessConnector()
    loop = asyncio.new_event_loop()
    try:
        resource = loop.run_until_complete(connector.get(meta))
        assert resource.phase == PHASE.FAILED
        assert app in resource.message and "never" in resource.message
        loop.run_until_complete(connector.delete(meta))  # nothing to cancel: not an error
    finally:
        loop.close()


@pytest.mark.usefixtures("short_deadlines", "production_status_waits")
def test_a_deferred_emr_serverless_run_is_submitted_once_then_read_from_the_status_cache(
    aws_env, moto_endpoint, monkeypatch
):
    """A run created while the shared application was stopped is pending: the plugin keeps the
    request and its get() sends GetApplication and StartJobRun (with the attempt's clientToken) on
    every GetTask (flytekitplugins-awsemrserverless connector.py ``get``). Once a run exists for the
    token, GetTask must only read its status: no StartJobRun nor GetApplication again, and, with
    EMR Serverless throttling every call, a known run's GetTask answers its last known status within
    the known-job bound, not an error after the GetTask budget."""
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    from cdao_connectors import _status_cache  # noqa: PLC0415
    from flytekitplugins.awsemrserverless.connector import EMRServerlessJobMetadata  # noqa: PLC0415
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-deferred", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    pending = {
        "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/r",
        "job_driver": {"sparkSubmit": {"entryPoint": "s3://flyte-data/e.py"}},
        "client_token": uuid.uuid4().hex,
    }
    meta = EMRServerlessJobMetadata(application_id=app, job_run_id="", region=REGION, pending_job_request=pending)
    # moto's runs start SUCCESS (emrserverless/models.py JOB_STATUS); AWS's run on for a while.
    monkeypatch.setattr("moto.emrserverless.models.JOB_STATUS", "RUNNING")
    proxy = ThrottlingProxy(moto_endpoint, throttle_next=0).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    connector = IdempotentEMRServerlessConnector()  # its AWS clients are made on the proxy
    loop = asyncio.new_event_loop()
    try:
        for _ in range(4):
            assert loop.run_until_complete(connector.get(meta)).phase == PHASE.RUNNING
        submitted = [r for r in proxy.received if r == ("POST", f"/applications/{app}/jobruns")]
        application_reads = [r for r in proxy.received if r == ("GET", f"/applications/{app}")]
        assert len(submitted) == 1, proxy.received
        assert len(application_reads) == 1, proxy.received

        proxy.throttle_next = 10**6
        time.sleep(0.002)  # past CDAO_STATUS_REFRESH_SECONDS (1 ms here): the GetTask reads the run
        for _ in range(2):
            start = time.monotonic()
            resource = loop.run_until_complete(connector.get(meta))
            took = time.monotonic() - start
            assert resource.phase == PHASE.RUNNING and "last known status" in resource.message, resource.message
            assert took < _status_cache.KNOWN_STATUS_WAIT_SECONDS + 0.5, f"a known run's GetTask took {took:.1f}s"
    finally:
        loop.close()
        proxy.stop()
    assert len(emrserverless_backends[ACCOUNT][REGION].job_runs[app]) == 1


def test_emr_first_sights_arriving_together_list_their_cluster_not_ten_ids_a_call(emr_env, monkeypatch):
    """After a restart every step is new to the replica: 1000 first sights cost one ListSteps each
    (604 of 1000 errored at the 2 s first-sight bound, each spending one of propeller's
    maxSystemFailures). Arriving together, a cluster's are read by listing its live steps, 50 a
    page (botocore emr/2009-03-31 ListStepsInput.Marker), not ten ids a call (.StepIds); each is
    answered within the first-sight bound."""
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    from cdao_connectors import _status_cache  # noqa: PLC0415
    from cdao_connectors.emr.connector import LIST_STEPS_PAGE  # noqa: PLC0415

    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", "60")
    emr = boto3.client("emr", region_name=REGION)
    steps = [{"Name": f"s{i}", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}} for i in range(120)]
    step_ids = emr.add_job_flow_steps(JobFlowId=emr_env, Steps=steps)["StepIds"]
    metas = [EMRStepMetadata(emr_env, s, False, REGION, "s3://flyte-data/x", False) for s in step_ids]
    connector = EMRConnector()
    calls: list[tuple[str, ...]] = []
    connector.backend.aws("emr", REGION).meta.events.register(
        "provide-client-params.emr.ListSteps", lambda params, **_: calls.append(tuple(params.get("StepIds", ())))
    )

    async def timed(meta):
        start = time.monotonic()
        answer = await connector.get(meta)
        return time.monotonic() - start, answer

    async def all_at_once():
        return await asyncio.gather(*(timed(meta) for meta in metas))

    answers = asyncio.run(all_at_once())
    assert {answer.phase for _, answer in answers} <= {PHASE.QUEUED, PHASE.RUNNING}
    live = len(emr_backends[ACCOUNT][REGION].clusters[emr_env].steps)
    assert calls == [()] * -(-live // LIST_STEPS_PAGE), calls  # the listing's pages, no call by id
    slowest = max(took for took, _ in answers)
    assert slowest < _status_cache.FIRST_SIGHT_WAIT_SECONDS, f"a first sight waited {slowest:.2f}s"


# What EMR answers AddJobFlowSteps past its cap of 256 PENDING and RUNNING steps a cluster (Amazon
# EMR Management Guide, "Submit work to an Amazon EMR cluster",
# https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-work-with-steps.html): botocore's model
# lists no such error for the operation (emr/2009-03-31, AddJobFlowSteps: InternalServerError only),
# so its code and message are those EMR sends, as recorded by Yelp/mrjob's EMR stand-in
# (tests/mock_boto3/emr.py, ``_add_steps``) and matched by gchq/sleeper's requeue of a full cluster
# (pull request #4607, PersistentEmrPlatformExecutor): an HTTP 400 ValidationException.
_STEP_CAP_MESSAGE = (
    "Maximum number of active steps(State = 'Running', 'Pending' or 'Cancel_Pending') for cluster exceeded."
)


def test_a_step_past_the_clusters_cap_fails_the_create_naming_the_cap_and_the_cluster(
    emr_env, grpc_stubs, fresh_connectors
):
    """AddJobFlowSteps on a cluster with 256 PENDING and RUNNING steps is refused; the CreateTask
    answers an error naming the cap and the cluster, after one call (a refusal, not throttling:
    nothing to retry), not botocore's bare ValidationException."""
    import grpc  # noqa: PLC0415
    from botocore.stub import Stubber  # noqa: PLC0415
    from flytekit.extend.backend.base_connector import ConnectorRegistry  # noqa: PLC0415

    stub, _ = grpc_stubs
    connector = ConnectorRegistry.get_connector(EMR_SPARK_TASK_TYPE)
    creates = connector.backend.aws("emr", REGION, for_creates=True)
    with Stubber(creates) as stubber:
        stubber.add_client_error("add_job_flow_steps", "ValidationException", _STEP_CAP_MESSAGE, http_status_code=400)
        with pytest.raises(grpc.RpcError) as refused:
            _create(stub, emr_tasks.on_cluster, emr_env, "emr-full")
        stubber.assert_no_pending_responses()
    # flytekit's service adds the trace to every error (connector_service.py ``_handle_exception``);
    # the error itself must say what happened and where.
    details = refused.value.details()
    assert f"EMR cluster {emr_env} already has 256 PENDING and RUNNING steps" in details, details
    assert boto3.client("emr", region_name=REGION).list_steps(ClusterId=emr_env)["Steps"] == []


def test_a_deferred_runs_record_goes_when_this_replica_is_no_longer_asked_about_it(aws_env, monkeypatch):
    """A replica records the run a pending request's deferred StartJobRun started, and dropped the
    record only when the run's ended GetTask (or its DeleteTask) came to it: under gRPC's round robin
    that may be another replica, so records piled up without bound (the kind of issue #16's review).
    A record nobody asked this replica about for the status cache's IDLE_AFTER_SECONDS goes."""
    import asyncio  # noqa: PLC0415

    from cdao_connectors import _status_cache  # noqa: PLC0415
    from flytekitplugins.awsemrserverless.connector import EMRServerlessJobMetadata  # noqa: PLC0415

    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="cdao-records", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    monkeypatch.setattr("moto.emrserverless.models.JOB_STATUS", "RUNNING")

    def pending_meta() -> EMRServerlessJobMetadata:
        request = {
            "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/r",
            "job_driver": {"sparkSubmit": {"entryPoint": "s3://flyte-data/e.py"}},
            "client_token": uuid.uuid4().hex,
        }
        return EMRServerlessJobMetadata(application_id=app, job_run_id="", region=REGION, pending_job_request=request)

    now = [0.0]
    connector = IdempotentEMRServerlessConnector()
    connector._clock = lambda: now[0]
    first, second = pending_meta(), pending_meta()
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(connector.get(first)).phase == PHASE.RUNNING
        assert loop.run_until_complete(connector.get(second)).phase == PHASE.RUNNING
        now[0] += _status_cache.IDLE_AFTER_SECONDS / 2
        assert loop.run_until_complete(connector.get(second)).phase == PHASE.RUNNING  # still asked about here
        now[0] += _status_cache.IDLE_AFTER_SECONDS / 2 + 1  # the first run's later GetTasks went elsewhere
        assert loop.run_until_complete(connector.get(second)).phase == PHASE.RUNNING
    finally:
        loop.close()
    assert [key[2] for key in connector._started_runs] == [second.pending_job_request["client_token"]]

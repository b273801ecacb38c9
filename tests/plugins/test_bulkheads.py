"""A hung or throttled backend costs the others nothing, and every answer comes inside propeller's
deadline (platform/addons/flyte/flyte-core/values.yaml: GetTask 10 s), as an error when it must."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import batch_tasks
import boto3
import grpc
import pytest
import yaml
from aws_setup import provision_attempt_table, provision_batch
from cdao_connectors import _deadlines
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.codeweave.connector import CodeweaveJobMetadata
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.emr.connector import EMRStepMetadata
from codeweave_fake import CodeweaveFake
from flyteidl.admin import agent_pb2
from propeller import PHASE, category, create_task, execution_metadata, serialize, write_inputs

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
API_KEY = "cw-bulkhead-key"
FLYTE_VALUES = Path(__file__).parents[2] / "platform" / "addons" / "flyte" / "flyte-core" / "values.yaml"


def test_deadlines_are_the_ones_propeller_is_configured_with():
    values = yaml.safe_load(FLYTE_VALUES.read_text())
    # The section sits under the chart's configmap values; find it wherever the chart nests it.
    found = None
    stack = [values]
    while stack and found is None:
        node = stack.pop()
        if isinstance(node, dict):
            if "connector-service" in node and isinstance(node["connector-service"], dict):
                found = node["connector-service"].get("defaultConnector")
            stack.extend(node.values())
    assert found is not None, f"no plugins.connector-service.defaultConnector in {FLYTE_VALUES}"

    def seconds(v: str) -> float:
        assert v.endswith("s"), v
        return float(v[:-1])

    # Per-call `timeouts` never apply (the loader lowercases their keys), so propeller's deadline for
    # every call is defaultTimeout; the connectors' budgets must fit inside it.
    assert "timeouts" not in found, "per-call timeouts are lowercased away by flytestdlib's loader"
    deadline = seconds(found["defaultTimeout"])
    assert deadline >= _deadlines.CREATE_TASK_SECONDS
    assert deadline >= _deadlines.GET_TASK_SECONDS
    assert deadline >= _deadlines.DELETE_TASK_SECONDS


@pytest.fixture
def backends(aws_env, moto_endpoint, tmp_path, monkeypatch) -> Iterator[CodeweaveFake]:
    for k, v in {**provision_batch(moto_endpoint, REGION), **provision_attempt_table(REGION)}.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "codeweave_api_key").write_text(API_KEY)
    fake = CodeweaveFake(api_key=API_KEY, base_env={})
    fake.serve()
    monkeypatch.setenv("CDAO_CODEWEAVE_ENDPOINT", fake.url)
    monkeypatch.setenv("FLYTE_SECRETS_DEFAULT_DIR", str(tmp_path))
    try:
        yield fake
    finally:
        fake.stop()


def _get(stub, task_type: str, meta: bytes) -> tuple[float, agent_pb2.Resource | grpc.RpcError]:
    """GetTask with propeller's deadline; the time it took and the answer or the error."""
    req = agent_pb2.GetTaskRequest(task_category=category(task_type), resource_meta=meta)
    start = time.monotonic()
    try:
        answer = stub.GetTask(req, timeout=_deadlines.GET_TASK_SECONDS).resource
    except grpc.RpcError as exc:
        answer = exc
    return time.monotonic() - start, answer


def _codeweave_meta() -> bytes:
    return CodeweaveJobMetadata(
        job_id=uuid.uuid4().hex[:12], output_prefix="s3://flyte-data/x", has_outputs=False
    ).encode()


def _batch_meta(stub) -> bytes:
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    lm = write_inputs(batch_tasks.preprocess, prefix, path="s3://x/raw.csv")
    return create_task(stub, serialize(batch_tasks.preprocess), prefix, lm, execution_metadata("bulkhead"))


def test_a_hung_codeweave_costs_batch_nothing_and_answers_inside_the_deadline(backends, grpc_stubs):
    stub, _ = grpc_stubs
    batch_meta = _batch_meta(stub)
    backends.hanging = True
    with ThreadPoolExecutor(48) as pool:
        hung = [pool.submit(_get, stub, CODEWEAVE_TASK_TYPE, _codeweave_meta()) for _ in range(40)]
        time.sleep(0.5)  # the Codeweave calls are in and hanging
        batch = [_get(stub, BATCH_TASK_TYPE, batch_meta) for _ in range(5)]
        codeweave = [f.result() for f in hung]
    for _took, answer in batch:
        assert isinstance(answer, agent_pb2.Resource), f"Batch GetTask failed while Codeweave hangs: {answer}"
        assert answer.phase == PHASE.QUEUED
    # Every Codeweave GetTask gets an answer from the connector (an error it can retry), not
    # propeller's own DEADLINE_EXCEEDED.
    codes = {a.code() for _, a in codeweave if isinstance(a, grpc.RpcError)}
    assert codes == {grpc.StatusCode.INTERNAL}, codes
    assert all("Codeweave did not answer GetTask" in a.details() for _, a in codeweave)


def test_codeweave_throttling_forever_answers_inside_the_deadline(backends, grpc_stubs):
    stub, _ = grpc_stubs
    backends.throttle_next = 10**6
    backends.retry_after = "3600"
    _took, answer = _get(stub, CODEWEAVE_TASK_TYPE, _codeweave_meta())
    assert isinstance(answer, grpc.RpcError) and answer.code() == grpc.StatusCode.INTERNAL, answer
    assert "Codeweave" in answer.details()
    assert backends.throttled >= 1


def test_aws_clients_are_made_once_per_backend_not_per_call(aws_env, grpc_stubs, monkeypatch):
    """One boto3 client per service and region: a client costs milliseconds to build and carries
    the adaptive retry mode's rate limiter, which only works when calls share it."""
    import botocore.session  # noqa: PLC0415

    stub, _ = grpc_stubs
    emr = boto3.client("emr", region_name=REGION)
    cluster = emr.run_job_flow(
        Name="cdao-clients",
        ReleaseLabel="emr-7.5.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    step = emr.add_job_flow_steps(
        JobFlowId=cluster, Steps=[{"Name": "s", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}]
    )["StepIds"][0]
    meta = EMRStepMetadata(cluster, step, False, REGION, "s3://flyte-data/x", False).encode()
    made: list[str] = []
    original = botocore.session.Session.create_client

    def counting(self, service_name, *args, **kwargs):
        made.append(service_name)
        return original(self, service_name, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    for _ in range(20):
        _took, answer = _get(stub, "cdao-emr-spark-step", meta)
        assert isinstance(answer, agent_pb2.Resource), answer
    assert made.count("emr") <= 1, f"{made.count('emr')} EMR clients for 20 GetTasks"

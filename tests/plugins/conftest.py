"""Shared fixtures: moto as a real server, the connector service over gRPC, the Codeweave fake."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import grpc
import pytest
from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub, AsyncAgentServiceStub
from moto.server import ThreadedMotoServer

SUPPORT = Path(__file__).parent / "support"
# Task modules used end to end must be importable by name, here and in the job's subprocess.
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import cdao_connectors.service  # noqa: E402, F401  (registers the connectors, as --modules does)
from aws_setup import ATTEMPT_TABLE, provision_attempt_table  # noqa: E402  (lives in SUPPORT, added above)
from grpc_connector_server import ConnectorServer  # noqa: E402  (lives in SUPPORT, added above)
from moto_atomic import make_conditional_writes_atomic  # noqa: E402  (lives in SUPPORT, added above)

REGION = "us-east-1"
BUCKET = "flyte-data"

# Package scope (tests/plugins has an __init__.py for this): the servers stop and the AWS
# environment is restored when this folder's last test ends, not at the end of a whole-repo run.


@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    make_conditional_writes_atomic()  # as DynamoDB's are (support/moto_atomic.py)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="package")
def aws_env(moto_endpoint: str) -> Iterator[dict[str, str]]:
    """Point boto3 and flytekit's storage layer at moto for the whole session."""
    env = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "CDAO_AWS_REGION": REGION,
        "CDAO_STACK": "test",
        "FLYTE_AWS_ENDPOINT": moto_endpoint,
        "FLYTE_AWS_ACCESS_KEY_ID": "testing",
        "FLYTE_AWS_SECRET_ACCESS_KEY": "testing",
        # Set on the connector Deployment by platform/bootstrap/appsets/connectors.yaml (the stack's
        # userdata bucket); test_emr_serverless_production.py uses the rendered Deployment's own.
        "CDAO_EMR_ENTRYPOINT_BUCKET": BUCKET,
        # Tests change a job's state in moto and expect the next GetTask to see it.
        "CDAO_STATUS_REFRESH_SECONDS": "0.001",
        # Every connector's CreateTask records its answer there (plugins/cdao_connectors/_attempts.py).
        "CDAO_ATTEMPT_TABLE": ATTEMPT_TABLE,
        # The in-process service's sweeper (and that of each replica a test starts, which inherits
        # this) stays off: tests make due attempts and sweep them themselves (test_sweeper.py).
        "CDAO_SWEEP_PERIOD_SECONDS": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        provision_attempt_table(REGION)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="package")
def connector_server(aws_env: dict[str, str]) -> Iterator[int]:
    server = ConnectorServer().start()
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture
def grpc_stubs(connector_server: int):
    channel = grpc.insecure_channel(f"127.0.0.1:{connector_server}")
    try:
        yield AsyncAgentServiceStub(channel), AgentMetadataServiceStub(channel)
    finally:
        channel.close()


@pytest.fixture
def fresh_connectors():
    """``register(*connectors)`` puts new connector instances in the service's registry for one
    test (their shared AWS clients are then made from the endpoints the test sets); the service's
    own instances are back afterwards."""
    from flytekit.extend.backend.base_connector import ConnectorRegistry  # noqa: PLC0415

    saved: list = []

    def register(*connectors) -> None:
        for connector in connectors:
            saved.append(ConnectorRegistry.get_connector(connector.task_category.name))
            ConnectorRegistry.register(connector, override=True)

    try:
        yield register
    finally:
        for connector in reversed(saved):  # the first saved is the service's own
            ConnectorRegistry.register(connector, override=True)


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> float:
    """The connectors' GetTask and DeleteTask budgets cut from 10 s to 3 s for one test, as the
    connectors read them at call time (cdao_connectors._deadlines). For tests that wait for a hung
    or throttled backend to run out of the deadline: what they prove (an error inside the
    deadline, other backends unaffected) holds for any deadline, and each waits 2 s instead of 9."""
    from cdao_connectors import _deadlines  # noqa: PLC0415

    monkeypatch.setattr(_deadlines, "GET_TASK_SECONDS", 3.0)
    monkeypatch.setattr(_deadlines, "DELETE_TASK_SECONDS", 3.0)
    return 3.0


@pytest.fixture(autouse=True)
def patient_status_reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests change a job's state in moto and expect the next GetTask to see it (as
    ``CDAO_STATUS_REFRESH_SECONDS`` is 1 ms here); on a loaded runner a moto call can outlast the
    0.25 s a known job's GetTask waits for its refresh in production, and the answer would be the
    (correct) last known status. Tests of that bound ask for ``production_status_waits``, and so
    do those of a hung or throttled backend (``short_deadlines``): what they time is the service
    as it runs."""
    if not {"production_status_waits", "short_deadlines"} & set(request.fixturenames):
        from cdao_connectors import _status_cache  # noqa: PLC0415

        monkeypatch.setattr(_status_cache, "KNOWN_STATUS_WAIT_SECONDS", 5.0)


@pytest.fixture
def production_status_waits() -> None:
    """The status cache's waits as the service runs them (see ``patient_status_reads``)."""


@pytest.fixture
def sweep_table(aws_env, monkeypatch) -> str:
    """An attempt table of the test's own (``CDAO_ATTEMPT_TABLE``): each sweep sees only the
    attempts its test made (a pass takes the earliest due ones, SWEEP_BATCH at most)."""
    table = f"cdao-test-sweep-{uuid.uuid4().hex[:8]}"
    for k, v in provision_attempt_table(REGION, table).items():
        monkeypatch.setenv(k, v)
    return table

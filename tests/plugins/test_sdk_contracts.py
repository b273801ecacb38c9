"""The SDK's surface does what it says: every accepted keyword changes what runs or is refused with
the reason, routing never contradicts the request, and the control-plane calls name the endpoint."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import cdao_sdk
import pytest
from cdao_sdk import cpu_task, settings
from flyteidl.core.execution_pb2 import WorkflowExecution
from flytekit import workflow
from flytekit.models.core.identifier import WorkflowExecutionIdentifier
from propeller import serialize

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"


@pytest.fixture(autouse=True)
def clean_settings() -> Iterator[None]:
    settings.reset()
    cdao_sdk.client._remote = None
    yield
    settings.reset()
    cdao_sdk.client._remote = None


def _pod(t) -> dict:
    return serialize(t).k8s_pod.pod_spec


def _f(x: int) -> int:
    return x


# --- 8: monitor(execution.id) -------------------------------------------------------------------


class _Remote:
    """FlyteRemote's calls as flytekit 1.16.31 defines them (flytekit/remote/remote.py): ``execute``
    returns a FlyteWorkflowExecution whose ``.id`` is a WorkflowExecutionIdentifier
    (flytekit/models/execution.py), ``fetch_execution(project, domain, name)``, ``sync_execution``."""

    def __init__(self) -> None:
        self.fetched: list[tuple[str, str, str]] = []

    def execute(self, entity, inputs, project, domain, wait, **kwargs):
        return SimpleNamespace(id=WorkflowExecutionIdentifier(project, domain, "f3a9c1"))

    def fetch_execution(self, project, domain, name):
        self.fetched.append((project, domain, name))
        return SimpleNamespace(name=name)

    def sync_execution(self, execution, sync_nodes):
        return SimpleNamespace(
            id=WorkflowExecutionIdentifier("ml", "staging", execution.name),
            closure=SimpleNamespace(phase=WorkflowExecution.SUCCEEDED),
            is_done=True,
            node_executions={},
        )


def test_monitor_accepts_the_execution_id_as_the_seeds_pass_it():
    remote = _Remote()
    cdao_sdk.configure("flyte.example.com", "ml", "staging", remote=remote)
    execution = cdao_sdk.run(workflow="wf", inputs={})
    lines: list[str] = []
    cdao_sdk.monitor(execution.id, report=lines.append)
    cdao_sdk.monitor_sagemaker_jobs(execution.id, report=lines.append)
    assert remote.fetched == [("ml", "staging", "f3a9c1")] * 2
    assert "f3a9c1: SUCCEEDED" in lines[0]


# --- 12: the endpoint's scheme, and an admin that never answers ---------------------------------


def test_an_http_endpoint_is_plaintext_and_a_contradiction_is_refused():
    remote = cdao_sdk.configure("http://localhost:30080", "ml")
    assert (remote.config.platform.endpoint, remote.config.platform.insecure) == ("localhost:30080", True)
    assert cdao_sdk.configure("https://flyte.example.com", "ml").config.platform.insecure is False
    with pytest.raises(ValueError, match=r"scheme says insecure=False"):
        cdao_sdk.configure("https://flyte.example.com", "ml", insecure=True)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers (a hung admin)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("call", ["run", "monitor"])
def test_an_admin_that_never_answers_is_named(silent_endpoint, call):
    @workflow
    def wf(x: int) -> int:
        return _f_task(x=x)

    cdao_sdk.configure(f"http://{silent_endpoint}", "ml", connect_timeout_seconds=0.5)
    with pytest.raises(ConnectionError, match=rf"Flyte admin at {silent_endpoint} did not answer over plaintext"):
        if call == "run":
            cdao_sdk.run(wf, {"x": 1})
        else:
            cdao_sdk.monitor(WorkflowExecutionIdentifier("ml", "development", "f3a9c1"))


@cdao_sdk.task
def _f_task(x: int) -> int:
    return x


# --- 13: Kubernetes quantities --------------------------------------------------------------------


@pytest.mark.parametrize("cpu", ["500m", "0.5", "2", "1.5", "+1", "1e3", "2E0", ".5"])
def test_cpu_takes_every_quantity_kubernetes_documents(cpu):
    t = cpu_task(cpu=cpu, memory="512Mi")(_f)
    assert _primary_requests(t)["cpu"] == cpu


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2 cores", "not a Kubernetes quantity"),
        ("1K", "not a Kubernetes quantity"),
        ("1ki", "not a Kubernetes"),
        ("-1", "greater than 0"),
        ("0", "greater than 0"),
        ("", "not a Kubernetes quantity"),
        ("NaN", "not a Kuber"),
    ],
)
def test_cpu_refuses_what_is_not_a_positive_quantity(value, message):
    with pytest.raises(ValueError, match=rf"cpu_task cpu='{value}'.*{message}"):
        cpu_task(cpu=value)(_f)


def _primary_requests(t) -> dict:
    return next(c for c in _pod(t)["containers"] if c["name"] == "primary")["resources"]["requests"]

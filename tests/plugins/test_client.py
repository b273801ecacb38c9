"""configure / run / monitor. No Flyte admin can run here, so FlyteRemote is replaced by a recording
double exposing the three FlyteRemote methods the SDK calls (execute, fetch_execution, sync_execution)."""

from __future__ import annotations

from types import SimpleNamespace

import cdao_sdk
import pytest
from cdao_sdk import settings
from flyteidl.core.execution_pb2 import NodeExecution, WorkflowExecution


def _node(phase: int, task_type: str | None = None, logs: tuple = (), error: str | None = None):
    te = SimpleNamespace(
        task=SimpleNamespace(template=SimpleNamespace(type=task_type)) if task_type else None,
        closure=SimpleNamespace(logs=[SimpleNamespace(name=n, uri=u) for n, u in logs]),
    )
    return SimpleNamespace(
        closure=SimpleNamespace(phase=phase, error=SimpleNamespace(message=error) if error else None),
        task_executions=[te],
    )


class RecordingRemote:
    def __init__(self, snapshots):
        self.snapshots = list(snapshots)
        self.executed = []
        self.fetched = []

    def execute(self, entity, inputs, project, domain, wait, **kwargs):
        self.executed.append((entity, inputs, project, domain, wait))
        return SimpleNamespace(id=SimpleNamespace(name="exec-1"))

    def fetch_execution(self, project, domain, name):
        self.fetched.append((project, domain, name))
        return name

    def sync_execution(self, execution, sync_nodes):
        assert sync_nodes
        phase, nodes = self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]
        done = phase in (WorkflowExecution.SUCCEEDED, WorkflowExecution.FAILED, WorkflowExecution.ABORTED)
        return SimpleNamespace(
            id=SimpleNamespace(name="exec-1"), closure=SimpleNamespace(phase=phase), is_done=done, node_executions=nodes
        )


@pytest.fixture(autouse=True)
def clean_settings():
    settings.reset()
    yield
    settings.reset()


def test_run_uses_configured_project_and_domain():
    remote = RecordingRemote([])
    cdao_sdk.configure("https://flyte.example.com", "ml-experiments", "staging", remote=remote)
    ex = cdao_sdk.run("wf", {"data_path": "s3://b/raw.csv"})
    assert ex.id.name == "exec-1"
    assert remote.executed == [("wf", {"data_path": "s3://b/raw.csv"}, "ml-experiments", "staging", False)]


def test_monitor_reports_each_change_until_terminal():
    running = {
        "start-node": _node(NodeExecution.SUCCEEDED),
        "n0": _node(NodeExecution.RUNNING, "cdao-aws-batch"),
    }
    done = {
        "n0": _node(NodeExecution.SUCCEEDED, "cdao-aws-batch"),
        "n1": _node(NodeExecution.FAILED, "cdao-codeweave-gpu", error="OOM"),
    }
    remote = RecordingRemote(
        [(WorkflowExecution.RUNNING, running), (WorkflowExecution.RUNNING, running), (WorkflowExecution.FAILED, done)]
    )
    cdao_sdk.configure("flyte.example.com:443", "ml", remote=remote)
    reports: list[str] = []
    final = cdao_sdk.monitor("exec-1", poll_seconds=0, report=reports.append)
    assert final.is_done
    assert remote.fetched[0] == ("ml", "development", "exec-1")
    assert len(reports) == 2  # the unchanged second poll is not repeated
    assert "n0" in reports[0] and "RUNNING" in reports[0] and "start-node" not in reports[0]
    assert "FAILED" in reports[1] and "OOM" in reports[1]


def test_monitor_times_out_with_a_clear_error():
    remote = RecordingRemote([(WorkflowExecution.RUNNING, {})])
    cdao_sdk.configure("flyte.example.com", "ml", remote=remote)
    with pytest.raises(TimeoutError, match="exec-1 still RUNNING"):
        cdao_sdk.monitor("exec-1", poll_seconds=0.01, timeout_seconds=0.05, report=lambda _: None)


def test_monitor_sagemaker_jobs_lists_only_sagemaker_nodes_with_links():
    nodes = {
        "prep": _node(NodeExecution.SUCCEEDED, "cdao-aws-batch"),
        "train": _node(
            NodeExecution.RUNNING, "cdao-sagemaker-training", logs=(("SageMaker console", "https://console/x"),)
        ),
        "score": _node(NodeExecution.QUEUED, "sagemaker-transform-job"),
    }
    cdao_sdk.configure("flyte.example.com", "ml", remote=RecordingRemote([(WorkflowExecution.RUNNING, nodes)]))
    lines: list[str] = []
    found = cdao_sdk.monitor_sagemaker_jobs("exec-1", report=lines.append)
    assert [n.node_id for n in found] == ["score", "train"]
    assert any("https://console/x" in line for line in lines)


def test_calls_before_configure_and_bad_endpoints_are_clear_errors():
    cdao_sdk.client._remote = None
    with pytest.raises(RuntimeError, match=r"cdao_sdk.configure"):
        cdao_sdk.monitor("exec-1")
    with pytest.raises(ValueError, match="admin_endpoint"):
        cdao_sdk.configure("https://flyte.example.com/some/path", "ml", remote=object())
    with pytest.raises(TypeError, match="unknown settings"):
        settings.update(colour="blue")


@pytest.mark.parametrize("execution", ["", "  "])
def test_monitor_refuses_an_empty_name_before_contacting_the_admin(execution):
    remote = RecordingRemote([(WorkflowExecution.RUNNING, {})])
    cdao_sdk.configure("flyte.example.com", "ml", remote=remote)
    for call in (cdao_sdk.monitor, cdao_sdk.monitor_sagemaker_jobs):
        with pytest.raises(ValueError, match=rf"{call.__name__} execution={execution!r}: the name is empty"):
            call(execution, report=lambda _: None)
    assert remote.fetched == []


@pytest.mark.parametrize(
    "execution",
    [None, 123, 1.5, True, b"exec-1", ["exec-1"], {"name": "exec-1"}, object(), SimpleNamespace(name="exec-1")],
    ids=lambda value: type(value).__name__,
)
def test_monitor_takes_only_an_execution_its_id_or_its_name(execution):
    """Only what the docstring lists (anything else reached flytekit as an AttributeError, or worse, after
    contacting the admin): a TypeError naming the call and the argument, before any admin call."""
    remote = RecordingRemote([(WorkflowExecution.SUCCEEDED, {})])
    cdao_sdk.configure("flyte.example.com", "ml", remote=remote)
    for call in (cdao_sdk.monitor, cdao_sdk.monitor_sagemaker_jobs):
        expected = rf"^{call.__name__} execution=.*: expected what cdao_sdk\.run\(\) returned"
        with pytest.raises(TypeError, match=expected):
            call(execution, report=lambda _: None)
    assert remote.fetched == []


def test_monitor_takes_the_execution_run_returned_as_it_is():
    """``run`` returns FlyteRemote.execute's FlyteWorkflowExecution (flytekit 1.16.31 remote/remote.py),
    which sync_execution takes as it is: no fetch by name."""
    from flytekit.models.core.identifier import WorkflowExecutionIdentifier  # noqa: PLC0415
    from flytekit.remote.executions import FlyteWorkflowExecution  # noqa: PLC0415

    remote = RecordingRemote([(WorkflowExecution.SUCCEEDED, {})])
    cdao_sdk.configure("flyte.example.com", "ml", remote=remote)
    execution_id = WorkflowExecutionIdentifier("ml", "development", "exec-1")
    launched = FlyteWorkflowExecution(id=execution_id, spec=None, closure=None)
    assert cdao_sdk.monitor(launched, report=lambda _: None).is_done
    assert cdao_sdk.monitor_sagemaker_jobs(launched, report=lambda _: None) == []
    assert remote.fetched == []

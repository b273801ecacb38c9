"""configure(mlflow_tracking_uri=...) reaches the tasks of every execution `run` launches."""

from __future__ import annotations

import re
from types import SimpleNamespace

import cdao_sdk
import pytest
from cdao_sdk import settings


class EnvRecordingRemote:
    def __init__(self):
        self.kwargs = []

    def execute(self, entity, inputs, project, domain, wait, **kwargs):
        self.kwargs.append(kwargs)
        return SimpleNamespace(id=SimpleNamespace(name="exec-1"))


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings.reset()
    yield
    settings.reset()


def test_tracking_uri_is_passed_to_tasks_as_mlflow_tracking_uri():
    remote = EnvRecordingRemote()
    uri = settings.IN_CLUSTER_MLFLOW_TRACKING_URI
    cdao_sdk.configure("flyte.example.com", "ml-experiments", mlflow_tracking_uri=uri, remote=remote)
    cdao_sdk.run("wf", envs={"OTHER": "1"})
    assert remote.kwargs == [{"envs": {"MLFLOW_TRACKING_URI": uri, "OTHER": "1"}}]


def test_an_explicit_env_wins_over_the_configured_uri():
    remote = EnvRecordingRemote()
    cdao_sdk.configure("flyte.example.com", "p", mlflow_tracking_uri="http://a:5000", remote=remote)
    cdao_sdk.run("wf", envs={"MLFLOW_TRACKING_URI": "http://b:5000"})
    assert remote.kwargs[0]["envs"]["MLFLOW_TRACKING_URI"] == "http://b:5000"


def test_without_a_tracking_uri_no_env_is_added():
    remote = EnvRecordingRemote()
    cdao_sdk.configure("flyte.example.com", "p", remote=remote)
    cdao_sdk.run("wf")
    assert remote.kwargs == [{}]


def test_environment_fallback_is_mlflows_own_variable(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://flyte.example.com/mlflow")
    assert settings.get("mlflow_tracking_uri") == "https://flyte.example.com/mlflow"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("mlflow.mlflow.svc:5000", ""),
        ("file:///tmp/mlruns", ""),
        ("http://", ""),
        # The host and port grammar configure's admin_endpoint has (test_sdk_contracts.py).
        ("http://local_host!:5000", "host 'local_host!' is not a DNS name"),
        ("http://mlflow:\u0665\u0660\u0660\u0660/x", "port '\u0665\u0660\u0660\u0660' is not a number"),
        ("https://mlflow:0", "port 0 is outside 1-65535"),
    ],
)
def test_a_malformed_uri_is_a_clear_error(bad, reason):
    with pytest.raises(ValueError, match=rf"mlflow_tracking_uri={re.escape(repr(bad))}: {reason}.*expected http"):
        cdao_sdk.configure("flyte.example.com", "p", mlflow_tracking_uri=bad, remote=EnvRecordingRemote())

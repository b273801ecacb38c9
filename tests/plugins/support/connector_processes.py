"""Connector service replicas as production runs them: separate ``pyflyte serve connector`` processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import requests
import yaml
from flyteidl.admin import agent_pb2
from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub

PYFLYTE = Path(sys.executable).with_name("pyflyte")
DEPLOYMENT = Path(__file__).resolve().parents[3] / "platform" / "addons" / "connectors" / "base" / "deployment.yaml"
# How old a cached status a replica serves, and so how often its background passes refresh them
# (plugins/cdao_connectors/config.py); the Deployment sets both.
REFRESH_SETTINGS = ("CDAO_BATCH_STATUS_REFRESH_SECONDS", "CDAO_STATUS_REFRESH_SECONDS")


def _connector_env(path: Path) -> dict[str, str | None]:
    pod = yaml.safe_load(path.read_text())["spec"]["template"]["spec"]
    (container,) = (c for c in pod["containers"] if c["name"] == "connector")
    return {e["name"]: e.get("value") for e in container["env"]}


def deployment_env(names: tuple[str, ...], path: Path = DEPLOYMENT) -> dict[str, str]:
    """The connector Deployment's static ``env`` values of ``names``; KeyError naming one it lacks."""
    env = _connector_env(path)
    missing = [n for n in names if env.get(n) is None]
    if missing:
        raise KeyError(f"{path} sets no value for {', '.join(missing)}")
    return {n: env[n] for n in names}


def deployment_logging_env() -> dict[str, str]:
    """The connector Deployment's settings of flytekit's loggers (``FLYTE_SDK_*``), so that a replica
    here logs, and pays for logging, as production's do."""
    return {k: v for k, v in _connector_env(DEPLOYMENT).items() if k.startswith("FLYTE_SDK_") and v is not None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConnectorProcess:
    """``pyflyte serve connector --modules cdao_connectors.service`` (the Deployment's command)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.prometheus_port = _free_port()
        self._log = tempfile.NamedTemporaryFile(prefix="connector-", suffix=".log", delete=False)  # noqa: SIM115
        command = [
            str(PYFLYTE),
            "serve",
            "connector",
            "--port",
            str(self.port),
            "--prometheus_port",
            str(self.prometheus_port),
            "--worker",
            "10",
            "--modules",
            "cdao_connectors.service",
        ]
        self._process = subprocess.Popen(
            command, env={**os.environ, **deployment_logging_env(), **env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> ConnectorProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"connector process exited {self._process.returncode}:\n{self.log()}")
            with grpc.insecure_channel(self.target) as channel:
                try:
                    AgentMetadataServiceStub(channel).ListAgents(agent_pb2.ListAgentsRequest(), timeout=2)
                    return self
                except grpc.RpcError:
                    time.sleep(0.5)
        raise RuntimeError(f"connector process not ready within {timeout}s:\n{self.log()}")

    def _samples(self, name: str) -> list:
        """The samples of the service's Prometheus metric family ``name``, read from its exposition
        (prometheus_client's text format parser)."""
        from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

        text = requests.get(f"http://127.0.0.1:{self.prometheus_port}/metrics", timeout=10).text
        return [
            sample
            for family in text_string_to_metric_families(text)
            if family.name == name
            for sample in family.samples
        ]

    def counter(self, name: str) -> float:
        """The sum over its labels of the service's Prometheus counter ``name`` (without ``_total``)."""
        return sum(sample.value for sample in self._samples(name) if sample.name == f"{name}_total")

    def histogram(self, name: str, label: str | None = None) -> dict[str, dict[float, float]]:
        """The service's Prometheus histogram ``name`` by the value of its ``label`` (one entry, "",
        for a histogram without labels): each value's cumulative bucket counts by upper bound (the
        ``le`` label, ``+Inf`` included)."""
        buckets: dict[str, dict[float, float]] = {}
        for sample in self._samples(name):
            if sample.name == f"{name}_bucket":
                value = sample.labels[label] if label else ""
                buckets.setdefault(value, {})[float(sample.labels["le"])] = sample.value
        return buckets

    def log(self, tail: int | None = 4000) -> str:
        """What the process wrote to stdout and stderr: the last ``tail`` characters, or all with None."""
        text = Path(self._log.name).read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()
        os.unlink(self._log.name)

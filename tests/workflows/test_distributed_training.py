"""The elastic PyTorch pipeline: local runs (one and two processes), resume after an interruption,
the PyTorchJob it serialises to, and what it records in MLflow.

The pipeline talks to MLflow with MLflow's own client (mlflow-skinny). mlflow-skinny has no tracking
server, and the full `mlflow` that has one adds ~310 MB to the environment and took 40-80 s to
become ready on these machines (workflows/README.md), so the server here is a small fake on
127.0.0.1. It routes by MLflow's own endpoint table (`extract_api_info_for_service` over the
MlflowService and ModelRegistryService protos of the installed mlflow-skinny, what its REST stores
call) and parses every request and answer into those protos strictly, so a shape MLflow does not
define fails the test; only the state it keeps is ours.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from flytekit.core.checkpointer import SyncCheckpoint
from flytekitplugins.kfpytorch.task import PytorchElasticFunctionTask
from google.protobuf.json_format import ParseDict, ParseError
from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS
from mlflow.protos.model_registry_pb2 import ModelRegistryService
from mlflow.protos.service_pb2 import MlflowService
from mlflow.utils.rest_utils import _REST_API_PATH_PREFIX, extract_api_info_for_service
from workflow_test_support import task_templates

from cdao_cli.plan.runner import read_stack_file
from infra.components.node_pool import gpu_resources, pool_labels
from infra.config import parse_stack_config
from workflows import distributed_training as dt

# (HTTP method, path) -> the request proto, as MLflow's REST stores call them.
ROUTES = {
    (method, path): request
    for service in (MlflowService, ModelRegistryService)
    for request, (path, method) in extract_api_info_for_service(service, _REST_API_PATH_PREFIX).items()
}
# mlflow/protos/mlflow_artifacts.proto UploadArtifact: PUT /mlflow-artifacts/artifacts/<path>, the
# file as the body (mlflow/store/artifact/http_artifact_repo.py log_artifact).
ARTIFACTS = f"{_REST_API_PATH_PREFIX}/mlflow-artifacts/artifacts/"


class FakeMlflow:
    """Records every call; answers the calls the pipeline makes as MLflow 3's tracking server does."""

    def __init__(self, prefix: str = "", fail_on: str | None = None):
        self.prefix = prefix
        self.fail_on = fail_on
        self.calls: list[tuple[str, str, Any]] = []
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.artifacts: dict[str, bytes] = {}
        self.models: dict[str, list[dict[str, str]]] = {}
        self.problems: list[str] = []  # messages that are not MLflow's shapes, reported on exit
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not url.path.startswith(fake.prefix + "/"):
                    return self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND"})
                path = url.path.removeprefix(fake.prefix)
                if method == "PUT" and path.startswith(ARTIFACTS):
                    fake.calls.append((method, path, raw))
                    fake.artifacts[path.removeprefix(ARTIFACTS)] = raw
                    return self._reply(200, {})
                request = ROUTES.get((method, path))
                if request is None:
                    return self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"{method} {path}"})
                query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                body = json.loads(raw) if raw else query
                try:
                    ParseDict(body, request())  # what the client sent is a message MLflow defines
                except ParseError as exc:
                    fake.problems.append(f"{method} {path}: the client sent no {request.__name__}: {exc}")
                    return self._reply(*fake._error("INVALID_PARAMETER_VALUE", fake.problems[-1]))
                fake.calls.append((method, path, body))
                if fake.fail_on and path.endswith(fake.fail_on):
                    return self._reply(*fake._error("INVALID_PARAMETER_VALUE", "injected"))
                status, answer = fake.answer(path.removeprefix(f"{_REST_API_PATH_PREFIX}/mlflow"), body)
                if status == 200:
                    # And so is what we answer; a shape MLflow does not define is the fake's bug.
                    try:
                        ParseDict(answer, request.Response())
                    except ParseError as exc:
                        wrong = f"{method} {path}: the fake's answer is no {request.__name__}.Response: {exc}"
                        fake.problems.append(wrong)
                        status, answer = 500, {"error_code": "INTERNAL_ERROR", "message": fake.problems[-1]}
                self._reply(status, answer)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}{prefix}"

    @staticmethod
    def _error(code: str, message: str) -> tuple[int, dict]:
        """An error as MLflow answers it: its code, and the HTTP status MLflow maps the code to."""
        return ERROR_CODE_TO_HTTP_STATUS[code], {"error_code": code, "message": message}

    def _run(self, run_id: str) -> dict:
        run = self.runs[run_id]
        return {
            "info": run["info"],
            "data": {
                "params": [{"key": k, "value": v} for k, v in run["params"].items()],
                "metrics": run["metrics"],
                "tags": run["tags"],
            },
        }

    def answer(self, endpoint: str, body: dict) -> tuple[int, dict]:  # noqa: PLR0911 - one return per endpoint
        if endpoint == "/experiments/get-by-name":
            name = body["experiment_name"]
            if name not in self.experiments:
                return self._error("RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name '{name}'")
            return 200, {"experiment": {"experiment_id": self.experiments[name], "name": name}}
        if endpoint == "/experiments/create":
            if body["name"] in self.experiments:
                return self._error("RESOURCE_ALREADY_EXISTS", f"Experiment '{body['name']}' already exists.")
            self.experiments[body["name"]] = str(len(self.experiments) + 1)
            return 200, {"experiment_id": self.experiments[body["name"]]}
        if endpoint == "/runs/create":
            # MLflow's run ids are uuid4 hex (its client caches artifact repositories by run id).
            run_id = uuid.uuid4().hex
            info = {
                "run_id": run_id,
                "run_uuid": run_id,
                "run_name": body.get("run_name", ""),
                "experiment_id": body["experiment_id"],
                "status": "RUNNING",
                "start_time": body.get("start_time", 0),
                "artifact_uri": f"mlflow-artifacts:/{body['experiment_id']}/{run_id}/artifacts",
                "lifecycle_stage": "active",
            }
            self.runs[run_id] = {"info": info, "params": {}, "metrics": [], "tags": body.get("tags", [])}
            return 200, {"run": self._run(run_id)}
        if endpoint == "/runs/get":
            return 200, {"run": self._run(body["run_id"])}
        if endpoint == "/runs/log-batch":
            run = self.runs[body["run_id"]]
            run["params"].update({p["key"]: p["value"] for p in body.get("params", [])})
            run["metrics"] += body.get("metrics", [])
            return 200, {}
        if endpoint == "/registered-models/create":
            if body["name"] in self.models:
                return self._error("RESOURCE_ALREADY_EXISTS", f"Registered Model (name={body['name']}) already exists.")
            self.models[body["name"]] = []
            return 200, {"registered_model": {"name": body["name"]}}
        if endpoint == "/model-versions/create":
            versions = self.models[body["name"]]
            version = str(len(versions) + 1)
            versions.append({"source": body["source"], "run_id": body["run_id"], "version": version})
            # The tracking server's registry creates a version READY (no asynchronous copy).
            return 200, {"model_version": {**versions[-1], "name": body["name"], "status": "READY"}}
        if endpoint == "/runs/update":
            info = self.runs[body["run_id"]]["info"]
            info.update(status=body["status"], end_time=body.get("end_time", 0))
            return 200, {"run_info": info}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": endpoint}

    def __enter__(self) -> FakeMlflow:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture(autouse=True)
def _fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's client retries a failed connection 7 times with backoff (MLFLOW_HTTP_REQUEST_MAX_RETRIES):
    # minutes before a broken test says so.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@pytest.fixture
def mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMlflow]:
    with FakeMlflow() as fake:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", fake.uri)
        yield fake


# How often torch elastic's agent looks at its workers (flytekit's `Elastic.monitor_interval`, 5 s by
# default, flytekitplugins/kfpytorch/task.py, flytekitplugins-kfpytorch 1.16.31; the agent sleeps it
# before every look, torch/distributed/elastic/agent/server/api.py `_invoke_run`, torch 2.13.0): a
# local group whose workers finish in 2 s is otherwise noticed done only at the next 5 s tick. The
# smallest whole number of seconds, as `Elastic` declares the field an int.
LOCAL_MONITOR_INTERVAL = 1


def test_distributed_training_pipeline_trains_and_registers_the_model_in_mlflow(
    mlflow: FakeMlflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local run is one node of the pipeline's elastic "1:2" group: torch's c10d rendezvous waits
    # `last_call_timeout` (5 s in the pipeline) for the second node before it starts with one
    # (torch/distributed/elastic/rendezvous/dynamic_rendezvous.py, torch 2.13.0; it reads whole
    # seconds and refuses 0). The group, its training and what it records are the same with 1 s;
    # monkeypatch restores the pipeline's values, which its pods read from the module on the cluster.
    monkeypatch.setitem(dt.ELASTIC.rdzv_configs, "last_call_timeout", 1)
    monkeypatch.setattr(dt.ELASTIC, "monitor_interval", LOCAL_MONITOR_INTERVAL)
    result = dt.distributed_training_pipeline(epochs=12, experiment="digits-test", registered_model="digits-test")
    assert result.test_accuracy >= 0.9  # chance is 0.10
    assert result.model_version == "1"

    (run,) = mlflow.runs.values()
    assert run["info"]["status"] == "FINISHED"
    assert mlflow.experiments == {"digits-test": run["info"]["experiment_id"]}
    assert run["params"] == {"epochs": "12", "lr": "0.05", "batch_size": "64", "nnodes": "1:2"}
    losses = [m for m in run["metrics"] if m["key"] == "train_loss"]
    assert [int(m["step"]) for m in losses] == list(range(1, 13))
    assert losses[-1]["value"] < losses[0]["value"] * 0.5
    (acc,) = [m["value"] for m in run["metrics"] if m["key"] == "test_accuracy"]
    assert acc == pytest.approx(result.test_accuracy)

    # The weights went through the artifact proxy and load into the model.
    artifact = f"{run['info']['artifact_uri'].removeprefix('mlflow-artifacts:/')}/model/digits_mlp.pt"
    state = torch.load(io.BytesIO(mlflow.artifacts[artifact]), weights_only=True)
    dt.build_model().load_state_dict(state)
    assert mlflow.models["digits-test"] == [
        {"source": f"{run['info']['artifact_uri']}/model", "run_id": run["info"]["run_id"], "version": "1"}
    ]


def test_a_second_run_adds_a_version_behind_the_albs_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """From outside the cluster the tracking URI is `https://<flyte-hostname>/mlflow`: the client keeps
    the path for the REST API and the artifact proxy alike (mlflow-artifacts URIs resolve under it)."""
    with FakeMlflow(prefix="/mlflow") as fake:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", fake.uri)
        model = _saved(dt.build_model(), Path("w.pt"))
        args = {"losses": [1.0], "test_accuracy": 0.5, "epochs": 1, "lr": 0.1, "batch_size": 8}
        for _ in range(2):
            dt.log_to_mlflow(model=model, **args, experiment="e", registered_model="m")
    assert [v["version"] for v in fake.models["m"]] == ["1", "2"]
    assert len(fake.experiments) == 1
    assert len(fake.artifacts) == 2


def test_an_mlflow_failure_fails_the_task_and_marks_the_run_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.exceptions import RestException  # noqa: PLC0415

    with FakeMlflow(fail_on="/runs/log-batch") as fake:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", fake.uri)
        model = dt.build_model()
        weights = Path(fake.server.server_address[0].replace(".", "_") + ".pt")
        with pytest.raises(RestException, match="INVALID_PARAMETER_VALUE"):
            dt.log_to_mlflow(
                model=_saved(model, weights),
                losses=[1.0],
                test_accuracy=0.5,
                epochs=1,
                lr=0.1,
                batch_size=8,
                experiment="e",
                registered_model="m",
            )
        (run,) = fake.runs.values()
        assert run["info"]["status"] == "FAILED"
        assert fake.models == {}


def _saved(model: Any, name: Path) -> Any:
    import tempfile  # noqa: PLC0415

    from flytekit.types.file import FlyteFile  # noqa: PLC0415

    path = Path(tempfile.mkdtemp()) / name.name
    torch.save(model.state_dict(), path)
    return FlyteFile(str(path))


def test_two_processes_train_one_model_with_gloo() -> None:
    """The same task body as a two-process group (what two GPU pods are on the cluster)."""
    two = PytorchElasticFunctionTask(
        task_config=dt.Elastic(
            nnodes=1,
            nproc_per_node=2,
            start_method="spawn",
            monitor_interval=LOCAL_MONITOR_INTERVAL,
            increase_shared_mem=False,
        ),
        task_function=dt.train_ddp.task_function,
    )
    trained = two(epochs=12, lr=0.05, batch_size=64)
    assert trained.test_accuracy >= 0.9
    assert len(trained.losses) == 12 and trained.losses[-1] < trained.losses[0] * 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_training_resumes_from_the_checkpoint_of_an_interrupted_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {"MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    data = dt.digits()

    def fit(epochs: int, checkpoint: Any) -> tuple[Any, Any]:
        monkeypatch.setenv("MASTER_PORT", str(_free_port()))
        return dt.train_data_parallel(data, epochs=epochs, lr=0.05, batch_size=64, checkpoint=checkpoint)

    # Attempt 1 is reclaimed after two of four epochs; Flyte hands attempt 2 its checkpoint.
    _, first = fit(2, SyncCheckpoint(str(tmp_path / "attempt-1")))
    assert first.trained_epochs == [1, 2]
    resumed_model, resumed = fit(
        4, SyncCheckpoint(str(tmp_path / "attempt-2"), checkpoint_src=str(tmp_path / "attempt-1"))
    )
    assert resumed.trained_epochs == [3, 4]
    whole_model, whole = fit(4, None)
    assert resumed.losses == pytest.approx(whole.losses)
    for a, b in zip(resumed_model.state_dict().values(), whole_model.state_dict().values(), strict=True):
        assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="would mix two different runs"):
        monkeypatch.setenv("MASTER_PORT", str(_free_port()))
        dt.train_data_parallel(
            data,
            epochs=4,
            lr=0.1,
            batch_size=64,
            checkpoint=SyncCheckpoint(str(tmp_path / "b"), checkpoint_src=str(tmp_path / "attempt-1")),
        )


def test_training_serialises_to_an_elastic_pytorch_job_on_the_a100_pool() -> None:
    templates = task_templates(dt.distributed_training_pipeline)
    train = templates["train_ddp"]
    assert train.type == "pytorch"  # the task type propeller hands to its pytorch plugin
    elastic = train.custom["elasticConfig"]
    assert (elastic["minReplicas"], elastic["maxReplicas"]) == (1, 2)
    assert elastic["nprocPerNode"] == 1 and elastic["rdzvBackend"] == "c10d"
    assert train.metadata.interruptible is True and train.metadata.retries.retries >= 1
    pod = train.k8s_pod.pod_spec
    # The pool the pods land on, computed from the stacks' config as infra/ builds the node groups.
    raw, _ = read_stack_file("staging")
    pool = parse_stack_config("staging", raw)[0].node_pools["a100-timeslice"]
    assert pod["nodeSelector"].items() <= pool_labels("a100-timeslice", pool).items()
    assert [(t["key"], t["value"], t["effect"]) for t in pod["tolerations"]] == [
        (t.key, t.value, t.effect) for t in pool.taints
    ]
    (container,) = pod["containers"]
    assert set(container["resources"]["limits"]) - {"cpu", "memory"} <= set(gpu_resources(pool))
    assert container["resources"]["limits"] == container["resources"]["requests"]
    assert pod["priorityClassName"] == "cdao-training"
    # The MLflow step runs on the cpu pool.
    log = templates["log_to_mlflow"].k8s_pod.pod_spec
    assert log["nodeSelector"]["cdao.io/node-pool"] == "cpu"


def test_an_unreachable_tracking_server_is_named_with_what_to_set() -> None:
    # A laptop without MLFLOW_TRACKING_URI gets the in-cluster default, which does not resolve there.
    from mlflow import MlflowClient  # noqa: PLC0415

    client = MlflowClient(tracking_uri="http://mlflow.invalid:5000")
    with pytest.raises(dt.MlflowError, match=r"no MLflow tracking server answers at http://mlflow.invalid:5000"):
        dt._experiment_id(client, "digits")

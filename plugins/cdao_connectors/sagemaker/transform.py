"""SageMaker batch transform as a Flyte task that also runs on a laptop.

Registered, the task is a SageMaker transform job (``BatchTransformConnector``): the model package
(``model.tar.gz`` with ``code/inference.py``) becomes a SageMaker model served by the registered
task image, and the predictions land under an S3 prefix that the task returns as a directory.

Under ``pyflyte run`` the same package is served by the same serving code (a subprocess on
127.0.0.1) and this module plays SageMaker's part of the job: splitting each input object into
records, batching them up to ``MaxPayloadInMB``, applying ``InputFilter``, joining the input and
``OutputFilter``, and writing ``<object>.out``. It does so with SageMaker's documented rules, so a
filter or a response that would fail the real job fails the local run too.

Hand-written because flytekitplugins-awssagemaker's transform task has no local execution (it
always calls AWS) and needs a model registered beforehand; SageMaker's own "local mode" needs
Docker.
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from flytekit.configuration import SerializationSettings
from flytekit.core.base_task import PythonTask, TaskMetadata
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.interface import Interface
from flytekit.core.python_auto_container import get_registerable_container_image
from flytekit.extend.backend.base_connector import AsyncConnectorExecutorMixin
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from cdao_connectors._aws_limits import (
    SAGEMAKER_TRANSFORM_INSTANCE_COUNT,
    SAGEMAKER_TRANSFORM_INVOCATION_TIMEOUT_SECONDS,
    SAGEMAKER_TRANSFORM_MAX_CONCURRENT,
    SAGEMAKER_TRANSFORM_MAX_PAYLOAD_MB,
)
from cdao_connectors._local import LOCAL_EXECUTION_ENV
from cdao_connectors.sagemaker import serving
from cdao_connectors.sagemaker.task import BATCH_TRANSFORM_TASK_TYPE

STRATEGIES = ("MultiRecord", "SingleRecord")
SPLIT_TYPES = ("Line", "None")
JOIN_SOURCES = ("None", "Input")
# CreateTransformJob's limits (SageMaker API reference).
MAX_ENVIRONMENT = 16
_ENV_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}$")
ENV_INPUT_TYPES = (int, float, str, bool)
# SageMaker does not say whether its MB is 10^6 or 2^20 bytes; the smaller one means a local run
# never packs a request the real job would refuse.
_MB = 1_000_000
_SERVER_START_SECONDS = 300.0


class TransformError(Exception):
    """The transform could not produce predictions for its input, as the SageMaker job would fail."""


# ---------------------------------------------------------------------------------------------
# InputFilter / OutputFilter: the JSONPath subset SageMaker documents for CSV records.
_INDEX_LIST = re.compile(r"^\$\[\s*-?\d+\s*(,\s*-?\d+\s*)*\]$")
_SLICE = re.compile(r"^\$\[\s*(-?\d+)?\s*:\s*(-?\d+)?\s*\]$")


def check_filter(expression: str, what: str) -> str:
    """``$`` (the whole record), ``$[i,j,...]`` or ``$[a:b]`` over a CSV record's columns."""
    if expression == "$" or _INDEX_LIST.match(expression) or _SLICE.match(expression):
        return expression
    raise ValueError(f"{what}={expression!r}: expected '$', '$[i,j,...]' or '$[start:end]' over CSV columns")


def apply_filter(expression: str, columns: list[str], where: str) -> list[str]:
    if expression == "$":
        return columns
    if m := _SLICE.match(expression):
        start, end = (int(g) if g is not None else None for g in m.groups())
        picked = columns[start:end]
    else:
        picked = []
        for raw in expression[2:-1].split(","):
            i = int(raw)
            if not -len(columns) <= i < len(columns):
                raise TransformError(f"{where}: filter {expression!r} picks column {i} of {len(columns)} columns")
            picked.append(columns[i])
    if not picked:
        raise TransformError(f"{where}: filter {expression!r} leaves nothing of a {len(columns)}-column record")
    return picked


def _csv_fields(line: str) -> list[str]:
    return next(csv.reader([line]))


def _csv_line(columns: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(columns)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchTransform:
    """One transform job's settings; every field maps to a ``CreateTransformJob`` request field."""

    execution_role_arn: str
    region: str
    output_s3_path: str
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 1
    strategy: str = "MultiRecord"
    content_type: str = "text/csv"
    accept: str = "text/csv"
    split_type: str = "Line"
    input_filter: str = "$"
    join_source: str = "None"
    output_filter: str = "$"
    invocation_timeout_seconds: int = 600
    environment: Mapping[str, str] = field(default_factory=dict)
    env_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.instance_type.startswith("ml."):
            raise ValueError(f"instance_type={self.instance_type!r}: SageMaker instance types start 'ml.'")
        SAGEMAKER_TRANSFORM_INSTANCE_COUNT.check("instance_count", self.instance_count)
        SAGEMAKER_TRANSFORM_MAX_CONCURRENT.check("max_concurrent_transforms", self.max_concurrent_transforms)
        SAGEMAKER_TRANSFORM_MAX_PAYLOAD_MB.check("max_payload_mb", self.max_payload_mb)
        SAGEMAKER_TRANSFORM_INVOCATION_TIMEOUT_SECONDS.check(
            "invocation_timeout_seconds", self.invocation_timeout_seconds
        )
        payload_limit = SAGEMAKER_TRANSFORM_MAX_PAYLOAD_MB.bounds()[1]
        if self.max_concurrent_transforms * self.max_payload_mb > payload_limit:
            raise ValueError(
                f"max_concurrent_transforms={self.max_concurrent_transforms} times max_payload_mb="
                f"{self.max_payload_mb} is over SageMaker's {payload_limit} MB "
                f"({SAGEMAKER_TRANSFORM_MAX_PAYLOAD_MB.api})"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}: expected one of {STRATEGIES}")
        if self.split_type not in SPLIT_TYPES:
            raise ValueError(f"split_type={self.split_type!r}: expected one of {SPLIT_TYPES}")
        if self.join_source not in JOIN_SOURCES:
            raise ValueError(f"join_source={self.join_source!r}: expected one of {JOIN_SOURCES}")
        check_filter(self.input_filter, "input_filter")
        check_filter(self.output_filter, "output_filter")
        filtered = (self.input_filter, self.output_filter) != ("$", "$") or self.join_source == "Input"
        if filtered and (self.content_type != "text/csv" or self.split_type != "Line"):
            raise ValueError(
                f"input_filter, output_filter and join_source work on CSV lines here; "
                f"they need content_type='text/csv' and split_type='Line', "
                f"not {self.content_type!r} and {self.split_type!r}"
            )
        if self.strategy == "MultiRecord" and self.split_type == "None":
            raise ValueError("strategy='MultiRecord' needs split_type='Line' to find records")
        if self.output_s3_path and not self.output_s3_path.startswith("s3://"):
            raise ValueError(f"output_s3_path={self.output_s3_path!r} must be an s3:// URI")
        names = [*self.environment, *(env_var(n) for n in self.env_inputs)]
        if len(names) > MAX_ENVIRONMENT:
            raise ValueError(f"environment: {len(names)} environment variables; SageMaker allows {MAX_ENVIRONMENT}")
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"environment: variables {clash} are set twice (environment and env_inputs)")
        bad = [n for n in names if not _ENV_NAME.match(n)]
        if bad:
            raise ValueError(f"environment: {bad} are not valid environment variable names")
        if any(not isinstance(v, str) for v in self.environment.values()):
            raise ValueError("environment values must be strings")


def env_var(input_name: str) -> str:
    """The container variable an ``env_inputs`` input becomes."""
    return input_name.upper()


# ---------------------------------------------------------------------------------------------
# The local run: SageMaker's side of a transform job, against the serving subprocess.
def _records(content: bytes, config: BatchTransform) -> list[str]:
    if config.split_type == "None":
        return [content.decode()] if content else []
    lines = content.decode().split("\n")
    return [line.rstrip("\r") for line in lines if line.strip()]


def _batches(records: list[str], config: BatchTransform, where: str) -> Iterator[list[int]]:
    """Indices of the records of each request: one each, or as many as fit in MaxPayloadInMB."""
    limit = config.max_payload_mb * _MB
    batch: list[int] = []
    size = 0
    for i, record in enumerate(records):
        n = len(record.encode()) + 1
        if n > limit:
            raise TransformError(f"{where}: record {i + 1} is {n} bytes, over MaxPayloadInMB={config.max_payload_mb}")
        if batch and (config.strategy == "SingleRecord" or size + n > limit):
            yield batch
            batch, size = [], 0
        batch.append(i)
        size += n
    if batch:
        yield batch


class LocalServer:
    """The serving entry point in a subprocess, as SageMaker runs the model's container."""

    def __init__(self, model_dir: Path, environment: Mapping[str, str]) -> None:
        env = {**os.environ, **environment, serving.MODEL_DIR_ENV: str(model_dir)}
        command = [sys.executable, "-m", serving.__name__, "serve", "--host", "127.0.0.1", "--port", "0"]
        self._process = subprocess.Popen(  # noqa: S603  (our own module, fixed arguments)
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._log: list[str] = []
        self._ready = threading.Event()
        self._address = ""
        # Both pipes are read to the end: inference code that prints must never block on a full pipe.
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.url = self._wait_ready()

    def _read_stdout(self) -> None:
        for line in self._process.stdout:  # type: ignore[union-attr]
            if not self._ready.is_set() and line.startswith(serving.READY_PREFIX):
                self._address = line[len(serving.READY_PREFIX) :].strip()
                self._ready.set()
            else:
                self._log.append(line)
        self._ready.set()  # the process ended: stop waiting

    def _read_stderr(self) -> None:
        for line in self._process.stderr:  # type: ignore[union-attr]
            self._log.append(line)

    def _wait_ready(self) -> str:
        self._ready.wait(_SERVER_START_SECONDS)
        if not self._address:
            self.stop()
            tail = self.log_tail()
            reason = tail.splitlines()[-1] if tail else "no output"
            raise TransformError(f"the model server did not start: {reason}\n{tail}".rstrip())
        return self._address

    def log_tail(self, lines: int = 20) -> str:
        return "".join(self._log[-lines:]).strip()

    def invoke(self, body: bytes, content_type: str, accept: str, timeout: float) -> bytes:
        request = urllib.request.Request(  # noqa: S310  (http://127.0.0.1 of our own subprocess)
            f"{self.url}/invocations", data=body, headers={"Content-Type": content_type, "Accept": accept}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.read()
        except urllib.error.HTTPError as exc:
            raise TransformError(f"the model answered {exc.code}: {exc.read().decode(errors='replace')}") from exc

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for reader in self._readers:
            reader.join(timeout=5)  # the last lines explain a failure

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def unpack_model(package: Path, into: Path) -> Path:
    """Unpack ``model.tar.gz`` as SageMaker does into /opt/ml/model, refusing anything else."""
    if not tarfile.is_tarfile(package):
        raise TransformError(f"{package}: the model must be a model.tar.gz package (see cdao_sdk.package_model)")
    with tarfile.open(package, "r:*") as archive:
        archive.extractall(into, filter="data")
    return into


def transform_object(server: LocalServer, name: str, content: bytes, config: BatchTransform) -> str:
    """The ``.out`` text SageMaker writes for one input object."""
    records = _records(content, config)
    out: list[str] = []
    for batch in _batches(records, config, name):
        sent = [records[i] for i in batch]
        if config.input_filter != "$":
            sent = [_csv_line(apply_filter(config.input_filter, _csv_fields(r), name)) for r in sent]
        body = "\n".join(sent).encode()
        answer = server.invoke(body, config.content_type, config.accept, config.invocation_timeout_seconds).decode()
        if config.split_type == "None":
            out.append(answer)
            continue
        lines = [line for line in answer.split("\n") if line.strip()]
        if config.join_source == "Input" and len(lines) != len(batch):
            raise TransformError(
                f"{name}: the model answered {len(lines)} lines for {len(batch)} records; "
                "join_source='Input' needs one prediction line per record"
            )
        for k, line in enumerate(lines):
            columns = _csv_fields(line) if config.content_type == "text/csv" else [line]
            if config.join_source == "Input":
                columns = _csv_fields(records[batch[k]]) + columns
            if config.output_filter != "$":
                columns = apply_filter(config.output_filter, columns, name)
            out.append(_csv_line(columns) if config.content_type == "text/csv" else columns[0])
    return "".join(f"{line}\n" for line in out)


def run_locally(
    config: BatchTransform, model_package: Path, data: Path, environment: Mapping[str, str], out_dir: Path
) -> Path:
    """Run the transform of ``data`` (a file, or every file under a directory) into ``out_dir``."""
    files = sorted(p for p in data.rglob("*") if p.is_file()) if data.is_dir() else [data]
    with tempfile.TemporaryDirectory(prefix="cdao-model-") as model_dir:
        unpack_model(model_package, Path(model_dir))
        with LocalServer(Path(model_dir), {**config.environment, **environment}) as server:
            for path in files:
                relative = path.relative_to(data) if data.is_dir() else Path(path.name)
                try:
                    text = transform_object(server, str(relative), path.read_bytes(), config)
                except TransformError as exc:
                    tail = server.log_tail()
                    raise TransformError(f"{exc}\n{tail}" if tail else str(exc)) from exc
                target = out_dir / f"{relative}.out"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
    return out_dir


# ---------------------------------------------------------------------------------------------
class BatchTransformTask(AsyncConnectorExecutorMixin, PythonTask):
    """Inputs ``model`` (a model.tar.gz), ``data`` and the ``env_inputs``; output ``predictions``."""

    _TASK_TYPE = BATCH_TRANSFORM_TASK_TYPE

    def __init__(
        self,
        name: str,
        config: BatchTransform,
        env_input_types: Mapping[str, type],
        container_image: str | None = None,
        metadata: TaskMetadata | None = None,
    ) -> None:
        reserved = {"model", "data"} & set(env_input_types)
        if reserved:
            raise ValueError(f"sagemaker_batch_transform_task {name}: env_inputs may not be named {sorted(reserved)}")
        wrong = {k: t for k, t in env_input_types.items() if t not in ENV_INPUT_TYPES}
        if wrong:
            raise ValueError(
                f"sagemaker_batch_transform_task {name}: env_inputs {sorted(wrong)} must be int, float, str or bool"
            )
        super().__init__(
            task_type=self._TASK_TYPE,
            name=name,
            task_config=replace(config, env_inputs=tuple(env_input_types)),
            interface=Interface(
                inputs={"model": FlyteFile, "data": FlyteFile, **env_input_types},
                outputs={"predictions": FlyteDirectory},
            ),
            metadata=metadata,
        )
        self._container_image = container_image

    def registration_config(self) -> BatchTransform:
        """The settings sent to the connector; a subclass may fill what only registration needs."""
        return self.task_config

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        """``custom`` in the shape of :class:`BatchTransformCustom`."""
        config = self.registration_config()
        missing = [n for n in ("execution_role_arn", "region", "output_s3_path") if not getattr(config, n)]
        if missing:
            raise ValueError(f"sagemaker_batch_transform_task {self.name}: registering it needs {missing}")
        transform = asdict(config)
        transform["environment"] = dict(config.environment)
        transform["env_inputs"] = list(config.env_inputs)
        # The model is served by the image the workflows are registered with.
        image = get_registerable_container_image(self._container_image, settings.image_config)
        return {"transform": transform, "image": image}

    def execute(self, **kwargs: Any) -> Any:
        ctx = FlyteContextManager.current_context()
        mode = os.environ.get(LOCAL_EXECUTION_ENV, "in-process")
        if mode not in ("in-process", "connector"):
            raise ValueError(f"{LOCAL_EXECUTION_ENV}={mode!r}: expected 'in-process' or 'connector'")
        if mode == "connector":
            importlib.import_module("cdao_connectors.sagemaker.connector")  # registers the connector
            return super().execute(**kwargs)
        environment = {env_var(name): str(kwargs[name]) for name in self.task_config.env_inputs}
        out_dir = Path(ctx.file_access.get_random_local_directory())
        run_locally(
            self.task_config,
            Path(kwargs["model"].download()),
            Path(kwargs["data"].download()),
            environment,
            out_dir,
        )
        return FlyteDirectory(str(out_dir))

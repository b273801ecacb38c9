"""SageMaker's inference-container contract, served by the task image for batch transform.

SageMaker starts a model's container as ``docker run <image> serve`` and speaks HTTP to it on
port 8080 (or ``SAGEMAKER_BIND_TO_PORT``): ``GET /ping`` answers 200 once the model is loaded, and
``POST /invocations`` receives one mini-batch of records and answers with their predictions.

The model package (``model.tar.gz``, unpacked by SageMaker into ``/opt/ml/model``) carries its own
inference code at ``code/inference.py``, the convention of SageMaker's framework containers:
``model_fn(model_dir)`` runs once, then every request goes through ``transform_fn(model, body,
content_type, accept)``, or through ``input_fn`` -> ``predict_fn`` -> ``output_fn``. So the task
image serves any model packaged this way, and ``pyflyte run`` serves it with the same code on
127.0.0.1 (see :mod:`cdao_connectors.sagemaker.transform`).

Written here rather than taken from SageMaker's inference toolkit, which needs Java's
multi-model-server in the image; two routes need no web framework. The one client is SageMaker's
transform agent inside the job, so the standard library's threading server is enough.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

CODE_PATH = Path("code") / "inference.py"
DEFAULT_MODEL_DIR = "/opt/ml/model"
MODEL_DIR_ENV = "CDAO_MODEL_DIR"
PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
DEFAULT_PORT = 8080
# What the server prints once it listens; the local transform reads the address from this line.
READY_PREFIX = "cdao-serving listening on "
_PIPELINE = ("input_fn", "predict_fn", "output_fn")


class InferenceCodeError(Exception):
    """The model package's inference code is missing or incomplete."""


@dataclass(frozen=True)
class InferenceHandler:
    """A loaded model and the function that answers one ``/invocations`` request."""

    model: Any
    transform: Callable[[Any, bytes, str, str], Any]

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        result = self.transform(self.model, body, content_type, accept)
        response_type = accept
        if isinstance(result, tuple):
            result, response_type = result
        if isinstance(result, str):
            result = result.encode()
        if not isinstance(result, bytes | bytearray):
            raise TypeError(f"the inference code returned {type(result).__name__}; expected bytes or str")
        return bytes(result), response_type


def _load_module(model_dir: Path) -> ModuleType:
    path = model_dir / CODE_PATH
    if not path.is_file():
        raise InferenceCodeError(f"{model_dir}: the model package has no {CODE_PATH} (see cdao_sdk.package_model)")
    if (path.parent / "requirements.txt").exists():
        raise InferenceCodeError(
            f"{path.parent / 'requirements.txt'}: the serving image installs nothing at start; "
            "add the libraries to the task image instead"
        )
    # code/ on the path, as SageMaker's containers do, so inference.py may import its siblings.
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("inference", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def request_function(module: ModuleType, where: str) -> Callable[[Any, bytes, str, str], Any]:
    """The function answering one request: ``transform_fn``, or ``input_fn`` -> ``predict_fn`` -> ``output_fn``."""
    if not callable(getattr(module, "model_fn", None)):
        raise InferenceCodeError(f"{where} defines no model_fn(model_dir)")
    transform = getattr(module, "transform_fn", None)
    if callable(transform):
        return transform
    missing = [name for name in _PIPELINE if not callable(getattr(module, name, None))]
    if missing:
        raise InferenceCodeError(f"{where} defines neither transform_fn nor {', '.join(_PIPELINE)}: lacks {missing}")
    input_fn, predict_fn, output_fn = (getattr(module, name) for name in _PIPELINE)

    def pipeline(model: Any, body: bytes, content_type: str, accept: str) -> Any:
        return output_fn(predict_fn(input_fn(body, content_type), model), accept)

    return pipeline


def load_handler(model_dir: str | os.PathLike[str]) -> InferenceHandler:
    """Import the package's inference code and load the model, failing with what is missing."""
    root = Path(model_dir)
    module = _load_module(root)
    transform = request_function(module, str(root / CODE_PATH))
    return InferenceHandler(model=module.model_fn(str(root)), transform=transform)


def _handler_class(handler: InferenceHandler) -> type[BaseHTTPRequestHandler]:
    class Invocations(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: HTTPStatus, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            # http.server does not decode chunked requests; a client may stream a mini-batch so.
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF closing the chunk
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return b"".join(parts)

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._reply(HTTPStatus.OK, b"")
            else:
                self._reply(HTTPStatus.NOT_FOUND, f"no route {self.path}".encode())

        def do_POST(self) -> None:
            if self.path != "/invocations":
                self._reply(HTTPStatus.NOT_FOUND, f"no route {self.path}".encode())
                return
            body = self._body()
            content_type = self.headers.get("Content-Type") or "application/octet-stream"
            accept = self.headers.get("Accept") or content_type
            try:
                result, response_type = handler.invoke(body, content_type, accept)
            except Exception as exc:
                # SageMaker copies the body of a failed invocation into the job's failure reason.
                traceback.print_exc()
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}".encode())
                return
            self._reply(HTTPStatus.OK, result, response_type)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Invocations


def make_server(handler: InferenceHandler, host: str, port: int) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), _handler_class(handler))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve", description=__doc__.split("\n\n")[0])
    # SageMaker passes "serve" as the container's argument; nothing else is accepted positionally.
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.add_argument("--model-dir", default=os.environ.get(MODEL_DIR_ENV, DEFAULT_MODEL_DIR))
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104  (inside the job's container network)
    parser.add_argument("--port", type=int, default=int(os.environ.get(PORT_ENV, DEFAULT_PORT)))
    args = parser.parse_args(argv)
    try:
        handler = load_handler(args.model_dir)
    except InferenceCodeError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    server = make_server(handler, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

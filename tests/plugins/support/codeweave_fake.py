"""A Codeweave jobs API that implements cdao_connectors.codeweave.contract and runs jobs locally.

Each job's command runs as a subprocess (the real ``pyflyte-execute``), with the job's env on top of
the storage settings the test provides, so outputs land in moto's S3 like they would in AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class FakeJob:
    id: str
    spec: dict[str, Any]
    status: str = "QUEUED"
    message: str = ""
    proc: subprocess.Popen | None = None
    log: bytes = b""
    forced_status: str | None = None


@dataclass
class CodeweaveFake:
    api_key: str
    base_env: dict[str, str]
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    throttle_next: int = 0
    throttled: int = 0
    retry_after: str = "0"  # the Retry-After of a 429
    hanging: bool = False  # accept requests and never answer until stop()
    run_jobs: bool = True  # False: a created job stays QUEUED (no GPU free) until cancelled
    released: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, str]] = field(default_factory=list)
    posted: list[dict[str, Any]] = field(default_factory=list)  # every well-formed POST /jobs body, in order
    connections: set[tuple[str, int]] = field(default_factory=set)  # client (host, port) of each request
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _start(self, job: FakeJob) -> None:
        env = {**self.base_env, **job.spec.get("env", {})}
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        job.proc = subprocess.Popen(job.spec["command"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        job.status = "RUNNING"

        def wait() -> None:
            out, _ = job.proc.communicate()
            with self.lock:
                job.log = out
                if job.status == "CANCELLED":
                    return
                rc = job.proc.returncode
                job.status = "SUCCEEDED" if rc == 0 else "FAILED"
                job.message = "" if rc == 0 else f"command exited with code {rc}"

        threading.Thread(target=wait, daemon=True).start()

    def view(self, job: FakeJob) -> dict[str, Any]:
        return {
            "id": job.id,
            "name": job.spec.get("name"),
            "status": job.forced_status or job.status,
            "message": job.message,
            "log_url": f"{self.url}/jobs/{job.id}/logs",
        }

    def running_processes(self) -> list[subprocess.Popen]:
        return [j.proc for j in self.jobs.values() if j.proc is not None and j.proc.poll() is None]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # A JSON API over HTTPS keeps connections alive (HTTP/1.1); http.server needs it asked for
            # and a Content-Length on every answer, which _send gives.
            protocol_version = "HTTP/1.1"
            # http.server writes the headers and the body of an answer separately; on a kept-alive
            # connection Nagle's algorithm holds the body until the client's delayed ACK of the
            # headers (~40 ms a request on Linux). Servers answering in one segment do not pay
            # it; TCP_NODELAY (socketserver.StreamRequestHandler.disable_nagle_algorithm) makes
            # the fake answer like one.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _gate(self) -> bool:
                fake.requests.append((self.command, self.path))
                fake.connections.add(self.client_address)
                # Read the body whatever the answer: on a kept-alive connection, an unread body
                # would be parsed as the next request.
                self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fake.hanging:
                    fake.released.wait()
                    self.close_connection = True  # a server going away drops its connections
                    return False
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._send(401, {"error": "bad API key"})
                    return False
                with fake.lock:
                    if fake.throttle_next > 0:
                        fake.throttle_next -= 1
                        fake.throttled += 1
                        self._send(429, {"error": "slow down"}, {"Retry-After": fake.retry_after})
                        return False
                return True

            def _job(self) -> FakeJob | None:
                job_id = self.path.split("/")[2]
                job = fake.jobs.get(job_id)
                if job is None:
                    self._send(404, {"error": f"no job {job_id}"})
                return job

            def do_POST(self) -> None:
                if not self._gate():
                    return
                spec = json.loads(self.body)
                missing = [k for k in ("image", "command", "resources", "idempotency_key") if k not in spec]
                if missing or self.path != "/jobs":
                    self._send(400, {"error": f"missing {missing}"})
                    return
                with fake.lock:
                    fake.posted.append(spec)
                    existing = fake.by_key.get(spec["idempotency_key"])
                    if existing is not None:
                        self._send(200, fake.view(fake.jobs[existing]))
                        return
                    job = FakeJob(id=uuid.uuid4().hex[:12], spec=spec)
                    fake.jobs[job.id] = job
                    fake.by_key[spec["idempotency_key"]] = job.id
                    if fake.run_jobs:
                        fake._start(job)
                    self._send(201, fake.view(job))

            def do_GET(self) -> None:
                if not self._gate():
                    return
                job = self._job()
                if job is None:
                    return
                if self.path.endswith("/logs"):
                    self._send(200, {"log": job.log.decode(errors="replace")})
                    return
                with fake.lock:
                    self._send(200, fake.view(job))

            def do_DELETE(self) -> None:
                if not self._gate():
                    return
                job = self._job()
                if job is None:
                    return
                with fake.lock:
                    if job.status in ("QUEUED", "RUNNING"):
                        job.status = "CANCELLED"
                        job.message = "cancelled by request"
                        if job.proc is not None:
                            job.proc.kill()
                        self._send(202, fake.view(job))
                    else:
                        self._send(200, fake.view(job))

        return Handler

    def serve(self) -> None:
        # socketserver listens with a backlog of 5: dozens of connector threads connecting at once
        # would wait out a SYN retransmit (1 s), which a real API's listener does not make them do.
        server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 128})
        self.server = server_class(("127.0.0.1", 0), self.handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve_for_connector(self, secrets_dir: Path) -> dict[str, str]:
        """Serves the fake; the environment wiring a connector to it as its Deployment does: the API
        key a file in a mounted-secret directory (``FLYTE_SECRETS_DEFAULT_DIR``), the endpoint in
        ``CDAO_CODEWEAVE_ENDPOINT``."""
        (secrets_dir / "codeweave_api_key").write_text(self.api_key + "\n")
        self.serve()
        return {"CDAO_CODEWEAVE_ENDPOINT": self.url, "FLYTE_SECRETS_DEFAULT_DIR": str(secrets_dir)}

    def stop(self) -> None:
        self.released.set()
        for proc in self.running_processes():
            proc.kill()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@contextlib.contextmanager
def serving_codeweave(fake: CodeweaveFake, secrets_dir: Path, monkeypatch: Any) -> Iterator[CodeweaveFake]:
    """``fake`` served on 127.0.0.1 and wired into this process's connectors
    (:meth:`CodeweaveFake.serve_for_connector`); stopped on exit."""
    for name, value in fake.serve_for_connector(secrets_dir).items():
        monkeypatch.setenv(name, value)
    try:
        yield fake
    finally:
        fake.stop()

"""The Codeweave jobs API as this connector uses it, and a small client for it.

No Codeweave library exists, so the contract is written down here; the test fake in
``tests/plugins/support/codeweave_fake.py`` implements exactly this.

Authentication: every request carries ``Authorization: Bearer <api key>``.

``POST /jobs`` — body (JSON)::

    {
      "name": "flyte-<execution>-<node>-<hash>",      # for humans; not unique
      "idempotency_key": "<sha256 of the task attempt>",
      "image": "<registry>/<repo>:<tag>",
      "command": ["pyflyte-execute", "--inputs", "s3://...", ...],
      "env": {"KEY": "VALUE"},
      "resources": {"cpu": "8", "memory": "64Gi", "gpu": {"type": "nvidia-a100-80gb", "count": 1}},
      "labels": {"flyte-execution": "..."}
    }

  ``201`` with the job when created; ``200`` with the *existing* job when a job with the same
  ``idempotency_key`` already exists (a retried create never starts a second job).
  ``400`` invalid request, ``401`` bad key: not retried.

``GET /jobs/{id}`` — ``200`` with the job; ``404`` unknown id.

``DELETE /jobs/{id}`` — cancels a queued or running job: ``202`` with the job (status becomes
``CANCELLED``); deleting a finished job is a no-op ``200``; ``404`` unknown id.

Job object: ``{"id", "name", "status", "message", "log_url", "created_at"}`` where ``status`` is
one of :data:`JOB_STATUSES`.

``429`` (with ``Retry-After`` seconds) and ``5xx`` answers are retried with backoff by the client, a
few times and never waiting more than :data:`MAX_RETRY_AFTER_SECONDS` for one ``Retry-After``: the
connector must answer inside propeller's deadline. A GetTask that fails is asked again at
propeller's next refresh, up to its ``maxSystemFailures`` (flyteplugins/v1.16.8
go/tasks/pluginmachinery/internal/webapi/cache.go ``SyncResource``). A CreateTask that fails is
never re-sent: it fails the task attempt (internal/webapi/launcher.go ``launch``), and only the
task's retries, if it has any left, start a new attempt with a new job.

Data: the command reads ``inputs.pb`` from and writes ``outputs.pb`` to Flyte's S3 bucket. The
connector sends no AWS credentials; Codeweave's job runtime assumes the cross-account role the
platform grants it (trust on Codeweave's account, access limited to Flyte's bucket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from cdao_connectors._attempts import note_try_without_answer

JOB_STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
GPU_TYPES = ("nvidia-tesla-v100", "nvidia-a100-40gb", "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-l40s")
MAX_GPUS_PER_JOB = 8
MAX_RETRY_AFTER_SECONDS = 2.0
MAX_RETRIES = 3


class CodeweaveError(RuntimeError):
    """Codeweave refused a request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(f"Codeweave answered HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    message: str
    log_url: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any], status: int = 200) -> Job:
        """The job object of an answer with HTTP ``status`` (2xx). Raises :class:`CodeweaveError`
        with that status, quoting the body, when it is not one (a field missing)."""
        try:
            return cls(
                id=str(body["id"]),
                status=str(body["status"]),
                message=str(body.get("message") or ""),
                log_url=body.get("log_url") or None,
            )
        except KeyError as missing:
            raise CodeweaveError(status, f"job object without {missing}: {body!r}") from None


class _BoundedRetry(Retry):
    """urllib3's Retry, with a server's ``Retry-After`` capped: a 429 asking for an hour must not hold
    one of the connector's threads for an hour. Each try that got no answer (a read timeout, a
    connection dropped after sending) or a 5xx is noted for the create under way, if any
    (:func:`cdao_connectors._attempts.note_try_without_answer`): the job may exist whatever a later
    try answers. urllib3 calls ``increment`` once per failed try (urllib3 2.x ``util/retry.py``)."""

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, MAX_RETRY_AFTER_SECONDS)

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> Retry:
        response, error = kwargs.get("response"), kwargs.get("error")
        if method == "POST":  # only a create (POST /jobs) starts a job
            if isinstance(error, (ReadTimeoutError, ProtocolError)):
                note_try_without_answer(type(error).__name__)
            elif response is not None and response.status >= 500:
                note_try_without_answer(f"HTTP {response.status}")
        return super().increment(method, url, *args, **kwargs)


class CodeweaveClient:
    def __init__(
        self,
        endpoint: str,
        api_key: str,
        timeout_seconds: float = 30.0,
        max_retries: int = MAX_RETRIES,
        pool_maxsize: int = 10,
    ):
        self._endpoint = endpoint.rstrip("/")
        self._timeout = timeout_seconds
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {api_key}", "Accept": "application/json"})
        # A Session that trusts the environment reads it again on every request (requests 2.34
        # sessions.py ``merge_environment_settings``: proxies by scanning every variable, the CA
        # bundle; ``prepare_request``: ~/.netrc): a quarter of a GetTask's CPU, more in a pod whose
        # environment lists its namespace's Services. The endpoint is fixed, so requests' own
        # merge runs once here and the session keeps its answer.
        found = self._session.merge_environment_settings(self._endpoint, {}, None, None, None)
        self._session.proxies, self._session.verify = found["proxies"], found["verify"]
        self._session.trust_env = False
        # urllib3's Retry does the backoff (honouring Retry-After on 429). POST is included because
        # the idempotency key makes a repeated create return the first job instead of a new one.
        retry = _BoundedRetry(
            total=max_retries,
            backoff_factor=0.2,
            backoff_max=MAX_RETRY_AFTER_SECONDS,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        # pool_maxsize: connections kept alive for reuse, one per thread calling concurrently
        # (requests' HTTPAdapter; urllib3 opens and drops extra ones beyond it).
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=pool_maxsize)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        resp = self._session.request(method, f"{self._endpoint}{path}", timeout=self._timeout, **kwargs)
        try:
            body = resp.json() if resp.content else {}
        except ValueError:
            body = {"error": resp.text[:500]}
        if not isinstance(body, dict):  # every body of the contract is an object: the rest is unreadable
            body = {"error": f"not a JSON object: {resp.text[:500]}"}
        return resp.status_code, body

    def create_job(self, spec: dict[str, Any]) -> Job:
        status, body = self._request("POST", "/jobs", json=spec)
        if status not in (200, 201):
            raise CodeweaveError(status, str(body.get("error", body)))
        return Job.from_json(body, status)  # unreadable: a CodeweaveError of that 2xx, the job made

    def get_job(self, job_id: str) -> Job | None:
        status, body = self._request("GET", f"/jobs/{job_id}")
        if status == 404:
            return None
        if status != 200:
            raise CodeweaveError(status, str(body.get("error", body)))
        return Job.from_json(body)

    def cancel_job(self, job_id: str) -> None:
        status, body = self._request("DELETE", f"/jobs/{job_id}")
        if status not in (200, 202, 404):
            raise CodeweaveError(status, str(body.get("error", body)))

    def close(self) -> None:
        self._session.close()

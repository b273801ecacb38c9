"""Backend side of Codeweave: submits the task's ``pyflyte-execute`` container as a Codeweave job."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import requests
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.core.context_manager import SecretsManager
from flytekit.extend.backend.base_connector import ConnectorRegistry, Resource, ResourceMeta
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate

from cdao_connectors import _deadlines
from cdao_connectors._attempts import (
    AttemptAbandoned,
    AttemptAnswers,
    attempt_item,
    may_have_made_a_job,
    name_the_job,
)
from cdao_connectors._backends import WORKERS_PER_BACKEND, Backend, BackendDeadlineExceeded, BulkheadConnector
from cdao_connectors._common import (
    attempt_seed,
    deterministic_name,
    in_chain,
    log_link,
    outcome_after_exit,
    readable_execution_name,
    rendered_container,
)
from cdao_connectors._custom import config_from_custom
from cdao_connectors._status_cache import StatusCache, StatusCaches
from cdao_connectors.codeweave.contract import CodeweaveClient, CodeweaveError
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE, CodeweaveGPU
from cdao_connectors.config import CodeweaveConfig, ConnectorConfigError, status_refresh_seconds

# Every status of the contract, plus a default for anything new: unknown means "not finished",
# never success. CANCELLED was not asked for by Flyte (Flyte's own aborts end the task before
# it looks again), so it is a failure the user must see.
_PHASES = {
    "QUEUED": TaskExecution.QUEUED,
    "RUNNING": TaskExecution.RUNNING,
    "SUCCEEDED": TaskExecution.SUCCEEDED,
    "FAILED": TaskExecution.FAILED,
    "CANCELLED": TaskExecution.FAILED,
}
_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def is_transient(error: BaseException) -> bool:
    """Whether Codeweave said "not now": 429 or a 5xx (the statuses its client already retries,
    :mod:`cdao_connectors.codeweave.contract`), or no answer at all (a connection error or
    timeout, requests' ``ConnectionError``/``Timeout``). A 401, 403 or 400 stays until someone
    changes the key or the request."""
    if isinstance(error, CodeweaveError):
        return error.status == 429 or error.status >= 500
    return isinstance(error, (requests.ConnectionError, requests.Timeout))


def codeweave_may_have_made_a_job(error: BaseException) -> bool:
    """Whether a create that failed with ``error`` may still have made its job (AWS's cases,
    :func:`cdao_connectors._attempts.may_have_made_a_job`; Codeweave's own 5xx: it failed to
    complete the request, which says nothing of its effect; and a 2xx whose body is not the job
    object: the job was made, only its answer is unreadable)."""

    def made_or_unknown(e: BaseException) -> bool:
        return isinstance(e, CodeweaveError) and (e.status >= 500 or 200 <= e.status < 300)

    return in_chain(error, made_or_unknown, implicit=True) or may_have_made_a_job(error)


@dataclass
class CodeweaveJobMetadata(ResourceMeta):
    job_id: str
    output_prefix: str
    has_outputs: bool


class CodeweaveConnector(BulkheadConnector):
    name = "CDAO Codeweave Connector"

    def __init__(self) -> None:
        super().__init__(task_type_name=CODEWEAVE_TASK_TYPE, metadata_type=CodeweaveJobMetadata)
        self.backend = Backend("Codeweave")
        self._clients_lock = threading.Lock()
        self._clients: dict[tuple[str, str, float], CodeweaveClient] = {}
        # Codeweave has no batched read, so its jobs are not read ahead: a pass every few seconds
        # would cost one call per job each time (1000 jobs every 2.5 s: 400 calls a second against
        # propeller's 33 GetTasks, and the service's CPU with them). A GetTask of a job older than
        # CDAO_STATUS_REFRESH_SECONDS starts its read on the cache's own threads (as many at once
        # as the client keeps connections) and waits for it at most
        # _status_cache.KNOWN_STATUS_WAIT_SECONDS: a slow or hung Codeweave is answered the last
        # known status, and the read, going on, serves the next GetTask. One cache, rebuilt when
        # CDAO_STATUS_REFRESH_SECONDS changes.
        self._statuses = StatusCaches(self._new_cache)

    @property
    def statuses(self) -> StatusCache:
        return self._statuses(None, status_refresh_seconds())

    def _new_cache(self, _key: None, max_age: float) -> StatusCache:
        return StatusCache(
            self._read_jobs,
            max_age=max_age,
            batch=1,
            parallel=WORKERS_PER_BACKEND,
            name="codeweave-jobs",
            backend="Codeweave",
            final=lambda job: job.status in _TERMINAL,
            transient=is_transient,
        )

    def _read_jobs(self, job_ids: list[str]) -> dict[str, Any]:
        (job_id,) = job_ids
        return {job_id: self._client(_deadlines.GET_TASK_SECONDS).get_job(job_id)}

    def _client(self, deadline: float) -> CodeweaveClient:
        """The shared client whose every request gives up before propeller's ``deadline`` for the call does.

        Clients are kept per endpoint, key and timeout: a new HTTP session per call paid a TCP (and in
        production TLS) handshake per GetTask. requests' Session is shared by the backend's threads
        as urllib3's connection pool is thread-safe.
        """
        cfg = CodeweaveConfig.from_env()
        try:
            # A fresh manager reads the secret directory from the environment now, so a rotated or
            # newly mounted key is picked up without restarting the service.
            api_key = SecretsManager().get(key=cfg.api_key_secret).strip()
        except ValueError as e:
            raise ConnectorConfigError(
                f"the Codeweave API key secret {cfg.api_key_secret!r} is not mounted on the connector service: {e}"
            ) from e
        key = (cfg.endpoint, api_key, min(cfg.timeout_seconds, deadline - _deadlines.MARGIN_SECONDS))
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                # A rotated key or a moved endpoint retires the old clients; requests in flight on
                # them finish, and their sessions close when dropped.
                for old in [k for k in self._clients if k[:2] != key[:2]]:
                    del self._clients[old]
                client = self._clients[key] = CodeweaveClient(*key, pool_maxsize=WORKERS_PER_BACKEND)
            return client

    def create_sync(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        task_execution_metadata: Any = None,
    ) -> CodeweaveJobMetadata:
        gpu = config_from_custom(CodeweaveGPU, task_template.custom, task_template.id.name)
        image, command, env = rendered_container(task_template, output_prefix)
        seed = attempt_seed(task_template, output_prefix, task_execution_metadata)
        readable = readable_execution_name(task_execution_metadata)
        spec = {
            "name": deterministic_name("flyte", seed, readable, 63),
            "idempotency_key": deterministic_name("cdao", seed, "", 48),
            "image": image,
            "command": command,
            "env": env,
            "resources": {
                "cpu": gpu.cpu,
                "memory": gpu.memory,
                "gpu": {"type": gpu.gpu_type, "count": gpu.gpus},
            },
            "labels": {"flyte-task": task_template.id.name, "flyte-execution": readable},
        }
        statuses = self.statuses  # its setting is checked before a job exists, not after
        client = self._client(_deadlines.CREATE_TASK_SECONDS)
        # Codeweave looks a job up by its id only: the sweep cannot find this one should the answer
        # be lost, but its log gives an operator what to search the jobs for; and a create the sweep
        # took first is refused here, before its request (AbandonedBeforeSending).
        name_the_job({"name": spec["name"], "idempotency_key": spec["idempotency_key"]}, findable=False)
        job = client.create_job(spec)
        if job.status == "CANCELLED":
            # The attempt's key names a job already cancelled: this CreateTask repeats one that gave
            # up (propeller lost its state; its job was cancelled, cdao_connectors._backends
            # create_within_deadline). Adopting it would answer FAILED, which fails the whole task
            # (connector/plugin.go Status at flyteplugins/v1.16.8); an error fails only this attempt.
            raise AttemptAbandoned(
                f"task {task_template.id.name}: this attempt's Codeweave job {job.id} was cancelled "
                "(its first CreateTask gave up); the task's next attempt, if one is left, starts a new job"
            )
        # The created job's first GetTask reads what Codeweave just said instead of asking again.
        statuses.seed(job.id, job)
        return CodeweaveJobMetadata(
            job_id=job.id, output_prefix=output_prefix, has_outputs=bool(task_template.interface.outputs)
        )

    def attempt_answers(
        self, task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any
    ) -> AttemptAnswers:
        # The idempotency key answers a repeated CreateTask the attempt's job even while a give-up
        # is cancelling it; the attempt table orders the two (cdao_connectors._attempts).
        seed = attempt_seed(task_template, output_prefix, task_execution_metadata)
        return AttemptAnswers(
            self.backend,
            attempt_item("codeweave", seed),
            self.task_category,
            seed=seed,
            may_have_made=codeweave_may_have_made_a_job,
        )

    def is_transient_error(self, error: BaseException) -> bool:
        # A DeleteTask that ran out of its deadline is "not now" too (its call goes on).
        return is_transient(error) or isinstance(error, BackendDeadlineExceeded)

    def status_of(self, resource_meta: CodeweaveJobMetadata) -> tuple[StatusCache, str]:
        return self.statuses, resource_meta.job_id

    @staticmethod
    def resource_for(job: Any, resource_meta: CodeweaveJobMetadata) -> Resource:
        if job is None:
            return Resource(phase=TaskExecution.FAILED, message=f"Codeweave has no job {resource_meta.job_id}")
        links = [log_link("Codeweave logs", job.log_url)] if job.log_url else None
        if job.status not in _PHASES:
            return Resource(
                phase=TaskExecution.RUNNING,
                message=f"Codeweave reported unknown status {job.status!r}; still waiting",
                log_links=links,
            )
        if job.status not in _TERMINAL:
            return Resource(phase=_PHASES[job.status], message=job.message, log_links=links)
        outcome = outcome_after_exit(
            resource_meta.output_prefix,
            resource_meta.has_outputs,
            platform_succeeded=job.status == "SUCCEEDED",
            platform_message=job.message or f"Codeweave job {job.status.lower()}",
        )
        return Resource(phase=outcome.phase, message=outcome.message, log_links=links)

    def delete_sync(self, resource_meta: CodeweaveJobMetadata) -> None:
        self._client(_deadlines.DELETE_TASK_SECONDS).cancel_job(resource_meta.job_id)
        self.statuses.forget(resource_meta.job_id)


ConnectorRegistry.register(CodeweaveConnector())

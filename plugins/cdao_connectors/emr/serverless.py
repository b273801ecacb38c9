"""EMR Serverless: flytekitplugins-awsemrserverless's connector, made idempotent on a retried create.

The plugin draws a fresh uuid4 as StartJobRun's clientToken on every create, so a CreateTask that
propeller repeats (lost response, connector restart) starts a second, duplicate job run. EMR
Serverless deduplicates StartJobRun by clientToken; this subclass derives the token from the task
attempt instead, and changes nothing else of the plugin's behaviour.
"""

from __future__ import annotations

import dataclasses
import hashlib
from contextvars import ContextVar
from typing import Any

from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekit.models.task import TaskTemplate
from flytekitplugins.awsemrserverless.connector import EMRServerlessConnector

from cdao_connectors._common import attempt_seed

# Set for the duration of one create(): asyncio gives every request its own context, so
# concurrent creates never see each other's token.
_CLIENT_TOKEN: ContextVar[str | None] = ContextVar("emr_serverless_client_token", default=None)


def client_token(task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any) -> str:
    """Identical for every create of one task attempt, different across attempts (64 hex characters,
    StartJobRun's limit for clientToken)."""
    seed = attempt_seed(task_template, output_prefix, task_execution_metadata)
    return hashlib.sha256(seed.encode()).hexdigest()


class _TokenPinningHandler:
    """The plugin's boto handler, with StartJobRun's clientToken taken from the current create."""

    def __init__(self, handler: Any):
        self._handler = handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)

    async def start_job_run(self, *args: Any, **kwargs: Any) -> Any:
        token = _CLIENT_TOKEN.get()
        if token is not None:
            kwargs["client_token"] = token
        return await self._handler.start_job_run(*args, **kwargs)


class IdempotentEMRServerlessConnector(EMRServerlessConnector):
    def _get_handler(self, region: str | None = None) -> Any:
        return _TokenPinningHandler(super()._get_handler(region))

    async def create(
        self,
        task_template: TaskTemplate,
        inputs: Any = None,
        task_execution_metadata: Any = None,
        **kwargs: Any,
    ) -> Any:
        metadata = (
            task_execution_metadata if task_execution_metadata is not None else kwargs.get("task_execution_metadata")
        )
        token = client_token(task_template, kwargs.get("output_prefix") or "", metadata)
        reset = _CLIENT_TOKEN.set(token)
        try:
            resource_meta = await super().create(task_template, inputs, task_execution_metadata, **kwargs)
        finally:
            _CLIENT_TOKEN.reset(reset)
        # While the application is still starting, the plugin defers the submission to get() with
        # the request it stored; that request must carry the same token.
        pending = getattr(resource_meta, "pending_job_request", None)
        if pending:
            resource_meta = dataclasses.replace(resource_meta, pending_job_request={**pending, "client_token": token})
        return resource_meta


ConnectorRegistry.register(IdempotentEMRServerlessConnector(), override=True)

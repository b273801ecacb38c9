"""The task execution metadata of the ExecuteTaskSync being served, for a synchronous connector's ``do``.

Propeller sends it in ExecuteTaskSync's header as it does in a CreateTask (flyteplugins/v1.16.8
go/tasks/plugins/webapi/connector/plugin.go ``Create``, its isSync branch: ``CreateRequestHeader``
with ``TaskExecutionMetadata``), but flytekit's ``SyncConnectorService.ExecuteTaskSync`` calls
``connector.do`` with the template, inputs and output prefix only (flytekit 1.16.31
extend/backend/connector_service.py), while its ``CreateTask`` passes ``task_execution_metadata`` on.
:func:`install` wraps that handler so the header's metadata is readable, through
:func:`task_execution_metadata`, by the ``do`` it calls; flytekit's handler otherwise runs unchanged.
Hand-written: flytekit has no hook for it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from flyteidl.admin.agent_pb2 import ExecuteTaskSyncRequest
from flytekit.extend.backend.connector_service import SyncConnectorService
from flytekit.models.task import TaskExecutionMetadata

# Set in the task serving one ExecuteTaskSync (gRPC's asyncio server runs each RPC as its own task,
# and an async generator runs in the context of the task iterating it: PEP 567), so concurrent
# requests never see each other's.
_METADATA: ContextVar[TaskExecutionMetadata | None] = ContextVar("cdao_sync_task_execution_metadata", default=None)


def task_execution_metadata() -> TaskExecutionMetadata | None:
    """The metadata of the ExecuteTaskSync this call serves; None outside one (a direct call, a
    local run) or when propeller sent none."""
    return _METADATA.get()


async def _noting_metadata(requests: AsyncIterator[ExecuteTaskSyncRequest]) -> AsyncIterator[ExecuteTaskSyncRequest]:
    async for request in requests:
        if request.HasField("header") and request.header.HasField("task_execution_metadata"):
            _METADATA.set(TaskExecutionMetadata.from_flyte_idl(request.header.task_execution_metadata))
        yield request


def install() -> None:
    """Wraps ``SyncConnectorService.ExecuteTaskSync`` (once) so :func:`task_execution_metadata` answers."""
    served = SyncConnectorService.ExecuteTaskSync
    if getattr(served, "_notes_metadata", False):
        return

    @functools.wraps(served)
    async def execute_task_sync(self: Any, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for response in served(self, _noting_metadata(request_iterator), context):
            yield response

    execute_task_sync._notes_metadata = True  # type: ignore[attr-defined]
    SyncConnectorService.ExecuteTaskSync = execute_task_sync  # type: ignore[method-assign]

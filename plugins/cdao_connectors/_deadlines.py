"""Propeller's deadline for each connector RPC, and the budgets the connectors keep inside them.

Propeller cancels a CreateTask, GetTask or DeleteTask when its deadline passes
(flyteplugins ``go/tasks/plugins/webapi/connector/client.go``, ``getFinalContext``, called by
``plugin.go`` per operation: ``timeouts`` else ``defaultTimeout``). ``platform/addons/flyte/flyte-core/values.yaml``
(``plugins.connector-service.defaultConnector``) can only set ``defaultTimeout`` (30 s), because
flytestdlib's loader lowercases the per-call keys; ``tests/plugins`` checks these budgets fit inside
it. GetTask and DeleteTask keep a tighter budget than propeller's so that a hung backend answers a
retryable error in seconds and the next poll tries again. An answer after the deadline is wasted
work, so every backend call is given what is left of its budget, less a margin for the answer to
travel back. The connectors read these at call time (``_deadlines.GET_TASK_SECONDS``), so that a
test waiting for a hung backend to run out of its deadline can set a shorter one.

A budget starts when the connector's method runs, not when the RPC arrived: time the call spent
queued in the service (the asyncio loop behind other calls) is not counted. The RPC's own deadline
(``grpc.aio.ServicerContext.time_remaining``) never reaches a connector: flytekit 1.16.31's
``AsyncConnectorService.GetTask`` (``flytekit/extend/backend/connector_service.py``) passes the
connector only the decoded ``resource_meta``, and ``pyflyte serve connector`` builds the server itself
with no interceptor (``flytekit/clis/sdk_in_container/serve.py``, ``_start_grpc_server``:
``grpc.aio.server(...)`` and ``AsyncConnectorService()``), so nothing a ``--modules`` module does can
see the servicer context short of patching flytekit. GetTask's budget sits 20 s inside propeller's
30 s, which absorbs such queueing; DeleteTask's cancel 20 s too, though a DeleteTask then writes the
attempt table once (a failed cancel's record for the sweep, or a successful one's clean-up, each
within the same budget: about 18 s of the 30 at most); CreateTask's only ``MARGIN_SECONDS`` inside it.
"""

from __future__ import annotations

CREATE_TASK_SECONDS = 30.0
GET_TASK_SECONDS = 10.0
DELETE_TASK_SECONDS = 10.0

# Time kept back for gRPC and propeller's own work around the call.
MARGIN_SECONDS = 1.0

# Propeller's error budget for a task's GetTasks (values.yaml ``plugins.connector-service.webApi
# .caching``): it polls every PROPELLER_RESYNC_SECONDS and fails the task with a system failure
# once more than PROPELLER_MAX_SYSTEM_FAILURES GetTasks errored in the task's whole life, never
# reset by a success (flyteplugins ``go/tasks/pluginmachinery/internal/webapi/cache.go`` at
# flyteplugins/v1.16.8). The connectors therefore answer a known job's last status, marked stale,
# instead of an error while the trouble is transient (``_status_cache.StatusCache.get``); the budget
# is spent only where nothing is known about the job yet, which it covers for
# PROPELLER_RESYNC_SECONDS * PROPELLER_MAX_SYSTEM_FAILURES, or once a refusal outlasted its grace.
PROPELLER_RESYNC_SECONDS = 30.0
PROPELLER_MAX_SYSTEM_FAILURES = 10

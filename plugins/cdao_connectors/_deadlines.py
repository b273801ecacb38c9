"""Propeller's deadline for each connector RPC, and the budgets the connectors keep inside them.

Propeller cancels a CreateTask, GetTask or DeleteTask when its deadline passes
(flyteplugins ``go/tasks/plugins/webapi/connector/plugin.go``, ``getFinalContext``, per operation
from ``timeouts`` else ``defaultTimeout``). ``platform/addons/flyte/flyte-core/values.yaml``
(``plugins.connector-service.defaultConnector``) can only set ``defaultTimeout`` (30 s), because
flytestdlib's loader lowercases the per-call keys; ``tests/plugins`` checks these budgets fit inside
it. GetTask and DeleteTask keep a tighter budget than propeller's so that a hung backend answers a
retryable error in seconds and the next poll tries again. An answer after the deadline is wasted
work, so every backend call is given what is left of its budget, less a margin for the answer to
travel back. The connectors read these at call time (``_deadlines.GET_TASK_SECONDS``), so that a
test waiting for a hung backend to run out of its deadline can set a shorter one.
"""

from __future__ import annotations

CREATE_TASK_SECONDS = 30.0
GET_TASK_SECONDS = 10.0
DELETE_TASK_SECONDS = 10.0

# Time kept back for gRPC and propeller's own work around the call.
MARGIN_SECONDS = 1.0

"""DynamoDB's conditional writes made atomic in moto's threaded server, as DynamoDB makes them.

DynamoDB evaluates a write's condition and applies the write as one atomic step: of two concurrent
``PutItem`` calls with ``attribute_not_exists``, exactly one succeeds ("Condition expressions",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html;
"Conditional writes", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html#WorkingWithItems.ConditionalUpdate).
moto 5.2.5 reads the current item, evaluates the condition and stores the new one without a lock
(moto/dynamodb/models/table.py ``Table.put_item``; ``DynamoDBBackend.update_item`` likewise), so
under ``ThreadedMotoServer`` two conditional writes can both win: the attempt ledger's claim
(cdao_connectors._attempts) then let two replicas add an EMR step (tests/plugins/test_attempts.py
flaked once, 1 in 15 attempts). Every item write of moto's DynamoDB backend is serialised here by
one lock, in the process that runs the moto server; reads need none (each sees a whole item).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

# BatchWriteItem goes through put_item and delete_item (moto/dynamodb/responses.py).
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_LOCK = threading.RLock()


def make_conditional_writes_atomic() -> None:
    """Wrap each item write of moto's DynamoDB backend in one process-wide lock (idempotent)."""
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_cdao_atomic", False):
            continue

        @functools.wraps(method)
        def atomic(self: Any, *args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with _LOCK:
                return __method(self, *args, **kwargs)

        atomic._cdao_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)

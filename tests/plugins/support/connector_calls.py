"""A connector's RPCs called as the service calls them: its async methods, on an event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_to_end(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` run to its end on a new event loop, closed after, from a test's thread. Not
    ``asyncio.run``: it clears the thread's current event loop on exit, which later tests of the
    suite (Pulumi's mocks) rely on."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def run_get(connector: Any, resource_meta: Any) -> Any:
    """``connector.get(resource_meta)`` (what a GetTask runs: flytekit's ``AsyncConnectorService``
    awaits the async connector's ``get``) to its end (:func:`run_to_end`)."""
    return run_to_end(connector.get(resource_meta))

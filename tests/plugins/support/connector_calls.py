"""A connector's RPCs called as the service calls them: its async methods, on an event loop."""

from __future__ import annotations

import asyncio
from typing import Any


def run_get(connector: Any, resource_meta: Any) -> Any:
    """``connector.get(resource_meta)`` (what a GetTask runs: flytekit's ``AsyncConnectorService``
    awaits the async connector's ``get``) to its end on a new event loop, from a test's thread.
    Not ``asyncio.run``: it clears the thread's current event loop on exit, which later tests of
    the suite (Pulumi's mocks) rely on."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(connector.get(resource_meta))
    finally:
        loop.close()

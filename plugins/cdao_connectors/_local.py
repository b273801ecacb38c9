"""How connector tasks behave under ``pyflyte run`` without ``--remote``.

flytekit runs a function task's body in-process; data scientists rely on that for fast iteration,
so it stays the default here. ``CDAO_LOCAL_EXECUTION=connector`` instead sends the task through its
connector (as flytekit's own connector tasks always do), which is how one tries a task against a
real or emulated platform from a laptop.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from flytekit import PythonFunctionTask
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.core.context_manager import FlyteContextManager
from flytekit.extend.backend.base_connector import AsyncConnectorExecutorMixin

LOCAL_EXECUTION_ENV = "CDAO_LOCAL_EXECUTION"


class LocalDispatchMixin:
    _connector_module: str = ""

    def execute(self, **kwargs: Any) -> Any:
        ctx = FlyteContextManager.current_context()
        local = ctx.execution_state is not None and ctx.execution_state.is_local_execution()
        mode = os.environ.get(LOCAL_EXECUTION_ENV, "in-process")
        if mode not in ("in-process", "connector"):
            raise ValueError(f"{LOCAL_EXECUTION_ENV}={mode!r}: expected 'in-process' or 'connector'")
        if local and mode == "connector":
            importlib.import_module(self._connector_module)  # registers the connector
            if ctx.serialization_settings is not None:
                return AsyncConnectorExecutorMixin.execute(self, **kwargs)  # type: ignore[arg-type]
            # Outside pyflyte run (a notebook, a test) nothing says which image the job runs; use
            # flytekit's default image, as pyflyte run itself does.
            ss = SerializationSettings(ImageConfig.auto_default_image())
            with FlyteContextManager.with_context(ctx.new_builder().with_serialization_settings(ss)):
                return AsyncConnectorExecutorMixin.execute(self, **kwargs)  # type: ignore[arg-type]
        return PythonFunctionTask.execute(self, **kwargs)  # type: ignore[arg-type]

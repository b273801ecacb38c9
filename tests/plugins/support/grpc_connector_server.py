"""The connector service exactly as ``pyflyte serve connector`` assembles it, on 127.0.0.1:<free port>."""

from __future__ import annotations

import asyncio
import threading
from concurrent import futures

import grpc
from flyteidl.service.agent_pb2_grpc import (
    add_AgentMetadataServiceServicer_to_server,
    add_AsyncAgentServiceServicer_to_server,
    add_SyncAgentServiceServicer_to_server,
)
from flytekit.extend.backend.connector_service import (
    AsyncConnectorService,
    ConnectorMetadataService,
    SyncConnectorService,
)


class ConnectorServer:
    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        # pyflyte serve connector registers flytekit's webhook connector here, after --modules
        # (flytekit 1.16.31 clis/sdk_in_container/serve.py ``_start_grpc_server``).
        from flytekit.extras.webhook import WebhookConnector  # noqa: F401, PLC0415

        self._server = grpc.aio.server(futures.ThreadPoolExecutor(max_workers=8))
        add_AsyncAgentServiceServicer_to_server(AsyncConnectorService(), self._server)
        add_SyncAgentServiceServicer_to_server(SyncConnectorService(), self._server)
        add_AgentMetadataServiceServicer_to_server(ConnectorMetadataService(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    def start(self) -> ConnectorServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("connector gRPC server did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.stop(grace=None), self._loop)
            fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

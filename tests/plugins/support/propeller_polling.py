"""How propeller's connector plugin polls GetTask, reproduced: its settings and its refresh queue.

Upstream (flyteorg/flyte at tag flyteplugins/v1.16.8):

- ``flyteplugins/go/tasks/pluginmachinery/internal/webapi/core.go``: the plugin (``connector-service``:
  every connector task type) builds ONE ``NewResourceCache`` from ``webApi.caching`` and
  ``webApi.readRateLimiter``. ``webApi.writeRateLimiter`` is only range-checked (``validateConfig``), and
  ``webApi.resourceQuotas`` only registers quotas with propeller's resource manager, a no-op unless
  ``resourcemanager.type`` is ``redis`` (flytepropeller ``pkg/controller/nodes/task/resourcemanager``).
- ``flyteplugins/go/tasks/pluginmachinery/internal/webapi/cache.go`` (``NewResourceCache``,
  ``SyncResource``): the cache's workqueue is rate limited by ``MaxOf(ItemExponentialFailureRateLimiter(5ms,
  1000s), BucketRateLimiter(rate.NewLimiter(qps, burst)))``; each sync is one GetTask for one task.
- ``flytestdlib/cache/in_memory_auto_refresh.go``: ``caching.workers`` goroutines take items off the queue
  one at a time; a task is enqueued (``AddRateLimited``) when first seen (``GetOrCreate``) and then by a
  timer every ``resyncInterval``, reset after each pass, which enqueues every cached task not still
  waiting in the queue (``inProcessing``: at most ``5 * resyncInterval`` ago).
- ``flyteplugins/go/tasks/plugins/webapi/connector/config.go``: the defaults of every key the values
  file leaves unset, and ``DefaultServiceConfig`` (gRPC ``round_robin`` over the endpoint's addresses).
- k8s.io/client-go v0.34.1 (flytestdlib's ``go.mod`` there) ``util/workqueue/delaying_queue.go``
  (``AddAfter``, ``waitingLoop``): an item added with a delay waits in a heap by ready time, and one
  loop moves each item, once ready, to the FIFO queue the workers ``Get`` from.

The model runs on one asyncio event loop (``workers`` coroutines, not threads): its callers share
one interpreter, and threads blocked in gRPC calls would queue behind one another for the GIL,
adding the harness's own waits to the latency it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import re
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FLYTE_VALUES = Path(__file__).parents[3] / "platform" / "addons" / "flyte" / "flyte-core" / "values.yaml"

# connector/config.go defaultConfig at flyteplugins/v1.16.8: what propeller uses for an unset key.
DEFAULT_WORKERS = 10
DEFAULT_RESYNC_SECONDS = 30.0
DEFAULT_READ_QPS = 10.0
DEFAULT_READ_BURST = 100
DEFAULT_TIMEOUT_SECONDS = 10.0
# DefaultConnector.DefaultServiceConfig there, as gRPC's service config JSON
# (https://github.com/grpc/grpc/blob/master/doc/service_config.md).
DEFAULT_SERVICE_CONFIG = '{"loadBalancingConfig": [{"round_robin":{}}]}'
# workqueue.NewItemExponentialFailureRateLimiter(5*time.Millisecond, ...) in cache.go: every item is a
# new batch pointer, so its first (and only) delay is the base, 5 ms.
ITEM_BASE_DELAY_SECONDS = 0.005

# Go's time.ParseDuration units (https://pkg.go.dev/time#ParseDuration), in seconds.
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def go_duration(text: str, where: str) -> float:
    """Seconds in a Go duration string (``30s``, ``1m30s``, ``500ms``), as flytestdlib's
    ``config.Duration`` decodes it with ``time.ParseDuration``; ValueError naming ``where`` otherwise."""
    if text == "0":  # the one unit-less duration Go accepts
        return 0.0
    parts = list(_GO_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        raise ValueError(f"{where}: {text!r} is not a Go duration (https://pkg.go.dev/time#ParseDuration)")
    return sum(float(p.group(1)) * _GO_UNITS[p.group(2)] for p in parts)


def connector_service_values(path: Path = FLYTE_VALUES) -> dict[str, Any]:
    """The ``plugins.connector-service`` section of propeller's config in our flyte-core values."""
    values = yaml.safe_load(path.read_text())
    return values["configmap"]["enabled_plugins"]["plugins"]["connector-service"]


@dataclass(frozen=True)
class PollingSettings:
    """What propeller's connector plugin polls GetTask with: ``workers`` concurrent callers, a token
    bucket of ``qps`` per second and ``burst``, every task re-enqueued each ``resync_seconds``, each
    GetTask with a ``timeout_seconds`` deadline."""

    workers: int
    qps: float
    burst: int
    resync_seconds: float
    timeout_seconds: float

    @classmethod
    def from_values(cls, path: Path = FLYTE_VALUES) -> PollingSettings:
        """From our values file, with connector/config.go's defaults for the keys it leaves unset."""
        section = connector_service_values(path)
        web_api = section.get("webApi") or {}
        caching = web_api.get("caching") or {}
        read = web_api.get("readRateLimiter") or {}
        where = f"{path} plugins.connector-service"
        return cls(
            workers=int(caching.get("workers", DEFAULT_WORKERS)),
            qps=float(read.get("qps", DEFAULT_READ_QPS)),
            burst=int(read.get("burst", DEFAULT_READ_BURST)),
            resync_seconds=(
                go_duration(caching["resyncInterval"], f"{where}.webApi.caching.resyncInterval")
                if "resyncInterval" in caching
                else DEFAULT_RESYNC_SECONDS
            ),
            timeout_seconds=(
                go_duration(section["defaultConnector"]["defaultTimeout"], f"{where}.defaultConnector.defaultTimeout")
                if "defaultTimeout" in (section.get("defaultConnector") or {})
                else DEFAULT_TIMEOUT_SECONDS
            ),
        )


class TokenBucket:
    """golang.org/x/time/rate's ``Limiter.Reserve().Delay()`` (rate.go ``reserveN``, v0.9.0;
    https://pkg.go.dev/golang.org/x/time/rate#Limiter.Reserve), which client-go's ``BucketRateLimiter``
    returns: the bucket starts full at ``burst``, refills at ``qps`` per second up to ``burst``, and a
    reservation always succeeds, taking a token now or in the future (the balance goes negative) and
    answering how long to wait. Python's rate limiters block or refuse instead, hence this one.
    Used from one event loop only."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._qps, self._burst, self._clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        """Seconds to wait before the reserved event may happen (0 when a token is there now)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1.0
        return -self._tokens / self._qps if self._tokens < 0 else 0.0


@dataclass
class Sync:
    """One GetTask of one task: when propeller's worker started and ended it (``time.monotonic``
    seconds), and whether it answered."""

    key: Hashable
    started: float
    ended: float
    ok: bool


# Put in the ready queue by stop(): a worker that takes it returns.
_STOP = object()


class AutoRefreshPoller:
    """Propeller's auto-refresh cache of the connector plugin, driving ``await get(key, deadline)``
    (True: the GetTask answered within ``deadline`` seconds, ``settings.timeout_seconds``) for every
    key until :meth:`stop`, on the running event loop.

    Every key is enqueued when :meth:`start` is called (propeller's ``GetOrCreate`` of a task it just
    launched), then every ``resync_seconds`` after the previous pass unless still queued
    (``inProcessing``, forgotten after five resyncs); each enqueue waits ``max(5 ms, the token
    bucket's delay)`` in the delaying queue's heap, then joins the FIFO ready queue; ``workers``
    coroutines take keys from it in order, one GetTask each, and a key leaves ``processing`` when a
    worker takes it. Keys never become terminal here: every task stays in flight. Every GetTask is
    recorded in :attr:`syncs`; :attr:`max_in_flight` is the most workers busy at once and
    :attr:`max_queued` the most keys in the queue (waiting or ready) at once."""

    def __init__(
        self, keys: Sequence[Hashable], get: Callable[[Hashable, float], Awaitable[bool]], settings: PollingSettings
    ) -> None:
        self._keys = list(keys)
        self._get = get
        self._settings = settings
        self._bucket = TokenBucket(settings.qps, settings.burst)
        self._waiting: list[tuple[float, int, Hashable]] = []  # delaying_queue.go's waitingForQueue
        self._seq = 0
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._added = asyncio.Event()  # delaying_queue.go's waitingForAddCh
        self._queued: dict[Hashable, float] = {}  # in_memory_auto_refresh.go's ``processing``
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self.syncs: list[Sync] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_queued = 0

    def _enqueue(self, keys: Sequence[Hashable]) -> None:
        now = time.monotonic()
        for key in keys:
            queued = self._queued.get(key)
            if queued is not None and now - queued <= 5 * self._settings.resync_seconds:
                continue
            delay = max(ITEM_BASE_DELAY_SECONDS, self._bucket.reserve())
            self._seq += 1
            heapq.heappush(self._waiting, (now + delay, self._seq, key))
            self._queued[key] = now
        self.max_queued = max(self.max_queued, len(self._waiting) + self._ready.qsize())
        self._added.set()

    async def _waiting_loop(self) -> None:
        while True:
            now = time.monotonic()
            while self._waiting and self._waiting[0][0] <= now:
                self._ready.put_nowait(heapq.heappop(self._waiting)[2])
            self._added.clear()
            wait = self._waiting[0][0] - now if self._waiting else None
            with contextlib.suppress(TimeoutError):  # the head is ready
                await asyncio.wait_for(self._added.wait(), wait)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self._settings.resync_seconds)
            self._enqueue(self._keys)

    async def _work(self) -> None:
        while (key := await self._ready.get()) is not _STOP:
            self._queued.pop(key, None)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            started = time.monotonic()
            try:
                ok = await self._get(key, self._settings.timeout_seconds)
            except Exception:
                ok = False
            self.in_flight -= 1
            self.syncs.append(Sync(key, started, time.monotonic(), ok))

    def start(self) -> AutoRefreshPoller:
        """Starts the workers, the delaying queue and the resync timer on the running event loop."""
        loop = asyncio.get_running_loop()
        self._enqueue(self._keys)
        self._tasks = [loop.create_task(self._waiting_loop()), loop.create_task(self._resync())]
        self._workers = [loop.create_task(self._work()) for _ in range(self._settings.workers)]
        return self

    async def stop(self) -> None:
        """Stops taking keys; GetTasks under way finish (within their deadline) before this returns."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._ready.empty():
            self._ready.get_nowait()
        for _ in self._workers:
            self._ready.put_nowait(_STOP)
        await asyncio.gather(*self._workers)

    def syncs_between(self, start: float, end: float) -> list[Sync]:
        return [s for s in self.syncs if start <= s.started and s.ended <= end]

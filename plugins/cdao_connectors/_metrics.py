"""The service's GetTask latency, for an SLO: a Prometheus histogram by task type; how late its
event loop runs what is ready, the part of a GetTask's latency spent before its handler starts; and
a count of the jobs it gave up stopping, by backend, for an alert.

Exported on the service's Prometheus port (``pyflyte serve connector --prometheus_port``), with
flytekit's own ``flyte_connector_*`` metrics. flytekit times each request too
(``flytekit/extend/backend/connector_service.py``, ``request_latency``), but as a ``Summary``, which
prometheus_client exports with a count and a sum only: no quantile can be had from it, and averages
hide the tail an SLO is about. A histogram's buckets can be summed over replicas and turned into
quantiles (PromQL ``histogram_quantile``); plugins/benchmarks/get_task_latency.py does the same.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram

from cdao_connectors import _deadlines

T = TypeVar("T")

GET_TASK_SECONDS_NAME = "cdao_get_task_seconds"
# From a cache hit (about a millisecond) through the 100 ms p99 target (issue #16) to the
# connectors' own GetTask budget (_deadlines.GET_TASK_SECONDS, 10 s; propeller's deadline is the
# 30 s defaultTimeout), past which a GetTask has answered its retryable error (+Inf).
GET_TASK_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    _deadlines.GET_TASK_SECONDS,
)
GET_TASK_SECONDS = Histogram(
    GET_TASK_SECONDS_NAME,
    "Seconds a connector took to answer a GetTask (errors and deadline-exceeded answers included), by task type",
    ["task_type"],
    buckets=GET_TASK_BUCKETS,
)


def observe_get_task(get: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorates a connector's ``async get(self, resource_meta, **kwargs)``: each call is observed in
    :data:`GET_TASK_SECONDS` under the connector's task type (``self.task_category.name``, the one
    the GetTask named), however it ends."""

    @functools.wraps(get)
    async def observed(self: Any, *args: Any, **kwargs: Any) -> T:
        probe_event_loop_lag(asyncio.get_running_loop())
        with GET_TASK_SECONDS.labels(task_type=self.task_category.name).time():
            return await get(self, *args, **kwargs)

    return observed


EVENT_LOOP_LAG_SECONDS_NAME = "cdao_event_loop_lag_seconds"
# From an idle loop (well under a millisecond) to a loop held for seconds; the 100 ms p99 target of
# a whole GetTask (issue #16) is among the bounds.
EVENT_LOOP_LAG_PROBE_SECONDS = 0.05
EVENT_LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
EVENT_LOOP_LAG_SECONDS = Histogram(
    EVENT_LOOP_LAG_SECONDS_NAME,
    "Seconds between handing the service's event loop a ready callback and the loop running it, "
    f"sampled every {EVENT_LOOP_LAG_PROBE_SECONDS:g} s: what a GetTask arriving then waits before its handler starts",
    buckets=EVENT_LOOP_LAG_BUCKETS,
)
_probed_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_probing = threading.Lock()


def probe_event_loop_lag(loop: asyncio.AbstractEventLoop) -> None:
    """Starts, once per event loop, a daemon thread that observes ``loop``'s lag in
    :data:`EVENT_LOOP_LAG_SECONDS` every :data:`EVENT_LOOP_LAG_PROBE_SECONDS` until the loop closes.

    The server's gRPC handlers all run on this one loop (flytekit 1.16.31
    ``clis/sdk_in_container/serve.py`` serves with ``grpc.aio``), so a request that has arrived waits
    for whatever holds the loop or the GIL: a GetTask answered in 1 ms by its handler
    (``cdao_get_task_seconds``) can reach propeller hundreds of milliseconds later, and nothing else
    shows it. The probe hands the loop a callback through its thread-safe entry
    (``loop.call_soon_threadsafe``), as gRPC's completion queue hands it a request, and observes
    how long the callback waited: a thread, not a task on the loop, so the probe outlives no loop
    and needs no start or stop from the server. Hand-written: prometheus_client has no event loop
    metric and flytekit's service exports none."""
    if loop in _probed_loops:  # every GetTask asks: answered without the lock once probed
        return
    with _probing:
        if loop in _probed_loops:
            return
        _probed_loops.add(loop)
    threading.Thread(target=_probe, args=(weakref.ref(loop),), name="cdao-event-loop-lag", daemon=True).start()


def _probe(loop_ref: weakref.ref[asyncio.AbstractEventLoop]) -> None:
    due = time.monotonic()
    while (loop := loop_ref()) is not None and not loop.is_closed():
        ran = threading.Event()

        # Measured from when this thread was due to wake, as a request from when it arrived: the
        # wait for a core and for the GIL, which the gRPC thread handing the loop a request pays
        # too, counts, not only the loop's own queue.
        def observe(due: float = due, ran: threading.Event = ran) -> None:
            EVENT_LOOP_LAG_SECONDS.observe(time.monotonic() - due)
            ran.set()

        try:
            loop.call_soon_threadsafe(observe)
        except RuntimeError:  # the loop closed since the check above
            return
        del loop  # a closed loop must not be kept alive by its probe
        # A loop that has stopped runs nothing: wait for the callback in steps, so a loop that
        # closes meanwhile ends the probe.
        while not ran.wait(1.0):
            if (loop := loop_ref()) is None or loop.is_closed():
                return
            del loop
        due = time.monotonic() + EVENT_LOOP_LAG_PROBE_SECONDS
        time.sleep(EVENT_LOOP_LAG_PROBE_SECONDS)


JOBS_LEFT_RUNNING_NAME = "cdao_jobs_left_running"
# prometheus_client exports a Counter as ``<name>_total`` (and ``<name>_created``).
JOBS_LEFT_RUNNING = Counter(
    JOBS_LEFT_RUNNING_NAME,
    "Jobs the service started, or may still start, that nobody will stop (neither their replica nor the "
    "attempt table's sweeper), by backend: each must be stopped by hand (plugins/README.md, 'Jobs nobody follows')",
    ["backend"],
)


# The backends whose count is exported (follow_jobs_left_running), and the label of a job of any
# other (an attempt swept here that a replica of another version made): exported from 0 too.
_FOLLOWED: set[str] = set()
OTHER_BACKEND = "other"


def follow_jobs_left_running(backend: str) -> None:
    """Exports ``backend``'s count at 0 from now on: Prometheus's ``increase`` sees a series' first
    sample as its start, so a series that appeared only at 1 would raise no alert."""
    JOBS_LEFT_RUNNING.labels(backend=backend)
    _FOLLOWED.add(backend)


def exported_backend(backend: str) -> str:
    """``backend`` when its count is exported from 0, else :data:`OTHER_BACKEND` (whose is): a count
    under a label first seen at 1 is invisible to the alert's ``increase``."""
    return backend if backend in _FOLLOWED else OTHER_BACKEND


follow_jobs_left_running(OTHER_BACKEND)


def count_job_left_running(backend: str) -> None:
    """One more job of ``backend`` that nobody will stop (:data:`JOBS_LEFT_RUNNING`)."""
    JOBS_LEFT_RUNNING.labels(backend=backend).inc()


JOBS_SWEPT = Counter(
    "cdao_jobs_swept",
    "Jobs nobody followed (their CreateTask could not answer them, or their replica ended first) that this "
    "replica's sweeper stopped, by backend (cdao_connectors._sweeper)",
    ["backend"],
)


def count_job_swept(backend: str) -> None:
    """One more job of ``backend`` the sweeper stopped (:data:`JOBS_SWEPT`)."""
    JOBS_SWEPT.labels(backend=backend).inc()


SWEEP_FAILURES_NAME = "cdao_sweep_failures"
SWEEP_FAILURES = Counter(
    SWEEP_FAILURES_NAME,
    "Sweeps of the attempt table that failed, by stage: a whole pass (reading the sweep index) or one "
    "attempt's (finding or stopping its job); while they fail, jobs nobody follows run on (cdao_connectors._sweeper)",
    ["stage"],
)
# Exported at 0 from the start, as the alert's increase() needs (follow_jobs_left_running).
SWEEP_STAGES = ("pass", "attempt")
for _stage in SWEEP_STAGES:
    SWEEP_FAILURES.labels(stage=_stage)


def count_sweep_failure(stage: str) -> None:
    """One more failed sweep ``stage`` (one of :data:`SWEEP_STAGES`, :data:`SWEEP_FAILURES`)."""
    SWEEP_FAILURES.labels(stage=stage).inc()

"""One shared view of many jobs' status, refreshed in batches and ahead of time.

Propeller asks GetTask for every running task every polling round; one Describe call per GetTask
would cost N API calls per round, hit AWS's rate limits at a few hundred tasks, and make each
GetTask wait for a round trip. Here every tracked job is refreshed in one pass of batched calls
(``describe`` takes up to ``batch`` keys: DescribeJobs' 100 ids, ListSteps' 10 step ids, ...)
and GetTasks read the result.

With ``period`` set, a background thread refreshes every tracked entry older than half of it each
``period`` seconds, so a GetTask of a tracked job never waits for AWS: it reads an entry normally
at most about ``period`` plus one refresh old. Only a job seen for the first time (or, without a
background thread, one whose entry is older than ``max_age``) makes its GetTask refresh inline;
callers arriving meanwhile share that one refresh (where ``batch`` is 1 there is nothing to
share: each reads its own job).

A status call that fails is never a status, and, once a job's status is known, never an error
either: :meth:`StatusCache.get` then answers the last known status, marked ``stale`` with its age
and why it could not be refreshed (the refresh failed, or the background pass has not reached it
yet). Propeller fails a task after ``webApi.caching.maxSystemFailures`` GetTask errors in its whole
life, never reset by a success (flyteplugins ``go/tasks/pluginmachinery/internal/webapi/cache.go``
at flyteplugins/v1.16.8, ``SyncFailureCount``), so transient AWS trouble must cost that budget
nothing; only a job nothing is known about yet makes GetTask an error (see
``_deadlines.PROPELLER_MAX_SYSTEM_FAILURES``). An entry ``final`` says is terminal cannot change
and is served at any age.
Nothing maintained does this (boto3 has no request coalescing), hence the hand-written class.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import Counter

from cdao_connectors import _deadlines

_log = logging.getLogger(__name__)

# Exported on the service's Prometheus port (``pyflyte serve connector --prometheus_port``; the
# client is flytekit[connector]'s): how often a GetTask waited for the backend, and how often it was
# answered a stale status. plugins/benchmarks/get_task_latency.py reports both per measurement.
INLINE_REFRESHES = Counter(
    "cdao_status_inline_refreshes", "GetTasks that waited for the backend (an inline status refresh)", ["cache"]
)
STALE_ANSWERS = Counter(
    "cdao_status_stale_answers", "GetTasks answered a job's last known status older than max_age", ["cache"]
)


@dataclass
class _Entry:
    fetched_at: float
    value: Any  # None: the backend did not return the key (the job is gone)


class Known(NamedTuple):
    """A job's last known description (None: the backend does not know the job), its age in
    seconds, and, when it is older than ``max_age``, why it is (``stale``), for the GetTask's
    message."""

    value: Any
    age: float
    stale: str | None = None


class StatusCache:
    def __init__(
        self,
        describe: Callable[[list[Any]], Mapping[Hashable, Any]],
        max_age: float,
        *,
        batch: int,
        period: float | None = None,
        idle_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        parallel: int = 8,
        name: str = "status",
        final: Callable[[Any], bool] | None = None,
        describe_all: Callable[[list[Any]], Mapping[Hashable, Any]] | None = None,
    ):
        self._describe = describe
        # A backend with no batched Describe (SageMaker transform) lists in the background pass
        # instead; a list covers the whole tracked set, so it is one call, not one per chunk.
        self._describe_all = describe_all
        self.max_age = max_age
        self.batch = batch
        # A job nobody asked about for this long is finished from propeller's point of view
        # (terminal, aborted, or handled by another replica) and stops costing API calls. Propeller
        # asks every resync interval, alternating between replicas: ten intervals keep a live job's
        # last known status (what spares propeller's error budget) on every replica.
        self._idle_after = (
            idle_after if idle_after is not None else max(10 * _deadlines.PROPELLER_RESYNC_SECONDS, 10 * max_age)
        )
        self._clock = clock
        self._parallel = parallel
        # A job in a terminal state stays in it: its entry is served at any age and never refreshed.
        self._final = final or (lambda value: False)
        self._entries: dict[Hashable, _Entry] = {}
        self._last_asked: dict[Hashable, float] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self.describe_calls = 0
        # GetTasks that waited for AWS (an inline refresh): what the latency benchmark reports.
        self.inline_refreshes = 0
        self._background = period is not None
        self._name = name
        # Why the last background pass failed (None after one succeeded): a stale answer's reason.
        self._background_error: str | None = None
        # Without a background pass, an inline refresh takes every entry not fresh, so one pass
        # serves the whole round. With one, it takes only what cannot be served (new or expired
        # entries): the rest is the background's, and re-describing it would make the GetTask wait
        # (one call per job where the backend has no batched Describe).
        self._inline_older_than = max_age if period is not None else 0.0
        if period is not None:
            # The thread holds the cache weakly: a cache nobody uses any more lets it end.
            threading.Thread(
                target=_refresh_ahead, args=(weakref.ref(self), period), name=f"cdao-{name}-refresh", daemon=True
            ).start()

    def get(self, key: Hashable) -> Known:
        """The key's latest description, its age, and why it is stale when it is (:class:`Known`).

        Raises what the backend's describe raised only when nothing is known about the key yet."""
        asked = self._clock()
        with self._lock:
            self._last_asked[key] = asked
            entry = self._entries.get(key)
            if entry is not None and (asked - entry.fetched_at <= self.max_age or self._is_final(entry)):
                return Known(entry.value, asked - entry.fetched_at)
            if entry is not None and self._background:
                # Tracked: the background pass refreshes it; waiting for AWS here is what made
                # GetTasks slow and a failed refresh an error propeller counts.
                return self._stale(entry, asked, self._background_error or "the background refresh has not reached it")
        try:
            return self._refresh_inline(key)
        except Exception as exc:
            with self._lock:
                entry = self._entries.get(key)
            if entry is None:
                raise
            return self._stale(entry, self._clock(), f"refreshing it failed: {type(exc).__name__}: {exc}")

    def _stale(self, entry: _Entry, now: float, why: str) -> Known:
        STALE_ANSWERS.labels(self._name).inc()
        age = now - entry.fetched_at
        return Known(entry.value, age, f"last known status, {age:.0f} s old ({why})")

    def _refresh_inline(self, key: Hashable) -> Known:
        INLINE_REFRESHES.labels(self._name).inc()
        with self._lock:
            self.inline_refreshes += 1
            if self.batch == 1:  # no pass over the tracked jobs here: forget the idle ones now
                self._drop_idle(self._clock())
        if self.batch == 1:
            # Nothing to batch (one Describe per job): the GetTask reads its own job at once rather
            # than wait for a pass over every job new to this replica (after a restart, 1000 jobs
            # seen within a second made each GetTask wait for 1000 Describes: p99 9 s, 14 errors).
            self._refresh_chunk([key])
            with self._lock:
                entry = self._entries[key]
                return Known(entry.value, self._clock() - entry.fetched_at)
        with self._refresh_lock:
            with self._lock:
                entry = self._entries.get(key)
                # Another thread refreshed while we waited for the lock: its answer is fresh enough.
                now = self._clock()
                if entry is not None and (now - entry.fetched_at <= self.max_age or self._is_final(entry)):
                    return Known(entry.value, now - entry.fetched_at)
            self._refresh(self._inline_older_than)
            with self._lock:
                entry = self._entries[key]
                return Known(entry.value, self._clock() - entry.fetched_at)

    def _is_final(self, entry: _Entry) -> bool:
        return entry.value is not None and self._final(entry.value)

    def seed(self, key: Hashable, value: Any) -> None:
        """Record what a create call just told us, so a new job's first GetTask costs no API call
        and hundreds of tasks starting together do not each trigger a refresh."""
        now = self._clock()
        with self._lock:
            self._entries[key] = _Entry(now, value)
            self._last_asked[key] = now

    def peek(self, key: Hashable) -> Any:
        """The key's last description, however old, without refreshing (None when there is none):
        what a listing may narrow its request by (a creation time), never what GetTask answers."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.value if entry is not None else None

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._last_asked.pop(key, None)

    def refresh_ahead(self, older_than: float) -> None:
        """Refresh every tracked entry older than ``older_than`` seconds (the background pass)."""
        with self._refresh_lock:
            try:
                self._refresh(older_than, background=True)
            except Exception as exc:
                self._background_error = f"the last refresh failed: {type(exc).__name__}: {exc}"
                raise
            self._background_error = None

    def _refresh(self, older_than: float, background: bool = False) -> None:
        now = self._clock()
        with self._lock:
            self._drop_idle(now)
            # Refresh everything not fresh, so one pass serves the whole round.
            stale = [
                k
                for k in self._last_asked
                if k not in self._entries
                or (now - self._entries[k].fetched_at > older_than and not self._is_final(self._entries[k]))
            ]
        if background and self._describe_all is not None and stale:
            self._refresh_chunk(stale, self._describe_all)
            return
        chunks = [stale[i : i + self.batch] for i in range(0, len(stale), self.batch)]
        # Chunks go out in parallel so a refresh of thousands of jobs costs one round trip of
        # latency for the pollers waiting on it, not ten.
        if len(chunks) > 1:
            with ThreadPoolExecutor(min(len(chunks), self._parallel)) as pool:
                list(pool.map(self._refresh_chunk, chunks))
        elif chunks:
            self._refresh_chunk(chunks[0])

    def _drop_idle(self, now: float) -> None:
        """Forget the jobs nobody asked about for ``idle_after`` seconds (caller holds ``_lock``)."""
        for key, asked in list(self._last_asked.items()):
            if now - asked > self._idle_after:
                del self._last_asked[key]
                self._entries.pop(key, None)

    def _refresh_chunk(self, chunk: list[Hashable], describe: Callable[[list[Any]], Mapping] | None = None) -> None:
        started = self._clock()
        found = (describe or self._describe)(chunk)
        with self._lock:
            self.describe_calls += 1
            for key in chunk:
                # Stamp with the request start: the answer is at least that fresh.
                self._entries[key] = _Entry(started, found.get(key))


def _refresh_ahead(ref: weakref.ref[StatusCache], period: float) -> None:
    # Passes start every ``period`` (not ``period`` after the last one ended) and take every entry
    # older than half of it, so an entry is at most about ``period`` plus one pass old.
    started = time.monotonic()
    while True:
        time.sleep(max(0.0, started + period - time.monotonic()))
        started = time.monotonic()
        cache = ref()
        if cache is None:
            return
        try:
            cache.refresh_ahead(older_than=period / 2)
        except Exception:  # the next GetTask of an expired entry refreshes inline and reports it
            _log.warning("background %s refresh failed; GetTasks refresh inline", cache, exc_info=True)
        del cache


def refresh_period(max_age: float) -> float | None:
    """The background refresh period for ``max_age``: half of it, so an entry is refreshed before
    it expires; none below one second, where the caller wants near-synchronous status and
    refreshing ahead would only add calls."""
    return max_age / 2 if max_age >= 1.0 else None


class StatusCaches:
    """One :class:`StatusCache` per key (a region), rebuilt when ``max_age`` changes."""

    def __init__(self, factory: Callable[[Hashable, float], StatusCache]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._caches: dict[Hashable, StatusCache] = {}

    def __call__(self, key: Hashable, max_age: float) -> StatusCache:
        with self._lock:
            cache = self._caches.get(key)
            if cache is None or cache.max_age != max_age:
                cache = self._caches[key] = self._factory(key, max_age)
            return cache

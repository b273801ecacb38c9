"""One shared view of many jobs' status, refreshed in batches and ahead of time.

Propeller asks GetTask for every running task every polling round; one Describe call per GetTask
would cost N API calls per round, hit AWS's rate limits at a few hundred tasks, and make each
GetTask wait for a round trip. Here every tracked job is refreshed in one pass of batched calls
(``describe`` takes up to ``batch`` keys: DescribeJobs' 100 ids, ListSteps' 10 step ids, ...)
and GetTasks read the result.

With ``period`` set, a background thread refreshes every tracked entry older than half of it each
``period`` seconds, so a GetTask of a tracked job never waits for AWS: it reads an entry normally
at most about ``period`` plus one refresh old. Only a job seen for the first time (or, without a
background thread, one whose entry is older than ``max_age``) makes its GetTask read it.

Reads GetTasks ask for are coalesced: each GetTask queues its key, and readers (at most
``parallel``, started once the event loop's current turn has queued every GetTask it runs) take up
to ``batch`` queued keys per ``describe`` call, oldest first, until none is left. So N first sights
arriving together (every job, after a restart) cost ceil(N / ``batch``) calls, and those arriving
while every reader is out in a slow call share the next one: the calls a slow or throttled backend
is asked grow with the batches, not with the GetTasks, and every first sight costs one of
propeller's error budget less often. Where a listing answers a page of jobs and ``describe`` one
(SageMaker, EMR Serverless: ``list_over``), a reader finding more than ``list_over`` reads queued
takes them all and lists them (``describe_all``). Without a background thread, a read also takes
every other entry due (one pass serves the round; a ``batch`` of 1 takes only the caller's own job).

Every read runs on the cache's own threads, never the RPC threads nor another backend's: the
readers' ``parallel`` and the background pass's ``parallel`` apart, so a first sight never queues
behind a pass's calls (a backend's bounded share, at most twice ``parallel`` calls at once). A
GetTask waits for its read only so long, on the service's event loop (:meth:`StatusCache.aget`),
holding no thread while it waits:

- a job whose status is known waits at most :data:`KNOWN_STATUS_WAIT_SECONDS`, then is answered its
  last known status, marked stale; the refresh goes on and its answer serves the next GetTask.
  Propeller's GetTask callers are ``webApi.caching.workers`` goroutines shared by every connector
  task type (flyteplugins ``go/tasks/pluginmachinery/internal/webapi/cache.go``, ``NewResourceCache``,
  at flyteplugins/v1.16.8): a GetTask waiting for a hung backend holds one of them from every other
  backend's tasks;
- a job seen for the first time waits at most :data:`FIRST_SIGHT_WAIT_SECONDS` and, when its
  backend has not answered by then, is a :class:`StatusNotAnswered` error (nothing is known to
  answer; propeller retries it). A GetTask finding that read still outstanding waits only the short
  bound: a hung backend holds a worker for the long one once per job, not every poll.

A status call that fails is never a status, and, once a job's status is known, not an error either
while the trouble may pass: :meth:`StatusCache.get` answers the last known status, marked ``stale``
with its age and why it could not be refreshed. Propeller fails a task after
``webApi.caching.maxSystemFailures`` GetTask errors in its whole life, never reset by a success
(``cache.go`` above, ``SyncFailureCount``), so transient trouble (``transient(error)``: throttling,
5xx, timeouts, connection errors, :func:`is_transient_error`) must cost that budget nothing.

A refusal that is not transient (AccessDenied after a role change, a ValidationException that is
not "not found", an unknown cluster) would otherwise serve the last RUNNING until the task's
timeout, hours later. Once refusals of a job's refresh have lasted :data:`REFUSAL_GRACE_SECONDS`
(time for an operator to fix a role) without a success in between, its GetTask is a
:class:`StatusRefused` error naming the refusal: propeller's error budget drains in
``maxSystemFailures`` resyncs and the task fails with that message (propeller keeps the last
GetTask error as the item's ``ErrorMessage``, ``cache.go``). An error rather than a FAILED phase:
the job may still be running, and a refusal fixed within the budget lets the task carry on.

``describe`` answers each key's description, leaves out a key the backend does not know (None: the
job is gone), and may answer :class:`Unreadable` for a key it could not read, so one bad key (an
unknown cluster, a refused application) costs only its own jobs, not the whole pass; an error it
raises counts against every key of the call. An entry ``final`` says is terminal cannot change and
is served at any age.
Nothing maintained does this (boto3 has no request coalescing), hence the hand-written class.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from prometheus_client import Counter

from cdao_connectors import _deadlines
from cdao_connectors._backends import BackendDeadlineExceeded, is_transient

_log = logging.getLogger(__name__)
T = TypeVar("T")

# Exported on the service's Prometheus port (``pyflyte serve connector --prometheus_port``; the
# client is flytekit[connector]'s): how often a GetTask waited for the backend, and how often it was
# answered a stale status. plugins/benchmarks/get_task_latency.py reports both per measurement.
INLINE_REFRESHES = Counter(
    "cdao_status_inline_refreshes", "GetTasks that waited for the backend (an inline status refresh)", ["cache"]
)
STALE_ANSWERS = Counter(
    "cdao_status_stale_answers", "GetTasks answered a job's last known status older than max_age", ["cache"]
)

# How long a GetTask of a known job waits for its refresh. Propeller's ``caching.workers`` (10)
# goroutines start at most ``readRateLimiter.qps`` GetTasks a second (10 by default; flyteplugins
# ``go/tasks/plugins/webapi/connector/config.go`` at v1.16.8): a second of worker time per GetTask.
# A quarter of it holds at most half of the workers even with every task on a hung backend, and is
# well above a healthy Describe's round trip (milliseconds to tens of them), so a live backend is
# rarely answered stale; tests/plugins/test_error_budget.py checks it against the values propeller
# runs with.
KNOWN_STATUS_WAIT_SECONDS = 0.25
# How long a job's first GetTask on a replica waits for its read: nothing is known to answer
# instead, and an error spends one of propeller's PROPELLER_MAX_SYSTEM_FAILURES, so longer than a
# slow Describe under load (p99 0.7 s at 1000 tasks in flight, plugins/benchmarks); it is paid
# once per job and replica (creates seed their job, a read still outstanding costs the short bound).
FIRST_SIGHT_WAIT_SECONDS = 2.0
# How long a refusal that is not transient is answered stale before GetTask reports it: ten of
# propeller's resync intervals, time for an operator to put back a role a change broke.
REFUSAL_GRACE_SECONDS = 10 * _deadlines.PROPELLER_RESYNC_SECONDS

# How many threads a background pass reads on at once, per backend. Each answer is parsed in
# Python (botocore), holding the GIL, and the event loop that serves every GetTask waits for it
# behind every busy thread: with a pass's chunks on 32 threads, 7000 tracked jobs on 2 replicas made
# the benchmark's steady GetTask p99 ~800 ms against ~35 ms with no pass in the window, while the
# connectors' own time stayed under 40 ms (plugins/benchmarks/get_task_latency.py, with
# ``--refresh-seconds 600`` for the second figure). A pass has half its period to finish (1000
# Batch jobs are 10 DescribeJobs calls; EMR's 10-step reads or a listing's pages a few dozen), so a
# few at a time are enough; a hung backend fills only its own.
BACKGROUND_READS_AT_ONCE = 2
# A pass's reads start evenly over this share of its period, not at once, and every cache's first
# pass starts at a random point of its period's second half. Every backend's cache begins with the
# same burst of first sights (a restart), so their passes came together every period, and each
# answer parsed holds the GIL the event loop needs: spread, a pass stops the loop for at most a
# chunk's parse at a time, and the backend sees a steady rate of calls instead of a burst every
# period (AWS meters API calls with token buckets, which a burst drains:
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/throttling.html describes EC2's). An
# entry read late in a pass is refreshed that much later in the next one, so passes take entries
# older than PASS_DUE_SHARE of the period: one read at the spread's end is still due. Measured
# (plugins/benchmarks/get_task_latency.py --tasks 1000 --replicas 2, 7000 tasks): the steady
# GetTask p99 went from ~600 ms to 110-130 ms in two runs back to back on a machine other work kept
# busy, and was 59-72 ms on a quieter one (285-346 ms before, last measured quiet).
PASS_SPREAD_SHARE = 0.5
PASS_DUE_SHARE = 0.25

# How many connector replicas propeller's GetTasks are spread over at most: the HorizontalPodAutoscaler's
# maxReplicas (platform/addons/connectors/base/autoscaling.yaml; tests/plugins/test_status_cache.py
# holds the two equal).
MAX_REPLICAS = 8
# A live job's GetTask comes every resync (flytestdlib cache/in_memory_auto_refresh.go at
# flyteplugins/v1.16.8) to one replica picked by gRPC's round_robin policy, the next ready
# subchannel per call (flyteplugins go/tasks/plugins/webapi/connector/config.go
# DefaultServiceConfig; https://github.com/grpc/grpc/blob/master/doc/load-balancing.md), so with
# MAX_REPLICAS replicas a given one misses it n resyncs in a row with chance (1 - 1/R)^n. A replica
# that forgot a live job answers its next GetTask as a first sight, an error when the backend is
# throttled then. Forgetting only after that chance is under one in a million (104 resyncs of 30 s
# with 8 replicas, 52 minutes) keeps it from happening in practice. The cost: a job whose task ended
# (or that another replica was asked to delete) stays in memory that long, and, until its backend
# reports it ended (final entries are never refreshed), in the background refresh.
_FORGET_CHANCE = 1e-6
IDLE_RESYNCS = math.ceil(math.log(_FORGET_CHANCE) / math.log(1 - 1 / MAX_REPLICAS))
IDLE_AFTER_SECONDS = IDLE_RESYNCS * _deadlines.PROPELLER_RESYNC_SECONDS


def is_transient_error(error: BaseException) -> bool:
    """Whether ``error`` says "not now" rather than "never": AWS throttling or a 5xx
    (:func:`cdao_connectors._backends.is_transient`), botocore's own connection and HTTP client
    errors (``botocore.exceptions.ConnectionError``: endpoint, connect timeout, proxy, SSL;
    ``HTTPClientError``: read timeout, connection closed), a deadline run out."""
    if isinstance(error, ClientError):
        return is_transient(error)
    return isinstance(error, (BotocoreConnectionError, HTTPClientError, BackendDeadlineExceeded, TimeoutError))


class StatusNotAnswered(RuntimeError):
    """Nothing is known about the job yet and its backend did not answer within the first-sight
    bound; retryable (the read goes on, and its answer serves the next GetTask)."""


class StatusRefused(RuntimeError):
    """The backend has refused to give the job's status for longer than :data:`REFUSAL_GRACE_SECONDS`
    with an error that is not transient; the message names the refusal."""


class Unreadable(NamedTuple):
    """What ``describe`` answers for one key it could not read (the others of the call were)."""

    error: BaseException


@dataclass
class _Entry:
    fetched_at: float
    value: Any  # None: the backend did not return the key (the job is gone)
    attached: Any = None  # what the connector made of ``value`` (:meth:`StatusCache.attachment`)


@dataclass
class _Failure:
    error: BaseException
    refused_since: float | None  # when refusals that are not transient began; None: transient only


class Known(NamedTuple):
    """A job's last known description (None: the backend does not know the job), its age in
    seconds, and, when it is older than ``max_age``, why it is (``stale``), for the GetTask's
    message."""

    value: Any
    age: float
    stale: str | None = None


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


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
        transient: Callable[[BaseException], bool] = is_transient_error,
        known_wait: float | None = None,
        backend: str | None = None,
        list_over: int | None = None,
    ):
        self._describe = describe
        # A backend with no batched Describe (SageMaker transform) lists in the background pass
        # instead; a list covers the whole tracked set, so it is one call, not one per chunk.
        self._describe_all = describe_all
        # More reads than this queued at once (a restart, a map task's tasks created on another
        # replica) are taken together and listed with ``describe_all``: a page of a listing answers
        # many jobs, where ``describe`` answers ``batch``.
        self._list_over = list_over if describe_all is not None else None
        self.max_age = max_age
        self.batch = batch
        # A job nobody asked about for this long is finished from propeller's point of view
        # (terminal or aborted) and stops costing memory and API calls (:data:`IDLE_AFTER_SECONDS`).
        self._idle_after = idle_after if idle_after is not None else max(IDLE_AFTER_SECONDS, 10 * max_age)
        self._clock = clock
        # The refreshes' own threads: a hung backend fills these, never the service's RPC threads.
        # GetTasks' reads and the background pass each have their own, so a first sight never
        # queues behind a pass's chunks (a pass over 1000 Batch jobs is 10 DescribeJobs calls).
        self._pool = ThreadPoolExecutor(
            min(parallel, BACKGROUND_READS_AT_ONCE), thread_name_prefix=f"cdao-{name}-status"
        )
        self._inline_pool = ThreadPoolExecutor(parallel, thread_name_prefix=f"cdao-{name}-reads")
        self._parallel = parallel
        self._transient = transient
        # None: KNOWN_STATUS_WAIT_SECONDS, read at call time (a test may set a longer one).
        self._known_wait = known_wait
        # A job in a terminal state stays in it: its entry is served at any age and never refreshed.
        self._final = final or (lambda value: False)
        self._entries: dict[Hashable, _Entry] = {}
        self._last_asked: dict[Hashable, float] = {}
        self._failures: dict[Hashable, _Failure] = {}
        # The refresh under way or queued for each key (its ticket and future): one at a time per key.
        self._inflight: dict[Hashable, tuple[object, Future]] = {}
        # Keys GetTasks wait for, not yet taken by a read (each key's future is in _inflight): the
        # readers take up to ``batch`` of them per describe call, so reads asked for together share
        # calls (:meth:`_read_pending`).
        self._pending: dict[Hashable, Future] = {}
        self._readers = 0  # readers running or submitted, at most ``parallel``
        self._reading = 0  # readers in a describe call
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self.describe_calls = 0
        # GetTasks that waited for the backend (a refresh of their own): what the latency benchmark reports.
        self.inline_refreshes = 0
        self._background = period is not None
        self._name = name
        self._backend = backend or name  # what the errors call the system asked
        # Without a background pass, a GetTask's refresh takes every entry not fresh, so one pass
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
        """The key's latest description, its age, and why it is stale when it is (:class:`Known`),
        within :data:`KNOWN_STATUS_WAIT_SECONDS` once something is known about the key; the calling
        thread waits for the read. A GetTask uses :meth:`aget`, which holds no thread while it waits.

        Raises, when nothing is known about the key yet, what the backend's describe raised, or
        :class:`StatusNotAnswered` after :data:`FIRST_SIGHT_WAIT_SECONDS` without an answer; and
        :class:`StatusRefused` once its refreshes have been refused past :data:`REFUSAL_GRACE_SECONDS`."""
        begun = self._begin(key)
        if isinstance(begun, Known):
            return begun
        future, wait = begun
        self._start_readers()
        try:
            future.result(timeout=wait)
            answered = True
        except FutureTimeout:
            answered = False
        return self._answer(key, answered, wait)

    async def aget(self, key: Hashable) -> Known:
        """:meth:`get` for a coroutine: the bounded wait for the read is awaited on the event loop,
        so a GetTask waiting for a slow or hung backend holds none of the backend's threads (with
        propeller's ``webApi.caching.workers`` GetTasks at once, a pool in front of the wait would
        queue them past its bound); only the read itself runs on the cache's threads. Same answers
        and errors as :meth:`get`."""
        begun = self._begin(key)
        if isinstance(begun, Known):
            return begun
        future, wait = begun
        # The readers start once every GetTask the loop is running this turn has queued its key:
        # reads asked for together share describe calls instead of the first going alone.
        asyncio.get_running_loop().call_soon(self._start_readers)
        try:
            # shield: the bound ending must not cancel the read, whose answer serves the next GetTask.
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), wait)
            answered = True
        except TimeoutError:
            answered = False
        return self._answer(key, answered, wait)

    def _begin(self, key: Hashable) -> Known | tuple[Future, float]:
        """What can be answered at once, or the read to wait for and how long."""
        asked = self._clock()
        known_wait = self._known_wait if self._known_wait is not None else KNOWN_STATUS_WAIT_SECONDS
        with self._lock:
            self._last_asked[key] = asked
            entry = self._entries.get(key)
            if entry is not None and (asked - entry.fetched_at <= self.max_age or self._is_final(entry)):
                return Known(entry.value, asked - entry.fetched_at)
            if entry is not None and self._background:
                # Tracked: the background pass refreshes it; waiting for AWS here is what made
                # GetTasks slow and a failed refresh an error propeller counts.
                return self._stale_or_refused(key, entry, asked, "the background refresh has not reached it yet")
            running = self._inflight.get(key)
            if running is None:
                future = self._start_locked(key, asked)
                wait = known_wait if entry is not None else FIRST_SIGHT_WAIT_SECONDS
            else:
                # Its refresh is already under way (and, for a new job, was waited for once).
                future, wait = running[1], known_wait
        INLINE_REFRESHES.labels(self._name).inc()
        return future, wait

    def _answer(self, key: Hashable, answered: bool, wait: float) -> Known:
        """The answer once the read ended (``answered``) or ``wait`` seconds passed without it."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            failure = self._failures.get(key)
            if entry is None:
                if not answered:
                    raise StatusNotAnswered(
                        f"{self._backend}: nothing is known about {key!r} yet and {self._backend} did not answer "
                        f"within {wait:g}s; nothing was decided, retry (the read goes on)"
                    )
                if failure is not None:
                    raise failure.error
                raise StatusNotAnswered(f"{self._backend}: {key!r} was forgotten (deleted) while it was read; retry")
            if not answered:
                return self._stale_or_refused(key, entry, now, f"its backend has not answered a refresh in {wait:g}s")
            if failure is not None:
                return self._stale_or_refused(key, entry, now, "")
            return Known(entry.value, now - entry.fetched_at)

    def _stale_or_refused(self, key: Hashable, entry: _Entry, now: float, why: str) -> Known:
        """``entry`` marked stale with why, or StatusRefused when refusals outlasted the grace
        (caller holds ``_lock``)."""
        failure = self._failures.get(key)
        if failure is not None:
            if failure.refused_since is not None and now - failure.refused_since > REFUSAL_GRACE_SECONDS:
                raise StatusRefused(
                    f"{self._backend}: the status of {key!r} has been refused for {now - failure.refused_since:.0f}s "
                    f"(last known {entry.value!r:.200}): {_describe_error(failure.error)}"
                )
            why = f"refreshing it failed: {_describe_error(failure.error)}"
        STALE_ANSWERS.labels(self._name).inc()
        age = now - entry.fetched_at
        return Known(entry.value, age, f"last known status, {age:.0f} s old ({why})")

    def _start_locked(self, key: Hashable, now: float) -> Future:
        """Queues the read a GetTask of ``key`` needs for the readers (:meth:`_read_pending`);
        its future (caller holds ``_lock``)."""
        self.inline_refreshes += 1
        self._drop_idle(now)
        if self.batch == 1:
            # Nothing to batch (one Describe per job): the GetTask reads its own job, not every job
            # new to this replica (after a restart, 1000 jobs seen within a second made each
            # GetTask wait for 1000 Describes: p99 9 s, 14 errors).
            keys = [key]
        else:
            # One pass serves the round: every key due and not already being read.
            keys = [key, *(k for k in self._due_locked(now, self._inline_older_than) if k != key)]
        for k in keys:
            future: Future = Future()
            self._pending[k] = future
            self._inflight[k] = (future, future)
        return self._pending[key]

    def _start_readers(self) -> None:
        """Starts readers for the queued keys: one per ``batch`` of them, at most ``parallel`` running."""
        with self._lock:
            # Readers not in a describe call yet will take queued keys; the rest are busy.
            waiting = self._readers - self._reading
            wanted = min(self._parallel - self._readers, math.ceil(len(self._pending) / self.batch) - waiting)
            for _ in range(wanted):
                self._readers += 1
                self._inline_pool.submit(self._read_pending)

    def _read_pending(self) -> None:
        """A reader: takes up to ``batch`` queued keys per describe call, oldest first, until none
        is left. Keys queued while its call was out wait for it or another reader, so reads asked
        for while the backend is slow share calls instead of each queueing a call of its own."""
        ended = False
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        # In the same hold as the check: _start_readers counts this reader as one
                        # that will take what is queued until it has left.
                        self._readers -= 1
                        ended = True
                        return
                    describe, take = self._describe, self.batch
                    if self._list_over is not None and len(self._pending) > self._list_over:
                        describe, take = self._describe_all, len(self._pending)
                    keys = list(itertools.islice(self._pending, take))
                    taken = [(key, self._pending.pop(key)) for key in keys]
                    ticket = object()
                    for key, future in taken:
                        self._inflight[key] = (ticket, future)
                    self._reading += 1
                try:
                    self._refresh_keys(keys, describe, ticket)
                finally:
                    with self._lock:
                        self._reading -= 1
                    for _key, future in taken:
                        with contextlib.suppress(InvalidStateError):  # cancelled by nobody in practice
                            future.set_result(None)
        finally:
            if not ended:  # a fault of this module's own: the next GetTask starts another reader
                with self._lock:
                    self._readers -= 1

    def _due_locked(self, now: float, older_than: float) -> list[Hashable]:
        return [
            k
            for k in self._last_asked
            if k not in self._inflight
            and (
                k not in self._entries
                or (now - self._entries[k].fetched_at > older_than and not self._is_final(self._entries[k]))
            )
        ]

    def _submit_locked(self, keys: list[Hashable], describe: Callable[[list[Any]], Mapping]) -> Future:
        ticket = object()
        # The refresh records its answer under _lock, so it cannot end before it is registered here.
        future = self._pool.submit(self._refresh_keys, keys, describe, ticket)
        for key in keys:
            self._inflight[key] = (ticket, future)
        return future

    def is_final(self, value: Any) -> bool:
        """Whether ``value`` (a description ``describe`` answered, never None) is a terminal status,
        kept for good and never refreshed (the cache's ``final`` predicate). The one owner of that
        fact for its jobs: a connector asks its job's cache (``BulkheadConnector.get``)."""
        return self._final(value)

    def _is_final(self, entry: _Entry) -> bool:
        return entry.value is not None and self.is_final(entry.value)

    def seed(self, key: Hashable, value: Any) -> None:
        """Record what a create call just told us, so a new job's first GetTask costs no API call
        and hundreds of tasks starting together do not each trigger a refresh."""
        now = self._clock()
        with self._lock:
            self._entries[key] = _Entry(now, value)
            self._last_asked[key] = now
            self._failures.pop(key, None)

    def peek(self, key: Hashable) -> Any:
        """The key's last description, however old, without refreshing (None when there is none):
        what a listing may narrow its request by (a creation time), never what GetTask answers."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.value if entry is not None else None

    def attachment(self, key: Hashable, value: Any, make: Callable[[], T]) -> T:
        """What ``make()`` made of ``value``, kept with the key's entry while the entry holds that
        very ``value`` (a GetTask's slow outputs check of an ended job), so a later caller of the same
        entry gets the same object. It goes with the entry: when a refresh replaces it, when the key
        is forgotten or dropped as idle, or at :meth:`detach`; so what is kept is bounded by the
        cache's entries. When the entry holds another value (refreshed meanwhile) or none,
        ``make()`` is returned unkept. ``make`` must be quick: it is called holding the cache's lock."""
        with self._lock:  # make() is quick (it starts the work), so two callers never make two
            entry = self._entries.get(key)
            if entry is None or entry.value is not value:
                return make()
            if entry.attached is None:
                entry.attached = make()
            return entry.attached

    def detach(self, key: Hashable, attached: Any) -> None:
        """Drop ``attached`` from the key's entry, if it is still the one kept there."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.attached is attached:
                entry.attached = None

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._last_asked.pop(key, None)
            self._failures.pop(key, None)

    def refresh_ahead(self, older_than: float, wait: float | None = None, spread: float = 0.0) -> None:
        """Refresh every tracked entry older than ``older_than`` seconds and not being refreshed
        already (the background pass); raises the first error of the refreshes that ended within
        ``wait`` seconds (None: all of them), counted from the last chunk's start. One that
        outlasts ``wait`` goes on, and the next pass leaves its jobs to it: a hung read delays only
        its own job, not the next pass. With ``spread`` (seconds), the pass's ``batch``-sized
        chunks start evenly over that long instead of at once (:data:`PASS_SPREAD_SHARE`)."""
        with self._refresh_lock:
            now = self._clock()
            with self._lock:
                self._drop_idle(now)
                due = self._due_locked(now, older_than)
                if not due:
                    return
                if self._describe_all is not None:
                    futures = [self._submit_locked(due, self._describe_all)]
                    chunks: list[list[Hashable]] = []
                else:
                    futures, chunks = [], [due[i : i + self.batch] for i in range(0, len(due), self.batch)]
            futures += self._submit_chunks(chunks, spread)
            done, _ = wait_for_futures(futures, timeout=wait)
            errors = [error for future in futures if future in done for error in future.result()]
        if errors:
            raise errors[0]

    def _submit_chunks(self, chunks: list[list[Hashable]], spread: float) -> list[Future]:
        """Submits ``chunks`` one every ``spread / len(chunks)`` seconds (monotonic time; 0: all at
        once, to run up to ``parallel`` at a time), each with what is still tracked and not being
        read of it at its turn; their futures."""
        futures: list[Future] = []
        start = time.monotonic()
        for i, chunk in enumerate(chunks):
            time.sleep(max(0.0, start + i * spread / len(chunks) - time.monotonic()))
            with self._lock:
                # Forgotten (deleted) or taken by a GetTask's read while the pass waited for its turn.
                keys = [k for k in chunk if k in self._last_asked and k not in self._inflight]
                if keys:
                    futures.append(self._submit_locked(keys, self._describe))
        return futures

    def _drop_idle(self, now: float) -> None:
        """Forget the jobs nobody asked about for ``idle_after`` seconds (caller holds ``_lock``)."""
        for key, asked in list(self._last_asked.items()):
            if now - asked > self._idle_after:
                del self._last_asked[key]
                self._entries.pop(key, None)
                self._failures.pop(key, None)

    def _refresh_keys(
        self, keys: list[Hashable], describe: Callable[[list[Any]], Mapping], ticket: object
    ) -> list[BaseException]:
        """Describe ``keys`` and record each one's answer or failure; the errors met."""
        started = self._clock()
        try:
            found: Mapping[Hashable, Any] = describe(keys)
            errors: list[BaseException] = []
        except Exception as exc:
            found = {key: Unreadable(exc) for key in keys}
            errors = [exc]
        now = self._clock()
        with self._lock:
            self.describe_calls += 1
            for key in keys:
                if self._inflight.get(key, (None,))[0] is ticket:
                    del self._inflight[key]
                if key not in self._last_asked:
                    continue  # forgotten (deleted, or idle) while it was being read
                value = found.get(key)
                if isinstance(value, Unreadable):
                    self._record_failure(key, value.error, now)
                    if not errors:
                        errors.append(value.error)
                else:
                    # Stamp with the request start: the answer is at least that fresh.
                    self._entries[key] = _Entry(started, value)
                    self._failures.pop(key, None)
        return errors

    def _record_failure(self, key: Hashable, error: BaseException, now: float) -> None:
        """Caller holds ``_lock``. Transient trouble between refusals does not restart their clock:
        only an answer does."""
        previous = self._failures.get(key)
        refused_since = previous.refused_since if previous is not None else None
        if refused_since is None and not self._transient(error):
            refused_since = now
        self._failures[key] = _Failure(error, refused_since)


def _refresh_ahead(ref: weakref.ref[StatusCache], period: float) -> None:
    # Passes start every ``period`` (not ``period`` after the last one ended), the first at a random
    # point of its second half, and spread their reads over PASS_SPREAD_SHARE of it. They take every
    # entry older than PASS_DUE_SHARE of it: an entry read late in one pass is still due at the next
    # one's start, so an entry is at most about ``period`` plus one spread (1.5 periods) old, inside
    # ``max_age`` (two periods, refresh_period). Not in the first half: a cache is made by the first
    # GetTask of its backend, so after a restart its first half period is the burst of first sights,
    # whose reads a pass would only slow, past their bound (a GetTask error).
    started = time.monotonic() - random.uniform(0.0, period / 2)  # noqa: S311  (a phase, not a secret)
    while True:
        time.sleep(max(0.0, started + period - time.monotonic()))
        started = time.monotonic()
        cache = ref()
        # The interpreter is exiting once the main thread has ended: the refresh threads are gone.
        if cache is None or not threading.main_thread().is_alive():
            return
        try:
            cache.refresh_ahead(older_than=PASS_DUE_SHARE * period, wait=period, spread=PASS_SPREAD_SHARE * period)
        except Exception:  # each job's GetTask answers its last status, saying why it is stale
            _log.warning("background %s refresh failed", cache._name, exc_info=True)
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

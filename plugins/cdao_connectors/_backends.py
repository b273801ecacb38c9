"""Bulkheads: each backend's blocking calls run on its own threads, inside propeller's deadline.

flytekit runs a connector's synchronous ``create``/``get``/``delete`` on asyncio's default thread
pool (``flytekit/extend/backend/utils.py``, ``mirror_async_methods``: ``run_in_executor(None, ...)``),
which every connector of the service shares (``min(32, cpus + 4)`` threads): one hung backend
holding those threads stalls all the others. Here each connector has its own pools (one for its
GetTasks, :func:`on_get_task_threads`, one for the rest) and its own AWS clients, and every call is bounded by
propeller's deadline for it (:mod:`cdao_connectors._deadlines`).
A call that cannot finish in time raises :class:`BackendDeadlineExceeded` instead of answering after
propeller has stopped listening. Propeller retries a GetTask or DeleteTask that errors (a GetTask
error spends one of the task's ``maxSystemFailures``, :mod:`cdao_connectors._deadlines`), but never
a CreateTask: flyteplugins ``go/tasks/pluginmachinery/internal/webapi/launcher.go`` (``launch``, at
flyteplugins/v1.16.8) turns any Create error into ``PhaseInfoRetryableFailure``, which ends the
attempt (``core/phase.go``: a USER error, counted against the task's retries), and the next attempt
has a new ``retry_attempt``, so a new job name. The failed attempt's state holds no ``resource_meta``,
and ``plugins/webapi/connector/plugin.go`` ``Delete`` does nothing without one: a job the create still
starts after answering would run unowned. :func:`create_within_deadline` therefore cancels it, and
the attempt table's sweep (:mod:`cdao_connectors._attempts`, "Sweeping") stops it should this
replica end first. Hand-written: flytekit has no per-connector executor or deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import AsyncConnectorBase, Resource

from cdao_connectors import _deadlines
from cdao_connectors._attempts import (
    CREATE_STARTED_AT,
    forget_refused_cancel,
    keep_refused_cancel,
    note_try_without_answer,
    refused_cancel_item,
)
from cdao_connectors._common import in_chain, noting_staleness, says_attempts_left
from cdao_connectors._metrics import count_job_left_running, follow_jobs_left_running, observe_get_task

if TYPE_CHECKING:  # _status_cache imports this module; _attempts names Backend
    from cdao_connectors._attempts import AttemptAnswers
    from cdao_connectors._status_cache import StatusCache

T = TypeVar("T")
V = TypeVar("V")

_log = logging.getLogger(__name__)

# Adaptive mode adds client-side rate limiting on top of exponential backoff, so a throttled
# account slows the connector down instead of failing tasks; the limiter lives in the client, so
# clients are shared (boto3 clients are thread-safe), one per service and region per backend.
# Timeouts and attempts keep a call's own retrying near propeller's deadlines; the deadline itself
# is enforced around the call.
AWS_CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=8, retries={"max_attempts": 4, "mode": "adaptive"}, max_pool_connections=32
)
# Creates that AWS does not deduplicate (SubmitJob, RunJobFlow, AddJobFlowSteps) are never re-sent
# after an ambiguous failure: a timeout or a dropped connection may hide a request AWS carried out,
# and botocore's retry would then start a second job. Their client does not retry at all; only
# throttling, an explicit refusal, is retried by create_once.
AWS_CREATE_CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=20, retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=32
)
WORKERS_PER_BACKEND = 32
_THROTTLING = ThrottledRetryableChecker()  # botocore's own list of throttling error codes


def is_transient(error: ClientError) -> bool:
    """Whether AWS refused for now (a throttling code of botocore/retries/standard.py
    ``ThrottledRetryableChecker``, or a 5xx) rather than about the request's resources."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status >= 500 or _THROTTLING.is_retryable(RetryContext(attempt_number=1, parsed_response=error.response))


def create_once(call: Callable[[], T], give_up_after: float) -> T:
    """``call()``, repeated with backoff only while AWS answers with a throttling error code
    (botocore/retries/standard.py ``ThrottledRetryableChecker``) and ``give_up_after`` seconds allow."""
    give_up = time.monotonic() + give_up_after
    delay = 0.2
    while True:
        try:
            return call()
        except ClientError as exc:
            throttled = _THROTTLING.is_retryable(RetryContext(attempt_number=1, parsed_response=exc.response))
            if not throttled or time.monotonic() + delay > give_up:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 2.0)


class BackendDeadlineExceeded(RuntimeError):
    """The backend did not answer within propeller's deadline for the call."""


# Said of a GetTask or DeleteTask (reads, and cancels that are no-ops once done) that ran out of time.
SAFE_TO_RETRY = "the call is safe to retry"
# Said of a CreateTask that ran out of time (launcher.go: the attempt fails, the create is not re-sent).
CREATE_GIVEN_UP = (
    "this task attempt fails (propeller does not re-send a failed CreateTask; its next attempt, if one is "
    "left, starts a new job) and a job this create still starts is cancelled (should this replica end first, "
    "plugins/README.md, 'Jobs nobody follows', says by whom)"
)


class ReplicaShuttingDown(RuntimeError):
    """This replica received SIGTERM (:func:`finish_shutdown`): a CreateTask arriving now starts no
    job, and one whose create outlasts the shutdown's budget gives up. flytekit's servicer answers it,
    like any connector error, gRPC ``INTERNAL`` (``extend/backend/connector_service.py``
    ``_handle_exception``, flytekit 1.16.31), and propeller treats every CreateTask error alike,
    whatever its code: ``PhaseInfoRetryableFailure`` (flyteplugins ``internal/webapi/launcher.go``
    ``launch``, at flyteplugins/v1.16.8), which fails the attempt and starts the next one if the
    task's retries allow."""


# Why a CreateTask arriving during the shutdown starts nothing.
_REFUSED_AT_SHUTDOWN = (
    "this connector replica is shutting down (SIGTERM) and starts no new job; this task attempt fails "
    "(propeller does not re-send a failed CreateTask) and the task's next attempt, if its retries allow "
    "one, starts anew"
)

# Set once the replica's shutdown began (stop_starting_creates): every create is refused from then on.
_refusing_creates = False


def stop_starting_creates() -> None:
    """From now on every create raises :class:`ReplicaShuttingDown` before starting anything
    (:func:`refuse_create_while_shutting_down`). Safe in a signal handler: it only sets a flag."""
    global _refusing_creates  # noqa: PLW0603  (read by every create, on the event loop)
    _refusing_creates = True


def refuse_create_while_shutting_down(backend: str) -> None:
    """Raises :class:`ReplicaShuttingDown` naming ``backend`` once :func:`stop_starting_creates` ran.
    Every connector's ``create`` calls it before any work; :func:`create_within_deadline` calls it too,
    for a create handed to it not yet started."""
    if _refusing_creates:
        raise ReplicaShuttingDown(f"{backend}: {_REFUSED_AT_SHUTDOWN}")


async def within_deadline(
    awaitable: Any,
    *,
    deadline: float,
    what: str,
    backend: str,
    consequence: str = SAFE_TO_RETRY,
    since: float | None = None,
) -> Any:
    """``awaitable``'s result, or :class:`BackendDeadlineExceeded` once ``deadline`` less a margin
    passed since ``since`` (``time.monotonic()``; default: now), its message naming ``backend``,
    ``what`` and ``consequence`` (what the caller should expect)."""
    budget = deadline - _deadlines.MARGIN_SECONDS
    left = budget if since is None else budget - (time.monotonic() - since)
    try:
        return await asyncio.wait_for(awaitable, left)
    except TimeoutError:
        raise BackendDeadlineExceeded(
            f"{backend} did not answer {what} within {budget:.0f}s (propeller's deadline is {deadline:.0f}s); "
            f"{consequence}"
        ) from None


# Set inside a create (create_within_deadline): its AWS calls are awaited to the end, so that what
# they start reaches the create's result and can be cancelled; the create as a whole is bounded.
_IN_CREATE: ContextVar[bool] = ContextVar("cdao_in_create", default=False)

# Set inside a GetTask (:func:`on_get_task_threads`): its blocking work (a plugin's calls) runs on
# the backend's GetTask threads, as BulkheadConnector's Resource building does. On the threads
# creates and deletes use, a GetTask queued behind them: with throttled creates each holding a
# thread for up to CREATE_WAIT_SECONDS, a GetTask whose status was read within its bound answered
# only at its 9 s deadline.
_IN_GET_TASK: ContextVar[bool] = ContextVar("cdao_in_get_task", default=False)


@contextmanager
def on_get_task_threads() -> Iterator[None]:
    """Within the block (and the tasks it creates, which copy the context), :meth:`Backend.run`
    uses the backend's GetTask threads."""
    reset = _IN_GET_TASK.set(True)
    try:
        yield
    finally:
        _IN_GET_TASK.reset(reset)


@dataclass
class _LateCancel:
    """What a late cancel stops, and how a shutdown hurries it (:func:`finish_shutdown`)."""

    backend: str
    resource_meta: Any
    answers: AttemptAnswers | None = None  # the attempt's record, when the attempt table orders its answers
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # ends the wait for the next try
    last_try: bool = False  # a refusal now is final: the process is shutting down
    stopped: bool = False
    given_up: bool = False  # given up (give_up), once

    def give_up(self, why: str, error: BaseException | None = None) -> None:
        """This replica stops trying to cancel the job (``why``, ``error``), once: logged, and counted
        as left running unless its attempt is in the attempt table's sweep index, whose sweeper on a
        surviving replica stops it (cdao_connectors._sweeper)."""
        if self.given_up:
            return
        self.given_up = True
        left_running(self.backend, f"{why} {self.resource_meta!r}", self.answers, error)

    def __post_init__(self) -> None:
        if _shutting_down:
            self.last_try = True
            _shutdown_cancels.append(self)


# Set while finish_shutdown runs: a late cancel started then gets one try.
_shutting_down = False
# Every late cancel of the shutdown under way (finish_shutdown), done or not.
_shutdown_cancels: list[_LateCancel] = []


# Cancels of jobs whose create answered too late, kept referenced until done (asyncio holds only
# weak references to tasks), with what each stops.
_LATE_CANCELS: dict[asyncio.Task[Any], _LateCancel] = {}
# Creates still running after their CreateTask gave up (each starts a late cancel once done), with
# their backend and the attempt's record (None where the attempt table does not order the answers).
_GAVE_UP_CREATES: dict[asyncio.Future[Any], tuple[str, AttemptAnswers | None]] = {}


def left_running(backend: str, what: str, answers: AttemptAnswers | None, error: BaseException | None = None) -> None:
    """A job (``what``) this replica does not stop, logged: as the attempt table's sweep's when its
    attempt is in the sweep index (``answers.swept``: stopped there, or, ``answers.findable`` false,
    counted there), else counted as left running and
    logged as an operator's to stop (plugins/README.md, "Jobs nobody follows"), naming the
    attempt's item where there is one."""
    if answers is not None and answers.swept:
        by_sweep = (
            "a surviving replica's sweeper stops it"
            if answers.findable
            else "its backend cannot look the job up, so a surviving replica's sweep counts it as left running "
            "and logs the attempt for an operator, unless the create never sent its request"
        )
        _log.warning(
            "%s: %s; its attempt %s is in the attempt table's sweep index: %s",
            backend,
            what,
            answers.item,
            by_sweep,
            exc_info=error,
        )
        return
    count_job_left_running(backend)
    attempt = f" (attempt {answers.item})" if answers is not None else ""
    _log.error(
        "%s: %s%s; nobody will stop it: it must be stopped by hand (plugins/README.md, 'Jobs nobody follows')",
        backend,
        what,
        attempt,
        exc_info=error,
    )


@dataclass
class _Answering:
    """A create whose CreateTask still waits for it (:func:`create_within_deadline`): a shutdown
    waits for it, or makes its CreateTask give up (``give_up``) with ``why``."""

    backend: str
    give_up: asyncio.Future[None]
    answers: AttemptAnswers | None
    why: str = ""


# Every create whose CreateTask waits for it, from the moment it is started until that CreateTask
# answered or gave up (then it is in _GAVE_UP_CREATES): a replica's shutdown finds each here.
_ANSWERING: dict[asyncio.Future[Any], _Answering] = {}

# A late cancel refused for now (throttled, a 5xx, its DeleteTask deadline run out) is tried again
# after LATE_CANCEL_FIRST_DELAY seconds, doubling up to LATE_CANCEL_MAX_DELAY, for at most
# LATE_CANCEL_SECONDS in all: propeller never stops the job (module docstring), a throttled account
# clears within minutes, and the attempt table's sweeper, once the job's attempt is due in its index,
# goes on trying from any replica. Read at call time.
LATE_CANCEL_SECONDS = 900.0
LATE_CANCEL_FIRST_DELAY = 1.0
LATE_CANCEL_MAX_DELAY = 60.0


def aws_error_is_transient(error: BaseException) -> bool:
    """Whether ``error`` (an AWS call's) says "not now": :func:`cdao_connectors._status_cache.is_transient_error`."""
    from cdao_connectors._status_cache import is_transient_error  # noqa: PLC0415  (it imports this module)

    return is_transient_error(error)


class LeftRunning(Exception):
    """Raised by a create that started a job, then failed with ``error`` and could not stop the job
    (``resource_meta``) at once: :func:`create_within_deadline` raises ``error`` and stops the job
    in the background as it stops a late one, since propeller never will (module docstring); with
    ``as_give_up``, through the give-up's cancel (the attempt marked abandoned and put in the sweep
    index first: a job its CreateTask never answered)."""

    def __init__(self, resource_meta: Any, error: BaseException, *, as_give_up: bool = False) -> None:
        super().__init__(str(error))
        self.resource_meta = resource_meta
        self.error = error
        self.as_give_up = as_give_up


async def create_within_deadline(
    create: Awaitable[T],
    cancel: Callable[[T], Awaitable[Any]],
    *,
    backend: str,
    transient: Callable[[BaseException], bool] = aws_error_is_transient,
    stop: Callable[[Any], Awaitable[Any]] | None = None,
    answers: AttemptAnswers | None = None,
    since: float | None = None,
) -> T:
    """``create``'s result (a ``resource_meta``) within propeller's CreateTask deadline
    (:data:`cdao_connectors._deadlines.CREATE_TASK_SECONDS` less the margin), counted from ``since``
    (``time.monotonic()`` when the CreateTask started, for a connector that did work of its own first
    in the same deadline; default: now).

    Past the deadline, or when propeller cancels the RPC first, the create keeps running and this
    raises :class:`BackendDeadlineExceeded` (or lets the cancellation through): propeller fails the
    attempt and will never ask for, nor DeleteTask, what the create still starts (module docstring).
    So once the create finishes with a ``resource_meta``, ``cancel(resource_meta)`` runs on the event
    loop (the connector's DeleteTask path, bounded by its deadline). A cancel failing with an error
    ``transient`` says is "not now" (the error or one it was raised from) is tried again with
    backoff for :data:`LATE_CANCEL_SECONDS` at most, waiting on the event loop (no RPC and no
    thread is held between tries); a cancel that finally fails is logged with the job's
    ``resource_meta``, for an operator to stop it, and counted (``cdao_jobs_left_running_total``).
    A create that raises :class:`LeftRunning` has its job stopped the same way with ``stop``
    (default ``cancel``), and its error raised.

    For a backend whose API answers every CreateTask of an attempt the same job, ``answers`` (made
    as this CreateTask started) orders them against the give-up's cancel through the attempt table
    (:class:`cdao_connectors._attempts.AttemptAnswers`): the job is answered only once recorded as
    answered by this CreateTask, within the same deadline (:class:`~cdao_connectors._attempts.AttemptAbandoned`
    when a give-up marked the attempt first), and the give-up cancels it only after marking the
    attempt abandoned, which it does only when no CreateTask that started later was answered the job.

    The create is followed from here until it ends (:func:`finish_shutdown` finds it): pass it as a
    coroutine, which runs only once followed, so that a SIGTERM at any moment finds every create that
    started. Once the replica shuts down, a coroutine is closed unrun and :class:`ReplicaShuttingDown`
    raised (a create already started is followed as any other); :func:`finish_shutdown` may make this
    raise :class:`ReplicaShuttingDown` early, giving the create up as at its deadline.
    """
    if _refusing_creates and asyncio.iscoroutine(create):  # not started yet: nothing to follow
        create.close()
        refuse_create_while_shutting_down(backend)
    if answers is not None:
        create = answers.answering(create)
        cancel = answers.cancelling(cancel)
    reset = _IN_CREATE.set(True)
    try:
        started = asyncio.ensure_future(create)  # the task copies the context: its calls see _IN_CREATE
    finally:
        _IN_CREATE.reset(reset)
    # Registered before the create's first step runs: a SIGTERM handled at any point after this
    # finds it (cdao_connectors.service decides at once whether anything is pending).
    answering = _Answering(backend, asyncio.get_running_loop().create_future(), answers)
    _ANSWERING[started] = answering
    try:
        return await within_deadline(
            _first_of(started, answering),
            deadline=_deadlines.CREATE_TASK_SECONDS,
            what="CreateTask",
            backend=backend,
            consequence=CREATE_GIVEN_UP,
            since=since,
        )
    except LeftRunning as left:
        stopper = cancel if left.as_give_up else stop or cancel
        _stop_in_background(left.resource_meta, stopper, backend, transient, answers)
        raise left.error from left.error.__cause__
    except (BackendDeadlineExceeded, ReplicaShuttingDown, asyncio.CancelledError):
        started.add_done_callback(
            functools.partial(
                _cancel_late, cancel=cancel, stop=stop or cancel, backend=backend, transient=transient, answers=answers
            )
        )
        _GAVE_UP_CREATES[started] = (backend, answers)
        started.add_done_callback(lambda done: _GAVE_UP_CREATES.pop(done, None))
        raise
    finally:
        del _ANSWERING[started]


async def _first_of(started: asyncio.Future[T], answering: _Answering) -> T:
    """``started``'s result, or :class:`ReplicaShuttingDown` once the shutdown gave it up first.
    Neither future is cancelled when this is: the create runs on (as ``asyncio.shield`` would keep it)."""
    await asyncio.wait((started, answering.give_up), return_when=asyncio.FIRST_COMPLETED)
    if started.done():
        return started.result()
    raise ReplicaShuttingDown(f"{answering.backend}: {answering.why}; {CREATE_GIVEN_UP}")


def _cancel_late(
    started: asyncio.Future[Any],
    *,
    cancel: Callable[[Any], Awaitable[Any]],
    stop: Callable[[Any], Awaitable[Any]],
    backend: str,
    transient: Callable[[BaseException], bool],
    answers: AttemptAnswers | None,
) -> None:
    if started.cancelled():
        return  # nothing was started
    error = started.exception()
    if isinstance(error, LeftRunning):
        _stop_in_background(error.resource_meta, cancel if error.as_give_up else stop, backend, transient, answers)
        return
    if error is not None:
        return  # the create's own failure handling owns what it left
    resource_meta = started.result()
    _log.warning("%s: CreateTask answered before its create finished; cancelling %r", backend, resource_meta)
    _stop_in_background(resource_meta, cancel, backend, transient, answers)


def _stop_in_background(
    resource_meta: Any,
    cancel: Callable[[Any], Awaitable[Any]],
    backend: str,
    transient: Callable[[BaseException], bool],
    answers: AttemptAnswers | None = None,
) -> None:
    """``cancel(resource_meta)`` on the event loop, tried again while refused for now
    (create_within_deadline); ``answers`` is the attempt's record, if any (:func:`left_running`)."""
    late = _LateCancel(backend, resource_meta, answers)

    async def cancelling() -> None:
        _OWN_CANCEL.set(True)  # this task's own context: its refusals are handled here (aborting)
        give_up = time.monotonic() + LATE_CANCEL_SECONDS
        delay = LATE_CANCEL_FIRST_DELAY
        tries = 0
        while True:
            tries += 1
            try:
                await cancel(resource_meta)
                late.stopped = True
                return
            except Exception as exc:
                final = late.last_try or time.monotonic() + delay > give_up
                if final or not in_chain(exc, transient, implicit=False):
                    late.give_up(f"could not cancel ({tries} tries) the job its CreateTask could not answer,", exc)
                    return
                _log.warning(
                    "%s: cancelling %r refused for now, trying again in %.1fs: %s", backend, resource_meta, delay, exc
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(late.wake.wait(), delay)
            delay = min(2 * delay, LATE_CANCEL_MAX_DELAY)

    task = asyncio.ensure_future(cancelling())
    _LATE_CANCELS[task] = late
    task.add_done_callback(lambda done: _LATE_CANCELS.pop(done, None))


# The GetTasks and DeleteTasks being served (their handlers' tasks; :func:`serving`), weakly held:
# a replica's shutdown lets each finish (finish_shutdown) rather than end the process under it,
# which propeller would take as the call's failure (a GetTask's spends one of the task's system
# failures, cdao_connectors._deadlines).
_SERVING: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
# Set by a caller that is not an RPC of the service's event loop (the sweeper's thread, with an
# event loop of its own): the shutdown must neither wait for it nor take its loop for the service's.
NOT_AN_RPC: ContextVar[bool] = ContextVar("cdao_not_an_rpc", default=False)


def serving(handler: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorates a connector's ``async get`` or ``delete``: while it runs as an RPC's handler, a
    replica's shutdown waits for it (:data:`_SERVING`)."""

    @functools.wraps(handler)
    async def served(*args: Any, **kwargs: Any) -> T:
        task = None if NOT_AN_RPC.get() else asyncio.current_task()
        if task is not None:
            _SERVING.add(task)
        try:
            return await handler(*args, **kwargs)
        finally:
            if task is not None:
                _SERVING.discard(task)

    served.waited_for_at_shutdown = True  # type: ignore[attr-defined]  (tests check every connector's)
    return served


# Set inside the service's own cancels of a job (a give-up's late cancel, _stop_in_background), which
# handle their refusals themselves: only propeller's DeleteTask leaves a refused cancel to the sweep.
_OWN_CANCEL: ContextVar[bool] = ContextVar("cdao_own_cancel", default=False)


# The jobs this replica counted as left running because their refused cancel could not be recorded
# (aborting), most recent last: propeller's retries of the abort are refused again, and one job
# counted once per retry would page as many jobs. Bounded: a replica sees a few such jobs at most.
_UNRECORDED: dict[str, None] = {}
_UNRECORDED_KEPT = 1024


def _first_unrecorded(task_category: Any, resource_meta: Any) -> bool:
    """Whether this replica had not counted ``resource_meta``'s job as unrecorded yet (it has now)."""
    key = refused_cancel_item(task_category.name, task_category.version, resource_meta.encode())
    if key in _UNRECORDED:
        return False
    _UNRECORDED[key] = None
    while len(_UNRECORDED) > _UNRECORDED_KEPT:
        del _UNRECORDED[next(iter(_UNRECORDED))]
    return True


async def _keep_for_the_sweep(connector: Any, resource_meta: Any, refused: Exception) -> None:
    """:func:`keep_refused_cancel`, logged; a failure counted as left running, once per job (:func:`aborting`)."""
    backend = connector.backend.name
    try:
        item = await keep_refused_cancel(connector.backend, connector.task_category, resource_meta)
    except Exception as exc:
        if not _first_unrecorded(connector.task_category, resource_meta):
            _log.error("%s: could not keep %r in the sweep index again (%s): %s", backend, resource_meta, refused, exc)
            return
        left_running(
            backend,
            f"could not cancel {resource_meta!r} for propeller's DeleteTask ({refused}), nor keep it in the attempt "
            "table's sweep index, and propeller stops retrying an abort after max-workflow-retries rounds",
            None,
            exc,
        )
        return
    _log.warning(
        "%s: could not cancel %r for propeller's DeleteTask (%s); kept in the sweep index as %s",
        backend,
        resource_meta,
        refused,
        item,
    )


def aborting(delete: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorates a connector's ``async delete`` (under :func:`serving`): a DeleteTask of propeller's
    (its abort of an execution, a task's timeout) whose cancel fails, with any error (refused,
    throttled, out of time), keeps the job in the attempt table's sweep index before answering that
    error (:func:`cdao_connectors._attempts.keep_refused_cancel`), and one that succeeds takes it out
    (:func:`~cdao_connectors._attempts.forget_refused_cancel`). Propeller retries an errored
    DeleteTask only for its abort's max-workflow-retries rounds, then fails the workflow and never
    sends it again (flytepropeller/v1.16.8 ``pkg/controller/workflow/executor.go``
    ``HandleAbortedWorkflow``; flyteplugins ``internal/webapi/core.go`` ``Abort`` returns the
    DeleteTask's error): the sweeper then goes on cancelling the job, or counts it as left running.
    A job whose record fails is counted as left running here and logged (:func:`left_running`),
    once per job on this replica whatever propeller's retries: nobody else would see it. The
    service's own cancels (the sweep's, a give-up's) are not propeller's: they count their
    refusals themselves. The connector needs ``backend`` and ``task_category``."""

    @functools.wraps(delete)
    async def deleting(self: Any, resource_meta: Any, **kwargs: Any) -> T:
        if NOT_AN_RPC.get() or _OWN_CANCEL.get():
            return await delete(self, resource_meta, **kwargs)
        try:
            done = await delete(self, resource_meta, **kwargs)
        except Exception as refused:
            await _keep_for_the_sweep(self, resource_meta, refused)
            raise
        await forget_refused_cancel(self.backend, self.task_category, resource_meta)
        return done

    deleting.keeps_refused_cancels = True  # type: ignore[attr-defined]  (tests check every connector's)
    return deleting


def pending_work_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running creates whose CreateTask waits for them, late cancels, creates that
    will start one, or GetTasks and DeleteTasks being served, not done yet; None when there are none."""
    for task in [*_ANSWERING, *_LATE_CANCELS, *_GAVE_UP_CREATES, *list(_SERVING)]:
        if not task.done() and not task.get_loop().is_closed():
            return task.get_loop()
    return None


async def finish_shutdown(budget: float) -> list[Any]:
    """A replica's shutdown (``cdao_connectors.service``, on SIGTERM; Kubernetes kills the pod a grace
    period after it), within ``budget`` seconds; returns the ``resource_meta`` of each job whose
    cancel did not stop it. GetTasks and DeleteTasks are served throughout; creates are refused
    (:func:`stop_starting_creates`).

    * Every late cancel not done yet is tried once more now, each try's refusal final.
    * Each create whose CreateTask waits for it may finish for ``budget`` less the DeleteTask
      deadline: its CreateTask is answered its job, which propeller then follows. One still running
      then gives up as at its own deadline: its CreateTask answers :class:`ReplicaShuttingDown`, and
      the job it starts is cancelled (the attempt marked abandoned first where the attempt table
      orders them, as :func:`create_within_deadline` does), the DeleteTask deadline left for that.
    * Creates still running after their CreateTask gave up are waited for within the budget, and
      the job each starts gets one try.
    * The GetTasks and DeleteTasks being served (:func:`serving`) are waited for within what is
      left of the budget (each is bounded by its own deadline).

    Each create finished or given up is logged; each refused try and each cancel still under way at
    the end with its job's ``resource_meta``, each create still running with its attempt
    (:func:`left_running`): as the sweep's to stop when its attempt is in the attempt table's sweep
    index (a surviving replica stops it), else "must be stopped by hand" and counted under its
    backend in ``cdao_jobs_left_running_total`` (:mod:`cdao_connectors._metrics`, for the platform's
    alert): the process is going away, and with it every record of these jobs it holds."""
    global _shutting_down  # noqa: PLW0603  (read by every late cancel, started before or during this)
    stop_starting_creates()
    _shutting_down = True
    try:
        return await _finish_shutdown(budget)
    finally:
        _shutting_down = False


def _unfinished_on(loop: asyncio.AbstractEventLoop, registry: dict[Any, V]) -> dict[Any, V]:
    """The entries of ``registry`` (keyed by future) whose future is not done and belongs to
    ``loop``: a future of another loop (closed, in a process that ran several) never runs again."""
    return {future: value for future, value in registry.items() if not future.done() and future.get_loop() is loop}


async def _finish_shutdown(budget: float) -> list[Any]:
    end = time.monotonic() + budget
    loop = asyncio.get_running_loop()
    _shutdown_cancels[:] = _unfinished_on(loop, _LATE_CANCELS).values()
    for late in _shutdown_cancels:
        late.last_try = True
        late.wake.set()
    await _answer_or_give_up(loop, budget)
    creates = _unfinished_on(loop, _GAVE_UP_CREATES)
    if creates:
        # Each one's done callbacks (registered before asyncio.wait's own) start its late cancel.
        await asyncio.wait(creates, timeout=max(0.0, end - time.monotonic()))
    for create, (backend, answers) in creates.items():
        if not create.done():
            left_running(
                backend,
                "shutting down while a create whose CreateTask gave up still runs; a job it starts is not "
                "cancelled here",
                answers,
            )
    pending = _unfinished_on(loop, _LATE_CANCELS)
    if pending:
        _, unfinished = await asyncio.wait(pending, timeout=max(0.0, end - time.monotonic()))
        for task in unfinished:
            pending[task].give_up(
                "shutting down with the cancel still under way of the job its CreateTask could not answer,"
            )
    # The GetTasks and DeleteTasks still being served get the rest of the budget (each is bounded
    # by its own, shorter, deadline); the shutdown's own task is not one of them.
    calls = {task: None for task in list(_SERVING) if task is not asyncio.current_task()}
    calls = _unfinished_on(loop, calls)
    if calls:
        await asyncio.wait(calls, timeout=max(0.0, end - time.monotonic()))
    return [late.resource_meta for late in _shutdown_cancels if not late.stopped]


async def _answer_or_give_up(loop: asyncio.AbstractEventLoop, budget: float) -> None:
    """The creates whose CreateTask waits for them finish, or give up, within ``budget`` less the
    DeleteTask deadline (:func:`finish_shutdown`)."""
    answering = _unfinished_on(loop, _ANSWERING)
    if not answering:
        return
    await asyncio.wait(answering, timeout=max(0.0, budget - _deadlines.DELETE_TASK_SECONDS))
    for create, a in answering.items():
        if not create.done():
            _log.warning(
                "%s: shutting down while a create in flight at SIGTERM still runs; its CreateTask gives up, and a "
                "job it starts is cancelled if the create ends before this replica does (else see the end)",
                a.backend,
            )
            a.why = "this connector replica is shutting down (SIGTERM) and its create did not finish in time"
            a.give_up.set_result(None)
        elif not create.cancelled() and create.exception() is None:
            _log.warning(
                "%s: a create in flight at SIGTERM finished during the shutdown; its CreateTask is answered %r",
                a.backend,
                create.result(),
            )
    # Each CreateTask given up registers its create as given up (create_within_deadline) when it next runs.
    while any(create in _ANSWERING for create in answering):
        await asyncio.sleep(0)


def _endpoint_override(service: str) -> str | None:
    """The endpoint boto3 gives a new ``service`` client from the environment, if any:
    ``AWS_ENDPOINT_URL_<SERVICE ID>`` (upper case, spaces and hyphens as underscores), else
    ``AWS_ENDPOINT_URL`` (AWS SDKs and Tools Reference Guide, "Service-specific endpoints",
    https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html). A shared client is kept
    per endpoint, so one made for an earlier endpoint is never used for another."""
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}")
    return specific or os.environ.get("AWS_ENDPOINT_URL")


# The AWS operations that start a job the sweep is about (billed work that runs on), of the
# connectors whose API deduplicates the create: what the connector's IAM policy lets them start
# (infra/components/identity.py, the connector's statements). A retried read or a model made before
# the job (GetApplication, CreateModel, CreateEndpointConfig) makes no such job.
JOB_STARTING_OPERATIONS = frozenset(
    {
        "StartJobRun",  # EMR Serverless
        "CreateTrainingJob",
        "CreateProcessingJob",
        "CreateTransformJob",
        "CreateHyperParameterTuningJob",
        "CreateInferenceRecommendationsJob",
        "CreateEndpoint",
    }
)


def _note_try_without_answer(
    response: tuple[Any, Any] | None = None,
    caught_exception: BaseException | None = None,
    operation: Any = None,
    **_: Any,
) -> None:
    """botocore's ``needs-retry`` handler (emitted after every try, botocore 1.40 ``endpoint.py``
    ``_needs_retry``, with the try's operation model, HTTP response or the exception it raised): a
    try of a job-starting operation (:data:`JOB_STARTING_OPERATIONS`) that got no answer (a read
    timeout, a connection closed after sending) or a 5xx may have been carried out, whatever a later
    try answers (:func:`cdao_connectors._attempts.note_try_without_answer`). Returns None: the retry
    decision stays botocore's."""
    if getattr(operation, "name", None) not in JOB_STARTING_OPERATIONS:
        return
    if isinstance(caught_exception, (ReadTimeoutError, ConnectionClosedError)):
        note_try_without_answer(type(caught_exception).__name__)
    elif response is not None and response[0] is not None and response[0].status_code >= 500:
        note_try_without_answer(f"HTTP {response[0].status_code}")


class Backend:
    """One external system's threads and AWS clients."""

    def __init__(self, name: str, workers: int = WORKERS_PER_BACKEND, *, makes_jobs: bool = True) -> None:
        self.name = name
        if makes_jobs:  # its count of jobs left running is exported from 0 (the alert's increase())
            follow_jobs_left_running(name)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"cdao-{name}")
        # GetTasks' own (see _IN_GET_TASK): creates and deletes holding every other thread delay no GetTask.
        self._get_task_pool = ThreadPoolExecutor(workers, thread_name_prefix=f"cdao-{name}-get")
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, bool, str | None], Any] = {}

    def aws(self, service: str, region: str, *, for_creates: bool = False) -> Any:
        """The shared boto3 client of ``service`` in ``region`` (created on first use); with
        ``for_creates``, the one that never retries (see :data:`AWS_CREATE_CLIENT_CONFIG`)."""
        key = (service, region, for_creates, _endpoint_override(service))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                config = AWS_CREATE_CLIENT_CONFIG if for_creates else AWS_CLIENT_CONFIG
                client = boto3.client(service, region_name=region, config=config)
                client.meta.events.register("needs-retry", _note_try_without_answer)
                self._clients[key] = client
            return client

    def submit_get_task(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """``fn(*args, **kwargs)`` started on this backend's GetTask threads (not bound to an event
        loop), in a copy of the caller's context (as :meth:`run`)."""
        return self._get_task_pool.submit(contextvars.copy_context().run, fn, *args, **kwargs)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """``fn(*args, **kwargs)`` started on this backend's threads (its GetTask threads within
        :func:`on_get_task_threads`), in a copy of the caller's context (as ``asyncio.to_thread``)."""
        pool = self._get_task_pool if _IN_GET_TASK.get() else self._pool
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(pool, call)

    async def call(self, fn: Callable[..., T], *args: Any, deadline: float, what: str, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on this backend's threads, answered within ``deadline`` less a margin.

        Raises :class:`BackendDeadlineExceeded` when it is not; the thread finishes on its own.
        Within a create (:func:`create_within_deadline`, which bounds it) the call is awaited to its end:
        a call cut off there could hide a job it started from the create's cancel.
        """
        if _IN_CREATE.get():
            return await self.run(fn, *args, **kwargs)
        return await within_deadline(self.run(fn, *args, **kwargs), deadline=deadline, what=what, backend=self.name)


async def outcome_within_bound(
    backend: Backend, cache: StatusCache, key: Hashable, value: Any, build: Callable[[], T]
) -> T | Resource:
    """``build()``, the blocking part of an ended job's GetTask (its Resource reads the task's
    error.pb and outputs.pb), run on ``backend``'s GetTask threads in a copy of the caller's context
    and waited for at most ``_status_cache.KNOWN_STATUS_WAIT_SECONDS``; ``value`` is the job's
    status entry under ``key`` in ``cache``. The read goes through flytekit's storage layer, one
    event loop thread for every caller: with many jobs ending at once it took up to the GetTask's
    9 s deadline, an error spending propeller's budget, and on the service's event loop it held
    every other backend's GetTasks behind it. Past the bound the job is answered RUNNING, saying
    its outcome is being read; the read goes on, kept with the job's status entry
    (``StatusCache.attachment``), and its result answers the job's next GetTask on this replica.
    The job's next GetTask may go to another replica (gRPC's round robin): the kept read then goes
    when the cache drops the entry, so memory stays bounded by the cache's. Raises what ``build``
    raised, once it ended within the bound."""
    from cdao_connectors import _status_cache  # noqa: PLC0415  (it imports this module)

    future = cache.attachment(key, value, lambda: backend.submit_get_task(build))
    try:
        # shield: the bound ending must not cancel the build, whose Resource answers the next GetTask.
        resource = await asyncio.wait_for(
            asyncio.shield(asyncio.wrap_future(future)), _status_cache.KNOWN_STATUS_WAIT_SECONDS
        )
    except TimeoutError:
        return Resource(
            phase=TaskExecution.RUNNING,
            message=f"{backend.name} reports the job ended; its outcome (the task's error.pb and "
            "outputs) is still being read and answers the next status request",
        )
    finally:
        if future.done():
            cache.detach(key, future)  # answered (or failed): the next GetTask reads afresh
    return resource


class BulkheadConnector(AsyncConnectorBase):
    """An async connector whose synchronous ``create_sync``/``delete_sync`` run on its own
    :class:`Backend` within propeller's CreateTask and DeleteTask deadlines, and whose GetTask reads
    the job's status cache (:meth:`status_of`) within the GetTask deadline, turning what it knows
    into a Resource (:meth:`resource_for`); a job a create starts after its CreateTask gave up is
    cancelled by its DeleteTask path (:meth:`delete`)."""

    backend: Backend

    @says_attempts_left
    async def create(
        self,
        task_template: Any,
        output_prefix: str,
        inputs: Any = None,
        task_execution_metadata: Any = None,
        **kwargs: Any,
    ) -> Any:
        refuse_create_while_shutting_down(self.backend.name)
        started_at = time.time()  # compared across replicas (cdao_connectors._attempts)
        reset = CREATE_STARTED_AT.set(started_at)
        try:
            answers = self.attempt_answers(task_template, output_prefix, task_execution_metadata)  # before any job
        finally:
            CREATE_STARTED_AT.reset(reset)

        async def creating() -> Any:
            # Started by create_within_deadline once it follows the create, never before (a shutdown
            # must find every create that started); set in the create's own context, which the
            # backend's thread copies.
            CREATE_STARTED_AT.set(started_at)
            sync = self.create_sync
            return await self.backend.run(sync, task_template, output_prefix, inputs, task_execution_metadata)

        return await create_within_deadline(
            creating(),
            self.delete,
            backend=self.backend.name,
            transient=self.is_transient_error,
            stop=self.delete,
            answers=answers,
        )

    def attempt_answers(
        self, task_template: Any, output_prefix: str, task_execution_metadata: Any
    ) -> AttemptAnswers | None:
        """For a backend whose API answers every CreateTask of an attempt the same job: the attempt
        table's order of those answers against a give-up's cancel (:func:`create_within_deadline`).
        None (the default) for a connector that claims its attempts itself, or needs no order."""
        return None

    def is_transient_error(self, error: BaseException) -> bool:
        """Whether an error of this backend's calls says "not now" (AWS's, :func:`aws_error_is_transient`,
        unless the connector's backend is not AWS)."""
        return aws_error_is_transient(error)

    @serving
    @observe_get_task
    async def get(self, resource_meta: Any, **kwargs: Any) -> Any:
        """The job's Resource from its status cache (:meth:`status_of`), within propeller's GetTask
        deadline. The cache's bounded wait is awaited on the event loop (``StatusCache.aget``): run
        on the backend's threads, as many GetTasks as propeller's ``webApi.caching.workers`` would
        queue for those threads ahead of the bound. Only building the Resource (which reads the
        task's outputs once the job ended) runs on threads, the backend's GetTask ones, never behind
        its creates and deletes, and is waited for only as long as a known status
        (:func:`outcome_within_bound`); the two share the one budget. A job that has not ended (its
        cache's ``final`` predicate, ``StatusCache.is_final``, the one owner of that fact) is
        answered from its status at once."""
        return await within_deadline(
            self._get(resource_meta), deadline=_deadlines.GET_TASK_SECONDS, what="GetTask", backend=self.backend.name
        )

    async def _get(self, resource_meta: Any) -> Any:
        cache, key = self.status_of(resource_meta)
        known = await cache.aget(key)
        if known.value is None or not cache.is_final(known.value):
            # Only an ended job's Resource reads anything (its outputs): a job still waiting or
            # running is answered what its status says, even with every GetTask thread busy reading
            # ended jobs' outputs (issue #16 review: such a job was answered "reports the job ended").
            resource = self.resource_for(known.value, resource_meta)
        else:
            build = functools.partial(self.resource_for, known.value, resource_meta)
            resource = await outcome_within_bound(self.backend, cache, key, known.value, build)
        return noting_staleness(resource, known.stale)

    @serving
    @aborting
    async def delete(self, resource_meta: Any, **kwargs: Any) -> None:
        await self.backend.call(
            self.delete_sync, resource_meta, deadline=_deadlines.DELETE_TASK_SECONDS, what="DeleteTask"
        )

    def create_sync(
        self, task_template: Any, output_prefix: str, inputs: Any = None, task_execution_metadata: Any = None
    ) -> Any:
        raise NotImplementedError

    def status_of(self, resource_meta: Any) -> tuple[StatusCache, Hashable]:
        """The status cache holding the job's status and the job's key in it; the cache's ``final``
        predicate says which statuses are terminal."""
        raise NotImplementedError

    def resource_for(self, value: Any, resource_meta: Any) -> Any:
        """The flytekit ``Resource`` for the job's last known description ``value`` (None: the
        backend does not know the job). Runs on the event loop, so it must not block, unless the
        job's status cache says ``value`` is terminal (``StatusCache.is_final``): then it runs on
        the backend's GetTask threads (:func:`outcome_within_bound`)."""
        raise NotImplementedError

    def delete_sync(self, resource_meta: Any) -> None:
        raise NotImplementedError

"""One backend job per task attempt, across connector replicas, concurrent CreateTasks and restarts.

Propeller sends a CreateTask once per attempt and, when it errors, fails the attempt and starts the
next one with a new ``retry_attempt`` (flyteplugins ``go/tasks/pluginmachinery/internal/webapi/
launcher.go`` ``launch``: any Create error becomes ``PhaseInfoRetryableFailure``, at
flyteplugins/v1.16.8): a failed CreateTask is never re-sent. The same attempt's CreateTask reaches
the service again, possibly another replica while the first still runs, only when propeller lost its
state before recording the answer (its ``launch`` runs again from ``PhaseNotStarted``: a restart of
propeller, or a failed write of the workflow's state). Where the API deduplicates by itself it makes
the one job (EMR Serverless ``StartJobRun`` takes a ``clientToken``, SageMaker refuses a second job
or endpoint of one name, Codeweave takes an idempotency key), and the table only orders the
CreateTasks answering it against a give-up (:class:`AttemptAnswers`, last paragraph). AWS Batch
``SubmitJob`` and EMR's ``RunJobFlow`` / ``AddJobFlowSteps`` have
no idempotency field (botocore's service models ``batch/2016-08-10`` and ``emr/2009-03-31`` carry no
``idempotencyToken`` member for them) and accept any number of jobs, steps and clusters with one
name. For those, the attempt is claimed in a DynamoDB table (``infra/components/compute.py``
declares it) with a conditional write, which DynamoDB applies atomically ("Condition expressions",
DynamoDB developer guide,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html):

* the first replica to ``PutItem`` with ``attribute_not_exists(attempt)`` owns the attempt for a
  lease, creates the job and records its identifiers in the item;
* every other CreateTask of the attempt reads the item (strongly consistent) and returns the
  recorded job, or waits for it while the owner's lease runs;
* an owner that died mid-create leaves an expired lease: the next CreateTask takes the claim over
  with a conditional update, looks the job up by its deterministic name first (the dead owner may
  have created it) and creates it only when it is not there;
* a job whose CreateTask had already answered an error when its create finished is cancelled
  (:func:`cdao_connectors._backends.create_within_deadline`) and its item marked abandoned
  (:meth:`AttemptLedger.abandon`). A later CreateTask of that attempt raises
  :class:`AttemptAbandoned` rather than adopt the cancelled job: its GetTask would answer FAILED,
  which propeller takes as a permanent failure of the whole task (``plugins/webapi/connector/
  plugin.go`` ``Status``: FAILED is ``PhaseInfoFailure``), while a CreateTask error costs only this
  attempt and the next one starts a new job;
* the repeat and the give-up race between the job's record and the mark: a repeat answers a
  recorded job only by recording its own start as answered (:meth:`AttemptLedger.answer`, a
  conditional write that fails once the attempt is marked abandoned), and a give-up marks the
  attempt abandoned, and cancels the job, only while no CreateTask that started after its own was
  answered the job, as for the backends below. DynamoDB orders the two writes: either the repeat
  is refused, or it is answered the job, which then runs on (propeller re-sends a CreateTask only
  after losing its state, so the repeat's answer is the one it records and follows); never a job
  being cancelled. A repeat that took the job over and then gives up itself cancels it: its error
  is the answer propeller records, and the attempt's next one starts a new job.

For the backends whose API deduplicates, every CreateTask of the attempt gets the one job from the
API, and nothing there tells a repeat that a give-up is cancelling it (the cancel may be under way,
or retried in the background for minutes). :class:`AttemptAnswers` orders them on the attempt's
item. Of several CreateTasks of one attempt, propeller follows the answer of the last one it sent
(it re-sends only after losing its state, so every earlier answer is lost to it): a CreateTask
answers the job only once :meth:`AttemptLedger.answer` recorded its start in the item's
``answered_from`` (the latest start of a CreateTask answered the job), conditional on no abandoned
mark; a give-up marks the attempt abandoned, then cancels, only while no CreateTask that started
after its own was answered the job. Each of the two decisions is one conditional ``UpdateItem``
write, which DynamoDB applies atomically, so either the repeat is refused, or it is answered and the
job runs on; a repeat that itself gives up
cancels the job an earlier, lost, answer named. Starts are wall-clock epoch seconds compared
across replicas: propeller re-sends after a restart, seconds apart, far more than the skew of
synchronised clocks.

Sweeping. A job whose CreateTask could not answer it is stopped by the replica that made it (a
give-up's late cancel, :func:`cdao_connectors._backends.create_within_deadline`), which works only
while that replica lives: a SIGTERM, SIGKILL or OOM kill ends it, and a create that failed without
AWS's answer (a read timeout) may leave a job that AWS makes after the replica looked for it. So an
attempt whose job may be running with nobody to follow it is kept in a sparse global secondary index
of the table (``cdao_connector_resources.SWEEP_INDEX``: only items holding its two key attributes
are in it, DynamoDB developer guide "Take advantage of sparse indexes",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-indexes-general-sparse-indexes.html)
with a due time and what stops its job (:class:`SweepTarget`), from the moment such a job can exist
until it is followed or stopped:

* a claim (:meth:`AttemptLedger.once`) puts it there before the create, with the job's lookup by
  the attempt's deterministic name, due when the claim's lease ends; a create that failed without
  AWS's answer makes it due soon (:data:`SWEEP_RECHECK_SECONDS`), one AWS refused takes it out;
* for a backend whose API deduplicates the create, a record (:meth:`AttemptLedger.intend`) puts it
  there before the create, due when a lease would end, and soon once the create failed without a
  clear answer (:meth:`AttemptAnswers.answering`);
* the CreateTask's answer (:meth:`AttemptLedger.answer`) takes it out: propeller follows the job;
  not an earlier CreateTask's answer once a repeat recorded itself (:meth:`AttemptLedger.intend`,
  ``sweep_from``): propeller follows the repeat's answer only, and should the repeat fail, or its
  replica end, nobody follows the job;
* a give-up's mark (:meth:`AttemptLedger.abandon`) puts it back with the job's ``resource_meta``,
  due after :data:`SWEEP_GRACE_SECONDS`; the cancel takes it out once done (:meth:`AttemptLedger.settle`);
* a DeleteTask of propeller's (an abort, a task's timeout) whose cancel failed puts the job in it
  with its ``resource_meta`` under an item of its own (:func:`refused_cancel_item`,
  :meth:`AttemptLedger.keep_refused_cancel`), due :data:`CANCEL_SWEEP_DELAY_SECONDS` after the
  first failure: propeller re-sends a failing DeleteTask only for its abort's retries, then never
  again. A DeleteTask of the job that succeeds takes it out (:func:`forget_refused_cancel`).

Each replica's sweeper (:mod:`cdao_connectors._sweeper`) queries the index for due attempts, claims
each with a conditional write that also marks it abandoned (so no CreateTask answers the job from
then on, and one answered first took it out of the index: DynamoDB orders the two), finds the job,
stops it through its connector's DeleteTask path and settles the item. For a backend whose API
deduplicates the create, the job is unknown until the create answers: a create that can name its
job records the name just before sending its request (:func:`name_the_job`; SageMaker's and EMR
Serverless's, whose connectors' ``swept_job`` then tell the attempt's job from another of its name
by the ``flyte-attempt`` tag the request carries), and the sweep finds the job by it; one it
cannot find (Codeweave's) is counted and logged with its name. The name's record is refused once
the attempt is marked abandoned, and the request is not sent then (:class:`AbandonedBeforeSending`);
nor when the record fails. So an attempt found with no name recorded sent no request, and is
settled as having no job (:attr:`SweepTarget.never_sent`).

A CreateTask that cannot get an answer within its wait budget raises :class:`AttemptInProgress`; like
every CreateTask error it fails the attempt (never a second job). Items expire through DynamoDB's TTL
long after the attempt can have ended. Hand-written because no maintained library offers this on
DynamoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from cdao_connector_resources import (
    ATTEMPT_KEY,
    EXPIRES_AT,
    SWEEP_AFTER,
    SWEEP_INDEX,
    SWEEP_QUEUE,
    SWEEP_QUEUE_ATTRIBUTE,
)

from cdao_connectors import _deadlines
from cdao_connectors._common import in_chain
from cdao_connectors._deadlines import CREATE_TASK_SECONDS
from cdao_connectors.config import ConnectorConfigError, attempt_table, aws_region

if TYPE_CHECKING:
    from cdao_connectors._backends import Backend

T = TypeVar("T")

_log = logging.getLogger(__name__)

# An owner must finish creating within this; creates are bounded by the connector's own deadline
# (far shorter), so an expired lease means the owner is gone, not slow.
LEASE_SECONDS = 300.0
# Claims outlive any attempt: Flyte's task timeouts and Batch/EMR job lifetimes are far shorter.
RETENTION_SECONDS = 90 * 24 * 3600
# Sweeping (module docstring). A give-up's cancel runs in its replica for this long before the
# attempt's sweep is due: the late cancel's first tries (a DeleteTask deadline each, backing off).
SWEEP_GRACE_SECONDS = 120.0
# A create that failed without AWS's answer is looked for by the sweeper this soon: AWS carries out
# such a create within seconds of the call, if at all.
SWEEP_RECHECK_SECONDS = 60.0
# The sweeper looks for an attempt's job by its name for this long after the attempt was first put
# in the index (its claim), then takes it that no job was made: far longer than a claim's lease plus
# the few seconds before a job AWS made lists under its name.
SWEEP_FIND_SECONDS = 1800.0
# A DeleteTask of propeller's (its abort of an execution, a task's timeout) whose cancel failed
# keeps the job in the sweep index (cdao_connectors._backends.aborting), due this long after the
# first failure. Propeller retries the abort, each errored round backing off 5 s doubling to 120 s,
# for max-workflow-retries (30) rounds: 3275 s (about 55 minutes) with values.yaml's settings,
# fewer when the workflow had system errors before the abort (they count against the same limit)
# (tests/plugins/test_error_budget.py ties them), then fails the workflow and never sends the
# DeleteTask again (flytepropeller/v1.16.8 pkg/controller/workflow/executor.go
# HandleAbortedWorkflow). Ten minutes leave its first rounds (throttling passing, a role put back
# quickly) to succeed alone; from then on the sweep tries alongside, well before propeller gives
# up, and counts a refusal for good at once (the alert) rather than after propeller's hour.
CANCEL_SWEEP_DELAY_SECONDS = 600.0
_POLL_SECONDS = 0.1
# A CreateTask finding another one creating the attempt's job waits this long for its answer, then
# gives up well inside propeller's CreateTask deadline; the owner's own create is bounded by it too.
CREATE_WAIT_SECONDS = CREATE_TASK_SECONDS / 2

# The start (wall-clock epoch seconds) of the CreateTask whose create runs in this context, set by
# BulkheadConnector.create and seen on the backend's threads (Backend.run copies the context): a
# create claiming its attempt itself (AttemptLedger.once) records it when it takes a job over.
CREATE_STARTED_AT: ContextVar[float | None] = ContextVar("cdao_create_started_at", default=None)


# The tries of the create under way (AttemptAnswers.answering) that got no answer (a read timeout,
# a dropped connection) or a 5xx: a client that retries raises only its last try's error, and a
# throttled last try says nothing of an earlier one AWS may have carried out. A list shared by the
# create's context copies (Backend.run copies the context onto the backend's threads).
_TRIES_WITHOUT_ANSWER: ContextVar[list[str] | None] = ContextVar("cdao_tries_without_answer", default=None)


# In the lookup an attempt is recorded with before its create (AttemptAnswers.answering): the create
# sends its request only once it recorded its job's name (name_the_job). SweepTarget.never_sent.
SENT_ONLY_ONCE_NAMED = "sent_only_once_named"

# The create under way's record of its job's name (AttemptAnswers.answering, for a backend whose job
# is known only from the create's answer): called with the job's lookup just before the request
# that makes the job is sent (name_the_job).
_NAMING: ContextVar[Callable[[dict[str, Any]], None] | None] = ContextVar("cdao_naming_the_job", default=None)


def name_the_job(lookup: dict[str, Any], *, findable: bool = True) -> None:
    """Records, for the create under way (if any: :meth:`AttemptAnswers.answering`), how the sweeper
    finds its job should the create's answer be lost or its replica end: ``lookup`` (a JSON object
    the connector's ``swept_job`` reads, e.g. the job's name and region; the table adds
    ``named_at``, when the attempt's job was first named, epoch seconds) replaces the attempt's
    seed-only lookup in the sweep index. ``findable``: whether the connector's ``swept_job`` can
    tell the attempt's job from it (the shutdown's and give-up's messages say so). Called on the
    create's thread just before the request that makes the job is sent, once its name is rendered;
    blocking (one DynamoDB write).

    Raises :class:`AbandonedBeforeSending` when the attempt was marked abandoned meanwhile (the sweep
    took it, its record's lease over, before the request went out): the request must not be sent,
    its job would be nobody's. Raises RuntimeError when the write fails otherwise: a create's request
    is sent only once named, so the sweep takes an attempt never named for one that made no job
    (:attr:`SweepTarget.never_sent`)."""
    naming = _NAMING.get()
    if naming is not None:
        naming(lookup, findable)


def note_try_without_answer(what: str) -> None:
    """Notes that a try of the create under way, if any, may have been carried out without its
    answer reaching us (``what`` says how). Called by the retrying clients' hooks (botocore's
    ``needs-retry`` event, :meth:`cdao_connectors._backends.Backend.aws`; urllib3's ``Retry`` for
    Codeweave, :mod:`cdao_connectors.codeweave.contract`), on the create's thread."""
    tries = _TRIES_WITHOUT_ANSWER.get()
    if tries is not None:
        tries.append(what)


class JobCannotBeFound(LookupError):
    """A connector's ``swept_job`` cannot look the attempt's job up: the create's request was never
    named (:func:`name_the_job`), or what its name finds cannot be told to be the attempt's; or the
    connector has no ``swept_job`` (its API deduplicates the create, and the job is known only from
    the create's answer, which never came). The sweeper counts such a job as left running."""


class AbandonedBeforeSending(RuntimeError):
    """The create's attempt was marked abandoned before the request that makes its job was sent
    (:func:`name_the_job`): it is not sent, and the CreateTask fails with nothing made."""


class AttemptInProgress(RuntimeError):
    """Another CreateTask of this attempt is creating its job (this attempt fails; its next one starts anew)."""


class AttemptAbandoned(RuntimeError):
    """This attempt's job was cancelled because its CreateTask gave up; the next attempt starts a new one."""


@contextlib.contextmanager
def checking_created_job(backend: str, job: str) -> Iterator[None]:
    """Around a check made once the attempt's job exists (is it one a give-up cancelled?): only
    :class:`AttemptAbandoned` raised in the block gets out. Any other failure of the check (a
    throttled Describe, a timeout) is logged naming ``backend`` and ``job`` and ends the block, and
    the caller answers the job: an error would fail the attempt (launcher.go ``launch`` at
    flyteplugins/v1.16.8) and propeller never DeleteTasks a job it got no ``resource_meta`` for
    (connector/plugin.go ``Delete``), so the job would run on with nobody to stop it; answered,
    its GetTasks follow it. Works around awaits too (an ``async def`` may use it)."""
    try:
        yield
    except AttemptAbandoned:
        raise
    except Exception as exc:
        _log.warning("%s: could not check %s after creating it (answered as it is): %s", backend, job, exc)


def _conditional_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _refused_by_aws(error: BaseException) -> bool:
    """Whether AWS answered the create ``error`` (or the error it was raised from) with a refusal,
    an HTTP 4xx error, which says the request itself must change before it can succeed ("Error
    retries and exponential backoff in AWS", https://docs.aws.amazon.com/general/latest/gr/api-retries.html):
    nothing was made. A 5xx answer says only that AWS failed to complete the request, not that it
    had no effect, so it counts as no answer: the job is looked up by name, and swept if it appears
    (a wrong guess costs a look-up, the other one a job nobody stops)."""
    for seen in (error, error.__cause__):
        if isinstance(seen, ClientError):
            return seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400) < 500
    return False


def may_have_made_a_job(error: BaseException) -> bool:
    """Whether a create that failed with ``error`` (or an error it was raised from) may still have
    made its job: AWS answered 5xx (it failed to complete the request, which says nothing of its
    effect), or the answer was lost after the request was sent (botocore's ``ReadTimeoutError`` or
    ``ConnectionClosedError``, requests' ``ReadTimeout``, a timeout). A refusal, a request never
    sent or an error of our own made nothing. A backend that is not AWS says its own 5xx
    (``AttemptAnswers``'s ``may_have_made``)."""
    return in_chain(error, _without_answer, implicit=True)


def _without_answer(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        return not _refused_by_aws(error)
    return isinstance(error, (ReadTimeoutError, ConnectionClosedError, requests.ReadTimeout, TimeoutError))


def _found_or_none(find: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """``find()``, or None when the look-up fails too (the create's own error is the one to report)."""
    try:
        return find()
    except Exception:
        return None


def attempt_item(kind: str, seed: str) -> str:
    """The attempt table's key of the task attempt whose :func:`cdao_connectors._common.attempt_seed`
    is ``seed``, for a backend ``kind`` ("codeweave", "emr-serverless", ...): ``<kind>/<sha256 hex>``."""
    return f"{kind}/{hashlib.sha256(seed.encode()).hexdigest()}"


def refused_cancel_item(task_type: str, task_version: int, resource_meta: bytes) -> str:
    """The attempt table's key of a job whose DeleteTask's cancel failed: ``cancel/<sha256 hex>`` of
    its connector (``task_type``, ``task_version``: flytekit's ``TaskCategory``) and its
    ``resource_meta`` encoded as propeller sends it (``ResourceMeta.encode``), the same for every
    DeleteTask of the job (propeller re-sends the bytes its CreateTask got)."""
    return attempt_item("cancel", f"{task_type}/{task_version}/{resource_meta.hex()}")


@dataclass(frozen=True)
class SweepTarget:
    """What a surviving replica's sweeper (:mod:`cdao_connectors._sweeper`) needs to stop an attempt's
    job that may be running with nobody to stop it (module docstring, "Sweeping"): the ``backend``
    (named in its log and metrics), the connector that stops it (its flytekit task category,
    ``task_type`` and ``task_version``, as ``ConnectorRegistry.get_connector`` takes them) and the
    job, as the job's ``resource_meta`` encoded as propeller receives it (``ResourceMeta.encode``)
    or, before the create answered, a ``lookup`` (a JSON object the connector's ``swept_job`` reads:
    the attempt's deterministic name and where to look for it)."""

    backend: str
    task_type: str
    task_version: int
    lookup: dict[str, Any] = field(default_factory=dict)
    resource_meta: bytes | None = None

    def attributes(self) -> dict[str, dict[str, Any]]:
        """The item's attributes holding this target (DynamoDB's typed JSON)."""
        held: dict[str, dict[str, Any]] = {
            "sweep_backend": {"S": self.backend},
            "sweep_task_type": {"S": self.task_type},
            "sweep_task_version": {"N": str(self.task_version)},
            "sweep_lookup": {"S": json.dumps(self.lookup, sort_keys=True)},
        }
        if self.resource_meta is not None:
            held["sweep_resource_meta"] = {"B": self.resource_meta}
        return held

    @property
    def never_sent(self) -> bool:
        """Whether the attempt's create sent no request that could make a job: its record says the
        create sends one only once its job is named (:meth:`AttemptAnswers.answering`, with
        :data:`SENT_ONLY_ONCE_NAMED`) and no name was recorded (no ``named_at``). The sweep's claim
        marks the attempt abandoned, after which a name is refused and no request sent
        (:func:`name_the_job`); DynamoDB orders the claim and the name's record. A record written by
        an older connector lacks the mark: its job may exist unnamed."""
        return (
            self.resource_meta is None and bool(self.lookup.get(SENT_ONLY_ONCE_NAMED)) and "named_at" not in self.lookup
        )

    @classmethod
    def of(cls, item: dict[str, Any]) -> SweepTarget:
        """The target an item holds (:meth:`attributes`), its lookup with ``named_at`` added (when
        the attempt's job was first named, epoch seconds: :meth:`AttemptLedger.name`) once it was.
        Raises KeyError naming the attribute an item armed by an older connector lacks."""
        meta = item.get("sweep_resource_meta", {}).get("B")
        named_at = item.get("sweep_named_at", {}).get("N")
        return cls(
            backend=item["sweep_backend"]["S"],
            task_type=item["sweep_task_type"]["S"],
            task_version=int(item["sweep_task_version"]["N"]),
            lookup={
                **json.loads(item["sweep_lookup"]["S"]),
                **({"named_at": float(named_at)} if named_at is not None else {}),
            },
            resource_meta=bytes(meta) if meta is not None else None,
        )


def _arm(
    target: SweepTarget | None, after: float, now: float, *, keep_lookup: bool = False, keep_due: bool = False
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The ``SET`` clauses (without the keyword, each after a comma) and values that put an item in
    the sweep index, due ``after`` (epoch seconds), holding ``target``, armed ``now``
    (``sweep_since``: the sweeper's windows, :data:`SWEEP_FIND_SECONDS`, count from the latest
    arming, a create or a give-up). With ``keep_lookup`` a lookup the item holds stays (an earlier
    CreateTask of the attempt named its job: :func:`name_the_job`); with ``keep_due`` the due time
    and ``sweep_since`` the item holds stay (an earlier refused DeleteTask armed it). Nothing
    without a target: the sweeper could not stop a job it cannot find."""
    if target is None:
        return "", {}
    values: dict[str, dict[str, Any]] = {
        ":sweep_queue": {"S": SWEEP_QUEUE},
        ":sweep_after": {"N": repr(after)},
        ":sweep_since": {"N": repr(now)},
    }
    kept = [SWEEP_AFTER, "sweep_since"] if keep_due else []
    clauses = [f"{SWEEP_QUEUE_ATTRIBUTE} = :sweep_queue"] + [
        f"{name} = if_not_exists({name}, :{name})" if name in kept else f"{name} = :{name}"
        for name in (SWEEP_AFTER, "sweep_since")
    ]
    for name, value in target.attributes().items():
        kept = keep_lookup and name == "sweep_lookup"
        clauses.append(f"{name} = if_not_exists({name}, :{name})" if kept else f"{name} = :{name}")
        values[f":{name}"] = value
    return "".join(f", {clause}" for clause in clauses), values


def _armed_item(target: SweepTarget | None, after: float, now: float) -> dict[str, dict[str, Any]]:
    """The attributes of a new item that put it in the sweep index (:func:`_arm`)."""
    if target is None:
        return {}
    _, values = _arm(target, after, now)
    return {
        SWEEP_QUEUE_ATTRIBUTE: values[":sweep_queue"],
        SWEEP_AFTER: values[":sweep_after"],
        "sweep_since": values[":sweep_since"],
        **target.attributes(),
    }


# Takes an item out of the sweep index (sparse: DynamoDB indexes only items holding both keys).
_DISARM = f"REMOVE {SWEEP_QUEUE_ATTRIBUTE}, {SWEEP_AFTER}"
# The answer recorded came from a CreateTask that started before the one whose record put the
# attempt in the index (AttemptLedger.intend): propeller no longer follows it.
_ANSWERED_EARLIER = "(attribute_exists(sweep_from) AND answered_from < sweep_from)"


class AttemptAnswers:
    """The attempt table's order between the CreateTasks of one attempt answering its job and a
    give-up cancelling it (module docstring). :func:`cdao_connectors._backends.create_within_deadline`
    records the CreateTask's answer (:meth:`answering`) before answering, which also takes the
    attempt out of the sweep index, and marks the attempt abandoned, in the sweep index with the
    job's ``resource_meta``, before a give-up's cancel (:meth:`cancelling`).

    Made when the CreateTask starts (its start, :data:`CREATE_STARTED_AT` when set, is
    :attr:`started_at`, epoch seconds) and before its create: the table's setting
    (``CDAO_ATTEMPT_TABLE``) is checked while no job exists. ``item`` is the attempt's key
    (:func:`attempt_item`, or the claim's key of a backend that claims its attempts); ``backend``
    runs the calls; ``task_category`` is the connector's (flytekit ``TaskCategory``: the sweeper
    finds the connector by it). ``claimed``: the create claims the attempt in the table before
    making its job (:meth:`AttemptLedger.once`, which puts it in the sweep index with the job's
    lookup by name), so a job it starts is swept should this replica die before answering it.
    Otherwise (a backend whose API deduplicates the create, whose job is unknown until the create
    answers) :meth:`answering` puts the attempt in the index before the create with ``seed`` (its
    :func:`cdao_connectors._common.attempt_seed`: execution, node, retry) as the lookup, and keeps
    it there when the create fails without a clear answer (its last try's error, ``may_have_made``,
    default :func:`may_have_made_a_job`, or any earlier try, :func:`note_try_without_answer`). The
    sweeper finds such a job by the lookup the create recorded before sending its request
    (:func:`name_the_job`, :attr:`findable` then), through the connector's ``swept_job``; without
    one it counts the job as left running and logs the attempt for an operator, on a replica that
    lives on (its replica may be gone: SIGKILL, an OOM kill).
    """

    def __init__(
        self,
        backend: Backend,
        item: str,
        task_category: Any,
        *,
        claimed: bool = False,
        seed: str = "",
        may_have_made: Callable[[BaseException], bool] = may_have_made_a_job,
    ) -> None:
        self._backend = backend
        self._may_have_made = may_have_made
        self._table = attempt_table()
        self.item = item
        self._task_category = task_category
        self._claimed = claimed
        self._seed = seed
        # The CreateTask's start (compared across replicas: module docstring), made before any job.
        self.started_at = CREATE_STARTED_AT.get() or time.time()
        # Whether a job of this CreateTask that nobody follows is in the sweep index now: from the
        # claim (or the record before the create) until the answer, and again once a give-up armed
        # it; and whether the sweep can find and stop it there, or only count it (shutdown's messages).
        self.swept = claimed
        self.findable = claimed
        # Set by the connector when the create answered a job it neither made nor took over (another's or
        # a person's, of a fixed name): a give-up then records no sweep target for it.
        self.adopted = False

    async def answering(self, created: Awaitable[T]) -> T:
        """``created``'s job, once recorded as answered by this CreateTask (:meth:`AttemptLedger.answer`,
        within the CreateTask's deadline), which takes the attempt out of the sweep index. Raises
        :class:`AttemptAbandoned` when the attempt was marked abandoned first, and
        :class:`cdao_connectors._backends.LeftRunning` (the record's error, the job to stop) when the
        record fails: answered unrecorded, the job could be swept while propeller follows it."""
        from cdao_connectors._backends import LeftRunning  # noqa: PLC0415  (it imports this module)

        if not self._claimed:
            # Before the create, or nothing is made: failing here fails the CreateTask with no job.
            unknown = SweepTarget(
                self._backend.name,
                self._task_category.name,
                self._task_category.version,
                {"attempt_seed": self._seed, SENT_ONLY_ONCE_NAMED: True},
            )
            await self._backend.call(
                lambda: self._ledger().intend(self.item, unknown, self.started_at),
                deadline=_deadlines.CREATE_TASK_SECONDS,
                what="attempt ledger update",
            )
            self.swept = True
            _NAMING.set(self._name_job)  # as the tries below: this create's own context
        tries: list[str] = []
        _TRIES_WITHOUT_ANSWER.set(tries)  # this create's task's own context: its calls see the list
        try:
            resource_meta = await created
        except Exception as exc:
            if self._claimed or isinstance(exc, AbandonedBeforeSending):
                # The claim's own record says what the create left (AttemptLedger._expire); a
                # request never sent left nothing, and the sweep settled the attempt.
                raise
            if not tries and not self.adopted and not self._may_have_made(exc):
                # Unless an earlier CreateTask answered the attempt's job, which propeller no longer
                # follows (it re-sent this one): the sweep stops that job. A create that found an
                # existing job of its name (adopted) and then failed leaves it to the sweep too,
                # which stops it only if it is this attempt's (its tag).
                self.swept = not await settle_swept(
                    self._backend,
                    self._ledger,
                    self.item,
                    "no job: the create failed",
                    condition=f"attribute_not_exists(abandoned) AND NOT {_ANSWERED_EARLIER}",
                )
            if self.swept:
                # The attempt fails with this error: nobody will answer its job, so the sweep need
                # not wait for a claim's lease (as for a claimed create without AWS's answer, _expire).
                await self._sweep_soon()
            raise
        try:
            await self._backend.call(
                lambda: self._ledger().answer(self.item, self.started_at),
                deadline=_deadlines.CREATE_TASK_SECONDS,
                what="attempt ledger update",
            )
        except AttemptAbandoned as abandoned:
            # A give-up or the sweep took the attempt: each stops the job it knows of, which may not
            # be this one (made after the sweep looked): this create stops it too, with its record.
            raise LeftRunning(resource_meta, abandoned, as_give_up=True) from abandoned
        except Exception as exc:
            raise LeftRunning(
                resource_meta,
                RuntimeError(
                    f"{self._backend.name}: could not record attempt {self.item}'s answer in the attempt table "
                    f"({exc}); its job is cancelled and this task attempt fails (its next one, if one is left, "
                    "starts a new job)"
                ),
                as_give_up=True,
            ) from exc
        self.swept = False
        return resource_meta

    async def _sweep_soon(self) -> None:
        """The attempt due for the sweep :data:`SWEEP_RECHECK_SECONDS` from now; a failure is logged
        and left (it is due when a claim's lease would have ended)."""

        def soon() -> None:
            ledger = self._ledger()
            ledger.sweep_later(self.item, ledger.now() + SWEEP_RECHECK_SECONDS)

        try:
            await self._backend.call(soon, deadline=_deadlines.CREATE_TASK_SECONDS, what="attempt ledger update")
        except Exception as exc:
            name, item = self._backend.name, self.item
            _log.warning("%s: attempt %s is swept once its record's lease ends (%s)", name, item, exc)

    def _name_job(self, lookup: dict[str, Any], findable: bool) -> None:
        """:func:`name_the_job` for this create, on its thread: the attempt's lookup becomes ``lookup``
        with the attempt's seed; the sweeper can then find the job (:attr:`findable`) if ``findable``."""
        try:
            self._ledger().name(self.item, {**lookup, "attempt_seed": self._seed})
        except AbandonedBeforeSending:
            raise
        except Exception as exc:
            # Sent unnamed, the job would be one the sweep takes for never made (SweepTarget.never_sent).
            raise RuntimeError(
                f"{self._backend.name}: could not record the name of attempt {self.item}'s job in the attempt "
                f"table ({exc}); its create's request is not sent, and this task attempt fails (its next one, "
                "if one is left, starts a new job)"
            ) from exc
        self.findable = self.findable or findable

    def _ledger(self) -> AttemptLedger:
        # Called on the backend's threads: the table's shared client is made on first use
        # (Backend.aws), milliseconds every connector would wait for on the event loop.
        return AttemptLedger(self._backend.aws("dynamodb", aws_region()), self._table)

    def target(self, resource_meta: Any) -> SweepTarget:
        """The sweep target of ``resource_meta``, this attempt's job."""
        return SweepTarget(
            backend=self._backend.name,
            task_type=self._task_category.name,
            task_version=self._task_category.version,
            resource_meta=resource_meta.encode(),
        )

    def cancelling(self, cancel: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[None]]:
        """``cancel``, run for this CreateTask's give-up only once the attempt is marked abandoned,
        and put in the sweep index with the job (:func:`mark_abandoned`): not when a CreateTask that
        started later was answered the job. Once ``cancel`` returns the attempt leaves the index."""

        async def cancel_unless_answered(resource_meta: Any) -> None:
            # A job the create adopted (:attr:`adopted`) is not this attempt's to stop: no target.
            target = None if self.adopted else self.target(resource_meta)

            def mark() -> bool:
                marked = self._ledger().abandon(self.item, started_at=self.started_at, sweep=target)
                self.swept = self.swept or marked
                self.findable = self.findable or (marked and target is not None)
                return marked

            if await mark_abandoned(self._backend, mark):
                await cancel(resource_meta)
                outcome = "left to whoever made it" if target is None else "cancelled by the CreateTask's give-up"
                await settle_swept(self._backend, self._ledger, self.item, outcome)
                self.swept = False

        return cancel_unless_answered


async def settle_swept(
    backend: Backend, ledger: Callable[[], AttemptLedger], item: str, outcome: str, *, condition: str | None = None
) -> bool:
    """Takes ``item`` out of the sweep index once its job is stopped, or none was made
    (:meth:`AttemptLedger.settle`, with ``condition``, on ``backend``'s threads); whether it did. A
    failure is logged and left: the sweeper's cancel of a stopped job is a no-op, and it settles
    the item then."""
    try:
        return await backend.call(
            lambda: ledger().settle(item, outcome, condition=condition),
            deadline=_deadlines.DELETE_TASK_SECONDS,
            what="attempt ledger update",
        )
    except Exception as exc:
        _log.warning("%s: attempt %s stays in the sweep index (%s)", backend.name, item, exc)
        return False


def _refused_cancel_target(backend: Backend, task_category: Any, resource_meta: Any) -> tuple[str, SweepTarget]:
    encoded = resource_meta.encode()
    target = SweepTarget(backend.name, task_category.name, task_category.version, resource_meta=encoded)
    return refused_cancel_item(task_category.name, task_category.version, encoded), target


# The records of refused DeleteTasks (keep_refused_cancel) run on threads of their own, not on the
# backend's: the cancel that failed may be one of many hung on that backend, each holding one of its
# threads past its answer, and a record queued behind them would fail with them (a bulkhead, as each
# backend has one: cdao_connectors._backends).
_REFUSED_CANCEL_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cdao-refused-cancels")


async def keep_refused_cancel(backend: Backend, task_category: Any, resource_meta: Any) -> str:
    """Keeps ``resource_meta``'s job, whose DeleteTask's cancel failed, in the sweep index
    (:meth:`AttemptLedger.keep_refused_cancel`, on threads of its own, within a DeleteTask's budget
    less its margin: the cancel's and this one's fit inside propeller's 30 s, ``_deadlines``); the
    item's key. ``task_category`` is the connector's (flytekit ``TaskCategory``: the sweeper finds
    the connector by it). Raises what recording raises: the attempt table's setting missing
    (:class:`cdao_connectors.config.ConnectorConfigError`), DynamoDB's error, TimeoutError."""
    item, target = _refused_cancel_target(backend, task_category, resource_meta)

    def keep() -> bool:
        return AttemptLedger(backend.aws("dynamodb", aws_region()), attempt_table()).keep_refused_cancel(item, target)

    budget = _deadlines.DELETE_TASK_SECONDS - _deadlines.MARGIN_SECONDS
    running = asyncio.get_running_loop().run_in_executor(_REFUSED_CANCEL_THREADS, contextvars.copy_context().run, keep)
    try:
        kept = await asyncio.wait_for(running, budget)
    except TimeoutError:
        raise TimeoutError(f"the attempt table did not record the refused cancel within {budget:g} s") from None
    if not kept:
        _log.info("%s: the sweep already settled %s (attempt %s)", backend.name, resource_meta, item)
    return item


async def forget_refused_cancel(backend: Backend, task_category: Any, resource_meta: Any) -> None:
    """Takes the job of a DeleteTask that succeeded out of the sweep index if an earlier refused
    one put it there (one conditional ``UpdateItem``, which writes nothing for a job never refused:
    :func:`settle_swept`, whose failure is logged). Nothing without an attempt table."""
    try:
        table, region = attempt_table(), aws_region()
    except ConnectorConfigError:
        return  # nothing could have been kept
    item, _ = _refused_cancel_target(backend, task_category, resource_meta)
    await settle_swept(
        backend,
        lambda: AttemptLedger(backend.aws("dynamodb", region), table),
        item,
        "cancelled by a later DeleteTask",
        condition=f"attribute_exists({SWEEP_QUEUE_ATTRIBUTE})",
    )


async def mark_abandoned(backend: Backend, mark: Callable[[], bool]) -> bool:
    """Whether the job of a CreateTask that gave up is to be cancelled: ``mark()`` (an
    :meth:`AttemptLedger.abandon`, run on ``backend``'s threads within propeller's DeleteTask
    deadline) marked its attempt, or failed (throttled, say; logged): a running job nobody
    follows costs more than the rare re-send the mark guards against. False when a repeated
    CreateTask was answered the job first: it runs on."""
    try:
        return await backend.call(mark, deadline=_deadlines.DELETE_TASK_SECONDS, what="attempt ledger update")
    except Exception as exc:
        _log.warning("%s: could not mark an attempt abandoned (%s); cancelling its job all the same", backend.name, exc)
        return True


class AttemptLedger:
    """Claims of task attempts in the DynamoDB table ``table`` (partition key ``attempt``, string).

    ``clock`` is wall-clock epoch seconds (default ``time.time``, read when the ledger is made):
    leases are compared across replicas.
    """

    def __init__(self, dynamodb: Any, table: str, clock: Callable[[], float] | None = None) -> None:
        self._db = dynamodb
        self._table = table
        self._clock = clock or time.time
        self._owner = uuid.uuid4().hex

    def now(self) -> float:
        """The ledger's clock: wall-clock epoch seconds, compared across replicas."""
        return self._clock()

    def _read(self, attempt: str) -> dict[str, Any] | None:
        item = self._db.get_item(TableName=self._table, Key={ATTEMPT_KEY: {"S": attempt}}, ConsistentRead=True)
        return item.get("Item")

    def _update(self, attempt: str, **request: Any) -> dict[str, Any] | None:
        """UpdateItem of ``attempt``'s item with ``request`` (its expressions): DynamoDB's answer, or
        None when the request's condition did not hold (``ConditionalCheckFailedException``, which
        writes nothing). Any other error is raised."""
        try:
            return self._db.update_item(TableName=self._table, Key={ATTEMPT_KEY: {"S": attempt}}, **request)
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            return None

    def once(
        self,
        attempt: str,
        create: Callable[[], dict[str, Any]],
        find: Callable[[], dict[str, Any] | None],
        wait_seconds: float,
        *,
        started_at: float | None = None,
        sweep: SweepTarget | None = None,
    ) -> dict[str, Any]:
        """The job of ``attempt``: the one recorded, else ``create()``'s, created by exactly one caller.

        ``create`` returns the job's identifiers (a JSON-serialisable dict); ``find`` looks the job up
        by its deterministic name, when taking over from a dead owner and when ``create`` failed
        without an answer from AWS (anything but a ``ClientError``): a job found then is the answer.
        Raises :class:`AttemptInProgress` when another caller still holds the claim after
        ``wait_seconds``, :class:`AttemptAbandoned` when the attempt's job was cancelled (:meth:`abandon`).
        A recorded job is answered only once recorded as answered by the CreateTask that started at
        ``started_at`` (epoch seconds; default: now), as :meth:`answer` does, so that a give-up
        orders itself against it (:meth:`abandon`).

        A claim puts the attempt in the sweep index with ``sweep`` (the lookup of the job by its
        name), due when the claim's lease ends: should the claimant die before its CreateTask
        answered (:meth:`answer` takes it out), a surviving replica stops the job (module docstring,
        "Sweeping").
        """
        if started_at is None:
            started_at = self._clock()
        token = f"{self._owner}-{uuid.uuid4().hex}"
        give_up = time.monotonic() + wait_seconds
        while True:
            item = self._read(attempt)
            now = self._clock()
            if item is not None and "abandoned" in item:
                raise AttemptAbandoned(
                    f"attempt {attempt}: its first CreateTask gave up and the job it started "
                    f"({item.get('resource', {}).get('S', 'none recorded')}) was cancelled; "
                    "the task's next attempt, if one is left, starts a new job"
                )
            if item is not None and "resource" in item:
                self.answer(attempt, started_at)  # AttemptAbandoned when marked abandoned in between
                return json.loads(item["resource"]["S"])
            if item is not None and item["owner"]["S"] == token:
                # Our own claim, whose answer was lost and retried by botocore: we own the attempt.
                return self._create_and_record(attempt, token, lambda: find() or create(), find, started_at)
            armed, arming = _arm(sweep, now + LEASE_SECONDS, now)
            try:
                if item is None:
                    self._db.put_item(
                        TableName=self._table,
                        Item={
                            ATTEMPT_KEY: {"S": attempt},
                            "owner": {"S": token},
                            "lease_until": {"N": str(now + LEASE_SECONDS)},
                            EXPIRES_AT: {"N": str(int(now + RETENTION_SECONDS))},
                            **_armed_item(sweep, now + LEASE_SECONDS, now),
                        },
                        ConditionExpression=f"attribute_not_exists({ATTEMPT_KEY})",
                    )
                    return self._create_and_record(attempt, token, create, find, started_at)
                if float(item["lease_until"]["N"]) < now:
                    self._db.update_item(
                        TableName=self._table,
                        Key={ATTEMPT_KEY: {"S": attempt}},
                        UpdateExpression=f"SET #o = :me, lease_until = :lease{armed}",
                        ConditionExpression=(
                            "#o = :was AND attribute_not_exists(#r) AND attribute_not_exists(abandoned)"
                        ),
                        ExpressionAttributeNames={"#o": "owner", "#r": "resource"},
                        ExpressionAttributeValues={
                            ":me": {"S": token},
                            ":was": item["owner"],
                            ":lease": {"N": str(now + LEASE_SECONDS)},
                            **arming,
                        },
                    )
                    return self._create_and_record(attempt, token, lambda: find() or create(), find, started_at)
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
                continue  # someone else claimed or recorded in between: read again
            if time.monotonic() >= give_up:
                raise AttemptInProgress(
                    f"another CreateTask of attempt {attempt} is still creating its job; this one gives up "
                    "(the attempt fails, the task's next attempt, if one is left, starts a new job)"
                )
            time.sleep(_POLL_SECONDS)

    def _expire(self, attempt: str, token: str, *, created_nothing: bool) -> None:
        # The create may have reached AWS before failing: expire the lease rather than delete the
        # claim, so a repeated CreateTask takes over and looks the job up before creating, and the
        # sweeper looks for the job soon (SWEEP_RECHECK_SECONDS: AWS may carry out a create whose
        # answer was lost after it). An AWS error answered (created_nothing) leaves nothing to sweep.
        now = self._clock()
        update = f"SET lease_until = :zero {_DISARM}" if created_nothing else "SET lease_until = :zero, #a = :soon"
        values = {":me": {"S": token}, ":zero": {"N": "0"}}
        names = {"#o": "owner"}
        if not created_nothing:
            values[":soon"] = {"N": repr(now + SWEEP_RECHECK_SECONDS)}
            names["#a"] = SWEEP_AFTER
        with contextlib.suppress(ClientError):  # else the lease runs out by itself and the claim's sweep is due
            self._db.update_item(
                TableName=self._table,
                Key={ATTEMPT_KEY: {"S": attempt}},
                UpdateExpression=update,
                ConditionExpression="#o = :me",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def answer(self, attempt: str, started_at: float) -> None:
        """Records that the CreateTask started at ``started_at`` (epoch seconds) answers ``attempt``'s
        job (module docstring): the item's ``answered_from`` becomes the latest such start, and the
        attempt leaves the sweep index (propeller follows the job from now on) unless a CreateTask
        that started later recorded itself there (:meth:`intend`). Raises
        :class:`AttemptAbandoned`, recording nothing, once the attempt is marked abandoned. Creates
        the item when there is none; it expires like every claim."""
        values = {":s": {"N": repr(started_at)}, ":expires": {"N": str(int(self._clock() + RETENTION_SECONDS))}}
        answering = "attribute_not_exists(abandoned) AND (attribute_not_exists(answered_from) OR answered_from <= :s)"
        recorded = f"SET answered_from = :s, {EXPIRES_AT} = if_not_exists({EXPIRES_AT}, :expires)"
        # Out of the index unless a CreateTask that started later put it there (intend): that one's
        # answer, or the sweep, decides for the job then.
        for update, condition in (
            (f"{recorded} {_DISARM}", f"{answering} AND (attribute_not_exists(sweep_from) OR sweep_from <= :s)"),
            (recorded, answering),
        ):
            if self._update(
                attempt, UpdateExpression=update, ConditionExpression=condition, ExpressionAttributeValues=values
            ):
                return
        # Abandoned, or a CreateTask that started later was answered already (this answer is lost to
        # propeller then, whatever it is): only the first refuses this one.
        if not self._update(
            attempt,
            UpdateExpression=f"SET {EXPIRES_AT} = if_not_exists({EXPIRES_AT}, :expires)",
            ConditionExpression="attribute_not_exists(abandoned)",
            ExpressionAttributeValues={":expires": values[":expires"]},
        ):
            raise AttemptAbandoned(
                f"attempt {attempt}: a CreateTask of it gave up and its job is being cancelled; "
                "the task's next attempt, if one is left, starts a new job"
            )

    def abandon(
        self,
        attempt: str,
        *,
        unless_adopted: bool = True,
        started_at: float | None = None,
        sweep: SweepTarget | None = None,
    ) -> bool:
        """Marks ``attempt``'s job as cancelled because a CreateTask answering it (started at
        ``started_at``, epoch seconds) had already answered an error: a later CreateTask of the
        attempt raises :class:`AttemptAbandoned`. Creates the item when there is none (the create
        recorded nothing), so that holds either way.

        Returns False, marking nothing, when a CreateTask that started after the one giving up was
        answered the job first (``unless_adopted``; :meth:`answer`, :meth:`once`): propeller sends
        one only after losing its state, so that answer, not the give-up's error, is the one it
        records, and the job must run on. An earlier one's answer is lost to propeller, and the
        give-up's own create may have finished after its deadline and recorded itself: neither
        counts. With ``started_at`` None every answer counts. With ``unless_adopted=False`` the mark
        is made regardless (a job no GetTask could follow).

        The mark puts the attempt in the sweep index with ``sweep`` (the job to stop), due after
        :data:`SWEEP_GRACE_SECONDS`: the give-up cancels the job now, and :meth:`settle` takes it
        out once it did; should this replica die first, a surviving one stops the job."""
        now = self._clock()
        armed, arming = _arm(sweep, now + SWEEP_GRACE_SECONDS, now)
        values: dict[str, Any] = {
            ":at": {"N": str(now)},
            ":expires": {"N": str(int(now + RETENTION_SECONDS))},
            **arming,
        }
        condition: dict[str, str] = {}
        if unless_adopted:
            answered_later = "attribute_not_exists(answered_from)"
            if started_at is not None:
                answered_later += " OR answered_from <= :started"
                values[":started"] = {"N": repr(started_at)}
            condition = {"ConditionExpression": answered_later}
        if not self._update(
            attempt,
            # The mark ends a claim's lease too: the claimant's create is over (it gave up on it),
            # so the sweep may take the attempt when it is due, not when the lease ends.
            UpdateExpression=(
                f"SET abandoned = :at, lease_until = :at, {EXPIRES_AT} = if_not_exists({EXPIRES_AT}, :expires){armed}"
            ),
            ExpressionAttributeValues=values,
            **condition,
        ):
            _log.warning("attempt %s: a later CreateTask was answered its job first; the job runs on", attempt)
            return False
        return True

    def keep_refused_cancel(self, attempt: str, sweep: SweepTarget) -> bool:
        """Puts the job of a DeleteTask whose cancel failed in the sweep index under ``attempt``
        (:func:`refused_cancel_item`) with ``sweep`` (its ``resource_meta``), due
        :data:`CANCEL_SWEEP_DELAY_SECONDS` after the first failure: a later refused DeleteTask of the
        job (propeller's retry) keeps the due time and ``sweep_since`` (the sweeper's "not now"
        window) of the first, so that the retries never push the sweep back. False, arming nothing,
        once the sweep settled the item (``swept``: it stopped the job, or counted it as left
        running, and a second count would page twice for one job)."""
        now = self._clock()
        armed, arming = _arm(sweep, now + CANCEL_SWEEP_DELAY_SECONDS, now, keep_due=True)
        return bool(
            self._update(
                attempt,
                UpdateExpression=f"SET {EXPIRES_AT} = if_not_exists({EXPIRES_AT}, :expires){armed}",
                ConditionExpression="attribute_not_exists(swept)",
                ExpressionAttributeValues={":expires": {"N": str(int(now + RETENTION_SECONDS))}, **arming},
            )
        )

    def intend(self, attempt: str, sweep: SweepTarget, started_at: float) -> None:
        """Puts ``attempt`` in the sweep index with ``sweep`` before a create whose job is unknown
        until it answers, due when a claim's lease would end (the create has ended by then, or its
        replica with it), for the CreateTask started at ``started_at`` (epoch seconds): recorded as
        ``sweep_from``, so that an answer of a CreateTask that started earlier neither takes the
        attempt out of the index (:meth:`answer`) nor keeps the sweep off it (:meth:`claim_for_sweep`):
        propeller follows only the latest CreateTask's answer (module docstring). Raises
        :class:`AttemptAbandoned`, marking nothing, once the attempt is marked abandoned (its job was
        cancelled: a create now would be answered that job)."""
        now = self._clock()
        armed, arming = _arm(sweep, now + LEASE_SECONDS, now, keep_lookup=True)
        if not self._update(
            attempt,
            UpdateExpression=f"SET {EXPIRES_AT} = if_not_exists({EXPIRES_AT}, :expires), sweep_from = :from{armed}",
            ConditionExpression="attribute_not_exists(abandoned)",
            ExpressionAttributeValues={
                ":expires": {"N": str(int(now + RETENTION_SECONDS))},
                ":from": {"N": repr(started_at)},
                **arming,
            },
        ):
            raise AttemptAbandoned(
                f"attempt {attempt}: a CreateTask of it gave up and its job was cancelled; "
                "the task's next attempt, if one is left, starts a new job"
            )

    def name(self, attempt: str, lookup: dict[str, Any]) -> None:
        """``attempt``'s sweep lookup becomes ``lookup`` (a JSON object); ``sweep_named_at`` keeps
        when its job was first named (a repeated CreateTask names the same job, made then: the
        sweeper hands it to ``swept_job`` as the lookup's ``named_at``). Raises
        :class:`AbandonedBeforeSending`, recording nothing, once the attempt is marked abandoned."""
        if not self._update(
            attempt,
            UpdateExpression="SET sweep_lookup = :lookup, sweep_named_at = if_not_exists(sweep_named_at, :now)",
            ConditionExpression="attribute_not_exists(abandoned)",
            ExpressionAttributeValues={
                ":lookup": {"S": json.dumps(lookup, sort_keys=True)},
                ":now": {"N": repr(self._clock())},
            },
        ):
            raise AbandonedBeforeSending(
                f"attempt {attempt} was taken by the sweep (or a give-up) before its create's request was "
                "sent; it is not sent, and the task's next attempt, if one is left, starts a new job"
            )

    def mark_unless(self, key: str, mark: str, unless: str) -> bool:
        """Sets the attribute ``mark`` (now, epoch seconds) on the item ``key`` unless it holds
        ``unless``; whether it did. Of two such marks of one item that exclude each other, DynamoDB
        applies one (a conditional write). The item expires as every claim does."""
        now = self._clock()
        return bool(
            self._update(
                key,
                UpdateExpression=f"SET #m = :now, {EXPIRES_AT} = if_not_exists({EXPIRES_AT}, :expires)",
                ConditionExpression="attribute_not_exists(#u)",
                ExpressionAttributeNames={"#m": mark, "#u": unless},
                ExpressionAttributeValues={
                    ":now": {"N": repr(now)},
                    ":expires": {"N": str(int(now + RETENTION_SECONDS))},
                },
            )
        )

    def due(self, limit: int) -> list[str]:
        """Up to ``limit`` attempts of the sweep index due now, earliest first (a ``Query`` of the
        index, eventually consistent as every read of a global secondary index is: the sweeper
        re-reads each through :meth:`claim_for_sweep`)."""
        found = self._db.query(
            TableName=self._table,
            IndexName=SWEEP_INDEX,
            KeyConditionExpression="#q = :q AND #a <= :now",
            ExpressionAttributeNames={"#q": SWEEP_QUEUE_ATTRIBUTE, "#a": SWEEP_AFTER},
            ExpressionAttributeValues={":q": {"S": SWEEP_QUEUE}, ":now": {"N": repr(self._clock())}},
            Limit=limit,
        )
        return [item[ATTEMPT_KEY]["S"] for item in found.get("Items", [])]

    def claim_for_sweep(self, attempt: str, hold_seconds: float) -> dict[str, Any] | None:
        """``attempt``'s item, once claimed for the sweeper for ``hold_seconds`` (its sweep due
        again then, should the sweeper die); None when it is not due (any more) or a claimant's
        lease still runs. The claim marks the attempt abandoned, so that no CreateTask answers the
        job from now on (:meth:`answer` refuses), and an answer recorded first takes the attempt
        out of the index, failing the claim: DynamoDB orders the two conditional writes."""
        now = self._clock()
        claimed = self._update(
            attempt,
            # The due time is the claim's hold: another sweeper's claim needs it passed. The
            # abandoned mark keeps every CreateTask of the attempt off the job (once, answer).
            UpdateExpression=f"SET {SWEEP_AFTER} = :hold, abandoned = if_not_exists(abandoned, :now)",
            # An answered attempt not since marked abandoned is propeller's to follow: never swept
            # (left in the index by a replica of an earlier version, or by a record made before a
            # create that a later CreateTask's answer had already taken out: disarm_answered),
            # unless a CreateTask that started after the answered one put it there (intend).
            ConditionExpression=(
                f"attribute_exists({SWEEP_QUEUE_ATTRIBUTE}) AND {SWEEP_AFTER} <= :now "
                "AND (attribute_not_exists(lease_until) OR lease_until < :now) "
                f"AND (attribute_not_exists(answered_from) OR attribute_exists(abandoned) OR {_ANSWERED_EARLIER})"
            ),
            ExpressionAttributeValues={":now": {"N": repr(now)}, ":hold": {"N": repr(now + hold_seconds)}},
            ReturnValues="ALL_NEW",
        )
        return claimed and claimed["Attributes"]

    def disarm_answered(self, attempt: str) -> bool:
        """Takes ``attempt`` out of the sweep index when a CreateTask answered its job and no give-up
        or sweep marked it abandoned since (:meth:`claim_for_sweep` never takes such an attempt);
        whether it did."""
        return self.settle(
            attempt,
            "answered: propeller follows the job",
            condition=(
                f"attribute_exists({SWEEP_QUEUE_ATTRIBUTE}) AND attribute_exists(answered_from) "
                f"AND attribute_not_exists(abandoned) AND NOT {_ANSWERED_EARLIER}"
            ),
        )

    def sweep_later(self, attempt: str, after: float) -> None:
        """``attempt``'s sweep due again at ``after`` (epoch seconds), while it is still in the index."""
        with contextlib.suppress(ClientError):  # settled meanwhile: nothing to do
            self._db.update_item(
                TableName=self._table,
                Key={ATTEMPT_KEY: {"S": attempt}},
                UpdateExpression=f"SET {SWEEP_AFTER} = :after",
                ConditionExpression=f"attribute_exists({SWEEP_QUEUE_ATTRIBUTE})",
                ExpressionAttributeValues={":after": {"N": repr(after)}},
            )

    def settle(self, attempt: str, outcome: str, *, condition: str | None = None) -> bool:
        """Takes ``attempt`` out of the sweep index, recording ``outcome`` (what became of its job:
        cancelled, never created, left running) and when, for an operator reading the item; with
        ``condition`` (a DynamoDB condition expression) only while it holds. Whether it did."""
        return bool(
            self._update(
                attempt,
                UpdateExpression=f"SET swept = :outcome, swept_at = :now {_DISARM}",
                ExpressionAttributeValues={":outcome": {"S": outcome}, ":now": {"N": repr(self._clock())}},
                **({"ConditionExpression": condition} if condition else {}),
            )
        )

    def _create_and_record(
        self,
        attempt: str,
        token: str,
        create: Callable[[], dict[str, Any]],
        find: Callable[[], dict[str, Any] | None],
        started_at: float,
    ) -> dict[str, Any]:
        try:
            resource = create()
        except Exception as exc:
            # AWS refusing the request (a 4xx ClientError) created nothing. Any other failure (a read
            # timeout, a dropped connection) may hide a create AWS carried out; this CreateTask's
            # error would fail the attempt and propeller would never stop that job (module
            # docstring), so it is looked up by its name and, when there, is this create's answer.
            # Not found yet, the claim stays in the sweep index, due soon (_expire): AWS may still
            # carry the create out (a SubmitJob held past botocore's read timeout did), and the
            # sweeper stops the job once its name lists it.
            refused = _refused_by_aws(exc)
            found = None if refused else _found_or_none(find)
            if found is None:
                self._expire(attempt, token, created_nothing=refused)
                raise
            resource = found
        except BaseException:
            self._expire(attempt, token, created_nothing=False)
            raise

        try:
            self._db.update_item(
                TableName=self._table,
                Key={ATTEMPT_KEY: {"S": attempt}},
                UpdateExpression="SET #r = :r",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner", "#r": "resource"},
                ExpressionAttributeValues={":me": {"S": token}, ":r": {"S": json.dumps(resource, sort_keys=True)}},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                # The job exists but is not recorded (DynamoDB throttled, say): its CreateTask
                # answers it only once its answer is recorded (AttemptAnswers.answering), else it
                # is stopped; meanwhile the claim's sweep finds it by its name should we die.
                _log.warning("attempt %s: could not record %s: %s", attempt, resource, exc)
                return resource
            # Our lease ran out and another caller took over: its record is the attempt's job.
            item = self._read(attempt)
            if item is not None and "resource" in item:
                self.answer(attempt, started_at)  # taken over as a repeat takes it (once)
                return json.loads(item["resource"]["S"])
            raise AttemptInProgress(
                f"attempt {attempt} was taken over by another CreateTask; this one gives up "
                "(the attempt fails, the task's next attempt, if one is left, starts a new job)"
            ) from exc
        return resource

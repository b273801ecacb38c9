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

A CreateTask that cannot get an answer within its wait budget raises :class:`AttemptInProgress`; like
every CreateTask error it fails the attempt (never a second job). Items expire through DynamoDB's TTL
long after the attempt can have ended. Hand-written because no maintained library offers this on
DynamoDB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from cdao_connectors import _deadlines
from cdao_connectors._deadlines import CREATE_TASK_SECONDS
from cdao_connectors.config import attempt_table, aws_region

if TYPE_CHECKING:
    from cdao_connectors._backends import Backend

T = TypeVar("T")

_log = logging.getLogger(__name__)

# An owner must finish creating within this; creates are bounded by the connector's own deadline
# (far shorter), so an expired lease means the owner is gone, not slow.
LEASE_SECONDS = 300.0
# Claims outlive any attempt: Flyte's task timeouts and Batch/EMR job lifetimes are far shorter.
RETENTION_SECONDS = 90 * 24 * 3600
_POLL_SECONDS = 0.1
# A CreateTask finding another one creating the attempt's job waits this long for its answer, then
# gives up well inside propeller's CreateTask deadline; the owner's own create is bounded by it too.
CREATE_WAIT_SECONDS = CREATE_TASK_SECONDS / 2

# The start (wall-clock epoch seconds) of the CreateTask whose create runs in this context, set by
# BulkheadConnector.create and seen on the backend's threads (Backend.run copies the context): a
# create claiming its attempt itself (AttemptLedger.once) records it when it takes a job over.
CREATE_STARTED_AT: ContextVar[float | None] = ContextVar("cdao_create_started_at", default=None)


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


class AttemptAnswers:
    """The attempt table's order between the CreateTasks of one attempt answering its job and a
    give-up cancelling it (module docstring), for a backend whose API deduplicates the create
    (Codeweave's idempotency key, EMR Serverless's ``clientToken``, SageMaker's unique names).
    :func:`cdao_connectors._backends.create_within_deadline` records the CreateTask's answer
    (:meth:`answering`) before answering, and marks the attempt abandoned before a give-up's cancel
    (:meth:`cancelling`).

    Made when the CreateTask starts (its start, :data:`CREATE_STARTED_AT` when set, is
    :attr:`started_at`, epoch seconds) and before its create: the table's setting
    (``CDAO_ATTEMPT_TABLE``) is checked while no job exists. ``item`` is the attempt's key
    (:func:`attempt_item`); ``backend`` runs the calls.
    """

    def __init__(self, backend: Backend, item: str) -> None:
        self._backend = backend
        self._table = attempt_table()
        self.item = item
        # The CreateTask's start (compared across replicas: module docstring), made before any job.
        self.started_at = CREATE_STARTED_AT.get() or time.time()

    async def answering(self, created: Awaitable[T]) -> T:
        """``created``'s job, once recorded as answered by this CreateTask. Raises
        :class:`AttemptAbandoned` when the attempt was marked abandoned first; any other failure
        of the record is logged and the job answered (:func:`checking_created_job`)."""
        resource_meta = await created
        with checking_created_job(self._backend.name, f"the job of attempt {self.item}"):
            await self._backend.call(
                lambda: self._ledger().answer(self.item, self.started_at),
                deadline=_deadlines.CREATE_TASK_SECONDS,
                what="attempt ledger update",
            )
        return resource_meta

    def _ledger(self) -> AttemptLedger:
        # Called on the backend's threads: the table's shared client is made on first use
        # (Backend.aws), milliseconds every connector would wait for on the event loop.
        return AttemptLedger(self._backend.aws("dynamodb", aws_region()), self._table)

    def cancelling(self, cancel: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[None]]:
        """``cancel``, run for this CreateTask's give-up only once the attempt is marked abandoned
        (:func:`mark_abandoned`): not when a CreateTask that started later was answered the job."""

        async def cancel_unless_answered(resource_meta: Any) -> None:
            def mark() -> bool:
                return self._ledger().abandon(self.item, started_at=self.started_at)

            if await mark_abandoned(self._backend, mark):
                await cancel(resource_meta)

        return cancel_unless_answered


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

    ``clock`` is wall-clock epoch seconds: leases are compared across replicas.
    """

    def __init__(self, dynamodb: Any, table: str, clock: Callable[[], float] = time.time) -> None:
        self._db = dynamodb
        self._table = table
        self._clock = clock
        self._owner = uuid.uuid4().hex

    def _read(self, attempt: str) -> dict[str, Any] | None:
        item = self._db.get_item(TableName=self._table, Key={"attempt": {"S": attempt}}, ConsistentRead=True)
        return item.get("Item")

    def once(
        self,
        attempt: str,
        create: Callable[[], dict[str, Any]],
        find: Callable[[], dict[str, Any] | None],
        wait_seconds: float,
        started_at: float | None = None,
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
            try:
                if item is None:
                    self._db.put_item(
                        TableName=self._table,
                        Item={
                            "attempt": {"S": attempt},
                            "owner": {"S": token},
                            "lease_until": {"N": str(now + LEASE_SECONDS)},
                            "expires_at": {"N": str(int(now + RETENTION_SECONDS))},
                        },
                        ConditionExpression="attribute_not_exists(attempt)",
                    )
                    return self._create_and_record(attempt, token, create, find, started_at)
                if float(item["lease_until"]["N"]) < now:
                    self._db.update_item(
                        TableName=self._table,
                        Key={"attempt": {"S": attempt}},
                        UpdateExpression="SET #o = :me, lease_until = :lease",
                        ConditionExpression="#o = :was AND attribute_not_exists(#r)",
                        ExpressionAttributeNames={"#o": "owner", "#r": "resource"},
                        ExpressionAttributeValues={
                            ":me": {"S": token},
                            ":was": item["owner"],
                            ":lease": {"N": str(now + LEASE_SECONDS)},
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

    def _expire(self, attempt: str, token: str) -> None:
        # The create may have reached AWS before failing: expire the lease rather than delete the
        # claim, so a repeated CreateTask takes over and looks the job up before creating.
        with contextlib.suppress(ClientError):  # else the lease runs out by itself
            self._db.update_item(
                TableName=self._table,
                Key={"attempt": {"S": attempt}},
                UpdateExpression="SET lease_until = :now",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": token}, ":now": {"N": "0"}},
            )

    def answer(self, attempt: str, started_at: float) -> None:
        """Records that the CreateTask started at ``started_at`` (epoch seconds) answers ``attempt``'s
        job (module docstring): the item's ``answered_from`` becomes the latest such start. Raises
        :class:`AttemptAbandoned`, recording nothing, once the attempt is marked abandoned. Creates
        the item when there is none; it expires like every claim."""
        values = {":s": {"N": repr(started_at)}, ":expires": {"N": str(int(self._clock() + RETENTION_SECONDS))}}
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"attempt": {"S": attempt}},
                UpdateExpression="SET answered_from = :s, expires_at = if_not_exists(expires_at, :expires)",
                ConditionExpression=(
                    "attribute_not_exists(abandoned) AND (attribute_not_exists(answered_from) OR answered_from <= :s)"
                ),
                ExpressionAttributeValues=values,
            )
            return
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        # Abandoned, or a CreateTask that started later was answered already (this answer is lost to
        # propeller then, whatever it is): only the first refuses this one.
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"attempt": {"S": attempt}},
                UpdateExpression="SET expires_at = if_not_exists(expires_at, :expires)",
                ConditionExpression="attribute_not_exists(abandoned)",
                ExpressionAttributeValues={":expires": values[":expires"]},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            raise AttemptAbandoned(
                f"attempt {attempt}: a CreateTask of it gave up and its job is being cancelled; "
                "the task's next attempt, if one is left, starts a new job"
            ) from None

    def abandon(self, attempt: str, *, unless_adopted: bool = True, started_at: float | None = None) -> bool:
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
        is made regardless (a job no GetTask could follow)."""
        values: dict[str, Any] = {
            ":at": {"N": str(self._clock())},
            ":expires": {"N": str(int(self._clock() + RETENTION_SECONDS))},
        }
        condition: dict[str, str] = {}
        if unless_adopted:
            answered_later = "attribute_not_exists(answered_from)"
            if started_at is not None:
                answered_later += " OR answered_from <= :started"
                values[":started"] = {"N": repr(started_at)}
            condition = {"ConditionExpression": answered_later}
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"attempt": {"S": attempt}},
                UpdateExpression="SET abandoned = :at, expires_at = if_not_exists(expires_at, :expires)",
                ExpressionAttributeValues=values,
                **condition,
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            _log.warning("attempt %s: a later CreateTask was answered its job first; the job runs on", attempt)
            return False
        return True

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
            # AWS answering with an error (ClientError) created nothing. Any other failure (a read
            # timeout, a dropped connection) may hide a create AWS carried out; this CreateTask's
            # error would fail the attempt and nobody would ever stop that job (module docstring),
            # so it is looked up by its name and, when there, is this create's answer.
            found = None if isinstance(exc, ClientError) else _found_or_none(find)
            if found is None:
                self._expire(attempt, token)
                raise
            resource = found
        except BaseException:
            self._expire(attempt, token)
            raise

        try:
            self._db.update_item(
                TableName=self._table,
                Key={"attempt": {"S": attempt}},
                UpdateExpression="SET #r = :r",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner", "#r": "resource"},
                ExpressionAttributeValues={":me": {"S": token}, ":r": {"S": json.dumps(resource, sort_keys=True)}},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                # The job exists but is not recorded (DynamoDB throttled, say): an error would fail
                # the attempt and leave the job running with nobody to stop it (module docstring),
                # so it is answered; the attempt's lease stays until it expires.
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

"""EMR Serverless: flytekitplugins-awsemrserverless's connector, idempotent and honest about errors.

The plugin draws a fresh uuid4 as StartJobRun's clientToken on every create, so a CreateTask that
propeller repeats (lost response, connector restart) starts a second, duplicate job run. EMR
Serverless deduplicates StartJobRun by clientToken; this subclass derives the token from the task
attempt instead.

The plugin's ``get()`` also turns every GetJobRun error into ``FAILED "Job not found"`` and its
``delete()`` logs and swallows every error (flytekitplugins/awsemrserverless/connector.py, 1.16.31):
a throttled poll would fail a running job, and a refused cancel would be reported done while the
job runs on. Here only ``ResourceNotFoundException`` of the run means it is gone; an application
that is gone or terminal fails the task naming it; any other error of those calls is raised.
A GetTask error is not free: propeller counts each one and fails the task after
``webApi.caching.maxSystemFailures`` of them in its whole life (flyteplugins
``go/tasks/pluginmachinery/internal/webapi/cache.go`` at flyteplugins/v1.16.8,
:mod:`cdao_connectors._deadlines`), so a run whose status is known is answered from the shared view
(stale, saying why) rather than with an error; a DeleteTask error fails the abort, which propeller
repeats.

The plugin runs its blocking boto3 calls on asyncio's default thread pool (``boto_handler.py``
``_call``/``_paginate``: ``run_in_executor(None, ...)``, ``min(32, cpus + 4)`` threads), which also
resolves host names for every aiohttp connection in the service (asyncio ``loop.getaddrinfo``), and
makes a new boto3 client for every request (``connector.py`` ``_get_handler``) and a new S3 client
for every create (``_ensure_entrypoint_on_s3``, on the event loop itself). Here they run on the EMR
Serverless :class:`~cdao_connectors._backends.Backend`'s own threads with its shared clients.

The plugin's ``get()`` reads each run with its own GetJobRun; here a GetTask reads the run from
one shared view of the application's runs, refreshed by ListJobRuns (:func:`job_runs`).

While the application is stopped (it auto-stops when idle, infra/components/compute.py) the plugin's
create() defers the submission: its resource_meta keeps ``pending_job_request`` and no run id, and
its get() and delete() send GetApplication and StartJobRun on every call for the attempt's whole
life (connector.py ``get``/``delete``). Here the run the first of them started is recorded for the
request's clientToken and every later call names it: a GetTask only reads the run's status. Until
a run exists, a GetTask whose GetApplication, attempt-table write (:meth:`_claim_submission`) or
StartJobRun is throttled, fails with a 5xx or runs out of a first status read's wait
(:func:`_bounded`) answers the run as still waiting (RUNNING, saying why), and the next poll
tries again. A DeleteTask of a request not yet submitted records the cancel and sends nothing
(:meth:`IdempotentEMRServerlessConnector._cancel_or_forbid`).

A run is known only from StartJobRun's answer; one whose answer was lost (a read timeout, a 5xx) or
whose replica ended mid-create is swept (:mod:`cdao_connectors._sweeper`): each StartJobRun of a
CreateTask carries the attempt's ``flyte-attempt`` tag and records its application, name and tag
just before it is sent (:func:`cdao_connectors._attempts.name_the_job`), from which
:meth:`IdempotentEMRServerlessConnector.swept_job` finds the run (:func:`find_attempts_run`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import re
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import ConnectorRegistry, Resource
from flytekit.extend.backend.utils import is_terminal_phase
from flytekit.models.task import TaskTemplate
from flytekitplugins.awsemrserverless.boto_handler import EMRServerlessHandler
from flytekitplugins.awsemrserverless.connector import EMRServerlessConnector, EMRServerlessJobMetadata
from flytekitplugins.awsemrserverless.task import EMRServerless

from cdao_connectors import _deadlines, _status_cache
from cdao_connectors._attempts import (
    AttemptAbandoned,
    AttemptAnswers,
    AttemptLedger,
    JobCannotBeFound,
    attempt_item,
    checking_created_job,
    name_the_job,
)
from cdao_connectors._backends import (
    WORKERS_PER_BACKEND,
    Backend,
    BackendDeadlineExceeded,
    aborting,
    create_within_deadline,
    is_transient,
    on_get_task_threads,
    refuse_create_while_shutting_down,
    serving,
    within_deadline,
)
from cdao_connectors._common import (
    ATTEMPT_TAG_KEY,
    attempt_seed,
    attempt_tag_value,
    noting_staleness,
    says_attempts_left,
)
from cdao_connectors._custom import config_from_custom
from cdao_connectors._metrics import observe_get_task
from cdao_connectors._status_cache import (
    IDLE_AFTER_SECONDS,
    StatusCache,
    StatusCaches,
    Unreadable,
    is_transient_error,
    refresh_period,
)
from cdao_connectors.config import EMRConfig, attempt_table, aws_region, status_refresh_seconds
from cdao_connectors.emr.task import check_execution_timeout, check_tags

_BACKEND = "EMR Serverless"
T = TypeVar("T")
# Said of a CreateTask whose entrypoint upload ran out of its deadline: StartJobRun was never sent.
_NOTHING_STARTED = (
    "this task attempt fails (propeller does not re-send a failed CreateTask; its next attempt, if one is "
    "left, starts anew) and no job run was started"
)

# Set for the duration of one create(): asyncio gives every request its own context, so
# concurrent creates never see each other's token.
_CLIENT_TOKEN: ContextVar[str | None] = ContextVar("emr_serverless_client_token", default=None)
# Set for the duration of one create(), as the token: the attempt's flyte-attempt tag value, which its
# StartJobRun carries and records (name_the_job) just before it is sent.
_ATTEMPT_TAG: ContextVar[str | None] = ContextVar("emr_serverless_attempt_tag", default=None)


def with_attempt_tag(tags: dict[str, str] | None, value: str) -> dict[str, str]:
    """``tags`` (a StartJobRun ``tags`` map) with the attempt's :data:`ATTEMPT_TAG_KEY` tag ``value``
    (the key is the connector's: a task's own tag of it is replaced). There is room for it: a task's
    tags that leave none are refused at create (:func:`checked_config`)."""
    return {**(tags or {}), ATTEMPT_TAG_KEY: value}


def client_token(task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any) -> str:
    """Identical for every create of one task attempt, different across attempts (64 hex characters,
    StartJobRun's limit for clientToken)."""
    seed = attempt_seed(task_template, output_prefix, task_execution_metadata)
    return hashlib.sha256(seed.encode()).hexdigest()


# Set for the duration of one get(): reads a run's status from the connector's shared view.
_STATUS_READ: ContextVar[Callable[..., Any] | None] = ContextVar("emr_serverless_status_read", default=None)

# Errors of the current get()/delete() that the plugin would swallow; None outside those calls.
_SWALLOWED: ContextVar[list[Exception] | None] = ContextVar("emr_serverless_swallowed_errors", default=None)

# Why the status the current get() read is its run's last known one (StatusCache.get); None outside get().
_STALE: ContextVar[list[str] | None] = ContextVar("emr_serverless_stale_statuses", default=None)


# Set for one get()/delete(): the job run ids StartJobRun answered in it (a pending run's deferred
# submission), so the connector records the run its request started.
_STARTED: ContextVar[list[str] | None] = ContextVar("emr_serverless_started_runs", default=None)
# Set for one GetTask of a pending request: run before its deferred StartJobRun is sent, it records
# the submission in the attempt table unless a DeleteTask recorded the attempt's cancel first
# (IdempotentEMRServerlessConnector._claim_submission); raises _SubmissionCancelled then.
_SUBMITTING: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("emr_serverless_submitting", default=None)
# Set for one GetTask (time.monotonic() when it began): the calls submitting a pending request end
# within a status read's first-sight wait of its start (:func:`_bounded`).
_GET_TASK_SINCE: ContextVar[float | None] = ContextVar("emr_serverless_get_task_since", default=None)


async def _bounded(backend: Backend, fn: Callable[[], T], deadline: float, what: str) -> T:
    """``fn()`` on ``backend``'s threads within ``deadline`` (propeller's, for the call's RPC:
    ``Backend.call``); within a GetTask, within what is left of
    :data:`cdao_connectors._status_cache.FIRST_SIGHT_WAIT_SECONDS` since it began instead: no GetTask
    waits for its backend longer than a job's first status read does, the bound propeller's workers
    are sized by (platform/addons/flyte/flyte-core/values.yaml ``workers``). Raises
    BackendDeadlineExceeded naming that wait; the submission then waits for the next poll
    (:class:`_SubmissionWaits`)."""
    since = _GET_TASK_SINCE.get()
    if since is None:
        return await backend.call(fn, deadline=deadline, what=what)
    wait = _status_cache.FIRST_SIGHT_WAIT_SECONDS
    try:
        return await asyncio.wait_for(backend.run(fn), max(0.0, wait - (time.monotonic() - since)))
    except TimeoutError:
        raise BackendDeadlineExceeded(
            f"{_BACKEND} did not answer {what} within a GetTask's {wait:g} s wait for its backend; "
            "the pending job run's submission waits for the next poll"
        ) from None


class _RunGone(LookupError):
    """EMR Serverless does not know the job run a GetTask asks about."""


def _run_is_gone(error: Exception) -> bool:
    return isinstance(error, _RunGone) or (
        isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") == "ResourceNotFoundException"
    )


# GetJobRun takes one run; ListJobRuns answers an application's runs in the given states created
# after ``createdAtAfter``, up to 50 a page, each JobRunSummary with the ``state`` and
# ``stateDetails`` that the plugin's get() reads (botocore emr-serverless/2021-07-13 ListJobRuns,
# ListJobRunsRequest.states/.createdAtAfter/.maxResults, JobRunSummary; flytekitplugins-
# awsemrserverless connector.py ``get``). A refresh pass lists each application's runs still in a
# live JobRunState (1000 runs: 20 calls instead of 1000) and reads each other tracked run once by
# id: a run that ended never changes, so it is never asked again.
_LIST_PAGE = 50
_LIVE_RUN_STATES = ["SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "CANCELLING", "QUEUED"]
_ENDED_RUN_STATES = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
# createdAtAfter is a lower bound; a second of slack keeps the oldest tracked run in the answer.
_CREATION_SLACK = timedelta(seconds=1)


def job_runs(
    client: Any, keys: list[tuple[str, str]], *, listing: bool, known: Callable[[Any], Any] = lambda key: None
) -> dict[tuple[str, str], dict[str, Any] | Unreadable]:
    """The JobRunSummary (listing) or GetJobRun ``jobRun`` of each (application id, job run id)
    EMR Serverless knows; a run it does not know is left out. A run that could not be read (its
    GetJobRun failed, or its application's listing was throttled) is :class:`Unreadable`, so one
    application or run costs only its own runs, not every run of the pass (_status_cache).
    ``known(key)`` is the run's last description, whose ``createdAt`` narrows the listing."""
    by_application: dict[str, set[str]] = defaultdict(set)
    for application_id, run_id in keys:
        by_application[application_id].add(run_id)
    found: dict[tuple[str, str], dict[str, Any] | Unreadable] = {}
    for application_id, wanted in by_application.items():
        try:
            found.update(_application_runs(client, application_id, wanted, listing, known))
        except Exception as exc:
            found.update({(application_id, run_id): Unreadable(exc) for run_id in wanted})
    return found


def _application_runs(
    client: Any, application_id: str, wanted: set[str], listing: bool, known: Callable[[Any], Any]
) -> dict[tuple[str, str], dict[str, Any] | Unreadable]:
    found: dict[tuple[str, str], dict[str, Any] | Unreadable] = {}
    if listing:
        params: dict[str, Any] = {
            "applicationId": application_id,
            "states": _LIVE_RUN_STATES,
            "PaginationConfig": {"PageSize": _LIST_PAGE},
        }
        created = [
            d["createdAt"]
            for d in (known((application_id, run_id)) for run_id in wanted)
            if isinstance(d, dict) and d.get("createdAt")
        ]
        if created:
            params["createdAtAfter"] = min(created) - _CREATION_SLACK
        try:
            for page in client.get_paginator("list_job_runs").paginate(**params):
                for run in page["jobRuns"]:
                    if run["id"] in wanted:
                        found[(application_id, run["id"])] = run
        except ClientError as exc:
            # One application's listing refused (deleted outside Flyte: moto answers
            # ResourceNotFoundException, a code botocore's model does not declare for
            # ListJobRuns) must not stall every other application's runs: its runs are read
            # by GetJobRun below, which tells a gone run (ResourceNotFoundException, declared)
            # from a failed call (Unreadable). Throttling is raised (job_runs makes the
            # application's runs Unreadable): a GetJobRun per run would multiply the calls of a
            # throttled account.
            if is_transient(exc):
                raise
    for run_id in sorted(wanted):
        if (application_id, run_id) in found:
            continue
        try:
            found[(application_id, run_id)] = client.get_job_run(applicationId=application_id, jobRunId=run_id)[
                "jobRun"
            ]
        except ClientError as exc:
            if not _run_is_gone(exc):
                found[(application_id, run_id)] = Unreadable(exc)
    return found


# The states of a run the sweep cancels (JobRunState, botocore emr-serverless/2021-07-13): one that
# ended needs nothing, one cancelling is being stopped already.
_SWEPT_RUN_STATES = [s for s in _LIVE_RUN_STATES if s != "CANCELLING"]
# A run's createdAt is EMR Serverless's clock, the lookup's ``named_at`` the connector's: the window
# of the sweep's listing opens this much earlier, should the connector's clock run ahead.
_CLOCK_SKEW = timedelta(minutes=5)


def _name_the_run(params: dict[str, Any], region: str, tag: str) -> None:
    """Records the run a CreateTask's StartJobRun request ``params`` starts
    (:func:`cdao_connectors._attempts.name_the_job`, which also keeps when the attempt's run was
    first named): its application, ``region``, its name (the plugin's: the task's, every
    attempt's), and the attempt's tag ``tag``, which the request carries (:func:`with_attempt_tag`)."""
    name_the_job(
        {"application_id": params["applicationId"], "region": region, "name": params.get("name"), "attempt_tag": tag}
    )


def find_attempts_run(client: Any, lookup: dict[str, Any]) -> str | None:
    """The id of the run ``lookup`` (:func:`_name_the_run`) names, if EMR Serverless (``client``, a
    boto3 client of the lookup's region) has it going on and it is the attempt's: among the
    application's runs created since the attempt's run was first named (the lookup's ``named_at``,
    epoch seconds, kept by the attempt table: a repeated CreateTask's StartJobRun, with the
    attempt's client token, is answered the run the first one started; ListJobRuns
    ``createdAtAfter``, every page) in a state the sweep cancels, one of the lookup's name whose ``flyte-attempt`` tag
    (GetJobRun's ``jobRun.tags``: JobRunSummary has no tags, botocore emr-serverless/2021-07-13) is
    the lookup's. None when there is none (yet): a run's name is every attempt's of its task.

    Raises :class:`cdao_connectors._attempts.JobCannotBeFound` for a lookup naming no run (the
    create ended before sending StartJobRun: it started nothing) or without the attempt's tag (the
    attempt table is read as stored: one recorded by a connector that let a task's 200 tags leave
    the tag out), and what the calls raise."""
    application_id, since = lookup.get("application_id"), lookup.get("named_at")
    if not application_id or since is None:
        raise JobCannotBeFound(f"the create's StartJobRun was never named: {lookup}")
    expected = lookup.get("attempt_tag")
    if not expected:
        raise JobCannotBeFound(
            f"EMR Serverless application {application_id}: the create's StartJobRun could not carry the "
            f"{ATTEMPT_TAG_KEY} tag, so whether a run of its name is the attempt's cannot be told ({lookup})"
        )
    pages = client.get_paginator("list_job_runs").paginate(
        applicationId=application_id,
        states=_SWEPT_RUN_STATES,
        createdAtAfter=datetime.fromtimestamp(float(since), UTC) - _CLOCK_SKEW,
        PaginationConfig={"PageSize": _LIST_PAGE},
    )
    for run in (run for page in pages for run in page["jobRuns"] if run.get("name") == lookup.get("name")):
        try:
            described = client.get_job_run(applicationId=application_id, jobRunId=run["id"])["jobRun"]
        except ClientError as exc:
            if _run_is_gone(exc):
                continue
            raise
        if (described.get("tags") or {}).get(ATTEMPT_TAG_KEY) == expected:
            return str(run["id"])
    return None


def _noting_errors(call: Any) -> Any:
    async def noted(*args: Any, **kwargs: Any) -> Any:
        try:
            return await call(*args, **kwargs)
        except Exception as exc:
            swallowed = _SWALLOWED.get()
            if swallowed is not None and not _run_is_gone(exc) and not isinstance(exc, _ApplicationGone):
                swallowed.append(exc)
            raise

    return noted


class _BulkheadHandler(EMRServerlessHandler):
    """The plugin's handler with its two chokepoints (``_call``, ``_paginate``: every AWS call it
    makes) on the backend's threads and shared client."""

    def __init__(self, backend: Backend, region: str | None):
        super().__init__(region or aws_region())
        self._backend = backend

    @property
    def client(self) -> Any:
        return self._backend.aws("emr-serverless", self.region)

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        tag = _ATTEMPT_TAG.get() if method == "start_job_run" else None

        def call() -> dict[str, Any]:
            if tag is not None:  # a CreateTask's StartJobRun, its request built: recorded before it is sent
                _name_the_run(params, self.region, tag)
            # The client is looked up here, on the backend's threads: its first use makes it
            # (Backend.aws), milliseconds every connector would wait for on the event loop.
            return getattr(self.client, method)(**params)

        return await _bounded(self._backend, call, _deadlines.CREATE_TASK_SECONDS, method)

    async def _paginate(self, method: str, result_key: str, **params: Any) -> list[dict[str, Any]]:
        def collect() -> list[dict[str, Any]]:
            pages = self.client.get_paginator(method).paginate(**params)
            return [item for page in pages for item in page.get(result_key, [])]

        return await _bounded(self._backend, collect, _deadlines.CREATE_TASK_SECONDS, method)


class _TokenPinningHandler:
    """The plugin's boto handler, with StartJobRun's clientToken taken from the current create, and
    the errors of the calls whose failure the plugin hides noted for :func:`_raise_swallowed`."""

    def __init__(self, handler: Any):
        self._handler = handler
        self.get_job_run = _noting_errors(self._get_job_run)
        self.cancel_job_run = _noting_errors(handler.cancel_job_run)
        self.start_application_if_needed = _noting_errors(self._start_application_if_needed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)

    async def _start_application_if_needed(self, application_id: str) -> bool:
        """:meth:`_application_started`; in a pending request's GetTask, a transient error of it
        (throttling, a 5xx, its deadline: :func:`cdao_connectors._status_cache.is_transient_error`) is
        :class:`_SubmissionWaits`: nothing was submitted yet, the next poll reads the state again."""
        with _waiting_when_refused_for_now(f"GetApplication of application {application_id}"):
            return await self._application_started(application_id)

    async def _application_started(self, application_id: str) -> bool:
        """The plugin's, with an application that is gone told apart from a failed call.

        The plugin raises RuntimeError for a TERMINATED application (boto_handler.py
        ``start_application_if_needed``, ``_APP_TERMINAL``) and lets GetApplication's
        ResourceNotFoundException through for one that no longer exists, which its get() does not
        catch. Both mean a pending run will never start: :class:`_ApplicationGone` (a RuntimeError,
        which the plugin's get() turns into FAILED with its message, and its delete() into nothing
        to cancel) names the application. Every other error stays an error."""
        try:
            return await self._handler.start_application_if_needed(application_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            raise _ApplicationGone(
                f"EMR Serverless application {application_id} no longer exists (deleted outside Flyte?): "
                "the pending job run was never submitted"
            ) from exc
        except BackendDeadlineExceeded:
            raise
        except RuntimeError as exc:  # the plugin's only RuntimeError there: a TERMINATED application
            raise _ApplicationGone(
                f"EMR Serverless application {application_id} is terminated: the pending job run was never submitted"
            ) from exc

    async def _get_job_run(self, application_id: str, job_run_id: str) -> dict[str, Any]:
        read = _STATUS_READ.get()
        if read is None:  # cancel's reads go to EMR Serverless itself
            return await self._handler.get_job_run(application_id, job_run_id)
        return await read(self._handler.region, application_id, job_run_id)

    async def start_job_run(self, *args: Any, **kwargs: Any) -> Any:
        submitting = _SUBMITTING.get()
        if submitting is not None:
            await submitting()
        token = _CLIENT_TOKEN.get()
        if token is not None:
            kwargs["client_token"] = token
        tag = _ATTEMPT_TAG.get()
        if tag is not None:
            kwargs["tags"] = with_attempt_tag(kwargs.get("tags"), tag)
        with _waiting_when_refused_for_now("StartJobRun of the pending job run"):
            run_id = await _noting_errors(self._handler.start_job_run)(*args, **kwargs)
        started = _STARTED.get()
        if started is not None:
            started.append(run_id)
        return run_id


class _CallRefused(RuntimeError):
    """An error of a call the plugin would have swallowed."""


class _SubmissionCancelled(RuntimeError):
    """A DeleteTask cancelled the pending request before a GetTask submitted it."""


# The attempt table's marks of a pending request (by its client token): a GetTask's deferred
# StartJobRun and a DeleteTask that found nothing to cancel exclude each other (AttemptLedger.mark_unless).
_SUBMITTED, _CANCELLED = "submitted", "cancelled"


def _submission_item(resource_meta: Any) -> str:
    return attempt_item("emr-serverless-submission", resource_meta.pending_job_request["client_token"])


class _SubmissionWaits(Exception):
    """A pending request's GetTask could not submit it for now (a transient error before its
    StartJobRun): no run exists yet, the next poll tries again. Not a RuntimeError, which the plugin's
    get() turns into FAILED (connector.py ``get``)."""


@contextmanager
def _waiting_when_refused_for_now(what: str) -> Iterator[None]:
    """Within a pending request's GetTask (:data:`_SUBMITTING` set), a transient error of ``what``
    (throttling, a 5xx, its deadline: :func:`cdao_connectors._status_cache.is_transient_error`)
    becomes :class:`_SubmissionWaits`: the next poll tries again, and the request's client token
    answers its StartJobRun the run this one may have started (an idempotencyToken, botocore
    emr-serverless/2021-07-13). Any other error, or outside such a GetTask, passes through."""
    try:
        yield
    except Exception as exc:
        if _SUBMITTING.get() is None or not is_transient_error(exc):
            raise
        raise _SubmissionWaits(
            f"EMR Serverless {what} failed for now ({exc}); the job run's submission waits for the next poll"
        ) from exc


class _ApplicationGone(RuntimeError):
    """The application a pending run waits for is terminated or no longer exists: the run never starts."""


# JobRunState values (botocore emr-serverless/2021-07-13) after which there is nothing to cancel:
# ended, or already being cancelled.
_NOTHING_TO_CANCEL = _ENDED_RUN_STATES | {"CANCELLING"}


async def _raise_swallowed(call: Any, what: str, job_run_id: str) -> Any:
    swallowed: list[Exception] = []
    reset = _SWALLOWED.set(swallowed)
    try:
        result = await call
    finally:
        _SWALLOWED.reset(reset)
    if swallowed:
        error = swallowed[0]
        raise _CallRefused(f"EMR Serverless {what} of job run {job_run_id or '(pending)'} failed: {error}") from error
    return result


def _camel(field_name: str) -> str:
    """The key a job driver's field travels under: flytekitplugins-awsemrserverless ``task.py``
    ``EMRServerlessSparkJobDriver.to_dict`` / ``EMRServerlessHiveJobDriver.to_dict`` write the
    EMR Serverless API's camelCase names (``entryPoint``, ``initQueryFile``)."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), field_name)


def checked_config(task_template: TaskTemplate) -> EMRServerless:
    """The task's :class:`EMRServerless` config, every field checked against the plugin's own
    dataclass: the plugin's ``EMRServerless.from_dict`` ignores unknown keys (a typo or version
    skew is silently dropped) and fails on a wrong type with a bare error naming no field.
    ``sync_image = True`` is refused (ValueError), and tags StartJobRun would refuse or that leave
    no room for the plugin's and the attempt's (:func:`cdao_connectors.emr.task.check_tags`)."""
    config = config_from_custom(EMRServerless, task_template.custom, task_template.id.name, nested_key=_camel)
    if config.sync_image:
        # One application serves every task of the stack (infra/components/compute.py); a task may
        # not change its image (UpdateApplication is refused while it is STARTED, API_UpdateApplication,
        # and the connector's role is not granted it).
        raise ValueError(
            f"task {task_template.id.name}: EMRServerless.sync_image = True would change the shared "
            "application's image; the image is the application's (set it in infra/), send sync_image = False"
        )
    try:
        check_execution_timeout(config.execution_timeout_minutes)
    except ValueError as refused:
        raise ValueError(f"task {task_template.id.name}: EMRServerless: {refused}") from None
    try:
        check_tags(config.tags)
    except ValueError as refused:
        raise ValueError(f"task {task_template.id.name}: EMRServerless.{refused}") from None
    return config


class IdempotentEMRServerlessConnector(EMRServerlessConnector):
    def __init__(self) -> None:
        super().__init__()
        self.backend = Backend(_BACKEND)
        self._uploaded: set[str] = set()
        self._uploaded_lock = threading.Lock()
        self.status_cache = StatusCaches(self._new_cache)
        # The run each pending request started on this replica, by (region, application id,
        # clientToken): the plugin's get() and delete() would send GetApplication and StartJobRun
        # again on every call for a resource_meta that keeps pending_job_request (propeller keeps
        # CreateTask's answer for the attempt's life). An entry goes once its run is seen ended or
        # cancelled here, or when nobody asked this replica about it for the status cache's
        # IDLE_AFTER_SECONDS: under gRPC's round robin the run's last GetTask or DeleteTask may go to
        # another replica, and entries kept until then grew without bound (issue #16 review's kind).
        # Each entry: the run's id and when it was last asked about.
        self._started_runs: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._clock: Callable[[], float] = time.monotonic

    @staticmethod
    def _pending_key(resource_meta: Any) -> tuple[str, str, str] | None:
        pending = resource_meta.pending_job_request
        if resource_meta.job_run_id or not pending or not pending.get("client_token"):
            return None
        return (resource_meta.region or aws_region(), resource_meta.application_id, pending["client_token"])

    def _with_started_run(self, resource_meta: Any) -> Any:
        """``resource_meta`` naming the run its pending request already started here, if any."""
        key = self._pending_key(resource_meta)
        now = self._clock()
        # The dict is in last-asked order (an entry asked about is put back last), so the idle ones lead.
        while self._started_runs:
            oldest = next(iter(self._started_runs))
            if now - self._started_runs[oldest][1] <= IDLE_AFTER_SECONDS:
                break
            del self._started_runs[oldest]
        started = self._started_runs.pop(key, None) if key is not None else None
        if started is None:
            return resource_meta
        self._started_runs[key] = (started[0], now)
        return dataclasses.replace(resource_meta, job_run_id=started[0])

    @contextmanager
    def _recording_started_run(self, resource_meta: Any) -> Iterator[None]:
        """Records the run a pending request's deferred StartJobRun started within the block, even
        when the block then fails (a throttled first read of the run)."""
        started: list[str] = []
        reset = _STARTED.set(started)
        try:
            yield
        finally:
            _STARTED.reset(reset)
            key = self._pending_key(resource_meta)
            if started and key is not None:
                self._started_runs.pop(key, None)
                self._started_runs[key] = (started[0], self._clock())

    def _new_cache(self, region: str, max_age: float) -> StatusCache:
        cache: StatusCache

        def describe(keys: list[tuple[str, str]], listing: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
            # The backend's shared client for the endpoint the environment names now (Backend.aws).
            return job_runs(self.backend.aws("emr-serverless", region), keys, listing=listing, known=cache.peek)

        cache = StatusCache(
            describe,
            describe_all=lambda keys: describe(keys, listing=True),
            max_age=max_age,
            batch=1,  # GetJobRun takes one run: a new run is read by its own GetTask
            parallel=WORKERS_PER_BACKEND,  # as many first reads at once as the backend has RPC threads
            # More new runs queued for reading at once than this (after a restart, a burst of runs
            # started on another replica) are listed: ceil(live runs / 50) calls instead of one
            # GetJobRun each, fewer unless more than 500 runs are live on the application.
            list_over=10,
            period=refresh_period(max_age),
            name="emr-serverless-runs",
            backend=_BACKEND,
            final=lambda run: run.get("state") in _ENDED_RUN_STATES,
        )
        return cache

    async def _read_status(self, region: str | None, application_id: str, job_run_id: str) -> dict[str, Any]:
        """The run's status from the shared view (at most ``CDAO_STATUS_REFRESH_SECONDS`` old)."""
        cache = self.status_cache(region or aws_region(), status_refresh_seconds())
        # Awaited on the event loop: the bounded wait holds none of the backend's threads.
        known = await cache.aget((application_id, job_run_id))
        if known.value is None:
            raise _RunGone(job_run_id)
        stale = _STALE.get()
        if known.stale and stale is not None:
            stale.append(known.stale)
        return known.value

    def _get_handler(self, region: str | None = None) -> Any:
        return _TokenPinningHandler(_BulkheadHandler(self.backend, region))

    @staticmethod
    def _resolve_entrypoint_bucket(config: EMRServerless) -> str:
        """The bucket of EMR on EC2's entrypoint, ``CDAO_EMR_ENTRYPOINT_BUCKET`` (the stack's
        userdata bucket, which the connector's role may write: infra/components/identity.py
        ``TaskData``). The plugin's own order (``FLYTE_EMR_ENTRYPOINT_S3_BUCKET``, the task's log
        URI, ``FLYTE_AWS_S3_BUCKET``) names variables the Deployment does not set and a bucket the
        task picks, which the connector may not be allowed to write; one setting owns it here.
        Raises ConnectorConfigError naming the variable when it is not set."""
        return EMRConfig.from_env().require_entrypoint_bucket()

    def _ensure_entrypoint_on_s3(self, handler: Any, config: EMRServerless) -> str:
        # Same content-addressed key and bucket as the plugin's; uploaded once per connector,
        # with the backend's shared S3 client (create() calls this first on the backend's threads,
        # so the plugin's own call from the event loop finds it done).
        content = self._read_entrypoint_bytes()
        key = f"flyte/emr-serverless/entrypoint-{hashlib.sha256(content).hexdigest()[:12]}.py"
        bucket = self._resolve_entrypoint_bucket(config)
        uri = f"s3://{bucket}/{key}"
        with self._uploaded_lock:
            if uri in self._uploaded:
                return uri
        s3 = self.backend.aws("s3", handler.region)
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            s3.put_object(Bucket=bucket, Key=key, Body=content, ContentType="text/x-python")
        with self._uploaded_lock:
            self._uploaded.add(uri)
        return uri

    @says_attempts_left
    async def create(
        self,
        task_template: TaskTemplate,
        inputs: Any = None,
        task_execution_metadata: Any = None,
        **kwargs: Any,
    ) -> Any:
        since = time.monotonic()  # the upload and the start share propeller's one CreateTask deadline
        refuse_create_while_shutting_down(_BACKEND)
        config = checked_config(task_template)
        metadata = (
            task_execution_metadata if task_execution_metadata is not None else kwargs.get("task_execution_metadata")
        )
        seed = attempt_seed(task_template, kwargs.get("output_prefix") or "", metadata)
        # The client token answers a repeated CreateTask the attempt's run even while a give-up is
        # cancelling it; the attempt table orders the two (cdao_connectors._attempts).
        answers = AttemptAnswers(self.backend, attempt_item("emr-serverless", seed), self.task_category, seed=seed)
        if not (config.spark_job_driver or config.hive_job_driver):  # Pythonic mode: the uploaded entrypoint
            await within_deadline(
                self.backend.run(self._ensure_entrypoint_on_s3, self._get_handler(config.region), config),
                deadline=_deadlines.CREATE_TASK_SECONDS,
                what="CreateTask (its entrypoint upload)",
                backend=_BACKEND,
                consequence=_NOTHING_STARTED,
                since=since,
            )
            if time.monotonic() - since >= _deadlines.CREATE_TASK_SECONDS - _deadlines.MARGIN_SECONDS:
                raise BackendDeadlineExceeded(
                    f"{_BACKEND}: the entrypoint upload took the CreateTask's whole budget; {_NOTHING_STARTED}"
                )
        token = client_token(task_template, kwargs.get("output_prefix") or "", metadata)
        tag = attempt_tag_value(seed)
        reset = _CLIENT_TOKEN.set(token)
        reset_tag = _ATTEMPT_TAG.set(tag)
        try:
            # A run StartJobRun still starts after this answered an error is cancelled.
            resource_meta = await create_within_deadline(
                self._start_unless_cancelled(task_template, inputs, task_execution_metadata, **kwargs),
                self.delete,
                backend=_BACKEND,
                answers=answers,
                since=since,
            )
        finally:
            _ATTEMPT_TAG.reset(reset_tag)
            _CLIENT_TOKEN.reset(reset)
        # While the application is still starting, the plugin defers the submission to get() with
        # the request it stored; that request must carry the same token, and the attempt's tag as
        # every run of an attempt does. Nothing of it is named for the sweep: this CreateTask
        # answered, so propeller follows the attempt, and the GetTask or DeleteTask that submits the
        # request then follows or cancels its run; such a call that loses StartJobRun's answer is
        # repeated by propeller with the same token, which answers the run it started.
        pending = getattr(resource_meta, "pending_job_request", None)
        if pending:
            tags = with_attempt_tag(pending.get("tags"), tag)
            resource_meta = dataclasses.replace(
                resource_meta, pending_job_request={**pending, "client_token": token, "tags": tags}
            )
        return resource_meta

    def swept_job(self, lookup: dict[str, Any], recorded: dict[str, Any] | None) -> EMRServerlessJobMetadata | None:
        """The attempt's run, as :meth:`delete` takes it, when EMR Serverless has it going on
        (:func:`find_attempts_run`): the sweeper (:mod:`cdao_connectors._sweeper`) cancels one whose
        CreateTask never answered it. None when there is none of the attempt's (yet). Raises
        JobCannotBeFound for a lookup that cannot tell the attempt's run. ``recorded`` is unused:
        nothing is recorded before StartJobRun answers."""
        region = lookup.get("region") or aws_region()
        run_id = find_attempts_run(self.backend.aws("emr-serverless", region), lookup)
        if run_id is None:
            return None
        return EMRServerlessJobMetadata(application_id=lookup["application_id"], job_run_id=run_id, region=region)

    async def _start_unless_cancelled(self, *args: Any, **kwargs: Any) -> Any:
        """The plugin's create; an error when the attempt's client token names a run already cancelled.

        StartJobRun with a token it has seen answers that run (``clientToken`` is an
        ``idempotencyToken``, botocore emr-serverless/2021-07-13). A cancelled one means this
        CreateTask repeats one that gave up (propeller lost its state; the run was cancelled by
        :func:`cdao_connectors._backends.create_within_deadline`): adopting it would answer FAILED,
        which fails the whole task (connector/plugin.go ``Status`` at flyteplugins/v1.16.8), while an
        error fails only this attempt."""
        resource_meta = await super().create(*args, **kwargs)
        if resource_meta.job_run_id:
            handler = self._get_handler(resource_meta.region)
            with checking_created_job(_BACKEND, f"job run {resource_meta.job_run_id}"):
                run = await handler.get_job_run(
                    application_id=resource_meta.application_id, job_run_id=resource_meta.job_run_id
                )
                if run.get("state") in ("CANCELLED", "CANCELLING"):
                    raise AttemptAbandoned(
                        f"this attempt's EMR Serverless job run {resource_meta.job_run_id} on application "
                        f"{resource_meta.application_id} was cancelled (its first CreateTask gave up); "
                        "the task's next attempt, if one is left, starts a new run"
                    )
        return resource_meta

    def _ledger(self) -> AttemptLedger:
        return AttemptLedger(self.backend.aws("dynamodb", aws_region()), attempt_table())

    async def _mark(self, resource_meta: Any, mark: str, unless: str, deadline: float) -> bool:
        item = _submission_item(resource_meta)
        return await _bounded(
            self.backend, lambda: self._ledger().mark_unless(item, mark, unless), deadline, "attempt ledger update"
        )

    async def _claim_submission(self, resource_meta: Any) -> None:
        """Before a GetTask's deferred StartJobRun of ``resource_meta``'s pending request: records the
        submission, or raises :class:`_SubmissionCancelled` when a DeleteTask found nothing to cancel
        first (the application was still starting): the run would be nobody's; raises
        :class:`_SubmissionWaits` when the attempt table refused the write for now
        (:func:`cdao_connectors._status_cache.is_transient_error`): no run was submitted."""
        with _waiting_when_refused_for_now(
            f"attempt table's record of application {resource_meta.application_id}'s run"
        ):
            marked = await self._mark(resource_meta, _SUBMITTED, _CANCELLED, _deadlines.GET_TASK_SECONDS)
        if not marked:
            raise _SubmissionCancelled(
                f"EMR Serverless job run of application {resource_meta.application_id} was cancelled "
                "before it was submitted (its task was aborted while the application started)"
            )

    @serving
    @observe_get_task
    async def get(self, resource_meta: Any, **kwargs: Any) -> Any:
        reset_since = _GET_TASK_SINCE.set(time.monotonic())
        asked = resource_meta
        resource_meta = self._with_started_run(asked)
        pending = self._pending_key(resource_meta) is not None
        reset_submitting = _SUBMITTING.set(
            functools.partial(self._claim_submission, resource_meta) if pending else None
        )
        try:
            return await self._get(asked, resource_meta, **kwargs)
        except _SubmissionCancelled as cancelled:
            return Resource(phase=TaskExecution.ABORTED, message=str(cancelled))
        except _SubmissionWaits as waiting:
            return Resource(phase=TaskExecution.RUNNING, message=str(waiting))
        finally:
            _SUBMITTING.reset(reset_submitting)
            _GET_TASK_SINCE.reset(reset_since)

    async def _get(self, asked: Any, resource_meta: Any, **kwargs: Any) -> Any:
        reset = _STATUS_READ.set(self._read_status)
        stale: list[str] = []
        reset_stale = _STALE.set(stale)
        try:
            # The GetTask's calls run on the backend's GetTask threads, never behind creates.
            with self._recording_started_run(resource_meta), on_get_task_threads():
                resource = await within_deadline(
                    _raise_swallowed(super().get(resource_meta, **kwargs), "status", resource_meta.job_run_id),
                    deadline=_deadlines.GET_TASK_SECONDS,
                    what="GetTask",
                    backend=_BACKEND,
                )
        finally:
            _STALE.reset(reset_stale)
            _STATUS_READ.reset(reset)
        if is_terminal_phase(resource.phase) and (key := self._pending_key(asked)) is not None:
            self._started_runs.pop(key, None)
        noting_staleness(resource, "; ".join(stale))
        if resource.phase == TaskExecution.FAILED and resource.message.startswith("Job not found"):
            # Only ResourceNotFoundException gets here: the run was deleted outside Flyte.
            resource.message = (
                f"EMR Serverless has no job run {resource_meta.job_run_id} on application "
                f"{resource_meta.application_id} (deleted outside Flyte?)"
            )
        return resource

    @serving
    @aborting
    async def delete(self, resource_meta: Any, **kwargs: Any) -> None:
        started = self._with_started_run(resource_meta)
        with self._recording_started_run(started):
            await within_deadline(
                self._cancel_or_forbid(started, **kwargs),
                deadline=_deadlines.DELETE_TASK_SECONDS,
                what="DeleteTask",
                backend=_BACKEND,
            )
        if (key := self._pending_key(resource_meta)) is not None:
            self._started_runs.pop(key, None)

    async def _cancel_or_forbid(self, resource_meta: Any, **kwargs: Any) -> None:
        """The cancel of a known run. For a pending request whose run is not known here, first
        records the cancel so that no GetTask submits it later (:meth:`_claim_submission`): then no
        run exists nor will, and nothing is sent (the plugin's delete() would submit the request to
        learn its run: connector.py ``delete``, a run started only to be cancelled, and left running
        if the cancel is refused). Only when a GetTask recorded the submission first does the
        plugin's delete() send the request, whose client token answers that GetTask's run, and
        cancel it; an error then is propeller's to retry, and so is a delete() that reached no run
        (it read the application as still starting: :class:`_CallRefused`)."""
        if self._pending_key(resource_meta) is None:
            await self._cancel(resource_meta, **kwargs)
            return
        if await self._mark(resource_meta, _CANCELLED, _SUBMITTED, _deadlines.DELETE_TASK_SECONDS):
            return
        await self._cancel(resource_meta, **kwargs)
        if not _STARTED.get():
            raise _CallRefused(
                f"EMR Serverless job run of application {resource_meta.application_id}: a GetTask submitted the "
                "pending request, and this DeleteTask, reading the application as still starting, reached no "
                "run; cancelled when retried"
            )

    async def _cancel(self, resource_meta: Any, **kwargs: Any) -> None:
        """The plugin's cancel; a refused CancelJobRun is an error only while the run still goes on.

        The plugin reads the run's state first and skips a run that has ended, but a run can end
        between that read and CancelJobRun (an abort racing completion), which EMR Serverless then
        refuses; re-reading the state tells that case from a refusal of a running job."""
        try:
            await _raise_swallowed(super().delete(resource_meta, **kwargs), "cancel", resource_meta.job_run_id)
        except _CallRefused:
            if not resource_meta.job_run_id:
                raise
            handler = self._get_handler(resource_meta.region)
            run = await handler.get_job_run(
                application_id=resource_meta.application_id, job_run_id=resource_meta.job_run_id
            )
            if run.get("state") not in _NOTHING_TO_CANCEL:
                raise


ConnectorRegistry.register(IdempotentEMRServerlessConnector(), override=True)

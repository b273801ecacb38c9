"""flytekitplugins-awssagemaker's AWS calls, on a backend's own threads and shared boto3 clients.

Every connector of flytekitplugins-awssagemaker calls AWS through ``Boto3ConnectorMixin._call``
(flytekitplugins/awssagemaker_inference/boto3_mixin.py, 1.16.31), which opens
``aioboto3.Session().client(...)`` for each call: a new aiobotocore client (its service model and
endpoint rules loaded on the event loop, milliseconds every connector of the service waits for), a
new aiohttp session and connection, host names resolved on asyncio's default thread pool that other
work shares, and a retry rate limiter that lives for one call, so adaptive retry mode never slows a
throttled connector down.

``_call`` finds ``aioboto3`` as a global of its module. :func:`install` puts :data:`SESSIONS` under
that name: its clients run each method of a shared boto3 client (configured like every other
connector's, :data:`cdao_connectors._backends.AWS_CLIENT_CONFIG`) on a :class:`Backend`'s threads,
bounded by propeller's deadline. The plugin's request building (input placeholders, images,
idempotence tokens) is left as it is. Hand-written: the plugin offers no way to pass a client in.

A connector deriving from :class:`BulkheadPluginConnector` gets a backend of its own, has its whole
custom config checked before any call, reports a job deleted outside Flyte as FAILED, and has every
RPC bounded by propeller's deadline for it (the service re-registers every async connector of the
plugin so, :func:`cdao_connectors.sagemaker.connector.bulkhead_plugin_connectors`); the plugin's
synchronous ``boto`` connector shares one backend per AWS service, bounded per AWS call. Within a
GetTask of such a connector, every SageMaker Describe is answered from the connector's status
caches (:mod:`cdao_connectors.sagemaker._job_statuses`): training, processing and transform jobs
from a shared listing, endpoints, tuning and inference recommender jobs one Describe each; either
way a known status survives throttling (:mod:`cdao_connectors._status_cache`). An ended Pythonic
job's get() also reads the task's error.pb and outputs.pb, synchronously; that part runs as
BulkheadConnector's ended jobs' does (:func:`cdao_connectors._backends.outcome_within_bound`), on
the backend's GetTask threads, never on the service's event loop.

Within a CreateTask of such a connector, the create request carries a ``flyte-attempt`` tag derived
from the attempt (a request whose ``Tags`` cannot carry it is refused before it is sent), so the
plugin's ``{idempotence_token}`` (a hash of the rendered request) and the names built with it are
the attempt's own; a job or endpoint the plugin still adopts from SageMaker's "already exists" is
described once and refused when stopped, deleting or failed; and a create
SageMaker refuses for a quota (``ResourceLimitExceeded``, which the plugin's endpoint connector
answers as created) is a :class:`QuotaExceeded` naming the request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from typing import Any, NamedTuple

from botocore.exceptions import ClientError
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import Resource
from flytekitplugins.awssagemaker_inference import boto3_mixin
from flytekitplugins.awssagemaker_inference.boto3_mixin import CustomException
from flytekitplugins.awssagemaker_inference.pythonic_base import PythonicJobMetadata

from cdao_connectors import _deadlines
from cdao_connectors._attempts import (
    AttemptAbandoned,
    AttemptAnswers,
    JobCannotBeFound,
    attempt_item,
    name_the_job,
)
from cdao_connectors._aws_limits import shape_max
from cdao_connectors._backends import (
    Backend,
    aborting,
    create_within_deadline,
    on_get_task_threads,
    outcome_within_bound,
    refuse_create_while_shutting_down,
    serving,
    within_deadline,
)
from cdao_connectors._common import (
    ATTEMPT_TAG_KEY,
    NODE_TAG_KEY,
    attempt_seed,
    attempt_tag_value,
    node_seed,
    noting_staleness,
    says_attempts_left,
)
from cdao_connectors._custom import config_from_custom
from cdao_connectors._metrics import observe_get_task
from cdao_connectors._status_cache import Known, StatusCache, StatusCaches
from cdao_connectors.config import aws_region, status_refresh_seconds
from cdao_connectors.sagemaker._job_statuses import (
    LISTED_KINDS,
    STOPPED_BY,
    JobKind,
    describe_status_cache,
    job_is_gone,
    job_status_cache,
    stop_found_nothing_to_stop,
)

_log = logging.getLogger(__name__)

# The backend of the connector whose RPC is running; None for the plugin's connectors used as
# they are, which share one backend per service.
_CURRENT: ContextVar[Backend | None] = ContextVar("sagemaker_plugin_backend", default=None)
# Set for the duration of a GetTask of a BulkheadPluginConnector: the status caches its job
# Describe calls are answered from (:mod:`cdao_connectors.sagemaker._job_statuses`).
_STATUS_CACHES: ContextVar[StatusCaches | None] = ContextVar("sagemaker_status_caches", default=None)
# Set for one GetTask: why the status it read is its job's last known one (StatusCache.get), for
# the GetTask's message. A list, so what a call made in a task of its own reaches the GetTask.
_STALE: ContextVar[list[str] | None] = ContextVar("sagemaker_stale_statuses", default=None)
# Set while a GetTask of a BulkheadPluginConnector runs the plugin's get() on the service's event
# loop: the status entry each of its Describes was answered (cache, key, value). A storage read
# reached there stops the get() (:class:`_OutcomeUnread`) before it blocks the loop.
_DESCRIBED: ContextVar[list[tuple[StatusCache, Hashable, Any]] | None] = ContextVar(
    "sagemaker_described_statuses", default=None
)
# Set for the duration of a CreateTask of a BulkheadPluginConnector: the tag that makes its request,
# and so the plugin's ``{idempotence_token}``, the attempt's own; its node execution's tag; and
# whether SageMaker answered its create "already exists" (the plugin then answers the existing job).
_ATTEMPT_TAG: ContextVar[dict[str, str] | None] = ContextVar("sagemaker_attempt_tag", default=None)
_NODE_TAG: ContextVar[dict[str, str] | None] = ContextVar("sagemaker_node_tag", default=None)
_ADOPTED: ContextVar[list[bool] | None] = ContextVar("sagemaker_create_adopted", default=None)
# Set for the duration of a CreateTask of a BulkheadPluginConnector: its attempt's answers, whose
# ``adopted`` says the create answered a job or endpoint not known to be this attempt's
# (BulkheadPluginConnector._adopt): its give-up records no sweep target for it.
_ANSWERS: ContextVar[AttemptAnswers | None] = ContextVar("sagemaker_create_answers", default=None)
_SHARED: dict[str, Backend] = {}
_SHARED_LOCK = threading.Lock()


def _backend_for(service: str) -> Backend:
    backend = _CURRENT.get()
    if backend is not None:
        return backend
    with _SHARED_LOCK:
        if service not in _SHARED:
            _SHARED[service] = Backend(f"AWS {service} (plugin connectors)")
        return _SHARED[service]


class _Client:
    """Stands in for an aiobotocore client inside ``async with``: each method is the shared boto3
    client's, run on the backend's threads; closing it keeps the shared client open."""

    def __init__(self, backend: Backend, service: str, region: str) -> None:
        self._backend = backend
        self._service = service
        self._region = region

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, method: str) -> Any:
        backend, service, region = self._backend, self._service, self._region
        # Within a GetTask every SageMaker Describe is a status read: the plugins' get() is one
        # (endpoint, tuning, recommender) or a Describe answered from a listing (training,
        # processing, transform jobs).
        caches = _STATUS_CACHES.get() if service == "sagemaker" and method.startswith("describe_") else None
        kind = LISTED_KINDS.get(method)
        stale = _STALE.get()
        answered = _DESCRIBED.get()
        tag, node = _ATTEMPT_TAG.get(), _NODE_TAG.get()
        naming = tag is not None and service == "sagemaker" and method.startswith("create_")

        def blocking(**params: Any) -> Any:
            if naming:  # a CreateTask's create, its request rendered: checked and recorded before it is sent
                _refuse_unless_tagged(backend.name, method, params, [t for t in (tag, node) if t is not None])
                _name_the_job(params, region, tag)
            return getattr(backend.aws(service, region), method)(**params)

        async def call(**params: Any) -> Any:
            if caches is not None:
                # A GetTask's Describe, answered from the shared view of the jobs' statuses; its
                # bounded wait is awaited here, on the event loop, holding none of the backend's threads.
                if kind is not None:
                    cache, key = caches((kind, region), status_refresh_seconds()), params[kind.name_field]
                else:
                    cache, key = caches((method, region), status_refresh_seconds()), tuple(sorted(params.items()))
                known = await cache.aget(key)
                if answered is not None:
                    answered.append((cache, key, known.value))
                return _described(known, key, stale)
            # Bounded by the widest of propeller's deadlines; an RPC of a BulkheadPluginConnector
            # is bounded tighter around the whole.
            return await backend.call(
                blocking, deadline=_deadlines.CREATE_TASK_SECONDS, what=f"{service} {method}", **params
            )

        return call


def attempt_tag(seed: str) -> dict[str, str]:
    """The ``flyte-attempt`` tag of the task attempt whose :func:`cdao_connectors._common.attempt_seed`
    is ``seed``, on every SageMaker job or endpoint a CreateTask makes: it tells the attempt's job
    from another of the same name (:func:`find_attempts_job`)."""
    return {"Key": ATTEMPT_TAG_KEY, "Value": attempt_tag_value(seed)}


# The tag keys only the connector sets on what a CreateTask makes (a job, an endpoint, a model, an
# endpoint config): a task's own tag of one of them could make its job look like another attempt's.
_RESERVED_TAG_KEYS = frozenset({ATTEMPT_TAG_KEY, NODE_TAG_KEY})


def _with_reserved_tags(connector: str, method: str, config: dict[str, Any], reserved: list[dict[str, str]]) -> None:
    """Sets the create request ``config``'s ``Tags`` (before the plugin renders it) to the task's own
    tags but those of a reserved key, then ``reserved`` (the attempt's and the node's tags): a key
    is unique per resource (SageMaker API reference, Tag: "Tag keys must be unique per resource",
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_Tag.html), so the connector's value
    replaces the task's, as EMR Serverless's ``flyte-attempt`` does. In place: the plugin keeps the
    config as the job's metadata (boto3_mixin.py ``_call``), which DeleteTask's check reads.

    Raises ValueError naming the connector, the create ``method`` and ``Tags`` when the request
    cannot carry them: a placeholder for the whole list (its rendered length and keys are unknown
    until sent), or more than 50 tags with them (botocore ``sagemaker/2017-07-24`` ``TagList`` max
    50). Refused rather than sent untagged: the sweep could not tell such a job from another's (only
    count it left running, paging an operator), nor an abort whether it is the attempt's."""
    given = config.get("Tags")
    if given is None:
        given = []
    if not isinstance(given, list):
        raise ValueError(
            f"{connector}: {method}'s Tags is {given!r}, not a list: the connector adds its "
            f"{ATTEMPT_TAG_KEY} and {NODE_TAG_KEY} tags to the list, so list the tags in the task's "
            "config (a placeholder may stand for a tag's Value, not for the whole Tags)"
        )
    own = [t for t in given if not (isinstance(t, dict) and t.get("Key") in _RESERVED_TAG_KEYS)]
    most = shape_max("sagemaker", "TagList")  # 50 in botocore sagemaker/2017-07-24
    if len(own) + len(reserved) > most:
        raise ValueError(
            f"{connector}: {method}'s Tags hold {len(own)} tags, leaving no room for the connector's "
            f"{ATTEMPT_TAG_KEY} and {NODE_TAG_KEY} tags (SageMaker takes at most {most}): give at "
            f"most {most - len(reserved)}"
        )
    config["Tags"] = own + [dict(t) for t in reserved]


def _refuse_unless_tagged(connector: str, method: str, params: dict[str, Any], reserved: list[dict[str, str]]) -> None:
    """Raises ValueError naming ``connector``, the create ``method`` and ``Tags``, before the rendered
    create request ``params`` is sent, unless its ``Tags`` hold each of ``reserved`` and no other tag
    of a reserved key: a placeholder in a tag's Key (rendered by the plugin after
    :func:`_with_reserved_tags`) may name one."""
    tags = params.get("Tags")
    tags = tags if isinstance(tags, list) else []
    of_reserved = [t for t in tags if isinstance(t, dict) and t.get("Key") in _RESERVED_TAG_KEYS]
    if sorted(of_reserved, key=str) != sorted(reserved, key=str):
        raise ValueError(
            f"{connector}: {method}'s Tags, rendered from the task's inputs, hold "
            f"{of_reserved} where the connector's {ATTEMPT_TAG_KEY} and {NODE_TAG_KEY} tags "
            f"{reserved} must be alone: these keys are the connector's, not a task's"
        )


def _name_the_job(params: dict[str, Any], region: str, tag: dict[str, str]) -> None:
    """Records the job a create request ``params`` makes (:func:`cdao_connectors._attempts.name_the_job`):
    its name field and name, ``region``, and the attempt's tag, which the request carries
    (:func:`_refuse_unless_tagged`)."""
    named = _request_name(params)
    if named is None:
        return
    name_the_job({"name_field": named[0], "name": named[1], "region": region, "attempt_tag": tag["Value"]})


def find_attempts_job(client: Any, lookup: dict[str, Any]) -> bool:
    """Whether SageMaker (``client``, a boto3 client of the lookup's region) has the job or endpoint
    ``lookup`` names (:func:`_name_the_job`) and it is the attempt's: its ``flyte-attempt`` tag
    (ListTags of the Describe answer's ARN) is the lookup's. False when SageMaker has none of that
    name (:func:`job_is_gone`), or one of another attempt: a fixed name (without
    ``{idempotence_token}``) is every attempt's, and an endpoint of it may serve production.

    Raises :class:`cdao_connectors._attempts.JobCannotBeFound` for a lookup naming no job (the
    create ended before sending its request: made nothing) or without the attempt's tag (recorded by
    an earlier version of the connector, which sent a request that could not carry it; every request
    carries it now: :func:`_with_reserved_tags`), and what the calls raise."""
    field, name = lookup.get("name_field"), lookup.get("name")
    if field not in _ADOPTABLE or not name:
        raise JobCannotBeFound(f"the create's request was never named: {lookup}")
    expected = lookup.get("attempt_tag")
    if not expected:
        raise JobCannotBeFound(
            f"SageMaker {field}={name}: the create's request carried no flyte-attempt tag, so "
            f"whether a job of that name is the attempt's cannot be told ({lookup})"
        )
    kind = _ADOPTABLE[field]
    try:
        described = getattr(client, kind.describe)(**{field: name})
    except ClientError as exc:
        if job_is_gone(exc):
            return False
        raise
    # A resource holds at most 50 tags and a page at least 50 (botocore ``sagemaker/2017-07-24``
    # TagList max 50, ListTagsMaxResults min 50); NextToken is followed all the same.
    pages = client.get_paginator("list_tags").paginate(ResourceArn=described[kind.arn_key])
    return any(t == {"Key": ATTEMPT_TAG_KEY, "Value": expected} for page in pages for t in page.get("Tags", []))


class JobGone(LookupError):
    """SageMaker does not know the job a GetTask asks about (deleted outside Flyte)."""


class _OutcomeUnread(Exception):
    """The plugin's get(), run on the service's event loop, reached a blocking storage read."""


def _described(known: Known, key: Any, stale: list[str] | None) -> dict[str, Any]:
    if known.value is None:
        raise JobGone(key)
    if known.stale and stale is not None:
        stale.append(known.stale)
    return known.value


class _Session:
    def client(self, service_name: str, region_name: str | None = None) -> _Client:
        return _Client(_backend_for(service_name), service_name, region_name or aws_region())


class _Sessions:
    """What ``boto3_mixin`` reads as ``aioboto3``: only ``Session`` is used there."""

    Session = _Session


SESSIONS = _Sessions


def install() -> None:
    """Routes every flytekitplugins-awssagemaker connector's AWS calls through :data:`SESSIONS`."""
    boto3_mixin.aioboto3 = SESSIONS


class _Named(NamedTuple):
    """A job or endpoint kind a plugin create makes, by its create request's name field."""

    describe: str  # its Describe method
    status_key: str  # the Describe answer's status field
    abandoned: frozenset[str]  # its statuses once a give-up stopped or deleted it, or once it failed
    arn_key: str  # the Describe answer's ARN field (ListTags takes the ARN)


# The Describe of each job or endpoint a plugin create may answer (by the create request's name
# field), its status field, and the statuses of one a give-up stopped or deleted, or that failed:
# answered to a CreateTask, its GetTask would answer FAILED, failing the whole task (connector/
# plugin.go ``Status`` at flyteplugins/v1.16.8). Status values: botocore ``sagemaker/2017-07-24``
# service model (TrainingJobStatus, ProcessingJobStatus, HyperParameterTuningJobStatus,
# TransformJobStatus, RecommendationJobStatus, EndpointStatus; the ARN fields of the Describe* outputs).
_ADOPTABLE: dict[str, _Named] = {
    "TrainingJobName": _Named(
        "describe_training_job",
        "TrainingJobStatus",
        frozenset({"Stopping", "Stopped", "Failed", "Deleting"}),
        "TrainingJobArn",
    ),
    "ProcessingJobName": _Named(
        "describe_processing_job",
        "ProcessingJobStatus",
        frozenset({"Stopping", "Stopped", "Failed"}),
        "ProcessingJobArn",
    ),
    "HyperParameterTuningJobName": _Named(
        "describe_hyper_parameter_tuning_job",
        "HyperParameterTuningJobStatus",
        frozenset({"Stopping", "Stopped", "Failed", "Deleting", "DeleteFailed"}),
        "HyperParameterTuningJobArn",
    ),
    "TransformJobName": _Named(
        "describe_transform_job",
        "TransformJobStatus",
        frozenset({"Stopping", "Stopped", "Failed"}),
        "TransformJobArn",
    ),
    "JobName": _Named(
        "describe_inference_recommendations_job",
        "Status",
        frozenset({"STOPPING", "STOPPED", "FAILED", "DELETING", "DELETED"}),
        "JobArn",
    ),
    # The statuses SafeEndpointConnector answers FAILED (connector.py ``_ENDPOINT_PHASES``).
    "EndpointName": _Named(
        "describe_endpoint",
        "EndpointStatus",
        frozenset({"Deleting", "Failed", "OutOfService", "UpdateRollbackFailed"}),
        "EndpointArn",
    ),
}


def _request_name(config: Any) -> tuple[str, str] | None:
    """The name field (a key of :data:`_ADOPTABLE`) and the name of the job or endpoint a create
    request, or a request-based connector's rendered config (its ``resource_meta.config``, where the
    plugin keeps the name: flytekitplugins-awssagemaker ``*/connector.py`` ``get``), names."""
    if not isinstance(config, dict):
        return None
    field = next((f for f in _ADOPTABLE if config.get(f)), None)
    return (field, str(config[field])) if field else None


def _plugin_adopts(error: BaseException) -> bool:
    """The answers to a create the plugin takes as its job: SageMaker refusing a second job or
    endpoint of the name (``*/connector.py`` and ``pythonic_base.py`` ``create``,
    flytekitplugins-awssagemaker 1.16.31)."""
    error_fields = (getattr(error, "response", None) or {}).get("Error", {})
    code, message = error_fields.get("Code", ""), error_fields.get("Message", "")
    return code == "ResourceInUse" or (code == "ValidationException" and "Cannot create already existing" in message)


class QuotaExceeded(RuntimeError):
    """SageMaker refused a create for an account quota (``ResourceLimitExceeded``)."""


def quota_refusal(connector: str, method: str, names: str, error: BaseException) -> QuotaExceeded | None:
    """``error`` as a :class:`QuotaExceeded` naming the connector, the create ``method`` and what it
    would have created (``names``, e.g. ``EndpointName=x``), keeping AWS's message; None when it is
    no quota refusal. ``ResourceLimitExceeded`` is among every SageMaker create's errors (botocore
    ``sagemaker/2017-07-24``)."""
    fields = (getattr(error, "response", None) or {}).get("Error", {})
    if fields.get("Code") != "ResourceLimitExceeded":
        return None
    return QuotaExceeded(
        f"{connector}: SageMaker refused {method} ({names or 'unnamed'}): an account quota is reached "
        f"(ResourceLimitExceeded): {fields.get('Message', '')}"
    )


def _job_name(resource_meta: Any) -> str:
    name = getattr(resource_meta, "job_name", None)
    if name:
        return name
    named = _request_name(getattr(resource_meta, "config", None))
    return named[1] if named else "(unnamed)"


class BulkheadPluginConnector:
    """Mixin before a flytekitplugins-awssagemaker connector class: its AWS calls run on its own
    :class:`Backend`, and CreateTask, GetTask and DeleteTask answer within propeller's deadlines
    (:class:`cdao_connectors._backends.BackendDeadlineExceeded`, retryable, when they cannot).

    ``custom_config`` is the dataclass the task's whole ``custom`` must match (the plugins read it
    with ``.get()``: an unknown key is dropped, a wrong type reaches botocore naming an API
    parameter, not the task's field); CreateTask refuses a mismatch with a ValueError naming the
    task and the field. A job SageMaker no longer knows is FAILED with a message naming it, not an
    error on every GetTask.
    """

    name: str
    custom_config: type | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend = Backend(self.name)
        # By (job kind or Describe method, region): the statuses this connector's GetTasks read.
        self.status_caches = StatusCaches(self._new_status_cache)

    async def _call(self, method: str, config: Any, *args: Any, **kwargs: Any) -> Any:
        """The plugin's ``_call``; within a CreateTask, its create request carries the attempt's and
        the node's tags (so a ``{idempotence_token}`` in its names is the attempt's), an "already
        exists" answer is noted, and ``ResourceLimitExceeded`` is a :class:`QuotaExceeded` naming
        the request.

        The tags go into ``config`` in place: the plugin renders it in place and keeps it as the
        job's metadata (boto3_mixin.py ``_call``, flytekit ``utils/dict_formatter.py`` ``format_dict``).
        Raises ValueError, sending nothing, for a request whose ``Tags`` cannot take them
        (:func:`_with_reserved_tags`, :func:`_refuse_unless_tagged`).
        """
        tag = _ATTEMPT_TAG.get()
        creating = tag is not None and method.startswith("create_")
        if creating and isinstance(config, dict):
            reserved = [t for t in (tag, _NODE_TAG.get()) if t is not None]
            _with_reserved_tags(self.name, method, config, reserved)
        try:
            return await super()._call(method, config, *args, **kwargs)  # type: ignore[misc]
        except CustomException as exc:
            if await self._nothing_to_stop(method, config, kwargs.get("region"), exc.original_exception):
                return None  # the plugin's delete ignores the Stop*'s answer: done
            if creating:
                original = exc.original_exception
                named = config if isinstance(config, dict) else {}
                names = ", ".join(f"{k}={named[k]}" for k in _ADOPTABLE if k in named)
                refusal = quota_refusal(self.name, method, names, original)
                if refusal is not None:
                    raise refusal from original
                adopted = _ADOPTED.get()
                if adopted is not None and _plugin_adopts(original):
                    adopted.append(True)
            raise

    async def _nothing_to_stop(self, method: str, config: Any, region: str | None, error: BaseException) -> bool:
        """Whether a refused Stop* or Delete* (``method``, its request ``config``) found nothing to
        stop: the job or endpoint is gone (:func:`job_is_gone`: an endpoint deleted outside Flyte,
        whose DeleteEndpoint the plugin's delete does not catch), or a job ended or is stopping
        (:func:`~cdao_connectors.sagemaker._job_statuses.stop_found_nothing_to_stop`, read on this
        backend's threads: the plugins' deletes match only a "non-running" message). A DeleteTask
        error then would be retried by propeller, then swept and paged for nothing running."""
        if method.startswith(("stop_", "delete_")) and job_is_gone(error):
            _log.info("%s: %s refused, it is gone: nothing to stop (%s)", self.name, method, error)
            return True
        kind = STOPPED_BY.get(method)
        name = config.get(kind.name_field) if kind is not None and isinstance(config, dict) else None
        if not name:
            return False
        sm = self.backend.aws("sagemaker", region or aws_region())
        if not await self.backend.run(stop_found_nothing_to_stop, sm, kind, name, error):
            return False
        _log.info("%s: %s %s refused, the job ended or is gone: nothing to stop (%s)", self.name, method, name, error)
        return True

    def _new_status_cache(self, key: tuple[JobKind | str, str], max_age: float) -> StatusCache:
        """The statuses of a job kind (listed) or of one Describe method (read one by one) in a region."""
        kind, region = key

        def client() -> Any:  # looked up per refresh: the endpoint the environment names now
            return self.backend.aws("sagemaker", region)

        if isinstance(kind, JobKind):
            return job_status_cache(kind, client, max_age)
        return describe_status_cache(kind, client, max_age)

    async def _read_bounded(self, call: Awaitable[Any]) -> tuple[Any, str]:
        """``call``'s result within propeller's GetTask deadline, its Describes answered from this
        connector's status caches, and why a status it read is stale ('' when none is)."""
        stale: list[str] = []
        reset = _STALE.set(stale)
        try:
            result = await self._bounded(call, deadline=_deadlines.GET_TASK_SECONDS, what="GetTask", statuses=True)
        finally:
            _STALE.reset(reset)
        return result, "; ".join(stale)

    async def _bounded(
        self,
        call: Awaitable[Any],
        *,
        deadline: float,
        what: str,
        statuses: bool = False,
        cancel_late: Callable[[Any], Awaitable[Any]] | None = None,
        answers: AttemptAnswers | None = None,
    ) -> Any:
        # Set before the call is wrapped in a task, which copies this context.
        reset = _CURRENT.set(self.backend)
        reset_statuses = _STATUS_CACHES.set(self.status_caches if statuses else None)
        try:
            if cancel_late is not None:  # a create: what it starts after giving up is cancelled
                return await create_within_deadline(call, cancel_late, backend=self.name, answers=answers)
            if statuses:  # a GetTask: its calls on the backend's GetTask threads, never behind creates
                with on_get_task_threads():
                    return await within_deadline(call, deadline=deadline, what=what, backend=self.name)
            return await within_deadline(call, deadline=deadline, what=what, backend=self.name)
        finally:
            _STATUS_CACHES.reset(reset_statuses)
            _CURRENT.reset(reset)

    @says_attempts_left
    async def create(self, *args: Any, **kwargs: Any) -> Any:
        refuse_create_while_shutting_down(self.name)
        template = kwargs["task_template"] if "task_template" in kwargs else args[0]
        if self.custom_config is None:
            raise TypeError(f"{type(self).__name__} declares no custom_config to check its tasks' config against")
        config_from_custom(self.custom_config, template.custom, template.id.name)
        # Every create of the plugin takes SageMaker's "already exists" for its name as its job, so a
        # repeated CreateTask is answered the attempt's job even while a give-up is stopping it (or,
        # for an endpoint, deleting it); the attempt table orders the two (cdao_connectors._attempts).
        seed = attempt_seed(template, kwargs.get("output_prefix") or "", kwargs.get("task_execution_metadata"))
        answers = AttemptAnswers(self.backend, attempt_item("sagemaker", seed), self.task_category, seed=seed)
        # The plugin's ``{idempotence_token}`` hashes only the rendered request (boto3_mixin.py
        # ``_call``): without this tag every attempt of a task names the same job, and the next
        # attempt after a give-up would be answered the job the give-up stopped. Propeller starts
        # each attempt afresh (launcher.go ``launch`` at flyteplugins/v1.16.8): a new job.
        reset_tag = _ATTEMPT_TAG.set(attempt_tag(seed))
        node = node_seed(template, kwargs.get("task_execution_metadata"))
        reset_node = _NODE_TAG.set({"Key": NODE_TAG_KEY, "Value": attempt_tag_value(node)})
        reset_adopted = _ADOPTED.set([])
        reset_answers = _ANSWERS.set(answers)
        try:
            return await self._bounded(
                self._create_unless_stopped(*args, **kwargs),
                deadline=_deadlines.CREATE_TASK_SECONDS,
                what="CreateTask",
                cancel_late=self.delete,
                answers=answers,
            )
        finally:
            _ANSWERS.reset(reset_answers)
            _ADOPTED.reset(reset_adopted)
            _NODE_TAG.reset(reset_node)
            _ATTEMPT_TAG.reset(reset_tag)

    async def _create_unless_stopped(self, *args: Any, **kwargs: Any) -> Any:
        """The plugin's create; an error when it answered an existing job or endpoint (SageMaker's
        "already exists" for its name) that a give-up stopped or deleted, or that failed.

        Every create of the plugin takes SageMaker's refusal of a second job or endpoint of one name
        as success (flytekitplugins-awssagemaker 1.16.31 ``*/connector.py`` and ``pythonic_base.py``
        ``create``: ``ResourceInUse`` or "Cannot create already existing"). Such a job means this
        CreateTask repeats one that gave up (propeller lost its state; the job was stopped by
        :func:`cdao_connectors._backends.create_within_deadline`), or, for a name that does not
        derive from the attempt, an earlier attempt's job: adopting it would answer FAILED, which
        fails the whole task (connector/plugin.go ``Status`` at flyteplugins/v1.16.8), while an
        error fails only this attempt."""
        resource_meta = await super().create(*args, **kwargs)
        if not _ADOPTED.get():
            return resource_meta  # a job this create made: nothing to check
        if getattr(resource_meta, "job_name", None):  # the pythonic jobs (pythonic_base.py)
            field, name = self.job_name_key, resource_meta.job_name
        else:  # the request-based tasks keep their rendered request
            named = _request_name(getattr(resource_meta, "config", None))
            if named is None:
                return resource_meta
            field, name = named
        kind = _ADOPTABLE[field]
        answers = _ANSWERS.get()
        if answers is not None:
            answers.adopted = True  # until its tags say this attempt made it, or takes it over
        # No check failing here is answered as the job (unlike checking_created_job): an earlier
        # attempt's job this attempt did not take over would be stopped by that attempt's sweep
        # while propeller follows it. Failing costs this attempt only; what the job's maker left
        # (another attempt's, or this one's earlier CreateTask's) stays in its sweep.
        described, _ = await self._call(  # type: ignore[attr-defined]
            method=kind.describe, config={field: name}, region=resource_meta.region
        )
        status = described.get(kind.status_key)
        if status in kind.abandoned:
            raise AttemptAbandoned(
                f"{self.name}: SageMaker answered this attempt's create with its existing "
                f"{field.removesuffix('Name')} {name}, which is {status}: it was stopped or deleted by a "
                "give-up, or failed (an earlier attempt's, when its name does not derive from the "
                "attempt); the task's next attempt, if one is left, starts anew"
            )
        await self._adopt(described[kind.arn_key], resource_meta.region, answers)
        return resource_meta

    async def _adopt(self, arn: str, region: str | None, answers: AttemptAnswers | None) -> None:
        """Whose the existing job or endpoint ``arn`` this create answered is, by its tags:

        * this attempt's (a repeated CreateTask of it): ``answers``' ``adopted`` cleared;
        * an earlier attempt's of this node execution (its answer lost, its attempt failed): this
          attempt takes it over, its ``flyte-attempt`` tag becoming this attempt's before the answer,
          so that the earlier attempt's sweep leaves it and this attempt's abort, give-up or sweep
          stops it; a failed re-tag fails this CreateTask (the earlier attempt's sweep stops the job);
        * anyone else's (a person's, another execution's, of a fixed name): left as it is, and
          never stopped by this attempt (:meth:`delete`); ``adopted`` stays set."""
        own, node = _ATTEMPT_TAG.get(), _NODE_TAG.get()
        tags = await self._tags_on(arn, region)
        made_by = tags.get(ATTEMPT_TAG_KEY)
        if own is None or made_by is None:
            return
        if made_by != own["Value"]:
            if node is None or tags.get(NODE_TAG_KEY) != node["Value"]:
                return
            await self._call(  # type: ignore[attr-defined]
                method="add_tags", config={"ResourceArn": arn, "Tags": [dict(own)]}, region=region
            )
        if answers is not None:
            answers.adopted = False

    async def _tags_on(self, arn: str, region: str | None) -> dict[str, str]:
        """The tags on the job or endpoint ``arn`` (ListTags, every page), by key."""
        tags: dict[str, str] = {}
        token = None
        while True:
            page, _ = await self._call(  # type: ignore[attr-defined]
                method="list_tags",
                config={"ResourceArn": arn, **({"NextToken": token} if token else {})},
                region=region,
            )
            tags.update({t["Key"]: t.get("Value", "") for t in page.get("Tags", [])})
            if not (token := page.get("NextToken")):
                return tags

    async def _made_elsewhere(self, resource_meta: Any) -> str | None:
        """Why this attempt must not stop the job or endpoint ``resource_meta`` names: its
        ``flyte-attempt`` tag is not the one its create's request carried (a job of a fixed name
        another attempt or a person made, which the create adopted: :meth:`_adopt`). None when it is
        the attempt's, gone, or cannot be told: a Pythonic job's name derives from the attempt, and a
        request that carried no such tag (sent by an earlier version of the connector) is stopped as
        the plugin stops it."""
        config = getattr(resource_meta, "config", None)
        tags = config.get("Tags") if isinstance(config, dict) else None
        own = (
            next((t.get("Value") for t in tags if t.get("Key") == ATTEMPT_TAG_KEY), None)
            if isinstance(tags, list)
            else None
        )
        named = _request_name(config) if own else None
        if named is None:
            return None
        field, name = named
        kind = _ADOPTABLE[field]
        try:
            described, _ = await self._call(  # type: ignore[attr-defined]
                method=kind.describe, config={field: name}, region=resource_meta.region
            )
        except CustomException as exc:
            if job_is_gone(exc.original_exception):
                return None
            raise
        made_by = (await self._tags_on(described[kind.arn_key], resource_meta.region)).get(ATTEMPT_TAG_KEY)
        if made_by == own:
            return None
        return f"{field}={name} carries {ATTEMPT_TAG_KEY}={made_by}, not this attempt's {own}"

    @classmethod
    def _artifact_exists(cls, output_prefix: str, name: str) -> bool:
        """The Pythonic connectors' storage check (``pythonic_base.py`` ``_artifact_exists``, flytekit's
        synchronous ``FileAccessProvider.exists``), the first step of every storage read of their
        get(): ``_read_error`` checks error.pb's existence before reading it, a Completed job's
        outputs.pb is checked. On the event loop (:data:`_DESCRIBED` set) it raises
        :class:`_OutcomeUnread` instead of blocking: :meth:`_get` then runs the get() off the loop."""
        if _DESCRIBED.get() is not None:
            raise _OutcomeUnread(f"{output_prefix.rstrip('/')}/{name}")
        return super()._artifact_exists(output_prefix, name)  # type: ignore[misc]

    @serving
    @observe_get_task
    async def get(self, resource_meta: Any, **kwargs: Any) -> Any:
        try:
            resource, stale = await self._read_bounded(self._get(resource_meta, **kwargs))
            return noting_staleness(resource, stale)
        except CustomException as exc:
            if not job_is_gone(exc.original_exception):
                raise
        except JobGone:
            pass
        return Resource(
            phase=TaskExecution.FAILED,
            message=f"{self.name}: SageMaker has no job {_job_name(resource_meta)} (deleted outside Flyte?)",
        )

    async def _get(self, resource_meta: Any, **kwargs: Any) -> Any:
        """The plugin's get() on the event loop, its Describes answered from the status caches. An
        ended Pythonic job's get() also reads the task's error.pb and outputs.pb, synchronously
        (``pythonic_base.py`` ``get``, flytekitplugins-awssagemaker 1.16.31): on the service's one
        event loop a slow store held every backend's GetTasks behind it. There it stops before the
        read (:meth:`_artifact_exists`), and the whole get() runs again on the backend's GetTask
        threads as BulkheadConnector's ended jobs do (:func:`outcome_within_bound`: waited for at
        most the known-status bound, RUNNING with a message past it, kept with the job's status
        entry); the job's status entry is final then, so its Describe is answered at once."""
        answered: list[tuple[StatusCache, Hashable, Any]] = []
        reset = _DESCRIBED.set(answered)
        try:
            return await super().get(resource_meta, **kwargs)  # type: ignore[misc]
        except _OutcomeUnread:
            pass
        finally:
            _DESCRIBED.reset(reset)
        # pythonic_base.py's get() describes the job before reading anything: the last answer is its status.
        cache, key, value = answered[-1]
        build = functools.partial(self._plugin_get_off_loop, resource_meta, kwargs)
        return await outcome_within_bound(self.backend, cache, key, value, build)

    def _plugin_get_off_loop(self, resource_meta: Any, kwargs: dict[str, Any]) -> Any:
        # On a GetTask thread, in a copy of the GetTask's context (its status caches): the get() is a
        # coroutine, and the thread has no event loop of its own.
        return asyncio.run(super().get(resource_meta, **kwargs))  # type: ignore[misc]

    def swept_job(self, lookup: dict[str, Any], recorded: dict[str, Any] | None) -> Any:
        """The attempt's job or endpoint, as this connector's DeleteTask takes it, when SageMaker has
        it (:func:`find_attempts_job`): the sweeper (:mod:`cdao_connectors._sweeper`) stops one
        whose CreateTask never answered it. None when there is none of the attempt's (yet).
        ``recorded`` is unused: nothing is recorded before a SageMaker create answers.

        A request-based job's metadata carries the attempt's tag as its create's request did, so
        that DeleteTask checks the tag again right before it stops the job (:meth:`_made_elsewhere`):
        a later attempt's take-over (:meth:`_adopt`) may land while the sweep's DeleteTask waits for
        a thread of this connector's backend, after the check here."""
        region = lookup.get("region") or aws_region()
        if not find_attempts_job(self.backend.aws("sagemaker", region), lookup):
            return None
        name = lookup["name"]
        if issubclass(self.metadata_type, PythonicJobMetadata):  # pythonic_base.py ``delete``: by job_name
            return self.metadata_type(job_name=name, output_prefix="", region=region)
        # The request-based connectors' delete renders {name field: config's name} (*/connector.py).
        tags = [{"Key": ATTEMPT_TAG_KEY, "Value": lookup["attempt_tag"]}]
        return self.metadata_type(config={lookup["name_field"]: name, "Tags": tags}, region=region)

    @serving
    @aborting
    async def delete(self, resource_meta: Any, **kwargs: Any) -> Any:
        """The plugin's delete (a DeleteTask: propeller's abort; a give-up's or the sweep's cancel),
        within propeller's DeleteTask deadline; nothing for a job or endpoint this attempt did not
        make (:meth:`_made_elsewhere`): the plugin's create adopts one of its name, and a person's
        endpoint may serve production. False when it left such a job (the sweep then settles the
        attempt without counting the job as stopped: :mod:`cdao_connectors._sweeper`), else the
        plugin's delete's None; propeller's DeleteTask ignores it (flytekit
        ``connector_service.py`` ``DeleteTask``, 1.16.31)."""
        return await self._bounded(
            self._delete_if_made_here(resource_meta, **kwargs),
            deadline=_deadlines.DELETE_TASK_SECONDS,
            what="DeleteTask",
        )

    async def _delete_if_made_here(self, resource_meta: Any, **kwargs: Any) -> Any:
        elsewhere = await self._made_elsewhere(resource_meta)
        if elsewhere is not None:
            _log.warning(
                "%s: not stopping %s: this attempt did not make it (%s)", self.name, _job_name(resource_meta), elsewhere
            )
            return False
        return await super().delete(resource_meta, **kwargs)  # type: ignore[misc]

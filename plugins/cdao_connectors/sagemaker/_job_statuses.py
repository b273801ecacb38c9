"""SageMaker job statuses for GetTask from one shared listing, not a Describe per job and poll.

SageMaker has no batched Describe for training, processing or transform jobs; one Describe per
GetTask costs N API calls per polling round and makes every GetTask wait for a round trip (p99
200-470 ms at 200 jobs in flight against moto). Each ``List*Jobs`` answers pages of up to 100
summaries (botocore ``sagemaker/2017-07-24`` ``MaxResults``, max 100) filtered by ``StatusEquals``
and ``CreationTimeAfter``, and each summary carries the job's status
(``TrainingJobSummary.TrainingJobStatus`` and ``.SecondaryStatus``, ``ProcessingJobSummary.
ProcessingJobStatus``, ``TransformJobSummary.TransformJobStatus``): everything flytekitplugins-
awssagemaker's ``get()`` reads of a job in progress (``awssagemaker_training/connector.py``,
``awssagemaker_processing/connector.py``, ``awssagemaker_batch_transform/connector.py``,
``awssagemaker_inference/pythonic_base.py``, 1.16.31). A finished job's GetTask also reads what
only Describe returns (model artifacts, outputs, and for training the ``FailureReason`` the
summary lacks), so a refresh pass lists the tracked jobs still ``InProgress`` and describes each
of the others once: a job in a terminal status never changes, so it is never asked again. A job
new to this replica is described at once, as listing for it would cost more, unless more than
``LIST_OVER`` new jobs are waiting to be read together (after a restart): those are listed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from cdao_connectors._backends import WORKERS_PER_BACKEND
from cdao_connectors._status_cache import StatusCache, Unreadable, refresh_period

LIST_PAGE = 100  # ListTrainingJobs/ListProcessingJobs/ListTransformJobs MaxResults' maximum
# More new jobs queued for reading at once than this (after a restart, or a burst of jobs created on
# another replica) are listed: ceil(in progress / 100) calls instead of one Describe each, fewer
# unless more than 1000 jobs of the kind are in progress in the region. Against moto, 300 new
# transform jobs (moto 5.2.5 on 127.0.0.1): one listing 0.14 s, 300 Describes on 32 threads 2.7 s.
LIST_OVER = 10
_LISTED_STATUS = "InProgress"
# CreationTimeAfter keeps jobs created after the time; a second of slack keeps a job created at
# the oldest tracked job's instant in the answer whatever the comparison.
_CREATION_SLACK = timedelta(seconds=1)


@dataclass(frozen=True)
class JobKind:
    """One SageMaker job type's Describe and List calls (boto3 method names) and fields."""

    describe: str
    list: str
    name_field: str
    summaries_field: str
    status_field: str
    # TrainingJobStatus, ProcessingJobStatus, TransformJobStatus values after which nothing changes.
    terminal: frozenset[str] = frozenset({"Completed", "Failed", "Stopped"})

    def is_final(self, described: dict[str, Any]) -> bool:
        return described.get(self.status_field) in self.terminal


TRAINING = JobKind(
    "describe_training_job", "list_training_jobs", "TrainingJobName", "TrainingJobSummaries", "TrainingJobStatus"
)
PROCESSING = JobKind(
    "describe_processing_job",
    "list_processing_jobs",
    "ProcessingJobName",
    "ProcessingJobSummaries",
    "ProcessingJobStatus",
)
TRANSFORM = JobKind(
    "describe_transform_job", "list_transform_jobs", "TransformJobName", "TransformJobSummaries", "TransformJobStatus"
)
# By boto3 Describe method: the calls a GetTask may answer from a listing.
LISTED_KINDS = {kind.describe: kind for kind in (TRAINING, PROCESSING, TRANSFORM)}


def job_is_gone(error: BaseException) -> bool:
    """SageMaker's answer to Describe* of a job that does not exist (any more).

    The API model declares ``ResourceNotFound`` (botocore ``sagemaker/2017-07-24`` service model,
    DescribeTrainingJob, DescribeProcessingJob, DescribeHyperParameterTuningJob,
    DescribeTransformJob, DescribeInferenceRecommendationsJob), but DescribeTrainingJob (and its
    siblings) answer ``ValidationException`` "Requested resource not found."
    (https://github.com/aws/aws-sdk/issues/165); moto says "Could not find training job '...'".
    """
    if not isinstance(error, ClientError):
        return False
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    return code == "ResourceNotFound" or (
        code == "ValidationException" and ("Requested resource not found" in message or "Could not find" in message)
    )


@dataclass(frozen=True)
class Stoppable:
    """A SageMaker job kind a DeleteTask stops: its Describe call (boto3 method name), the request's
    name field, the answer's status field, and the statuses (botocore ``sagemaker/2017-07-24`` enum
    of that field) in which the job no longer runs: ended, stopping, or being deleted (only an ended
    job can be deleted: DeleteTrainingJob's documentation)."""

    describe: str
    name_field: str
    status_field: str
    not_running: frozenset[str]


# TrainingJobStatus, ProcessingJobStatus, TransformJobStatus and HyperParameterTuningJobStatus share
# these (training and tuning add Deleting, tuning DeleteFailed); RecommendationJobStatus is
# upper-case. tests/plugins/test_sweeper_sagemaker.py checks each against the installed botocore model.
_NOT_RUNNING = frozenset({"Completed", "Failed", "Stopping", "Stopped"})
# The Stop* call (boto3 method name) of each job kind a routed SageMaker connector stops.
STOPPED_BY = {
    "stop_training_job": Stoppable(
        TRAINING.describe, TRAINING.name_field, TRAINING.status_field, _NOT_RUNNING | {"Deleting"}
    ),
    "stop_processing_job": Stoppable(PROCESSING.describe, PROCESSING.name_field, PROCESSING.status_field, _NOT_RUNNING),
    "stop_transform_job": Stoppable(TRANSFORM.describe, TRANSFORM.name_field, TRANSFORM.status_field, _NOT_RUNNING),
    "stop_hyper_parameter_tuning_job": Stoppable(
        "describe_hyper_parameter_tuning_job",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobStatus",
        _NOT_RUNNING | {"Deleting", "DeleteFailed"},
    ),
    "stop_inference_recommendations_job": Stoppable(
        "describe_inference_recommendations_job",
        "JobName",
        "Status",
        frozenset({"COMPLETED", "FAILED", "STOPPING", "STOPPED", "DELETING", "DELETED"}),
    ),
}


def stop_found_nothing_to_stop(sm: Any, kind: Stoppable, name: str, error: BaseException) -> bool:
    """Whether SageMaker's refusal ``error`` of a Stop* of the ``kind`` job ``name`` leaves nothing to
    stop: the job is gone (:func:`job_is_gone`), or it is refused with ``ValidationException`` and,
    described again (``sm``, a boto3 SageMaker client; blocking), no longer runs
    (:attr:`Stoppable.not_running`) or is gone. SageMaker refuses to stop a job that ended with
    ``ValidationException`` "The request was rejected because the training job is in status
    Stopped." (awslabs/benchmark-ai#928): a DeleteTask racing the job's end, or of a job deleted
    outside Flyte, is then done, as the plugins' own deletes intend (they match only "non-running":
    awssagemaker_training/connector.py, awssagemaker_hyperparameter_tuning/connector.py,
    awssagemaker_inference_recommender/connector.py ``delete``). A running job's refusal stays an
    error. Raises what the Describe raises but "gone"."""
    if not isinstance(error, ClientError):
        return False
    if job_is_gone(error):
        return True
    if error.response.get("Error", {}).get("Code") != "ValidationException":
        return False
    try:
        described = getattr(sm, kind.describe)(**{kind.name_field: name})
    except ClientError as again:
        if job_is_gone(again):
            return True
        raise
    return described.get(kind.status_field) in kind.not_running


def job_statuses(
    sm: Any, kind: JobKind, names: list[str], *, listing: bool, known: Callable[[str], Any] = lambda name: None
) -> dict[str, dict[str, Any] | Unreadable]:
    """The summary (from the listing) or Describe answer of each named job SageMaker knows; a job
    it does not know is left out. ``known(name)`` is the job's last description, whose
    ``CreationTime`` narrows the listing to jobs no older than the oldest tracked one.
    A job whose Describe fails otherwise is :class:`Unreadable` (never a status; the other jobs are
    still read); a failed listing, which covers every job, is raised."""
    wanted = set(names)
    found: dict[str, dict[str, Any] | Unreadable] = {}
    if listing:
        params: dict[str, Any] = {"StatusEquals": _LISTED_STATUS, "PaginationConfig": {"PageSize": LIST_PAGE}}
        created = [d["CreationTime"] for d in map(known, wanted) if isinstance(d, dict) and d.get("CreationTime")]
        if created:
            params["CreationTimeAfter"] = min(created) - _CREATION_SLACK
        for page in sm.get_paginator(kind.list).paginate(**params):
            for summary in page[kind.summaries_field]:
                if summary[kind.name_field] in wanted:
                    found[summary[kind.name_field]] = summary
    for name in sorted(wanted - found.keys()):
        try:
            found[name] = getattr(sm, kind.describe)(**{kind.name_field: name})
        except ClientError as exc:
            if not job_is_gone(exc):
                found[name] = Unreadable(exc)
    return found


def job_status_cache(kind: JobKind, client: Callable[[], Any], max_age: float) -> StatusCache:
    """A :class:`StatusCache` of ``kind``'s jobs by name; ``client()`` is the SageMaker client to
    use for each refresh (looked up per refresh, so it follows the endpoint the environment names)."""
    cache: StatusCache

    def describe(names: list[str]) -> dict[str, Any]:
        return job_statuses(client(), kind, names, listing=False)

    def describe_all(names: list[str]) -> dict[str, Any]:
        return job_statuses(client(), kind, names, listing=True, known=cache.peek)

    cache = StatusCache(
        describe,
        describe_all=describe_all,
        max_age=max_age,
        batch=1,  # Describe takes one name: a new job is read by its own GetTask
        parallel=WORKERS_PER_BACKEND,  # as many first reads at once as the backend has RPC threads
        list_over=LIST_OVER,
        period=refresh_period(max_age),
        name=f"sagemaker-{kind.describe}",
        backend="SageMaker",
        final=kind.is_final,
    )
    return cache


def describe_status_cache(method: str, client: Callable[[], Any], max_age: float) -> StatusCache:
    """A :class:`StatusCache` of one SageMaker Describe with no listing (``describe_endpoint``,
    ``describe_hyper_parameter_tuning_job``, ``describe_inference_recommendations_job``: what the
    endpoint, tuning and inference recommender connectors' ``get()`` reads, flytekitplugins-
    awssagemaker 1.16.31), keyed by the call's parameters as ``(name, value)`` pairs. A resource
    SageMaker does not know is left out (gone); any other refusal is :class:`Unreadable`."""

    def describe(keys: list[tuple[tuple[str, Any], ...]]) -> dict[Any, Any]:
        sm = client()
        found: dict[Any, Any] = {}
        for key in keys:
            try:
                found[key] = getattr(sm, method)(**dict(key))
            except ClientError as exc:
                if not job_is_gone(exc):
                    found[key] = Unreadable(exc)
        return found

    return StatusCache(
        describe,
        max_age=max_age,
        batch=1,  # one resource per Describe
        parallel=WORKERS_PER_BACKEND,
        period=refresh_period(max_age),
        name=f"sagemaker-{method}",
        backend="SageMaker",
    )

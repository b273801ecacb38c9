"""Backend side of AWS Batch: per-task queue choice, reused job definitions, idempotent submits,
and status for many jobs from one shared DescribeJobs cache."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cdao_connector_resources import name_prefix, resource_tags
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import ConnectorRegistry, Resource, ResourceMeta
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate

from cdao_connectors._attempts import CREATE_STARTED_AT, CREATE_WAIT_SECONDS, AttemptAnswers, AttemptLedger, SweepTarget
from cdao_connectors._backends import Backend, BulkheadConnector, create_once
from cdao_connectors._common import (
    attempt_seed,
    deterministic_name,
    log_link,
    outcome_after_exit,
    readable_execution_name,
    rendered_container,
)
from cdao_connectors._custom import config_from_custom
from cdao_connectors._status_cache import StatusCache, refresh_period
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE, BatchJob
from cdao_connectors.config import BatchConfig, attempt_table

_PHASES = {
    "SUBMITTED": TaskExecution.QUEUED,
    "PENDING": TaskExecution.QUEUED,
    "RUNNABLE": TaskExecution.QUEUED,
    "STARTING": TaskExecution.INITIALIZING,
    "RUNNING": TaskExecution.RUNNING,
    "SUCCEEDED": TaskExecution.SUCCEEDED,
    "FAILED": TaskExecution.FAILED,
}
# The statuses a Batch job ends in and never leaves (AWS Batch User Guide, "Job states",
# https://docs.aws.amazon.com/batch/latest/userguide/job_states.html): its status cache keeps them
# for good, and only they make a GetTask read the task's outputs.
_ENDED = frozenset({"SUCCEEDED", "FAILED"})

# Batch's statusReason when EC2 takes a Spot instance back (AWS Batch docs, "Automated job retries").
_SPOT_RECLAIMED_PREFIX = "Host EC2"
DESCRIBE_JOBS_BATCH = 100  # DescribeJobs' maximum number of ids per call (botocore batch/2016-08-10)


@dataclass
class BatchJobMetadata(ResourceMeta):
    job_id: str
    job_name: str
    job_queue: str
    region: str
    output_prefix: str
    has_outputs: bool


def _attempt_key(job_name: str) -> str:
    """The attempt's item in the attempt ledger (cdao_connectors._attempts)."""
    return f"batch/{job_name}"


def _job_name(task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any) -> str:
    """The attempt's job name: the same for every CreateTask of the attempt, on any replica."""
    seed = attempt_seed(task_template, output_prefix, task_execution_metadata)
    return deterministic_name("flyte", seed, readable_execution_name(task_execution_metadata), 128)


def _find_job(client: Any, queue: str, job_name: str) -> dict[str, Any] | None:
    """The newest job named ``job_name`` in ``queue`` (ListJobs with a JOB_NAME filter lists jobs
    of every status), as ``{"job_id": ...}``; None when there is none."""
    listed = client.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [job_name]}])
    summaries = listed.get("jobSummaryList") or []
    if not summaries:
        return None
    return {"job_id": max(summaries, key=lambda s: s.get("createdAt", 0))["jobId"]}


def is_spot_reclamation(job: dict[str, Any]) -> bool:
    reasons = [job.get("statusReason") or ""]
    reasons += [a.get("statusReason") or "" for a in job.get("attempts") or []]
    return any(r.startswith(_SPOT_RECLAIMED_PREFIX) for r in reasons)


def _console_escape(segment: str) -> str:
    """The CloudWatch console's fragment encoding: URL-encode twice, then '%' becomes '$'."""
    return quote(quote(segment, safe=""), safe="").replace("%", "$")


def _log_links(job: dict[str, Any], region: str) -> list[Any]:
    links = [
        log_link(
            "AWS Batch console",
            f"https://{region}.console.aws.amazon.com/batch/home?region={region}#jobs/detail/{job['jobId']}",
        )
    ]
    stream = (job.get("container") or {}).get("logStreamName")
    if stream:
        group = _console_escape("/aws/batch/job")
        links.append(
            log_link(
                "CloudWatch logs",
                f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
                f"#logsV2:log-groups/log-group/{group}/log-events/{_console_escape(stream)}",
            )
        )
    return links


class BatchConnector(BulkheadConnector):
    name = "CDAO AWS Batch Connector"

    def __init__(self, task_type_name: str = BATCH_TASK_TYPE) -> None:
        super().__init__(task_type_name=task_type_name, metadata_type=BatchJobMetadata)
        self.backend = Backend("AWS Batch")
        self._lock = threading.Lock()
        self._job_definitions: dict[str, str] = {}
        self._caches: dict[str, StatusCache] = {}

    def _client(self, region: str) -> Any:
        return self.backend.aws("batch", region)

    def status_cache(self, region: str, max_age: float) -> StatusCache:
        with self._lock:
            cache = self._caches.get(region)
            if cache is None or cache.max_age != max_age:
                # The client is looked up per refresh: it is the backend's shared one for the
                # endpoint the environment names now (Backend.aws).
                cache = StatusCache(
                    lambda ids: {j["jobId"]: j for j in self._client(region).describe_jobs(jobs=ids)["jobs"]},
                    max_age=max_age,
                    batch=DESCRIBE_JOBS_BATCH,
                    period=refresh_period(max_age),
                    name="batch",
                    backend="AWS Batch",
                    final=lambda job: job.get("status") in _ENDED,
                )
                self._caches[region] = cache
            return cache

    def _job_definition(self, cfg: BatchConfig, image: str, job: BatchJob) -> str:
        shape = {
            "image": image,
            "vcpus": job.vcpus,
            "memory_mib": job.memory_mib,
            "gpus": job.gpus,
            "job_role": cfg.job_role_arn,
        }
        digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:20]
        # The stack's prefix is what the connector's IAM policy grants RegisterJobDefinition and
        # SubmitJob on (cdao_connector_resources); a definition outside it is AccessDenied.
        name = f"{name_prefix(cfg.stack)}{digest}"
        with self._lock:
            if name in self._job_definitions:
                return self._job_definitions[name]
        client = self._client(cfg.region)
        found = client.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
        if found:
            arn = max(found, key=lambda d: d["revision"])["jobDefinitionArn"]
        else:
            requirements = [
                {"type": "VCPU", "value": str(job.vcpus)},
                {"type": "MEMORY", "value": str(job.memory_mib)},
            ]
            if job.gpus:
                requirements.append({"type": "GPU", "value": str(job.gpus)})
            container: dict[str, Any] = {
                "image": image,
                "resourceRequirements": requirements,
                "command": ["pyflyte-execute"],  # replaced per job by containerOverrides
            }
            if cfg.job_role_arn:
                container["jobRoleArn"] = cfg.job_role_arn
            arn = client.register_job_definition(
                jobDefinitionName=name,
                type="container",
                containerProperties=container,
                # Flyte owns retries (a reclaimed spot job comes back as RETRYABLE_FAILED), so
                # Batch must not retry behind its back and double the attempts.
                retryStrategy={"attempts": 1},
                tags=resource_tags(cfg.stack),
            )["jobDefinitionArn"]
        with self._lock:
            self._job_definitions[name] = arn
        return arn

    def create_sync(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        task_execution_metadata: Any = None,
    ) -> BatchJobMetadata:
        # The task's own config first: its fault is named even where the service lacks a setting.
        job = config_from_custom(BatchJob, task_template.custom, task_template.id.name)
        cfg = BatchConfig.from_env()
        image, command, env = rendered_container(task_template, output_prefix)
        queue = cfg.spot_queue if job.spot else cfg.on_demand_queue
        job_name = _job_name(task_template, output_prefix, task_execution_metadata)
        definition = self._job_definition(cfg, image, job)
        client = self._client(cfg.region)

        def find() -> dict[str, Any] | None:
            return _find_job(client, queue, job_name)

        def submit() -> dict[str, Any]:
            request: dict[str, Any] = {
                "jobName": job_name,
                "jobQueue": queue,
                "jobDefinition": definition,
                "containerOverrides": {
                    "command": command,
                    "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
                },
                "tags": {**resource_tags(cfg.stack), "flyte-task": task_template.id.name[:256]},
                "propagateTags": True,
            }
            if job.timeout_seconds:
                request["timeout"] = {"attemptDurationSeconds": job.timeout_seconds}
            creates = self.backend.aws("batch", cfg.region, for_creates=True)
            job_id = create_once(lambda: creates.submit_job(**request), CREATE_WAIT_SECONDS)["jobId"]
            self.status_cache(cfg.region, cfg.status_refresh_seconds).seed(
                job_id, {"jobId": job_id, "jobName": job_name, "status": "SUBMITTED"}
            )
            return {"job_id": job_id}

        # SubmitJob has no client token and accepts any number of jobs of one name: the attempt is
        # claimed across replicas first (cdao_connectors._attempts).
        sweep = SweepTarget(
            backend=self.backend.name,
            task_type=self.task_category.name,
            task_version=self.task_category.version,
            lookup={"region": cfg.region, "job_queue": queue, "job_name": job_name},
        )
        job_id = self._ledger(cfg.region).once(
            _attempt_key(job_name), submit, find, CREATE_WAIT_SECONDS, started_at=CREATE_STARTED_AT.get(), sweep=sweep
        )["job_id"]
        return BatchJobMetadata(
            job_id=job_id,
            job_name=job_name,
            job_queue=queue,
            region=cfg.region,
            output_prefix=output_prefix,
            has_outputs=bool(task_template.interface.outputs),
        )

    def _ledger(self, region: str) -> AttemptLedger:
        return AttemptLedger(self.backend.aws("dynamodb", region), attempt_table())

    def attempt_answers(
        self, task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any
    ) -> AttemptAnswers:
        # The claim's item (create_sync): its answer takes it out of the sweep index, a give-up
        # marks it abandoned before terminating the job (cdao_connectors._attempts).
        return AttemptAnswers(
            self.backend,
            _attempt_key(_job_name(task_template, output_prefix, task_execution_metadata)),
            self.task_category,
            claimed=True,
        )

    def swept_job(self, lookup: dict[str, Any], recorded: dict[str, Any] | None) -> BatchJobMetadata | None:
        """The job of a claim nobody answered (cdao_connectors._sweeper): the one it recorded, else
        the one its name lists in its queue; enough of it for :meth:`delete_sync`."""
        found = recorded or _find_job(self._client(lookup["region"]), lookup["job_queue"], lookup["job_name"])
        if found is None:
            return None
        return BatchJobMetadata(
            job_id=found["job_id"],
            job_name=lookup["job_name"],
            job_queue=lookup["job_queue"],
            region=lookup["region"],
            output_prefix="",
            has_outputs=False,
        )

    def status_of(self, resource_meta: BatchJobMetadata) -> tuple[StatusCache, str]:
        cfg = BatchConfig.from_env()
        return self.status_cache(resource_meta.region, cfg.status_refresh_seconds), resource_meta.job_id

    @staticmethod
    def resource_for(job: dict[str, Any] | None, resource_meta: BatchJobMetadata) -> Resource:
        if job is None:
            return Resource(
                phase=TaskExecution.FAILED,
                message=f"AWS Batch does not know job {resource_meta.job_id} ({resource_meta.job_name})",
            )
        status = job.get("status")
        links = _log_links(job, resource_meta.region)
        reason = job.get("statusReason") or ""
        if status not in _PHASES:
            return Resource(
                phase=TaskExecution.RUNNING, message=f"unknown AWS Batch status {status!r}; waiting", log_links=links
            )
        if status == "FAILED" and is_spot_reclamation(job):
            return Resource(
                phase=TaskExecution.RETRYABLE_FAILED,
                message=f"spot capacity reclaimed, retrying: {reason}",
                log_links=links,
            )
        if status not in _ENDED:
            return Resource(phase=_PHASES[status], message=reason or status, log_links=links)
        outcome = outcome_after_exit(
            resource_meta.output_prefix,
            resource_meta.has_outputs,
            platform_succeeded=status == "SUCCEEDED",
            platform_message=reason or f"AWS Batch job {status.lower()}",
        )
        return Resource(phase=outcome.phase, message=outcome.message, log_links=links)

    def delete_sync(self, resource_meta: BatchJobMetadata) -> None:
        # TerminateJob also cancels jobs that have not started, and is a no-op on finished ones.
        self._client(resource_meta.region).terminate_job(
            jobId=resource_meta.job_id, reason="Aborted by Flyte (DeleteTask)"
        )
        for cache in list(self._caches.values()):
            cache.forget(resource_meta.job_id)


CONNECTOR = BatchConnector()
ConnectorRegistry.register(CONNECTOR)

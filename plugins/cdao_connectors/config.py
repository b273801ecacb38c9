"""The connector service's configuration: every environment variable, documented once.

The connector Deployment (platform/) sets these from the Argo CD cluster Secret that infra/ writes,
so the values here are the whole contract between the platform and the connectors. A connector
reads its settings when it handles a request, not at import, so the service starts (and ListAgents
answers) even when a platform it does not use is unconfigured; the first task for that platform
then fails with an error that names the missing variable.

Variables (connector that reads them, meaning):

``CDAO_AWS_REGION`` (every connector: Codeweave's for ``CDAO_ATTEMPT_TABLE``)
    AWS region of the platform's account; falls back to ``AWS_REGION``.
``CDAO_STACK`` (Batch, EMR)
    the Pulumi stack's name: it names and tags the job definitions and clusters the connector
    creates (:mod:`cdao_connector_resources`), which its IAM policy is scoped to.
``CDAO_BATCH_SPOT_QUEUE`` (Batch)
    job queue backed by the Spot compute environment (``@batch_task(spot=True)``).
``CDAO_BATCH_ON_DEMAND_QUEUE`` (Batch)
    job queue backed by the on-demand compute environment (``spot=False``).
``CDAO_BATCH_JOB_ROLE_ARN`` (Batch, optional)
    IAM role the job's container assumes (it needs Flyte's bucket).
``CDAO_BATCH_STATUS_REFRESH_SECONDS`` (Batch, default 5)
    oldest cached job status served; keep it <= propeller's polling interval.
``CDAO_STATUS_REFRESH_SECONDS`` (EMR steps, EMR Serverless, SageMaker jobs, Codeweave, default 5)
    the same bound for EMR step, EMR Serverless run, SageMaker job and endpoint, and Codeweave
    job statuses.
``CDAO_ATTEMPT_TABLE`` (every AWS connector and Codeweave)
    DynamoDB table where replicas claim a Batch or EMR task attempt before creating its job, so one
    attempt never starts two jobs, and where every connector orders a repeated CreateTask's answer
    against the cancel of a CreateTask that gave up (:mod:`cdao_connectors._attempts`); its sweep
    index lists the attempts whose job nobody follows, which every replica's sweeper stops.
``CDAO_SWEEP_PERIOD_SECONDS`` (every replica, default 60)
    how often the replica sweeps, 1 to 300 seconds; 0 leaves the sweeping to the other replicas.
``CDAO_EMR_CLUSTER_ID`` (EMR, optional)
    default long-running cluster for Spark steps; unset means transient clusters.
``CDAO_EMR_RELEASE_LABEL`` (EMR, default ``emr-7.5.0``)
    release of transient clusters.
``CDAO_EMR_SERVICE_ROLE`` / ``CDAO_EMR_INSTANCE_PROFILE`` (EMR)
    service role and EC2 instance profile of transient clusters (required for them).
``CDAO_EMR_SUBNET_ID`` / ``CDAO_EMR_LOG_URI`` (EMR, optional)
    private subnet and ``s3://`` log prefix of transient clusters.
``CDAO_EMR_ENTRYPOINT_BUCKET`` (EMR on EC2 and EMR Serverless)
    bucket receiving the Spark entrypoint script (the ApplicationSet sets the stack's userdata
    bucket, which the connector's role may write); falls back to ``FLYTE_AWS_S3_BUCKET``.
``CDAO_CODEWEAVE_ENDPOINT`` (Codeweave)
    base URL of the Codeweave jobs API, e.g. ``https://api.codeweave.com``.
``CDAO_CODEWEAVE_API_KEY_SECRET`` (Codeweave, default ``codeweave_api_key``)
    name of the connector secret holding the API key; flytekit's secrets manager reads it from
    the mounted directory ``FLYTE_SECRETS_DEFAULT_DIR`` (``/etc/secrets``) or ``_FSEC_<NAME>``.
``CDAO_CODEWEAVE_TIMEOUT_SECONDS`` (Codeweave, default 30)
    per-request HTTP timeout; never more than what is left of propeller's deadline for the call.

AWS credentials come from the pod's IRSA web identity; ``AWS_ENDPOINT_URL`` (honoured by boto3
itself) points every client at an emulator in tests.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


class ConnectorConfigError(RuntimeError):
    """A variable a connector needs is missing or malformed."""


def _required(name: str, purpose: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConnectorConfigError(
            f"environment variable {name} is not set on the connector service; it is needed for {purpose} "
            f"(see cdao_connectors.config for every variable)"
        )
    return value


def _optional(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConnectorConfigError(f"environment variable {name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConnectorConfigError(f"environment variable {name}={raw!r} must be greater than 0")
    return value


def status_refresh_seconds() -> float:
    """``CDAO_STATUS_REFRESH_SECONDS``: oldest EMR step, EMR Serverless run, SageMaker job or
    endpoint, or Codeweave job status served, in seconds."""
    return _positive_float("CDAO_STATUS_REFRESH_SECONDS", 5.0)


# A due attempt waits for the next pass: at most a claim's lease (cdao_connectors._attempts
# LEASE_SECONDS) longer than its due time.
MAX_SWEEP_PERIOD_SECONDS = 300.0


def sweep_period_seconds() -> float:
    """``CDAO_SWEEP_PERIOD_SECONDS``: how often each replica sweeps the attempt table for jobs that
    nobody follows (``cdao_connectors._sweeper``), in seconds (default 60); 0 turns this replica's
    sweeper off, leaving the sweeping to the others. Raises :class:`ConnectorConfigError` for any
    other value under 1 (a pass every few milliseconds would only spend DynamoDB reads), over
    :data:`MAX_SWEEP_PERIOD_SECONDS`, or not a number."""
    raw = os.environ.get("CDAO_SWEEP_PERIOD_SECONDS", "").strip()
    if not raw:
        return 60.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not (value == 0 or 1 <= value <= MAX_SWEEP_PERIOD_SECONDS):
        raise ConnectorConfigError(
            f"environment variable CDAO_SWEEP_PERIOD_SECONDS={raw!r} must be 0 (off) or a number of seconds "
            f"from 1 to {MAX_SWEEP_PERIOD_SECONDS:g}"
        )
    return value


def aws_region() -> str:
    region = _optional("CDAO_AWS_REGION") or _optional("AWS_REGION") or _optional("AWS_DEFAULT_REGION")
    if region is None:
        raise ConnectorConfigError(
            "environment variable CDAO_AWS_REGION is not set on the connector service; "
            "it is needed for every connector (the AWS ones and the attempt table)"
        )
    return region


def stack() -> str:
    """``CDAO_STACK``: the stack whose resources the connector creates (names and tags)."""
    return _required("CDAO_STACK", "AWS Batch and EMR tasks (their job definitions and clusters are named by stack)")


def attempt_table() -> str:
    return _required(
        "CDAO_ATTEMPT_TABLE", "every connector's CreateTask (one job per task attempt across replicas and give-ups)"
    )


@dataclass(frozen=True)
class BatchConfig:
    region: str
    stack: str
    spot_queue: str
    on_demand_queue: str
    job_role_arn: str | None
    status_refresh_seconds: float

    @classmethod
    def from_env(cls) -> BatchConfig:
        return cls(
            region=aws_region(),
            stack=stack(),
            spot_queue=_required("CDAO_BATCH_SPOT_QUEUE", "AWS Batch tasks with spot=True"),
            on_demand_queue=_required("CDAO_BATCH_ON_DEMAND_QUEUE", "AWS Batch tasks with spot=False"),
            job_role_arn=_optional("CDAO_BATCH_JOB_ROLE_ARN"),
            status_refresh_seconds=_positive_float("CDAO_BATCH_STATUS_REFRESH_SECONDS", 5.0),
        )


@dataclass(frozen=True)
class EMRConfig:
    region: str
    stack: str
    default_cluster_id: str | None
    release_label: str
    log_uri: str | None
    subnet_id: str | None
    entrypoint_bucket: str | None

    @classmethod
    def from_env(cls) -> EMRConfig:
        bucket = _optional("CDAO_EMR_ENTRYPOINT_BUCKET") or _optional("FLYTE_AWS_S3_BUCKET")
        return cls(
            region=aws_region(),
            stack=stack(),
            default_cluster_id=_optional("CDAO_EMR_CLUSTER_ID"),
            release_label=_optional("CDAO_EMR_RELEASE_LABEL") or "emr-7.5.0",
            log_uri=_optional("CDAO_EMR_LOG_URI"),
            subnet_id=_optional("CDAO_EMR_SUBNET_ID"),
            entrypoint_bucket=bucket.removeprefix("s3://").split("/")[0] if bucket else None,
        )

    def transient_roles(self) -> tuple[str, str]:
        """Roles are only needed when the connector creates a cluster, so they are read lazily."""
        return (
            _required("CDAO_EMR_SERVICE_ROLE", "EMR Spark tasks on a transient cluster"),
            _required("CDAO_EMR_INSTANCE_PROFILE", "EMR Spark tasks on a transient cluster"),
        )

    def require_entrypoint_bucket(self) -> str:
        if self.entrypoint_bucket is None:
            raise ConnectorConfigError(
                "environment variable CDAO_EMR_ENTRYPOINT_BUCKET (or FLYTE_AWS_S3_BUCKET) is not set on the "
                "connector service; it is needed to upload the Spark entrypoint for EMR tasks"
            )
        return self.entrypoint_bucket


@dataclass(frozen=True)
class CodeweaveConfig:
    endpoint: str
    api_key_secret: str
    timeout_seconds: float

    @classmethod
    def from_env(cls) -> CodeweaveConfig:
        endpoint = _required("CDAO_CODEWEAVE_ENDPOINT", "Codeweave GPU tasks")
        if not endpoint.startswith(("https://", "http://")):
            raise ConnectorConfigError(
                f"environment variable CDAO_CODEWEAVE_ENDPOINT={endpoint!r} must be an http(s) URL"
            )
        return cls(
            endpoint=endpoint.rstrip("/"),
            api_key_secret=_optional("CDAO_CODEWEAVE_API_KEY_SECRET") or "codeweave_api_key",
            timeout_seconds=_positive_float("CDAO_CODEWEAVE_TIMEOUT_SECONDS", 30.0),
        )

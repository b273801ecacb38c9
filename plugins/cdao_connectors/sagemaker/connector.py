"""SageMaker connectors written here: spot training, a safe status map for endpoints, and the
batch transform of a model package (see :mod:`cdao_connectors.sagemaker.transform`).

Everything else (processing, the plugin's transform of a registered model, tuning, models,
endpoint configs) is served by the connectors flytekitplugins-awssagemaker registers through its
entry points, each re-registered on a backend of its own (:func:`bulkhead_plugin_connectors`).
Every plugin connector's AWS calls go through :mod:`cdao_connectors.sagemaker._plugin_clients`
(shared clients, the backends' own threads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry, Resource, ResourceMeta
from flytekit.interaction.string_literals import literal_map_string_repr
from flytekit.models.core.types import BlobType
from flytekit.models.literals import Blob, BlobMetadata, Literal, LiteralMap, Scalar
from flytekit.models.task import TaskTemplate
from flytekitplugins.awssagemaker_inference.boto3_connector import BotoConnector
from flytekitplugins.awssagemaker_inference.boto3_mixin import Boto3ConnectorMixin, CustomException
from flytekitplugins.awssagemaker_inference.connector import SageMakerEndpointConnector, SageMakerEndpointMetadata
from flytekitplugins.awssagemaker_training import SageMakerTrainingTaskConnector

from cdao_connectors._attempts import (
    AttemptAbandoned,
    AttemptAnswers,
    attempt_item,
    checking_created_job,
    name_the_job,
)
from cdao_connectors._backends import Backend, BulkheadConnector, serving
from cdao_connectors._common import (
    attempt_seed,
    deterministic_name,
    log_link,
    noting_staleness,
    readable_execution_name,
    says_attempts_left,
)
from cdao_connectors._custom import config_from_custom
from cdao_connectors._metrics import observe_get_task
from cdao_connectors._status_cache import StatusCache, StatusCaches
from cdao_connectors._sync_metadata import install as pass_sync_task_execution_metadata
from cdao_connectors._sync_metadata import task_execution_metadata as sync_task_execution_metadata
from cdao_connectors.config import aws_region, status_refresh_seconds
from cdao_connectors.sagemaker._job_statuses import (
    STOPPED_BY,
    TRANSFORM,
    job_is_gone,
    job_status_cache,
    stop_found_nothing_to_stop,
)
from cdao_connectors.sagemaker._plugin_clients import (
    BulkheadPluginConnector,
    JobGone,
    attempt_tag,
    find_attempts_job,
    install,
    quota_refusal,
)
from cdao_connectors.sagemaker.task import (
    BATCH_TRANSFORM_TASK_TYPE,
    SAGEMAKER_TRAINING_TASK_TYPE,
    Processing,
    SpotTraining,
    Training,
)
from cdao_connectors.sagemaker.transform import BatchTransform, env_var

install()


def _refused_request(task: str, config: str, refused: ParamValidationError) -> ValueError:
    """botocore's refusal of a request against the API model (botocore/validate.py, raised before
    anything is sent), as the task's config error: its message names the parameter, not the task."""
    return ValueError(f"task {task}: {config}: {' '.join(str(refused).split())}")


class RequestRefusalsNameTheTask:
    """First base of the plugin connectors: a CreateTask whose request botocore refuses is a
    ValueError naming the task and its config, like every other config error."""

    custom_config: type | None

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        template = kwargs["task_template"] if "task_template" in kwargs else args[0]
        try:
            return await super().create(*args, **kwargs)  # type: ignore[misc]
        except ParamValidationError as refused:
            config = self.custom_config.__name__ if self.custom_config else "custom"
            raise _refused_request(template.id.name, config, refused) from None


class SpotTrainingConnector(RequestRefusalsNameTheTask, BulkheadPluginConnector, SageMakerTrainingTaskConnector):
    name = "CDAO SageMaker Spot Training Connector"
    task_type_name = SAGEMAKER_TRAINING_TASK_TYPE
    custom_config = SpotTraining

    def _build_request(self, *, container: Any, config: dict[str, Any], job_name: str, output_prefix: str):
        request = super()._build_request(
            container=container, config=config, job_name=job_name, output_prefix=output_prefix
        )
        if config.get("use_spot_instances"):
            stopping = request["StoppingCondition"]
            request["EnableManagedSpotTraining"] = True
            # SageMaker requires a wait budget >= the runtime when spot is on; twice the runtime
            # leaves room for one reclamation and restart.
            stopping["MaxWaitTimeInSeconds"] = config.get("max_wait_in_seconds") or 2 * stopping["MaxRuntimeInSeconds"]
        if config.get("checkpoint_s3_uri"):
            request["CheckpointConfig"] = {"S3Uri": config["checkpoint_s3_uri"]}
        return request


# EndpointStatus values from the SageMaker API reference. The plugin maps only three of them and
# raises KeyError on the rest (e.g. Updating), which fails a healthy deployment.
_ENDPOINT_PHASES = {
    "OutOfService": TaskExecution.FAILED,
    "Creating": TaskExecution.RUNNING,
    "Updating": TaskExecution.RUNNING,
    "SystemUpdating": TaskExecution.RUNNING,
    "RollingBack": TaskExecution.RUNNING,
    "InService": TaskExecution.SUCCEEDED,
    "Deleting": TaskExecution.FAILED,
    "Failed": TaskExecution.FAILED,
    "UpdateRollbackFailed": TaskExecution.FAILED,
}


@dataclass
class BotoRequestCustom:
    """``custom`` of the plugin's boto-request tasks without images (flytekitplugins-awssagemaker
    ``awssagemaker_inference/task.py`` SageMakerEndpointTask, ``awssagemaker_batch_transform/task.py``,
    ``awssagemaker_inference_recommender/task.py`` ``get_custom``): the API request, with input
    placeholders, and the region."""

    config: dict[str, Any]
    region: str | None = None


@dataclass
class BotoJobCustom(BotoRequestCustom):
    """``custom`` of the plugin's training, processing and tuning job tasks (``get_custom`` of
    ``awssagemaker_training/task.py``, ``awssagemaker_processing/task.py``,
    ``awssagemaker_hyperparameter_tuning/task.py``): also the images the request's placeholders name."""

    images: dict[str, str] | None = None


# The config each plugin connector's tasks carry in ``custom`` (task type -> dataclass). A plugin
# connector of a task type missing here stops the service at start: nothing would check its config.
CUSTOM_CONFIGS: dict[str, type] = {
    # The plugin's Pythonic configs, with the limits SageMaker sets that the plugin does not check.
    "sagemaker-training-task": Training,
    "sagemaker-processing-task": Processing,
    "sagemaker-training-job": BotoJobCustom,
    "sagemaker-processing-job": BotoJobCustom,
    "sagemaker-hyperparameter-tuning-job": BotoJobCustom,
    "sagemaker-transform-job": BotoRequestCustom,
    "sagemaker-inference-recommender-job": BotoRequestCustom,
    "sagemaker-endpoint": BotoRequestCustom,
}


class SafeEndpointConnector(RequestRefusalsNameTheTask, BulkheadPluginConnector, SageMakerEndpointConnector):
    """Same task type and name as the plugin's endpoint connector, replacing it in the registry."""

    custom_config = BotoRequestCustom

    async def _describe(self, resource_meta: SageMakerEndpointMetadata) -> Any:
        return await self._call(
            method="describe_endpoint",
            config={"EndpointName": resource_meta.config.get("EndpointName")},
            inputs=resource_meta.inputs,
            region=resource_meta.region,
        )

    @serving
    @observe_get_task
    async def get(self, resource_meta: SageMakerEndpointMetadata, **kwargs: Any) -> Resource:
        try:
            # From the connector's status cache: a known endpoint's status survives throttling.
            (described, _), stale = await self._read_bounded(self._describe(resource_meta))
        except (CustomException, JobGone) as exc:
            if isinstance(exc, CustomException) and not job_is_gone(exc.original_exception):
                raise
            name = resource_meta.config.get("EndpointName")
            message = f"SageMaker has no endpoint {name} (deleted outside Flyte?)"
            return Resource(phase=TaskExecution.FAILED, message=message)
        return noting_staleness(self._resource_for(described, resource_meta), stale)

    @staticmethod
    def _resource_for(described: dict[str, Any], resource_meta: SageMakerEndpointMetadata) -> Resource:
        status = described.get("EndpointStatus")
        phase = _ENDPOINT_PHASES.get(status)
        if phase is None:
            return Resource(phase=TaskExecution.RUNNING, message=f"unknown endpoint status {status!r}; waiting")
        region = resource_meta.region or "us-east-1"
        name = resource_meta.config.get("EndpointName")
        console = f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/endpoints/{name}"
        outputs = (
            {"result": {"EndpointArn": described.get("EndpointArn")}} if phase == TaskExecution.SUCCEEDED else None
        )
        message = described.get("FailureReason") if phase == TaskExecution.FAILED else status
        return Resource(
            phase=phase, message=message, outputs=outputs, log_links=[log_link("SageMaker console", console)]
        )


@dataclass
class BotoCallCustom:
    """``custom`` of the plugin's ``boto`` tasks (``awssagemaker_inference/boto3_task.py``
    ``BotoTask.get_custom``): one AWS call."""

    service: str
    method: str
    config: dict[str, Any]
    region: str | None = None
    images: dict[str, str] | None = None


# The only AWS calls a ``boto`` task may make with the connector's role: those of the plugin's
# ``create_sagemaker_deployment`` (flytekitplugins-awssagemaker ``awssagemaker_inference/workflow.py``:
# SageMakerModelTask and SageMakerEndpointConfigTask in ``task.py``), which ``cdao_sdk.sagemaker_endpoint``
# builds; its endpoint is the ``sagemaker-endpoint`` task type. The plugin's connector calls whatever
# method the task names (``boto3_connector.py`` ``BotoConnector.do``), and the role may also write the
# attempts ledger and stop any job, so anything else is refused.
BOTO_CALLS: frozenset[tuple[str, str]] = frozenset(
    {("sagemaker", "create_model"), ("sagemaker", "create_endpoint_config")}
)


class CheckedBotoConnector(BotoConnector):
    """The plugin's synchronous ``boto`` connector, with its whole custom config checked first and its
    call limited to :data:`BOTO_CALLS`.

    Raises ValueError naming the task and the field, or the call and the allowed ones, before any AWS
    call; a request botocore's model refuses (ParamValidationError, raised before sending) is a
    ValueError naming the task and the call too. Like every create's error, each ends with how many
    attempts are left (:func:`cdao_connectors._common.says_attempts_left`), read from the
    ExecuteTaskSync's metadata (:mod:`cdao_connectors._sync_metadata`): propeller answers an
    ExecuteTaskSync error as a CreateTask's (flyteplugins/v1.16.8 plugin.go ``Create``).
    """

    async def do(self, task_template: TaskTemplate, output_prefix: str, inputs: Any = None, **kwargs: Any) -> Any:
        metadata = kwargs.pop("task_execution_metadata", None) or sync_task_execution_metadata()
        return await self._checked_do(task_template, output_prefix, inputs, task_execution_metadata=metadata, **kwargs)

    @says_attempts_left
    async def _checked_do(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: Any = None,
        task_execution_metadata: Any = None,
        **kwargs: Any,
    ) -> Any:
        task = task_template.id.name
        call = config_from_custom(BotoCallCustom, task_template.custom, task)
        if (call.service, call.method) not in BOTO_CALLS:
            allowed = ", ".join(f"{service}.{method}" for service, method in sorted(BOTO_CALLS))
            raise ValueError(f"task {task}: a boto task may not call {call.service}.{call.method}; allowed: {allowed}")
        try:
            return await super().do(task_template, output_prefix, inputs, **kwargs)
        except ParamValidationError as refused:
            raise _refused_request(task, f"BotoCallCustom.config: {call.service}.{call.method}", refused) from None


ConnectorRegistry.register(SpotTrainingConnector())
ConnectorRegistry.register(SafeEndpointConnector(), override=True)
ConnectorRegistry.register(CheckedBotoConnector(), override=True)
pass_sync_task_execution_metadata()


def bulkhead_plugin_connectors() -> None:
    """Re-registers every other async connector of flytekitplugins-awssagemaker (processing,
    training, tuning, recommender and transform jobs; platform/addons/flyte/flyte-core/values.yaml
    routes all their task types to this service) as a subclass with :class:`BulkheadPluginConnector`
    first: same task type and name, its own backend, every RPC within propeller's deadline."""
    agents = ConnectorRegistry.list_connectors()
    served = [(c.name, c.version) for agent in agents for c in agent.supported_task_categories]
    for name, version in served:
        connector = ConnectorRegistry.get_connector(name, version)
        if (
            isinstance(connector, Boto3ConnectorMixin)
            and isinstance(connector, AsyncConnectorBase)
            and not isinstance(connector, BulkheadPluginConnector)
        ):
            plugin_class = type(connector)
            if name not in CUSTOM_CONFIGS:
                raise RuntimeError(
                    f"{plugin_class.__name__} serves task type {name!r}, which has no entry in "
                    "cdao_connectors.sagemaker.connector.CUSTOM_CONFIGS: its config would go unchecked"
                )
            bases = (RequestRefusalsNameTheTask, BulkheadPluginConnector, plugin_class)
            attributes = {"__doc__": plugin_class.__doc__, "custom_config": CUSTOM_CONFIGS[name]}
            bounded = type(plugin_class.__name__, bases, attributes)
            ConnectorRegistry.register(bounded(), override=True)


bulkhead_plugin_connectors()


@dataclass
class BatchTransformMetadata(ResourceMeta):
    job_name: str
    region: str
    output_uri: str


_TRANSFORM_PHASES = {
    "InProgress": TaskExecution.RUNNING,
    "Stopping": TaskExecution.RUNNING,
    "Completed": TaskExecution.SUCCEEDED,
    "Failed": TaskExecution.FAILED,
    "Stopped": TaskExecution.FAILED,
}


def _already_exists(error: ClientError) -> bool:
    """SageMaker's answer to a create repeated for one attempt (a repeated CreateTask)."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    return code == "ResourceInUse" or (code == "ValidationException" and "already exist" in message)


def _s3_location(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass
class BatchTransformCustom:
    """The whole ``custom`` of a batch transform task (written by ``BatchTransformTask.get_custom``)."""

    transform: BatchTransform
    image: str


class BatchTransformConnector(BulkheadConnector):
    """A SageMaker model of the task's model package, and a transform job of it over the data.

    Names derive from the task attempt, so a repeated CreateTask finds the model and job it made
    instead of starting a second job. Models are kept after the job: the job's ModelName is how one
    finds which package produced a set of predictions.
    """

    name = "CDAO SageMaker Batch Transform Connector"

    def __init__(self) -> None:
        super().__init__(task_type_name=BATCH_TRANSFORM_TASK_TYPE, metadata_type=BatchTransformMetadata)
        self.backend = Backend("SageMaker batch transform")
        self.status_cache = StatusCaches(self._new_cache)

    def _new_cache(self, region: str, max_age: float) -> StatusCache:
        return job_status_cache(TRANSFORM, lambda: self.backend.aws("sagemaker", region), max_age)

    def create_sync(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        task_execution_metadata: Any = None,
    ) -> BatchTransformMetadata:
        task = task_template.id.name
        custom = config_from_custom(BatchTransformCustom, task_template.custom, task)
        config, image = custom.transform, custom.image
        if not image:
            raise ValueError(f"task {task}: the template names no image to serve the model")
        values = literal_map_string_repr(inputs) if inputs else {}
        for name in ("model", "data"):
            if not str(values.get(name, "")).startswith("s3://"):
                raise ValueError(f"task {task}: input {name}={values.get(name)!r} must be stored in S3 for SageMaker")
        seed = attempt_seed(task_template, output_prefix, task_execution_metadata)
        job = deterministic_name("flyte", seed, readable_execution_name(task_execution_metadata), 63, "A-Za-z0-9-")
        output_uri = f"{config.output_s3_path.rstrip('/')}/{job}"
        environment = {**config.environment, **{env_var(n): str(values[n]) for n in config.env_inputs}}
        tag = attempt_tag(seed)
        tags = [{"Key": "flyte-task", "Value": task[:256]}, tag]
        sm = self.backend.aws("sagemaker", config.region)
        try:
            sm.create_model(
                ModelName=job,
                PrimaryContainer={"Image": image, "ModelDataUrl": values["model"]},
                ExecutionRoleArn=config.execution_role_arn,
                Tags=tags,
            )
        except ClientError as exc:
            if (refusal := quota_refusal(self.name, "create_model", f"ModelName={job}", exc)) is not None:
                raise refusal from exc
            if not _already_exists(exc):
                raise
        request: dict[str, Any] = {
            "TransformJobName": job,
            "ModelName": job,
            "MaxConcurrentTransforms": config.max_concurrent_transforms,
            "MaxPayloadInMB": config.max_payload_mb,
            "BatchStrategy": config.strategy,
            "ModelClientConfig": {"InvocationsTimeoutInSeconds": config.invocation_timeout_seconds},
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": values["data"]}},
                "ContentType": config.content_type,
                "SplitType": config.split_type,
            },
            "TransformOutput": {
                "S3OutputPath": output_uri,
                "Accept": config.accept,
                "AssembleWith": "Line" if config.split_type == "Line" else "None",
            },
            "TransformResources": {"InstanceType": config.instance_type, "InstanceCount": config.instance_count},
            "DataProcessing": {
                "InputFilter": config.input_filter,
                "OutputFilter": config.output_filter,
                "JoinSource": config.join_source,
            },
            "Tags": tags,
        }
        if environment:
            request["Environment"] = environment
        # The model costs nothing idle; the job runs instances: the sweep can find it from here on.
        lookup = {"name_field": "TransformJobName", "name": job, "region": config.region}
        name_the_job({**lookup, "attempt_tag": tag["Value"]})
        try:
            sm.create_transform_job(**request)
        except ClientError as exc:
            if (
                refusal := quota_refusal(self.name, "create_transform_job", f"TransformJobName={job}", exc)
            ) is not None:
                raise refusal from exc
            if not _already_exists(exc):
                raise
            # A stopped job means this CreateTask repeats one that gave up (propeller lost its
            # state; the job was stopped, cdao_connectors._backends create_within_deadline).
            # Adopting it would answer FAILED, which fails the whole task (connector/plugin.go
            # Status at flyteplugins/v1.16.8); an error fails only this attempt.
            with checking_created_job(self.name, f"SageMaker transform job {job}"):
                status = sm.describe_transform_job(TransformJobName=job).get("TransformJobStatus")
                if status in ("Stopping", "Stopped"):
                    raise AttemptAbandoned(
                        f"task {task}: this attempt's SageMaker transform job {job} was stopped (its first "
                        "CreateTask gave up); the task's next attempt, if one is left, starts a new job"
                    ) from exc
        return BatchTransformMetadata(job_name=job, region=config.region, output_uri=output_uri)

    def attempt_answers(
        self, task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any
    ) -> AttemptAnswers:
        # The job's name answers a repeated CreateTask the attempt's job ("already exists") even while
        # a give-up is stopping it; the attempt table orders the two (cdao_connectors._attempts).
        seed = attempt_seed(task_template, output_prefix, task_execution_metadata)
        return AttemptAnswers(self.backend, attempt_item("sagemaker-transform", seed), self.task_category, seed=seed)

    def swept_job(self, lookup: dict[str, Any], recorded: dict[str, Any] | None) -> BatchTransformMetadata | None:
        """The attempt's transform job, as :meth:`delete_sync` takes it, when SageMaker has it
        (:func:`find_attempts_job`): the sweeper stops one whose CreateTask never answered it."""
        region = lookup.get("region") or aws_region()
        if not find_attempts_job(self.backend.aws("sagemaker", region), lookup):
            return None
        return BatchTransformMetadata(job_name=lookup["name"], region=region, output_uri="")

    def status_of(self, resource_meta: BatchTransformMetadata) -> tuple[StatusCache, str]:
        return self.status_cache(resource_meta.region, status_refresh_seconds()), resource_meta.job_name

    def resource_for(self, described: dict[str, Any] | None, resource_meta: BatchTransformMetadata) -> Resource:
        region, job = resource_meta.region, resource_meta.job_name
        if described is None:
            return Resource(
                phase=TaskExecution.FAILED, message=f"SageMaker has no transform job {job} (deleted outside Flyte?)"
            )
        status = described.get("TransformJobStatus")
        group = "$252Faws$252Fsagemaker$252FTransformJobs"
        links = [
            log_link(
                "SageMaker console",
                f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/transform-jobs/{job}",
            ),
            log_link(
                "CloudWatch logs",
                f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
                f"#logsV2:log-groups/log-group/{group}$3FlogStreamNameFilter$3D{job}",
            ),
        ]
        phase = _TRANSFORM_PHASES.get(status)
        if phase is None:
            return Resource(phase=TaskExecution.RUNNING, message=f"unknown transform status {status!r}; waiting")
        if phase == TaskExecution.FAILED:
            reason = described.get("FailureReason") or f"transform job {status.lower()}"
            return Resource(phase=phase, message=reason, log_links=links)
        if phase == TaskExecution.RUNNING:
            return Resource(phase=phase, message=status, log_links=links)
        # A completed job wrote one <object>.out per input object; none means nothing to hand on.
        bucket, prefix = _s3_location(resource_meta.output_uri)
        listed = self.backend.aws("s3", region).list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/", MaxKeys=1)
        if not listed.get("KeyCount"):
            return Resource(
                phase=TaskExecution.FAILED,
                message=f"transform job {job} completed but wrote nothing under {resource_meta.output_uri}",
                log_links=links,
            )
        multipart = BlobType(format="", dimensionality=BlobType.BlobDimensionality.MULTIPART)
        blob = Blob(metadata=BlobMetadata(type=multipart), uri=resource_meta.output_uri)
        directory = Literal(scalar=Scalar(blob=blob))
        return Resource(
            phase=phase, message=status, outputs=LiteralMap(literals={"predictions": directory}), log_links=links
        )

    def delete_sync(self, resource_meta: BatchTransformMetadata) -> None:
        sm = self.backend.aws("sagemaker", resource_meta.region)
        try:
            sm.stop_transform_job(TransformJobName=resource_meta.job_name)
        except ClientError as exc:
            # A job that ended, is stopping or is gone leaves nothing to stop; a running one's refusal stays.
            if not stop_found_nothing_to_stop(sm, STOPPED_BY["stop_transform_job"], resource_meta.job_name, exc):
                raise


ConnectorRegistry.register(BatchTransformConnector())

"""The CDAO task decorators. Each validates its arguments when the function is decorated, so a
mistake fails in the notebook cell that defines the task, not an hour later on the cluster."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import flytekit
from cdao_connectors._quantity import check_quantity
from cdao_connectors.aws_batch.task import BatchJob
from cdao_connectors.codeweave.task import CodeweaveGPU
from cdao_connectors.emr.task import EMRSpark, ServerlessSpark, ServerlessSparkTask
from cdao_connectors.sagemaker.task import Processing, ProcessingTask, SpotTraining, SpotTrainingTask
from cdao_connectors.sagemaker.transform import BatchTransform, BatchTransformTask
from flytekit import PodTemplate, Resources
from flytekit.configuration import SerializationSettings
from flytekit.core.base_task import TaskMetadata
from flytekit.extend import TaskPlugins
from flytekitplugins.awssagemaker_inference import create_sagemaker_deployment
from kubernetes.client import V1Container, V1PodSpec, V1ResourceRequirements, V1Toleration

from cdao_sdk import routing, settings
from cdao_sdk.pools import CPU, GPU_RESOURCE, NODE_POOL_LABEL, NODE_POOLS, NodePool, mig_resource, workload_label

_PRIMARY = "primary"  # flytekit's default primary container name in pod templates


def _decorate(fn: Callable | None, build: Callable[[Callable], Any]) -> Any:
    """Support both ``@dec`` and ``@dec(...)``."""
    if fn is not None:
        return build(fn)
    return build


def _check_count(value: Any, what: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what}={value!r} must be an integer >= {minimum}")
    return value


def _check_not_given(task_kwargs: dict[str, Any], names: tuple[str, ...], decorator: str) -> None:
    clash = [n for n in names if n in task_kwargs]
    if clash:
        raise ValueError(f"{decorator} sets {clash} itself from its own arguments; do not pass them")


def _pools_for(workload_type: str) -> list[NodePool]:
    pools = [p for p in NODE_POOLS.values() if workload_type in p.workload_types]
    if not pools:
        known = sorted({w for p in NODE_POOLS.values() for w in p.workload_types})
        raise ValueError(f"workload_type={workload_type!r} is not served by any node pool; known: {known}")
    return pools


def _pod_template(
    node_selector: dict[str, str], tolerations: list[dict[str, str]], resources: dict[str, str] | None = None
) -> PodTemplate:
    # Requests equal limits: GPUs cannot be overcommitted, and equal CPU/memory gives Guaranteed QoS.
    requirements = V1ResourceRequirements(requests=resources, limits=resources) if resources else None
    return PodTemplate(
        primary_container_name=_PRIMARY,
        pod_spec=V1PodSpec(
            containers=[V1Container(name=_PRIMARY, resources=requirements)],
            node_selector=node_selector,
            tolerations=[V1Toleration(**t) for t in tolerations] or None,
        ),
    )


def _workload_pod_template(workload_type: str) -> PodTemplate:
    pools = _pools_for(workload_type)
    tolerations = [p.taint.toleration() for p in pools if p.taint is not None]
    return _pod_template({workload_label(workload_type): "true"}, tolerations)


def task(_fn: Callable | None = None, *, workload_type: str | None = None, **task_kwargs: Any) -> Any:
    """flytekit's ``@task``; ``workload_type`` additionally pins the pod to the pools serving it."""
    if workload_type is not None:
        _check_not_given(task_kwargs, ("pod_template",), "task(workload_type=...)")
        task_kwargs["pod_template"] = _workload_pod_template(workload_type)
    return _decorate(_fn, lambda fn: flytekit.task(fn, **task_kwargs))


def cpu_task(
    _fn: Callable | None = None,
    *,
    cpu: str = "1",
    memory: str = "2Gi",
    workload_type: str = "mlops",
    **task_kwargs: Any,
) -> Any:
    """A pod on the EKS ``cpu`` pool with these requests (and equal limits, for predictable QoS)."""
    check_quantity(cpu, "cpu_task cpu")
    check_quantity(memory, "cpu_task memory")
    if workload_type not in CPU.workload_types:
        raise ValueError(f"cpu_task workload_type={workload_type!r}: the cpu pool serves {CPU.workload_types}")
    _check_not_given(task_kwargs, ("requests", "limits", "resources", "pod_template"), "cpu_task")
    res = Resources(cpu=cpu, mem=memory)
    template = _pod_template({NODE_POOL_LABEL: CPU.name, workload_label(workload_type): "true"}, [])
    return _decorate(_fn, lambda fn: flytekit.task(fn, requests=res, limits=res, pod_template=template, **task_kwargs))


def gpu_task(
    _fn: Callable | None = None,
    *,
    gpu_type: str,
    platform: str | None = None,
    gpus: int = 1,
    memory: str = "32Gi",
    cpu: str = "4",
    mig_profile: str | None = None,
    inference: bool = False,
    workload_type: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """A GPU task on an EKS GPU pool or on Codeweave (see :mod:`cdao_sdk.routing`)."""
    _check_count(gpus, "gpu_task gpus", 1)
    check_quantity(memory, "gpu_task memory")
    check_quantity(cpu, "gpu_task cpu")
    chosen = routing.choose_gpu_platform(platform, gpu_type, mig_profile)
    _check_not_given(task_kwargs, ("requests", "limits", "resources", "pod_template", "task_config"), "gpu_task")

    if chosen == "codeweave":
        if mig_profile is not None:
            raise ValueError("gpu_task mig_profile is an EKS a100-mig feature; Codeweave rents whole GPUs")
        if workload_type is not None:
            raise ValueError("gpu_task workload_type selects EKS node pools; it has no meaning on Codeweave")
        config = CodeweaveGPU(gpu_type=gpu_type, gpus=gpus, cpu=cpu, memory=memory, inference=inference)
        return _decorate(_fn, lambda fn: flytekit.task(fn, task_config=config, **task_kwargs))

    pool = routing.choose_eks_gpu_pool(gpu_type, mig_profile)
    if pool.time_sliced and gpus > 1:
        # The device plugin hands out slices, so 2 would be two slices of one GPU; it refuses such a
        # pod (failRequestsGreaterThanOne, platform/addons/gpu-operator), and so do we, earlier.
        raise ValueError(
            f"gpu_task gpus={gpus}: pool {pool.name} is time-sliced and gives a task at most 1 GPU; "
            "use platform='codeweave' for several whole GPUs"
        )
    # All resources go in the pod template: flytekit replaces a template's container resources
    # with the task's requests/limits, which cannot name nvidia.com/mig-* resources.
    resources = {"cpu": cpu, "memory": memory}
    if mig_profile is not None:
        resources[mig_resource(mig_profile)] = str(gpus)
    else:
        resources[GPU_RESOURCE] = str(gpus)
    wt = workload_type or routing.default_gpu_workload(pool, inference)
    if wt not in pool.workload_types:
        raise ValueError(f"gpu_task workload_type={wt!r}: pool {pool.name} serves {pool.workload_types}")
    tolerations = [pool.taint.toleration()] if pool.taint is not None else []
    template = _pod_template({NODE_POOL_LABEL: pool.name, workload_label(wt): "true"}, tolerations, resources)
    return _decorate(_fn, lambda fn: flytekit.task(fn, pod_template=template, **task_kwargs))


def _timeout_seconds(timeout: int | datetime.timedelta | None, what: str) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return int(timeout.total_seconds())
    return _check_count(timeout, what, 1)


def batch_task(
    _fn: Callable | None = None,
    *,
    spot: bool = True,
    vcpus: int = 1,
    memory: str = "2Gi",
    gpus: int = 0,
    retries: int | None = None,
    timeout: int | datetime.timedelta | None = None,
    **task_kwargs: Any,
) -> Any:
    """An AWS Batch job on the spot (default) or on-demand queue.

    Spot tasks default to 3 retries because a reclaimed instance ends the attempt through no fault
    of the code; the connector reports reclamation as retryable.
    """
    _check_not_given(task_kwargs, ("task_config", "timeout_seconds"), "batch_task")
    seconds = _timeout_seconds(timeout, "batch_task timeout")
    config = BatchJob(spot=spot, vcpus=vcpus, memory=memory, gpus=gpus, timeout_seconds=seconds)
    n_retries = _check_count(retries if retries is not None else (3 if spot else 0), "batch_task retries", 0)
    if seconds is not None:
        task_kwargs["timeout"] = datetime.timedelta(seconds=seconds)
    return _decorate(_fn, lambda fn: flytekit.task(fn, task_config=config, retries=n_retries, **task_kwargs))


# A managed job's role, region and buckets belong to a stack. Registration reads them from the
# settings (CI exports the stack's values); defining a task, or running it with `pyflyte run`,
# needs none of them. The plugins' configs insist on a role when built, so they hold this marker
# until `get_custom` replaces it.
_AT_REGISTRATION = "<cdao_sdk setting, read at registration>"
# The image `pyflyte register --image` names; flytekit fills it in when serialising.
REGISTERED_IMAGE = "{{.image.default.fqn}}:{{.image.default.version}}"


def _managed_image(task_kwargs: dict[str, Any]) -> None:
    if task_kwargs.get("container_image") is None:
        task_kwargs["container_image"] = settings.get("default_image") or REGISTERED_IMAGE


def _stack_values(config: Any, where: str, role_setting: str = "sagemaker_role") -> dict[str, Any]:
    """The job role and region a config left to registration (region: required if marked, else optional)."""
    values: dict[str, Any] = {}
    if config.execution_role_arn == _AT_REGISTRATION:
        values["execution_role_arn"] = settings.require(role_setting, where)
    if config.region == _AT_REGISTRATION:
        values["region"] = settings.require("region", where)
    elif config.region is None:
        values["region"] = settings.get("region")
    return values


@dataclass
class _StackServerless(ServerlessSpark):
    """EMR Serverless whose job role, application and region come from the settings at registration."""


class _StackServerlessTask(ServerlessSparkTask):
    def get_custom(self, settings_: SerializationSettings) -> dict[str, Any]:
        cfg = self.task_config
        values = _stack_values(cfg, f"spark_task(platform='emr-serverless') {self.name}", "emr_serverless_role")
        if cfg.application_id is None:
            values["application_id"] = settings.get("emr_serverless_application_id")
        return replace(cfg, **values).to_dict()


TaskPlugins.register_pythontask_plugin(_StackServerless, _StackServerlessTask)


def _spark_submit_parameters(spark_conf: dict[str, str]) -> str | None:
    if not spark_conf:
        return None
    return " ".join(f"--conf {k}={v}" for k, v in sorted(spark_conf.items()))


def spark_task(
    _fn: Callable | None = None,
    *,
    platform: str | None = None,
    cluster_id: str | None = None,
    instance_type: str | None = None,
    instance_count: int | None = None,
    spark_conf: dict[str, str] | None = None,
    execution_role_arn: str | None = None,
    application_id: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """A Spark task on EMR on EC2 (existing or transient cluster) or on EMR Serverless."""
    _check_not_given(task_kwargs, ("task_config",), "spark_task")
    conf = dict(spark_conf or {})
    shape_given = instance_type is not None or instance_count is not None
    chosen = routing.choose_spark_platform(platform, cluster_id, shape_given)
    if chosen == "emr":
        if cluster_id is not None and shape_given:
            raise ValueError(
                "spark_task: give cluster_id (existing cluster) or instance_type/count (transient), not both"
            )
        config: Any = EMRSpark(
            cluster_id=cluster_id,
            instance_type=instance_type or "m5.xlarge",
            instance_count=instance_count if instance_count is not None else 3,
            spark_conf=conf,
        )
    else:
        if cluster_id is not None or shape_given:
            raise ValueError(
                "spark_task(platform='emr-serverless') takes no cluster_id, instance_type or instance_count"
            )
        EMRSpark(spark_conf=conf)  # same validation of spark_conf
        config = _StackServerless(
            execution_role_arn=execution_role_arn or _AT_REGISTRATION,
            application_id=application_id,
            spark_submit_parameters=_spark_submit_parameters(conf),
        )
    return _decorate(_fn, lambda fn: flytekit.task(fn, task_config=config, **task_kwargs))


@dataclass
class _StackTraining(SpotTraining):
    """Spot training whose role, region and default S3 paths come from the settings at registration."""


class _StackTrainingTask(SpotTrainingTask):
    def get_custom(self, settings_: SerializationSettings) -> dict[str, Any]:
        cfg = self.task_config
        where = f"sagemaker_training_task {self.name}"
        values = _stack_values(cfg, where)
        bucket = settings.get("default_bucket")
        if bucket and cfg.output_s3_path is None:
            values["output_s3_path"] = f"s3://{bucket}/sagemaker/training"
        if bucket and cfg.checkpoint_s3_uri is None and cfg.use_spot_instances:
            values["checkpoint_s3_uri"] = f"s3://{bucket}/sagemaker/checkpoints"
        return replace(cfg, **values).to_dict()


@dataclass
class _StackProcessing(Processing):
    """Processing whose role and region come from the settings at registration."""


class _StackProcessingTask(ProcessingTask):
    def get_custom(self, settings_: SerializationSettings) -> dict[str, Any]:
        cfg = self.task_config
        return replace(cfg, **_stack_values(cfg, f"sagemaker_processing_task {self.name}")).to_dict()


TaskPlugins.register_pythontask_plugin(_StackTraining, _StackTrainingTask)
TaskPlugins.register_pythontask_plugin(_StackProcessing, _StackProcessingTask)


def sagemaker_training_task(
    _fn: Callable | None = None,
    *,
    instance_type: str = "ml.m5.xlarge",
    use_spot_instances: bool = True,
    max_runtime_seconds: int = 3600,
    max_wait_seconds: int | None = None,
    volume_size_gb: int = 30,
    execution_role_arn: str | None = None,
    output_s3_path: str | None = None,
    checkpoint_s3_uri: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """Runs the function inside a SageMaker training job (spot by default, with checkpoints).

    Unless given, the role and region are the settings' at registration, and so are the output
    and checkpoint paths under ``s3://<default_bucket>/sagemaker/`` when a bucket is set.
    """
    _check_not_given(task_kwargs, ("task_config",), "sagemaker_training_task")
    _managed_image(task_kwargs)
    config = _StackTraining(
        execution_role_arn=execution_role_arn or _AT_REGISTRATION,
        region=_AT_REGISTRATION,
        instance_type=instance_type,
        volume_size_in_gb=volume_size_gb,
        max_runtime_in_seconds=max_runtime_seconds,
        output_s3_path=output_s3_path,
        use_spot_instances=use_spot_instances,
        max_wait_in_seconds=max_wait_seconds,
        checkpoint_s3_uri=checkpoint_s3_uri,
    )
    return _decorate(_fn, lambda fn: flytekit.task(fn, task_config=config, **task_kwargs))


def sagemaker_processing_task(
    _fn: Callable | None = None,
    *,
    instance_type: str = "ml.m5.xlarge",
    max_runtime_seconds: int = 3600,
    volume_size_gb: int = 30,
    execution_role_arn: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """Runs the function inside a SageMaker processing job (the plugin's Pythonic mode).

    Unless given, the role and region are the settings' at registration.
    """
    _check_not_given(task_kwargs, ("task_config",), "sagemaker_processing_task")
    _managed_image(task_kwargs)
    config = _StackProcessing(
        execution_role_arn=execution_role_arn or _AT_REGISTRATION,
        region=_AT_REGISTRATION,
        instance_type=instance_type,
        volume_size_in_gb=volume_size_gb,
        max_runtime_in_seconds=max_runtime_seconds,
    )
    return _decorate(_fn, lambda fn: flytekit.task(fn, task_config=config, **task_kwargs))


class _SettingsTransformTask(BatchTransformTask):
    """Role, region and output bucket come from the SDK settings when the task is registered.

    Only registration needs them: a local run serves the model on 127.0.0.1 and calls no AWS.
    """

    def registration_config(self) -> BatchTransform:
        cfg = self.task_config
        where = f"sagemaker_batch_transform_task {self.name}"
        values = _stack_values(cfg, where)
        if not cfg.output_s3_path:
            values["output_s3_path"] = f"s3://{settings.require('default_bucket', where)}/sagemaker/transform"
        return replace(cfg, **values)


def sagemaker_batch_transform_task(
    name: str,
    *,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    max_payload_mb: int = 6,
    max_concurrent_transforms: int = 1,
    strategy: str = "MultiRecord",
    content_type: str = "text/csv",
    accept: str = "text/csv",
    split_type: str = "Line",
    input_filter: str = "$",
    join_source: str = "None",
    output_filter: str = "$",
    invocation_timeout_seconds: int = 600,
    environment: Mapping[str, str] | None = None,
    env_inputs: Mapping[str, type] | None = None,
    execution_role_arn: str | None = None,
    region: str | None = None,
    output_s3_path: str | None = None,
    container_image: str | None = None,
    cache: bool = False,
    cache_version: str = "",
    retries: int = 0,
    timeout: datetime.timedelta | None = None,
) -> BatchTransformTask:
    """A SageMaker batch transform: ``(model: FlyteFile, data: FlyteFile, **env_inputs) -> predictions``.

    ``model`` is a package from :func:`cdao_sdk.package_model`; ``predictions`` is the directory of
    ``<data file>.out`` files SageMaker writes. Each ``env_inputs`` entry (name -> int/float/str/bool)
    is one more task input, handed to the inference code as the upper-cased environment variable.
    Registered, the task creates a SageMaker model of the package served by the registered image and
    runs the transform job; under ``pyflyte run`` the same code serves the package on 127.0.0.1.
    """
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", name):
        raise ValueError(f"sagemaker_batch_transform_task name={name!r}: letters, digits, '_', '.' and '-' only")
    if output_s3_path is not None and not output_s3_path.startswith("s3://"):
        raise ValueError(f"sagemaker_batch_transform_task output_s3_path={output_s3_path!r} must be an s3:// URI")
    _check_count(retries, "sagemaker_batch_transform_task retries", 0)
    if cache and not cache_version:
        raise ValueError("sagemaker_batch_transform_task cache=True needs a cache_version")
    config = BatchTransform(
        execution_role_arn=execution_role_arn or _AT_REGISTRATION,
        region=region or _AT_REGISTRATION,
        output_s3_path=output_s3_path or "",  # filled from default_bucket at registration
        instance_type=instance_type,
        instance_count=instance_count,
        max_payload_mb=max_payload_mb,
        max_concurrent_transforms=max_concurrent_transforms,
        strategy=strategy,
        content_type=content_type,
        accept=accept,
        split_type=split_type,
        input_filter=input_filter,
        join_source=join_source,
        output_filter=output_filter,
        invocation_timeout_seconds=invocation_timeout_seconds,
        environment=dict(environment or {}),
        env_inputs=tuple(env_inputs or ()),
    )
    metadata = TaskMetadata(cache=cache, cache_version=cache_version, retries=retries, timeout=timeout)
    return _SettingsTransformTask(
        name=name,
        config=config,
        env_input_types=dict(env_inputs or {}),
        container_image=container_image or settings.get("default_image"),
        metadata=metadata,
    )


def sagemaker_endpoint(
    name: str,
    *,
    image: str,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    execution_role_arn: str | None = None,
) -> Any:
    """A workflow deploying ``model_path`` (an s3:// model.tar.gz) behind a real-time endpoint.

    Built with the plugin's ``create_sagemaker_deployment`` (model, endpoint config, endpoint);
    names get an idempotence token so a re-run deploys alongside instead of colliding.
    """
    if not re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,40}$", name):
        raise ValueError(f"sagemaker_endpoint name={name!r}: letters, digits and '-', at most 41 characters")
    _check_count(instance_count, "sagemaker_endpoint instance_count", 1)
    role = execution_role_arn or settings.require("sagemaker_role", "sagemaker_endpoint")
    return create_sagemaker_deployment(
        name=name,
        model_config={
            "ModelName": name,
            "PrimaryContainer": {"Image": "{images.primary_container_image}", "ModelDataUrl": "{inputs.model_path}"},
            "ExecutionRoleArn": role,
        },
        endpoint_config_config={
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InitialInstanceCount": instance_count,
                    "InstanceType": instance_type,
                }
            ],
        },
        endpoint_config={"EndpointName": name, "EndpointConfigName": name},
        images={"primary_container_image": image},
        model_input_types={"model_path": str},
        region=settings.require("region", "sagemaker_endpoint"),
    )

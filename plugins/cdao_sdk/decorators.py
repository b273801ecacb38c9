"""The CDAO task decorators. Each validates its arguments when the function is decorated, so a
mistake fails in the notebook cell that defines the task, not an hour later on the cluster."""

from __future__ import annotations

import datetime
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import flytekit
from cdao_connectors._aws_limits import SAGEMAKER_ENDPOINT_INSTANCE_COUNT
from cdao_connectors._quantity import check_quantity
from cdao_connectors.aws_batch.task import BatchJob, BatchTask
from cdao_connectors.codeweave.task import CodeweaveGPU
from cdao_connectors.emr.task import (
    EMR_SERVERLESS_PYTHON,
    PYSPARK_PYTHON_KEYS,
    EMRSpark,
    ServerlessSpark,
    ServerlessSparkTask,
)
from cdao_connectors.sagemaker.task import Processing, ProcessingTask, SpotTraining, SpotTrainingTask
from cdao_connectors.sagemaker.transform import BatchTransform, BatchTransformTask
from flytekit import PodTemplate, Resources
from flytekit.configuration import SerializationSettings
from flytekit.core.base_task import TaskMetadata
from flytekit.extend import TaskPlugins
from flytekitplugins.awssagemaker_inference import create_sagemaker_deployment
from kubernetes.client import V1Container, V1PodSpec, V1ResourceRequirements, V1Toleration

from cdao_sdk import routing, settings
from cdao_sdk._keywords import check, checked
from cdao_sdk.pools import CPU, GPU_RESOURCE, NODE_POOL_LABEL, NODE_POOLS, NodePool, mig_resource, workload_label

_PRIMARY = "primary"  # flytekit's default primary container name in pod templates


def _naming(error: BaseException, what: str) -> None:
    """``error`` made to say ``what`` was being defined: appended to the message of our own
    ValueError/TypeError (one string argument), else a PEP 678 note, which tracebacks print (flytekit's
    exceptions compute ``__str__`` from their own fields, e.g. ``FlyteMissingTypeException``,
    flytekit/exceptions/user.py)."""
    where = f"({what})"
    notes = getattr(error, "__notes__", [])
    if where in notes or (error.args and where in str(error.args[0])):
        return  # a decorator delegating to another (sagemaker_task) says it once
    if type(error) in (ValueError, TypeError) and len(error.args) == 1 and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]} {where}",)
    else:
        error.add_note(where)


def _task_decorator(
    where: str, *, unchecked: tuple[str, ...] = (), function: str = "_fn"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An SDK task decorator usable bare (``@dec``) and with keywords (``@dec(...)``), whose every
    error names the decorated function by module and qualified name.

    ``function`` is the parameter that receives the decorated function (the first one). With keywords
    the function is not known yet, so the checks (:func:`cdao_sdk._keywords.checked`, then the body)
    run when the returned decorator is applied; when ``function`` holds a string instead
    (``sagemaker_batch_transform_task("module.score")``, a task made without a function) they run at
    once and name that task. Errors keep their type."""

    def wrap(body: Callable[..., Any]) -> Callable[..., Any]:
        run = checked(where, unchecked=unchecked)(body)

        @functools.wraps(body)
        def decorator(*args: Any, **kwargs: Any) -> Any:
            target = args[0] if args else kwargs.pop(function, None)
            if target is None:
                return lambda fn: decorator(fn, *args[1:], **kwargs)
            if callable(target):
                what = f"decorating {getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)!s}"
            else:
                what = f"defining task {target!r}"
            try:
                return run(target, *args[1:], **kwargs)
            except Exception as exc:
                _naming(exc, what)
                raise

        return decorator

    return wrap


def _built(decorator: str, make: Callable[[], Any], keywords: dict[str, str] | None = None) -> Any:
    """``make()``, a task config whose own checks (its ``__post_init__``: ours, or a plugin's such as
    flytekitplugins-awssagemaker ``PythonicJobConfig``) raise a ValueError naming only the config's
    field (``max_runtime_in_seconds must be at least 1``): re-raised naming the decorator and the
    keyword the user wrote (``keywords`` maps config fields to keywords where they differ)."""
    try:
        return make()
    except ValueError as exc:
        message = str(exc)
        for config_field, keyword in (keywords or {}).items():
            message = re.sub(rf"\b{re.escape(config_field)}\b", keyword, message)
        raise ValueError(f"{decorator}: {message}") from exc


# flytekit.task's keywords: its named parameters, plus the three it still pops from **kwargs before
# refusing the rest with "Unrecognized argument(s) for task", an error naming no decorator
# (flytekit/core/task.py ``task``, 1.16.31). The SDK's decorators refuse an unknown one first, naming themselves.
_FLYTEKIT_TASK_KEYWORDS = frozenset(
    {
        name
        for name, p in inspect.signature(flytekit.task).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
        or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and name != "_task_function")
    }
    | {"cache_serialize", "cache_version", "cache_ignore_input_vars"}
)


def _check_task_keywords(task_kwargs: dict[str, Any], decorator: str, own: tuple[str, ...]) -> None:
    unknown = sorted(set(task_kwargs) - _FLYTEKIT_TASK_KEYWORDS)
    if unknown:
        raise TypeError(
            f"{decorator} got unknown keyword(s) {unknown}; it takes {', '.join(own)} and flytekit.task's "
            f"keywords ({', '.join(sorted(_FLYTEKIT_TASK_KEYWORDS))})"
        )


def _refuse(decorator: str, given: dict[str, Any], reasons: dict[str, str]) -> None:
    """Refuse keywords that would be accepted and ignored, each with the reason (``ValueError``)."""
    for name, reason in reasons.items():
        if name in given:
            raise ValueError(f"{decorator} {name}={given[name]!r}: {reason}")


def _check_count(value: Any, what: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what}={value!r} must be an integer >= {minimum}")
    return value


# The retries a task served by the connector service gets when its author sets none. Propeller
# (flyteplugins/v1.16.8) turns every CreateTask error into a retryable USER failure that ends the
# attempt and is never re-sent (internal/webapi/launcher.go ``launch``, core/phase.go), and allows
# ``retries + 1`` such attempts (flytepropeller/v1.16.8 pkg/controller/nodes/executor.go
# ``isEligibleForRetry``). With flytekit's default of 0, one create refused by throttling, past its
# deadline, or refused while another replica creates the attempt's job (AttemptInProgress), or an EMR
# step over the cluster's cap, would end the workflow.
# The same retries also run a job again after it failed with a recoverable error, as a pod task's
# retries would: the connectors answer RETRYABLE_FAILED (plugins/webapi/connector/plugin.go ``Status``:
# ``PhaseInfoRetryableFailure``) for a job whose error.pb is RECOVERABLE, which flytekit's
# entrypoint writes for the author's ``FlyteRecoverableException`` and for any error of its own
# outside the user's code, such as inputs it could not download (flytekit 1.16.31 bin/entrypoint.py
# ``_dispatch_execute``), and for a reclaimed Batch spot instance or an interrupted EMR step. So such
# a job, on a GPU or not, can run up to ``retries + 1`` times. A user exception is NON_RECOVERABLE, and
# a job's own FAILED (or ABORTED) is ``PhaseInfoFailure``, permanent: a job failing in its own code is
# never run again. Three is kept knowing this: re-running after a transient infrastructure error is
# what authors expect of Flyte retries, and Batch spot tasks had three for reclaimed instances.
CONNECTOR_TASK_RETRIES = 3


# flytekit.task's own default (0 in flytekit 1.16.31 core/task.py ``task``): the retries of a task run as a pod.
_POD_TASK_RETRIES: int = inspect.signature(flytekit.task).parameters["retries"].default


def _retries(value: Any, decorator: str, default: int) -> int:
    """The retries a task of ``decorator`` gets: ``value``, else ``default`` when ``value`` is None,
    which every SDK decorator reads as not given. Raises ValueError naming the decorator when
    ``value`` is not an integer >= 0."""
    return _check_count(default if value is None else value, f"{decorator} retries", 0)


def _connector_retries(task_kwargs: dict[str, Any], decorator: str) -> None:
    """``task_kwargs['retries']`` (:func:`_retries`) for a task the connector service serves:
    :data:`CONNECTOR_TASK_RETRIES` unless given."""
    task_kwargs["retries"] = _retries(task_kwargs.get("retries"), decorator, CONNECTOR_TASK_RETRIES)


def _pod_retries(task_kwargs: dict[str, Any], decorator: str) -> None:
    """``task_kwargs['retries']`` (:func:`_retries`) for a task run as a pod: flytekit's default unless given."""
    task_kwargs["retries"] = _retries(task_kwargs.get("retries"), decorator, _POD_TASK_RETRIES)


@functools.cache
def _sagemaker_instance_types(shape: str) -> frozenset[str]:
    import botocore.session  # noqa: PLC0415  (the service model loads only when a SageMaker task is defined)

    return frozenset(botocore.session.get_session().get_service_model("sagemaker").shape_for(shape).enum)


def _check_sagemaker_instance_type(where: str, value: str, shape: str) -> None:
    """``value`` must be one of the SageMaker API's ``shape`` enum (botocore ``sagemaker/2017-07-24``
    service model: TrainingInstanceType, ProcessingInstanceType, TransformInstanceType,
    ProductionVariantInstanceType): SageMaker names its instance types ``ml.<EC2 type>``."""
    check(
        where,
        "instance_type",
        value,
        value in _sagemaker_instance_types(shape),
        f"one of the SageMaker API's {shape} values (ml.<type>, e.g. 'ml.m5.xlarge')",
    )


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


@_task_decorator("task")
def task(_fn: Callable | None = None, *, workload_type: str | None = None, **task_kwargs: Any) -> Any:
    """flytekit's ``@task``; ``workload_type`` additionally pins the pod to the pools serving it."""
    _check_task_keywords(task_kwargs, "task", ("workload_type",))
    if workload_type is not None:
        _check_not_given(task_kwargs, ("pod_template",), "task(workload_type=...)")
        task_kwargs["pod_template"] = _workload_pod_template(workload_type)
    _pod_retries(task_kwargs, "task")
    return flytekit.task(_fn, **task_kwargs)


@_task_decorator("cpu_task")
def cpu_task(
    _fn: Callable | None = None,
    *,
    cpu: str = "1",
    memory: str = "2Gi",
    workload_type: str = "mlops",
    **task_kwargs: Any,
) -> Any:
    """A pod on the EKS ``cpu`` pool with these requests (and equal limits, for predictable QoS).

    ``cpu`` and ``memory`` are Kubernetes quantities (``"500m"``, ``"2"``, ``"4Gi"``).
    """
    _check_task_keywords(task_kwargs, "cpu_task", ("cpu", "memory", "workload_type"))
    check_quantity(cpu, "cpu_task cpu")
    check_quantity(memory, "cpu_task memory")
    if workload_type not in CPU.workload_types:
        raise ValueError(f"cpu_task workload_type={workload_type!r}: the cpu pool serves {CPU.workload_types}")
    _check_not_given(task_kwargs, ("requests", "limits", "resources", "pod_template"), "cpu_task")
    res = Resources(cpu=cpu, mem=memory)
    template = _pod_template({NODE_POOL_LABEL: CPU.name, workload_label(workload_type): "true"}, [])
    _pod_retries(task_kwargs, "cpu_task")
    return flytekit.task(_fn, requests=res, limits=res, pod_template=template, **task_kwargs)


@_task_decorator("gpu_task")
def gpu_task(
    _fn: Callable | None = None,
    *,
    gpu_type: str | None = None,
    platform: str | None = None,
    gpus: int = 1,
    memory: str = "32Gi",
    cpu: str = "4",
    mig_profile: str | None = None,
    inference: bool | None = None,
    workload_type: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """A GPU task on an EKS GPU pool or on Codeweave (see :mod:`cdao_sdk.routing`).

    Without ``gpu_type`` the task runs on Codeweave's default GPU for its kind of work
    (``routing.CODEWEAVE_DEFAULT_GPU``), which is all ``inference`` decides there. On EKS,
    ``inference`` picks the pool's inference workload type; a request a pool cannot serve (inference on
    ``h100``, training on MIG slices) is a ``ValueError`` naming the pool.
    """
    _check_task_keywords(
        task_kwargs,
        "gpu_task",
        ("gpu_type", "platform", "gpus", "memory", "cpu", "mig_profile", "inference", "workload_type"),
    )
    _check_count(gpus, "gpu_task gpus", 1)
    check_quantity(memory, "gpu_task memory")
    check_quantity(cpu, "gpu_task cpu")
    if inference is not None and not isinstance(inference, bool):
        raise ValueError(f"gpu_task inference={inference!r} must be True or False")
    _check_not_given(task_kwargs, ("requests", "limits", "resources", "pod_template", "task_config"), "gpu_task")

    if gpu_type is None:
        if platform not in (None, "codeweave") or mig_profile is not None:
            raise ValueError("gpu_task needs gpu_type on EKS: 'a100' or 'h100' (a MIG slice needs 'a100')")
        gpu_type = routing.CODEWEAVE_DEFAULT_GPU[bool(inference)]
    elif inference is not None and routing.choose_gpu_platform(platform, gpu_type, mig_profile) == "codeweave":
        raise ValueError(
            f"gpu_task inference={inference}: on Codeweave it only picks the default GPU "
            f"({routing.CODEWEAVE_DEFAULT_GPU[True]} for inference) and gpu_type={gpu_type!r} is given, "
            "so it would change nothing; drop it"
        )
    chosen = routing.choose_gpu_platform(platform, gpu_type, mig_profile)

    if chosen == "codeweave":
        if mig_profile is not None:
            raise ValueError("gpu_task mig_profile is an EKS a100-mig feature; Codeweave rents whole GPUs")
        if workload_type is not None:
            raise ValueError("gpu_task workload_type selects EKS node pools; it has no meaning on Codeweave")
        config = _built("gpu_task", lambda: CodeweaveGPU(gpu_type=gpu_type, gpus=gpus, cpu=cpu, memory=memory))
        _connector_retries(task_kwargs, "gpu_task")
        return flytekit.task(_fn, task_config=config, **task_kwargs)

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
    wt = routing.gpu_workload(pool, inference, workload_type)
    tolerations = [pool.taint.toleration()] if pool.taint is not None else []
    template = _pod_template({NODE_POOL_LABEL: pool.name, workload_label(wt): "true"}, tolerations, resources)
    _pod_retries(task_kwargs, "gpu_task")
    return flytekit.task(_fn, pod_template=template, **task_kwargs)


def _timeout_seconds(timeout: int | datetime.timedelta | None, what: str) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return int(timeout.total_seconds())
    return _check_count(timeout, what, 1)


BATCH_PLATFORM = "aws-batch"


@_task_decorator("batch_task")
def batch_task(
    _fn: Callable | None = None,
    *,
    spot: bool | None = None,
    vcpus: int = 1,
    memory: str = "2Gi",
    gpus: int = 0,
    retries: int | None = None,
    timeout: int | datetime.timedelta | None = None,
    platform: str = BATCH_PLATFORM,
    spot_instances: bool | None = None,
    on_demand: bool | None = None,
    **task_kwargs: Any,
) -> Any:
    """An AWS Batch job on the spot (default) or on-demand queue.

    ``spot_instances=`` (the seeds' name) is ``spot=``; ``on_demand=True`` is ``spot=False``; giving
    two that disagree is a ``ValueError``. ``platform`` may only be ``"aws-batch"``. AWS Batch places
    a job on its compute environments' instance types (the stack's ``cdao:batch.instanceTypes``), so
    a job states ``vcpus`` and ``memory`` and ``instance_type`` is refused with that reason.
    Without ``retries`` the task gets :data:`CONNECTOR_TASK_RETRIES`, which also covers a reclaimed
    spot instance (the connector reports reclamation as retryable); an explicit value is kept.
    """
    instance_type = task_kwargs.pop("instance_type", None)
    if instance_type is not None:
        check("batch_task", "instance_type", instance_type, isinstance(instance_type, str), "str")
    _check_task_keywords(
        task_kwargs,
        "batch_task",
        ("spot", "spot_instances", "on_demand", "vcpus", "memory", "gpus", "retries", "timeout", "platform"),
    )
    if platform != BATCH_PLATFORM:
        raise ValueError(f"batch_task platform={platform!r}: batch_task runs on {BATCH_PLATFORM!r} only")
    given = {"spot": spot, "spot_instances": spot_instances, "on_demand": on_demand}
    for name, value in given.items():
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"batch_task {name}={value!r} must be True or False")
    wants_spot = {name: (not v if name == "on_demand" else v) for name, v in given.items() if v is not None}
    if len(set(wants_spot.values())) > 1:
        said = ", ".join(f"{name}={given[name]}" for name in wants_spot)
        raise ValueError(f"batch_task: {said} disagree on the queue (spot or on-demand)")
    chosen_spot = next(iter(wants_spot.values()), True)
    _check_not_given(task_kwargs, ("task_config", "timeout_seconds"), "batch_task")
    seconds = _timeout_seconds(timeout, "batch_task timeout")
    shape = {"spot": chosen_spot, "vcpus": vcpus, "memory": memory, "gpus": gpus, "timeout_seconds": seconds}
    config = _built(
        "batch_task",
        lambda: (
            BatchJob(**shape)
            if instance_type is None
            else _BatchJobNamingInstanceType(**shape, instance_type=instance_type)
        ),
        {"timeout_seconds": "timeout"},
    )
    n_retries = _retries(retries, "batch_task", CONNECTOR_TASK_RETRIES)
    if seconds is not None:
        task_kwargs["timeout"] = datetime.timedelta(seconds=seconds)
    return flytekit.task(_fn, task_config=config, retries=n_retries, **task_kwargs)


@dataclass(frozen=True)
class _BatchJobNamingInstanceType(BatchJob):
    """A Batch job whose author named an instance type (seed 000's ``preprocess_data``): it runs
    locally as written; registering it fails with the reason, since nothing can honour it remotely."""

    instance_type: str = ""


class _BatchTaskNamingInstanceType(BatchTask):
    def get_custom(self, settings_: SerializationSettings) -> dict[str, Any]:
        # AWS Batch places a job on its compute environment's instance types (ComputeResource.instanceTypes;
        # ContainerProperties.instanceType is for multi-node parallel jobs only, botocore batch/2016-08-10),
        # and infra/components/compute.py gives each queue one environment of the stack's
        # cdao:batch.instanceTypes; a job sized to a type the environment lacks stays RUNNABLE
        # ("Jobs stuck in a RUNNABLE status", AWS Batch user guide).
        raise ValueError(
            f"batch_task {self.name} instance_type={self.task_config.instance_type!r}: AWS Batch runs a job on its "
            "compute environment's instance types (stack setting cdao:batch.instanceTypes), never on one the job "
            "names, so it cannot be registered; ask for the job's size with vcpus= and memory= instead "
            "(it runs locally as written)"
        )


TaskPlugins.register_pythontask_plugin(_BatchJobNamingInstanceType, _BatchTaskNamingInstanceType)


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
    """EMR Serverless whose job role, application and region come from the settings at registration.

    ``sync_image`` is off: the image is the stack's application's (infra/components/compute.py), one
    application shared by every task. The plugin's default (on) calls UpdateApplication whenever the
    task image differs, which EMR Serverless refuses while the application is STARTED
    (https://docs.aws.amazon.com/emr-serverless/latest/APIReference/API_UpdateApplication.html) and
    which would switch the image under the other tasks' runs; the connector refuses it.
    """

    sync_image: bool = False


class _StackServerlessTask(ServerlessSparkTask):
    def get_custom(self, settings_: SerializationSettings) -> dict[str, Any]:
        cfg = self.task_config
        where = f"spark_task(platform='emr-serverless') {self.name}"
        values = _stack_values(cfg, where, "emr_serverless_role")
        if cfg.application_id == _AT_REGISTRATION:
            values["application_id"] = settings.require("emr_serverless_application_id", where)
        return replace(cfg, **values).to_dict()


TaskPlugins.register_pythontask_plugin(_StackServerless, _StackServerlessTask)


def _spark_submit_parameters(spark_conf: dict[str, str]) -> str | None:
    if not spark_conf:
        return None
    return " ".join(f"--conf {k}={v}" for k, v in sorted(spark_conf.items()))


@_task_decorator("spark_task")
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
    """A Spark task on EMR on EC2 (existing or transient cluster) or on EMR Serverless.

    ``execution_role_arn`` and ``application_id`` are EMR Serverless's; on EMR on EC2 a step runs
    as the cluster's instance profile, so giving them there is a ``ValueError``.
    """
    _refuse(
        "spark_task",
        task_kwargs,
        {
            # MLlib is part of Apache Spark itself (pyspark.ml; https://spark.apache.org/docs/latest/ml-guide.html);
            # EMR lists no separate ML component for Spark in any release
            # (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/Spark-release-history.html).
            "ml": "Spark MLlib ships with every EMR release and EMR Serverless, so ml=True would change nothing; "
            "drop it and import pyspark.ml in the task instead"
        },
    )
    _check_task_keywords(
        task_kwargs,
        "spark_task",
        (
            "platform",
            "cluster_id",
            "instance_type",
            "instance_count",
            "spark_conf",
            "execution_role_arn",
            "application_id",
        ),
    )
    _check_not_given(task_kwargs, ("task_config",), "spark_task")
    conf = dict(spark_conf or {})
    shape_given = instance_type is not None or instance_count is not None
    chosen = routing.choose_spark_platform(platform, cluster_id, shape_given)
    if chosen == "emr":
        serverless_only = {
            k: v
            for k, v in (("execution_role_arn", execution_role_arn), ("application_id", application_id))
            if v is not None
        }
        if serverless_only:
            raise ValueError(
                f"spark_task {serverless_only} are EMR Serverless settings; on EMR on EC2 "
                "(cluster_id/instance_type/instance_count) the step runs as the cluster's EC2 instance profile"
            )
        if cluster_id is not None and shape_given:
            raise ValueError(
                "spark_task: give cluster_id (existing cluster) or instance_type/count (transient), not both"
            )
        config: Any = _built(
            "spark_task",
            lambda: EMRSpark(
                cluster_id=cluster_id,
                instance_type=instance_type or "m5.xlarge",
                instance_count=instance_count if instance_count is not None else 3,
                spark_conf=conf,
            ),
        )
    else:
        if cluster_id is not None or shape_given:
            raise ValueError(
                "spark_task(platform='emr-serverless') takes no cluster_id, instance_type or instance_count"
            )
        EMRSpark(spark_conf=conf)  # same validation of spark_conf
        # EMR Serverless takes sparkSubmitParameters as one string split on whitespace, with no
        # quoting (flytekitplugins-awsemrserverless connector.py _UNSAFE_ENV_VALUE_CHARS: "EMR
        # Serverless does not support quoting values here"): a key or value with whitespace or a
        # quote, or '=' in a key, cannot be passed as written.
        for key, value in conf.items():
            check(
                "spark_task",
                "spark_conf",
                {key: value},
                not re.search(r"[\s'\"=]", key) and not re.search(r"[\s'\"]", value),
                "keys without whitespace, quotes or '=' and values without whitespace or quotes on EMR "
                "Serverless (its sparkSubmitParameters cannot quote them)",
            )
        # The application's image has flytekit only under its own Python; an author's value wins.
        python = dict.fromkeys(PYSPARK_PYTHON_KEYS, EMR_SERVERLESS_PYTHON)
        config = _StackServerless(
            execution_role_arn=execution_role_arn or _AT_REGISTRATION,
            application_id=application_id or _AT_REGISTRATION,
            spark_submit_parameters=_spark_submit_parameters({**python, **conf}),
        )
    _connector_retries(task_kwargs, "spark_task")
    return flytekit.task(_fn, task_config=config, **task_kwargs)


# The framework an author declares (seed 003: framework="xgboost", framework_version="1.2-1") is
# recorded on the SageMaker job as these tags; the job runs the task image, which must carry it.
FRAMEWORK_TAGS = {"framework": "cdao.io/framework", "framework_version": "cdao.io/framework-version"}


def _custom_with_framework_tags(cfg: Any, values: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with ``values`` as ``custom``: framework fields moved into the job's tags (the
    plugin's config has no such field; its ``tags`` become CreateTrainingJob/CreateProcessingJob Tags,
    flytekitplugins-awssagemaker ``_build_request``)."""
    declared = {FRAMEWORK_TAGS[k]: getattr(cfg, k) for k in FRAMEWORK_TAGS if getattr(cfg, k) is not None}
    tags = {**(cfg.tags or {}), **declared} or None
    custom = replace(cfg, **values, tags=tags).to_dict()
    for name in FRAMEWORK_TAGS:
        custom.pop(name, None)
    return custom


# flytekitplugins-awssagemaker's config fields (``PythonicJobConfig``) -> the SDK keywords they come from.
_SAGEMAKER_KEYWORDS = {
    "max_runtime_in_seconds": "max_runtime_seconds",
    "volume_size_in_gb": "volume_size_gb",
    "max_wait_in_seconds": "max_wait_seconds",
}


@dataclass
class _StackTraining(SpotTraining):
    """Spot training whose role, region and default S3 paths come from the settings at registration."""

    framework: str | None = None
    framework_version: str | None = None


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
        return _custom_with_framework_tags(cfg, values)


@dataclass
class _StackProcessing(Processing):
    """Processing whose role and region come from the settings at registration."""

    framework: str | None = None
    framework_version: str | None = None


class _StackProcessingTask(ProcessingTask):
    def get_custom(self, settings_: SerializationSettings) -> dict[str, Any]:
        cfg = self.task_config
        return _custom_with_framework_tags(cfg, _stack_values(cfg, f"sagemaker_processing_task {self.name}"))


TaskPlugins.register_pythontask_plugin(_StackTraining, _StackTrainingTask)
TaskPlugins.register_pythontask_plugin(_StackProcessing, _StackProcessingTask)


_FRAMEWORK_REASONS = {
    "algorithm": "see framework: built-in algorithms run SageMaker's code, not this function",
    "python_version": "the job runs the task image's Python",
}


@_task_decorator("sagemaker_training_task")
def sagemaker_training_task(
    _fn: Callable | None = None,
    *,
    instance_type: str = "ml.m5.xlarge",
    instance_count: int = 1,
    use_spot_instances: bool = True,
    max_runtime_seconds: int = 3600,
    max_wait_seconds: int | None = None,
    volume_size_gb: int = 30,
    execution_role_arn: str | None = None,
    output_s3_path: str | None = None,
    checkpoint_s3_uri: str | None = None,
    framework: str | None = None,
    framework_version: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """Runs the function inside a SageMaker training job (spot by default, with checkpoints).

    ``framework`` / ``framework_version`` (seed 003) are recorded on the job as the tags
    :data:`FRAMEWORK_TAGS`; the job runs the function in the task image (flytekitplugins-awssagemaker
    ``pythonic_base.py`` ``_container_entrypoint``), so the library must be in that image: SageMaker's
    framework images carry no flytekit and cannot run a Flyte function.

    Unless given, the role and region are the settings' at registration, and so are the output
    and checkpoint paths under ``s3://<default_bucket>/sagemaker/`` when a bucket is set.
    ``instance_count`` is the job's; flytekitplugins-awssagemaker runs a Python function on exactly
    one instance and refuses others (``PythonicJobConfig.__post_init__``). ``max_wait_seconds`` is
    the spot wait budget, so it needs ``use_spot_instances=True``.
    """
    _refuse("sagemaker_training_task", task_kwargs, _FRAMEWORK_REASONS)
    _check_task_keywords(
        task_kwargs,
        "sagemaker_training_task",
        (
            "instance_type",
            "instance_count",
            "use_spot_instances",
            "max_runtime_seconds",
            "max_wait_seconds",
            "volume_size_gb",
            "execution_role_arn",
            "output_s3_path",
            "checkpoint_s3_uri",
            "framework",
            "framework_version",
        ),
    )
    _check_sagemaker_instance_type("sagemaker_training_task", instance_type, "TrainingInstanceType")
    if max_wait_seconds is not None and not use_spot_instances:
        raise ValueError(
            f"sagemaker_training_task max_wait_seconds={max_wait_seconds!r}: the wait budget is for managed spot "
            "training (MaxWaitTimeInSeconds) and use_spot_instances=False; drop it or use spot"
        )
    _check_not_given(task_kwargs, ("task_config",), "sagemaker_training_task")
    _managed_image(task_kwargs)
    config = _built(
        "sagemaker_training_task",
        lambda: _StackTraining(
            execution_role_arn=execution_role_arn or _AT_REGISTRATION,
            region=_AT_REGISTRATION,
            instance_type=instance_type,
            instance_count=instance_count,
            volume_size_in_gb=volume_size_gb,
            max_runtime_in_seconds=max_runtime_seconds,
            output_s3_path=output_s3_path,
            use_spot_instances=use_spot_instances,
            max_wait_in_seconds=max_wait_seconds,
            checkpoint_s3_uri=checkpoint_s3_uri,
            framework=framework,
            framework_version=framework_version,
        ),
        _SAGEMAKER_KEYWORDS,
    )
    _connector_retries(task_kwargs, "sagemaker_training_task")
    return flytekit.task(_fn, task_config=config, **task_kwargs)


@_task_decorator("sagemaker_processing_task")
def sagemaker_processing_task(
    _fn: Callable | None = None,
    *,
    instance_type: str = "ml.m5.xlarge",
    instance_count: int = 1,
    max_runtime_seconds: int = 3600,
    volume_size_gb: int = 30,
    execution_role_arn: str | None = None,
    framework: str | None = None,
    framework_version: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """Runs the function inside a SageMaker processing job (the plugin's Pythonic mode).

    Unless given, the role and region are the settings' at registration. ``instance_count``,
    ``framework`` and ``framework_version`` as in :func:`sagemaker_training_task`.
    """
    _refuse("sagemaker_processing_task", task_kwargs, _FRAMEWORK_REASONS)
    _check_task_keywords(
        task_kwargs,
        "sagemaker_processing_task",
        (
            "instance_type",
            "instance_count",
            "max_runtime_seconds",
            "volume_size_gb",
            "execution_role_arn",
            "framework",
            "framework_version",
        ),
    )
    _check_sagemaker_instance_type("sagemaker_processing_task", instance_type, "ProcessingInstanceType")
    _check_not_given(task_kwargs, ("task_config",), "sagemaker_processing_task")
    _managed_image(task_kwargs)
    config = _built(
        "sagemaker_processing_task",
        lambda: _StackProcessing(
            execution_role_arn=execution_role_arn or _AT_REGISTRATION,
            region=_AT_REGISTRATION,
            instance_type=instance_type,
            instance_count=instance_count,
            volume_size_in_gb=volume_size_gb,
            max_runtime_in_seconds=max_runtime_seconds,
            framework=framework,
            framework_version=framework_version,
        ),
        _SAGEMAKER_KEYWORDS,
    )
    _connector_retries(task_kwargs, "sagemaker_processing_task")
    return flytekit.task(_fn, task_config=config, **task_kwargs)


SAGEMAKER_JOB_TYPES = ("training", "processing")


@_task_decorator("sagemaker_task")
def sagemaker_task(_fn: Callable | None = None, *, job_type: str, **kwargs: Any) -> Any:
    """``@sagemaker_task(job_type="training"|"processing", ...)``: :func:`sagemaker_training_task` or
    :func:`sagemaker_processing_task` with the same keywords. A batch transform is not a function
    task (see :func:`sagemaker_batch_transform_task`), so ``job_type="batch_transform"`` is refused."""
    decorators = {"training": sagemaker_training_task, "processing": sagemaker_processing_task}
    if job_type not in decorators:
        raise ValueError(
            f"sagemaker_task job_type={job_type!r}: expected one of {SAGEMAKER_JOB_TYPES}; a batch transform is "
            'score = sagemaker_batch_transform_task("<module>.score", ...)'
        )
    return decorators[job_type](_fn, **kwargs)


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


@dataclass(frozen=True)
class _TransformOfAFunction:
    """``@sagemaker_batch_transform_task(...)`` on a function: runs the body locally, refused at registration."""

    instance_type: str


class _TransformOfAFunctionTask(flytekit.PythonFunctionTask):
    def get_custom(self, settings_: SerializationSettings) -> dict[str, Any]:
        raise ValueError(
            f"@sagemaker_batch_transform_task on {self.name} runs the function locally, but SageMaker batch "
            "transform runs a model package's inference code (cdao_sdk.package_model), never a function body, "
            'so it cannot be registered. Write score = sagemaker_batch_transform_task("<module>.score", '
            "instance_type=...) and call score(model=<package>, data=<headerless file>) in the workflow"
        )


TaskPlugins.register_pythontask_plugin(_TransformOfAFunction, _TransformOfAFunctionTask)


@_task_decorator("sagemaker_batch_transform_task", unchecked=("name",), function="name")
def sagemaker_batch_transform_task(
    name: str | Callable | None = None,
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
    retries: int | None = None,
    timeout: datetime.timedelta | None = None,
) -> Any:
    """A SageMaker batch transform: ``(model: FlyteFile, data: FlyteFile, **env_inputs) -> predictions``.

    ``model`` is a package from :func:`cdao_sdk.package_model`; ``predictions`` is the directory of
    ``<data file>.out`` files SageMaker writes. Each ``env_inputs`` entry (name -> int/float/str/bool)
    is one more task input, handed to the inference code as the upper-cased environment variable.
    Registered, the task creates a SageMaker model of the package served by the registered image and
    runs the transform job; under ``pyflyte run`` the same code serves the package on 127.0.0.1.

    Used as a decorator (seed 003's ``@sagemaker_batch_transform_task(...)`` on ``batch_inference``),
    the function runs locally as written, but registering it is a ``ValueError`` saying how to write
    a transform: SageMaker runs a model package's inference code, never a function body.
    """
    if name is not None and not isinstance(name, str) and not callable(name):
        raise TypeError(f"sagemaker_batch_transform_task name={name!r}: expected str (the task's name)")
    if isinstance(name, str) and not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", name):
        raise ValueError(f"sagemaker_batch_transform_task name={name!r}: letters, digits, '_', '.' and '-' only")
    _check_sagemaker_instance_type("sagemaker_batch_transform_task", instance_type, "TransformInstanceType")
    retries = _retries(retries, "sagemaker_batch_transform_task", CONNECTOR_TASK_RETRIES)
    if cache and not cache_version:
        raise ValueError("sagemaker_batch_transform_task cache=True needs a cache_version")
    config = _built(
        "sagemaker_batch_transform_task",
        lambda: BatchTransform(
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
        ),
    )
    if not isinstance(name, str):  # the decorator form
        refused = _TransformOfAFunction(instance_type=instance_type)
        return flytekit.task(
            name, task_config=refused, cache=cache, cache_version=cache_version, retries=retries, timeout=timeout
        )
    metadata = TaskMetadata(cache=cache, cache_version=cache_version, retries=retries, timeout=timeout)
    return _SettingsTransformTask(
        name=name,
        config=config,
        env_input_types=dict(env_inputs or {}),
        container_image=container_image or settings.get("default_image"),
        metadata=metadata,
    )


@checked("sagemaker_endpoint")
def sagemaker_endpoint(
    name: str,
    *,
    image: str,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    execution_role_arn: str | None = None,
    retries: int | None = None,
) -> Any:
    """A workflow deploying ``model_path`` (an s3:// model.tar.gz) behind a real-time endpoint.

    Built with the plugin's ``create_sagemaker_deployment`` (model, endpoint config, endpoint);
    names get an idempotence token so a re-run deploys alongside instead of colliding. Each of its
    three nodes is a connector's CreateTask, so each gets ``retries`` (default
    :data:`CONNECTOR_TASK_RETRIES`).
    """
    if not re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,40}$", name):
        raise ValueError(f"sagemaker_endpoint name={name!r}: letters, digits and '-', at most 41 characters")
    try:
        SAGEMAKER_ENDPOINT_INSTANCE_COUNT.check("instance_count", instance_count)
    except ValueError as refused:
        raise ValueError(f"sagemaker_endpoint {refused}") from None
    _check_sagemaker_instance_type("sagemaker_endpoint", instance_type, "ProductionVariantInstanceType")
    n_retries = _retries(retries, "sagemaker_endpoint", CONNECTOR_TASK_RETRIES)
    role = execution_role_arn or settings.require("sagemaker_role", "sagemaker_endpoint")
    deployment = create_sagemaker_deployment(
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
    # The plugin builds the three tasks itself, with flytekit's default of no retries. Set on the
    # tasks, not as node overrides, so that the CreateTask request's template carries them and the
    # connector can say how many attempts are left (cdao_connectors._common.attempts_left).
    for node in deployment.nodes:
        node.flyte_entity.metadata.retries = n_retries
    return deployment

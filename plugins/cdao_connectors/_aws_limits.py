"""The range of every integer a task config hands to an AWS API, and the one check of it; the same
for a tag map (:class:`TagLimit`).

Each :class:`IntegerLimit` names the API member the integer becomes. Its bounds are read from
botocore's service model installed with boto3 (``botocore/data/<service>/<version>/service-2.json``:
the member's ``min``/``max``), so they follow the installed botocore. A bound the model does not
state comes from the API reference's documentation of the member when it documents one (cited at the
limit), else from the member's type: Smithy's ``integer`` is a 32-bit signed integer and ``long`` a
64-bit one (https://smithy.io/2.0/spec/simple-types.html#integer), the largest value the API can
take at all. The SDK's decorators and the connectors' strict custom configs both check through the
task configs' ``__post_init__``, so a limit has this one owner.

Hand-written: botocore validates only ``min`` (botocore 1.40.61 ``botocore/validate.py``
``range_check``, which ``ParamValidator`` calls for integers and lengths, checks ``min`` alone) and
only when the request is sent, long after a task is decorated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session

# Smithy simple types (https://smithy.io/2.0/spec/simple-types.html): integer is 32-bit signed,
# long is 64-bit signed.
_TYPE_MAXIMUM = {"integer": 2**31 - 1, "long": 2**63 - 1}


@functools.cache
def _shape(service: str, shape: str) -> Any:
    """``service``'s shape ``shape`` in the installed botocore model, the model read once per service
    (a new botocore session decodes it again: the SageMaker one is megabytes of JSON)."""
    return _service_model(service).shape_for(shape)


@functools.cache
def _service_model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


@functools.cache
def _model_member(service: str, shape: str, member: str) -> tuple[int | None, int | None, str]:
    found = _shape(service, shape).members[member]
    return found.metadata.get("min"), found.metadata.get("max"), found.type_name


@functools.cache
def shape_max(service: str, shape: str) -> int:
    """The ``max`` ``service``'s installed botocore model gives the shape ``shape`` (a list's or a
    map's entries, a string's characters). Raises KeyError when the model gives none."""
    return _shape(service, shape).metadata["max"]


@functools.cache
def _map_shapes(service: str, shape: str) -> tuple[int | None, tuple[Any, Any]]:
    """A map shape's ``max`` entries and its key and value shapes' (min, max, compiled pattern)."""
    found = _shape(service, shape)

    def bounds(of: Any) -> Any:
        pattern = of.metadata.get("pattern")
        return of.metadata.get("min"), of.metadata.get("max"), re.compile(pattern) if pattern else None

    return found.metadata.get("max"), (bounds(found.key), bounds(found.value))


@dataclass(frozen=True)
class TagLimit:
    """The tag map ``service``'s model types as the map shape ``shape`` (botocore's names): at most
    its ``max`` tags, each key and value within its shape's ``min``/``max`` characters and of its
    ``pattern`` (read from the installed botocore, as :class:`IntegerLimit`'s bounds). ``owner`` and
    ``api`` only word the error."""

    owner: str
    api: str
    service: str
    shape: str

    def check(self, field: str, tags: Mapping[str, str], added: frozenset[str] = frozenset()) -> None:
        """ValueError naming ``field`` (``EMRServerless.tags``), the key and the limit when the API
        would refuse ``tags``: a key or value out of its length bounds or with a character its pattern
        refuses, or more tags than the map holds once the keys ``added`` (tags the connector adds to
        the request, replacing a task's own of that key) are counted."""
        most, ((key_min, key_max, key_pattern), (value_min, value_max, value_pattern)) = _map_shapes(
            self.service, self.shape
        )
        for key, value in tags.items():
            for what, text, least, greatest, pattern in (
                (f"{field}: key {key!r}", key, key_min, key_max, key_pattern),
                (f"{field}[{key!r}]", value, value_min, value_max, value_pattern),
            ):
                if least is not None and len(text) < least:
                    raise ValueError(f"{what} is {len(text)} characters, under {self.owner}'s {least} ({self.api})")
                if greatest is not None and len(text) > greatest:
                    raise ValueError(f"{what} is {len(text)} characters, over {self.owner}'s {greatest} ({self.api})")
                if pattern is not None and text and not pattern.fullmatch(text):
                    raise ValueError(
                        f"{what} holds a character {self.owner} refuses (it takes {pattern.pattern}; {self.api})"
                    )
        total = len(set(tags) | added)
        if most is not None and total > most:
            raise ValueError(
                f"{field} holds {len(tags)} tags; with the {len(added)} the connector adds the request would "
                f"hold {total}, over {self.owner}'s {most} ({self.api}): give at most {most - len(added)} "
                "tags of other keys"
            )


@dataclass(frozen=True)
class IntegerLimit:
    """The integer ``service``'s model types as ``shape.member`` (botocore's names; ``service`` empty
    when the value travels as a string that the API reference says holds an integer count).

    ``minimum``/``maximum``: a bound the API reference documents and the model does not state
    (the tighter of the two applies). ``owner`` (``"AWS Batch"``) and ``unit`` (``"s"``, ``" MiB"``)
    only word the error."""

    owner: str
    api: str  # the operation and member, as an error names them: "SubmitJob JobTimeout.attemptDurationSeconds"
    service: str
    shape: str
    member: str
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""

    def bounds(self) -> tuple[int, int]:
        """(least, greatest) value the API takes."""
        model_min, model_max, type_name = (
            _model_member(self.service, self.shape, self.member) if self.service else (None, None, "integer")
        )
        lows = [b for b in (model_min, self.minimum) if b is not None]
        highs = [b for b in (model_max, self.maximum, _TYPE_MAXIMUM[type_name]) if b is not None]
        return (max(lows) if lows else -_TYPE_MAXIMUM[type_name] - 1), min(highs)

    def check(self, field: str, value: Any, written: Any = None) -> None:
        """ValueError naming ``field``, the value (``written``: as the author wrote it, when ``value``
        was converted from it, e.g. ``'4Gi'`` for 4096 MiB) and the limit when the API would refuse
        ``value`` (not an integer: ``must be an integer``; under: ``is under <owner>'s minimum of
        <least>``; over: ``is over <owner>'s <greatest>``, each followed by the API member)."""
        shown = f"{field}={value if written is None else written!r}"
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{shown} must be an integer ({self.api})")
        least, greatest = self.bounds()
        if value < least:
            raise ValueError(f"{shown} is under {self.owner}'s minimum of {least}{self.unit} ({self.api})")
        if value > greatest:
            raise ValueError(f"{shown} is over {self.owner}'s {greatest}{self.unit} ({self.api})")


# --- AWS Batch (botocore batch 2016-08-10) ---------------------------------------------------------
# A job's vCPUs, memory and GPUs travel as ResourceRequirement values (strings); the same counts are
# ContainerProperties.vcpus / .memory, typed integer, and the API reference documents "at least one
# vCPU" for EC2 and "at least 4 MiB of memory" (ResourceRequirement.value). "Each vCPU is
# equivalent to 1,024 CPU shares" (ResourceRequirement.value, VCPU), which the job's ECS container
# holds in its cpu, an integer too (botocore ecs 2014-11-13 ContainerDefinition.cpu: "This parameter
# maps to CpuShares"), so the vCPUs are at most that integer's maximum / 1024. GPUs have no integer
# member: their count is a 32-bit integer like the list's other two counts (and no instance has more
# GPUs than that; a count above the compute environment's instances leaves the job RUNNABLE, which
# only the environment knows).
BATCH_VCPUS = IntegerLimit(
    "AWS Batch", "SubmitJob ResourceRequirement VCPU, 1024 CPU shares each", "batch", "ContainerProperties", "vcpus",
    1, maximum=_TYPE_MAXIMUM["integer"] // 1024,
)  # fmt: skip
BATCH_MEMORY_MIB = IntegerLimit(
    "AWS Batch", "SubmitJob ResourceRequirement MEMORY", "batch", "ContainerProperties", "memory", 4, unit=" MiB"
)
BATCH_GPUS = IntegerLimit("AWS Batch", "SubmitJob ResourceRequirement GPU", "", "", "", 0)
# JobTimeout.attemptDurationSeconds: "The minimum value for the timeout is 60 seconds." No maximum is
# documented for EC2 compute environments (AWS Batch User Guide, "Job timeouts",
# https://docs.aws.amazon.com/batch/latest/userguide/job_timeouts.html; its 14 days concern Fargate).
BATCH_TIMEOUT_SECONDS = IntegerLimit(
    "AWS Batch", "SubmitJob JobTimeout.attemptDurationSeconds", "batch", "JobTimeout", "attemptDurationSeconds", 60,
    unit="s",
)  # fmt: skip

# --- EMR (botocore emr 2009-03-31, emr-serverless 2021-07-13) --------------------------------------
EMR_INSTANCE_COUNT = IntegerLimit(
    "EMR", "RunJobFlow InstanceGroupConfig.InstanceCount", "emr", "InstanceGroupConfig", "InstanceCount", 1
)
EMR_SERVERLESS_EXECUTION_TIMEOUT_MINUTES = IntegerLimit(
    "EMR Serverless", "StartJobRun executionTimeoutMinutes", "emr-serverless", "StartJobRunRequest",
    "executionTimeoutMinutes",
)  # fmt: skip
EMR_SERVERLESS_TAGS = TagLimit("EMR Serverless", "StartJobRun tags", "emr-serverless", "TagMap")

# --- SageMaker (botocore sagemaker 2017-07-24) ------------------------------------------------------
# StoppingCondition.MaxRuntimeInSeconds documentation: "The maximum value is 28 days." (the model
# states only its minimum, 1).
SAGEMAKER_TRAINING_MAX_RUNTIME_SECONDS = IntegerLimit(
    "SageMaker", "CreateTrainingJob StoppingCondition.MaxRuntimeInSeconds: 28 days", "sagemaker", "StoppingCondition",
    "MaxRuntimeInSeconds", maximum=28 * 24 * 3600,
)  # fmt: skip
SAGEMAKER_TRAINING_MAX_WAIT_SECONDS = IntegerLimit(
    "SageMaker", "CreateTrainingJob StoppingCondition.MaxWaitTimeInSeconds", "sagemaker", "StoppingCondition",
    "MaxWaitTimeInSeconds",
)  # fmt: skip
SAGEMAKER_TRAINING_VOLUME_SIZE_GB = IntegerLimit(
    "SageMaker", "CreateTrainingJob ResourceConfig.VolumeSizeInGB", "sagemaker", "ResourceConfig", "VolumeSizeInGB"
)
SAGEMAKER_PROCESSING_MAX_RUNTIME_SECONDS = IntegerLimit(
    "SageMaker", "CreateProcessingJob ProcessingStoppingCondition.MaxRuntimeInSeconds", "sagemaker",
    "ProcessingStoppingCondition", "MaxRuntimeInSeconds",
)  # fmt: skip
SAGEMAKER_PROCESSING_VOLUME_SIZE_GB = IntegerLimit(
    "SageMaker", "CreateProcessingJob ProcessingClusterConfig.VolumeSizeInGB", "sagemaker", "ProcessingClusterConfig",
    "VolumeSizeInGB",
)  # fmt: skip
SAGEMAKER_TRANSFORM_INSTANCE_COUNT = IntegerLimit(
    "SageMaker", "CreateTransformJob TransformResources.InstanceCount", "sagemaker", "TransformResources",
    "InstanceCount",
)  # fmt: skip
# MaxConcurrentTransforms: the model's minimum is 0 ("let SageMaker choose"); a transform here
# always states its concurrency, since MaxPayloadInMB times it is bounded (below).
SAGEMAKER_TRANSFORM_MAX_CONCURRENT = IntegerLimit(
    "SageMaker", "CreateTransformJob MaxConcurrentTransforms", "sagemaker", "CreateTransformJobRequest",
    "MaxConcurrentTransforms", minimum=1,
)  # fmt: skip
# MaxPayloadInMB documentation: "The value of MaxPayloadInMB cannot be greater than 100 MB. If you
# specify the MaxConcurrentTransforms parameter, the value of (MaxConcurrentTransforms *
# MaxPayloadInMB) also cannot exceed 100 MB." (0, chunked encoding, works for built-in algorithms
# only, which do not serve a model package's code.)
SAGEMAKER_TRANSFORM_MAX_PAYLOAD_MB = IntegerLimit(
    "SageMaker", "CreateTransformJob MaxPayloadInMB", "sagemaker", "CreateTransformJobRequest", "MaxPayloadInMB",
    minimum=1, maximum=100, unit=" MB",
)  # fmt: skip
SAGEMAKER_TRANSFORM_INVOCATION_TIMEOUT_SECONDS = IntegerLimit(
    "SageMaker", "CreateTransformJob ModelClientConfig.InvocationsTimeoutInSeconds", "sagemaker", "ModelClientConfig",
    "InvocationsTimeoutInSeconds", unit="s",
)  # fmt: skip
SAGEMAKER_ENDPOINT_INSTANCE_COUNT = IntegerLimit(
    "SageMaker", "CreateEndpointConfig ProductionVariant.InitialInstanceCount", "sagemaker", "ProductionVariant",
    "InitialInstanceCount",
)  # fmt: skip

"""Every connector checks its whole custom config: a wrong type names the task and the field."""

from __future__ import annotations

import dataclasses
import re
import uuid

import emr_tasks
import grpc
import pytest
from cdao_connectors._custom import config_from_custom
from cdao_connectors.aws_batch.task import BatchJob
from cdao_connectors.codeweave.task import CodeweaveGPU
from cdao_connectors.emr.task import EMRSpark
from cdao_connectors.sagemaker.transform import BatchTransform
from cdao_sdk.decorators import CONNECTOR_TASK_RETRIES as DEFAULT_RETRIES
from propeller import create_task, execution_metadata, serialize, write_inputs

VALID = {
    BatchJob: {"spot": True, "vcpus": 2.0, "memory": "4Gi", "gpus": 0.0, "timeout_seconds": None},
    CodeweaveGPU: {"gpu_type": "nvidia-a100-80gb", "gpus": 1.0, "cpu": "8", "memory": "64Gi"},
    EMRSpark: {
        "cluster_id": "j-2AXXXXXXGAPLF",
        "instance_type": "m5.xlarge",
        "instance_count": 2.0,
        "spark_conf": {"a": "b"},
    },
    BatchTransform: {
        "execution_role_arn": "arn:aws:iam::1:role/r",
        "region": "us-east-1",
        "output_s3_path": "s3://b/p",
        "environment": {"A": "1"},
        "env_inputs": ["threshold"],
    },
}


def _cases():
    for cls, valid in VALID.items():
        for f in dataclasses.fields(cls):
            if f.name in valid:
                yield pytest.param(cls, valid, f.name, id=f"{cls.__name__}.{f.name}")


@pytest.mark.parametrize(("cls", "valid", "field"), list(_cases()))
def test_a_wrong_type_in_any_field_names_the_field(cls, valid, field):
    assert config_from_custom(cls, valid, "t.ok")  # the valid config itself is accepted
    wrong = {**valid, field: [["not", "this"]]}
    # A list where a list belongs is named by its wrong item ([0]), anything else as the field.
    with pytest.raises(ValueError, match=rf"task t\.bad: {cls.__name__}\.{field}(\[0\])? = .* must be "):
        config_from_custom(cls, wrong, "t.bad")


_ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
_PYTHONIC = {"execution_role_arn": _ROLE, "region": "us-east-1", "instance_type": "ml.m5.xlarge"}
_INT32_MAX = 2**31 - 1  # Smithy integer (https://smithy.io/2.0/spec/simple-types.html#integer)


def _integer_limit_cases():
    """(config, a valid custom, field, value over the API's limit, the limit's words). Every integer
    field of every connector config whose value becomes an AWS API member (cdao_connectors._aws_limits)."""
    from cdao_connectors.sagemaker.task import Processing, SpotTraining, Training  # noqa: PLC0415

    batch, emr, transform = VALID[BatchJob], VALID[EMRSpark], VALID[BatchTransform]
    cases = [
        # vCPUs become CPU shares, 1024 each, in the container's 32-bit cpu (botocore batch
        # ResourceRequirement.value VCPU; ecs ContainerDefinition.cpu integer).
        (BatchJob, batch, "vcpus", 1e300, f"over AWS Batch's {_INT32_MAX // 1024}"),
        (BatchJob, batch, "vcpus", float(_INT32_MAX // 1024 + 1), f"over AWS Batch's {_INT32_MAX // 1024}"),
        (BatchJob, batch, "gpus", float(2**31), f"over AWS Batch's {_INT32_MAX}"),
        (BatchJob, batch, "timeout_seconds", 1e20, f"over AWS Batch's {_INT32_MAX}s"),
        (BatchJob, batch, "memory", "1Ei", f"over AWS Batch's {_INT32_MAX} MiB"),
        (EMRSpark, emr, "instance_count", 1e300, f"over EMR's {_INT32_MAX}"),
        (EMRSpark, emr, "instance_count", float(2**31), f"over EMR's {_INT32_MAX}"),
        (BatchTransform, transform, "instance_count", float(2**31), f"over SageMaker's {_INT32_MAX}"),
        (BatchTransform, transform, "max_concurrent_transforms", 1e300, f"over SageMaker's {_INT32_MAX}"),
        (BatchTransform, transform, "max_payload_mb", 101.0, "over SageMaker's 100 MB"),
        (BatchTransform, transform, "invocation_timeout_seconds", 3601.0, "over SageMaker's 3600s"),
        (Training, _PYTHONIC, "volume_size_in_gb", float(2**31), f"over SageMaker's {_INT32_MAX}"),
        (Training, _PYTHONIC, "max_runtime_in_seconds", 1e300, "over SageMaker's 2419200"),
        (SpotTraining, _PYTHONIC, "max_wait_in_seconds", float(2**31), f"over SageMaker's {_INT32_MAX}"),
        (SpotTraining, _PYTHONIC, "volume_size_in_gb", 1e300, f"over SageMaker's {_INT32_MAX}"),
        (Processing, _PYTHONIC, "volume_size_in_gb", 16385.0, "over SageMaker's 16384"),
        (Processing, _PYTHONIC, "max_runtime_in_seconds", 1e300, "over SageMaker's 777600"),
    ]
    for cls, valid, field, value, words in cases:
        yield pytest.param(cls, valid, field, value, words, id=f"{cls.__name__}.{field}={value!r}")


@pytest.mark.parametrize(("cls", "valid", "field", "value", "words"), list(_integer_limit_cases()))
def test_an_integer_over_its_aws_limit_is_refused_naming_the_field_and_the_limit(cls, valid, field, value, words):
    assert config_from_custom(cls, valid, "t.ok")  # the valid config itself is accepted
    with pytest.raises(ValueError, match=rf"task t: {cls.__name__}: {field}=.* is {re.escape(words)} \(\w"):
        config_from_custom(cls, {**valid, field: value}, "t")


def test_a_transforms_payload_times_its_concurrency_is_at_most_100_mb():
    # CreateTransformJob MaxPayloadInMB documentation (botocore sagemaker 2017-07-24): "the value of
    # (MaxConcurrentTransforms * MaxPayloadInMB) also cannot exceed 100 MB."
    valid = {**VALID[BatchTransform], "max_payload_mb": 10.0, "max_concurrent_transforms": 10.0}
    assert config_from_custom(BatchTransform, valid, "t.ok")
    with pytest.raises(
        ValueError, match=r"max_concurrent_transforms=11 times max_payload_mb=10 is over SageMaker's 100"
    ):
        config_from_custom(BatchTransform, {**valid, "max_concurrent_transforms": 11.0}, "t")


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ({"spark_conf": {"a": 1}}, "EMRSpark.spark_conf['a'] = 1 must be a string, not int"),
        ({"spark_conf": {"ok": "1", "b": [2]}}, "EMRSpark.spark_conf['b'] = [2] must be a string, not list"),
    ],
)
def test_a_wrong_item_inside_a_mapping_is_named_by_its_key(custom, message):
    with pytest.raises(ValueError, match=re.escape(f"task t: {message}")):
        config_from_custom(EMRSpark, custom, "t")


def test_integers_from_protobuf_doubles_are_integers_and_fractions_are_not():
    assert config_from_custom(BatchJob, {"vcpus": 2.0}, "t").vcpus == 2
    with pytest.raises(ValueError, match=r"BatchJob\.vcpus = 2\.5 must be an integer"):
        config_from_custom(BatchJob, {"vcpus": 2.5}, "t")
    with pytest.raises(ValueError, match=r"BatchJob\.spot = 1\.0 must be a boolean"):
        config_from_custom(BatchJob, {"spot": 1.0}, "t")


def _sagemaker_configs() -> dict[type, dict]:
    from cdao_connectors.sagemaker.task import Processing, SpotTraining, Training  # noqa: PLC0415

    job = {"execution_role_arn": "arn:aws:iam::1:role/r", "region": "us-east-1", "instance_type": "ml.m5.xlarge"}
    return {Training: job, SpotTraining: job, Processing: job}


# A value AWS (or Codeweave's contract) refuses, in each connector config: the source of each limit is
# cited where the config checks it.
_REFUSED_VALUES = [
    (BatchJob, "vcpus", 0),
    (BatchJob, "gpus", -1),
    (BatchJob, "memory", "1Mi"),
    (BatchJob, "memory", "4194303"),  # 1 byte under 4 MiB
    (BatchJob, "timeout_seconds", 59),
    (CodeweaveGPU, "gpus", 9),
    (CodeweaveGPU, "gpu_type", "a100"),
    (EMRSpark, "instance_count", -3),
    (EMRSpark, "instance_type", "huge"),
    (BatchTransform, "max_payload_mb", 0),
    (BatchTransform, "instance_count", 0),
    ("Training", "max_runtime_in_seconds", 28 * 24 * 3600 + 1),
    ("SpotTraining", "max_runtime_in_seconds", 28 * 24 * 3600 + 1),
    ("Processing", "max_runtime_in_seconds", 777601),
    ("Processing", "volume_size_in_gb", 16385),
    ("Processing", "volume_size_in_gb", 0),
]


@pytest.mark.parametrize(("cls", "field", "value"), _REFUSED_VALUES)
def test_a_value_aws_refuses_names_the_task_and_the_field(cls, field, value):
    if isinstance(cls, str):
        cls, valid = next((c, v) for c, v in _sagemaker_configs().items() if c.__name__ == cls)
    else:
        valid = VALID[cls]
    assert config_from_custom(cls, valid, "t.ok")
    with pytest.raises(ValueError, match=rf"^task t\.bad: {cls.__name__}: {field}[ =]"):
        config_from_custom(cls, {**valid, field: value}, "t.bad")


def test_batch_memory_of_4_mib_is_accepted():
    # botocore batch 2016-08-10 ResourceRequirement.value: "You must specify at least 4 MiB of memory".
    assert config_from_custom(BatchJob, {"memory": "4Mi"}, "t").memory_mib == 4


def test_missing_required_and_unknown_fields_are_named():
    with pytest.raises(ValueError, match=r"CodeweaveGPU fields \['gpu_type'\] are missing"):
        config_from_custom(CodeweaveGPU, {"gpus": 1.0}, "t")
    with pytest.raises(ValueError, match=r"unknown EMRSpark fields \['executor_cores'\].*version skew"):
        config_from_custom(EMRSpark, {"executor_cores": 4.0}, "t")


def test_emr_create_with_a_list_for_a_string_is_a_named_error_over_grpc(aws_env, grpc_stubs, monkeypatch):
    stub, _ = grpc_stubs
    monkeypatch.setenv("CDAO_EMR_ENTRYPOINT_BUCKET", "flyte-data")
    monkeypatch.setenv("CDAO_ATTEMPT_TABLE", "unused-before-validation")
    template = serialize(emr_tasks.on_cluster)
    template.custom["cluster_id"] = ["j-1", "j-2"]
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    with pytest.raises(grpc.RpcError) as err:
        create_task(stub, template, prefix, write_inputs(emr_tasks.on_cluster, prefix, rows=1), execution_metadata("t"))
    assert "EMRSpark.cluster_id = ['j-1', 'j-2'] must be a string or null" in err.value.details()


@pytest.mark.parametrize(
    ("retry_attempt", "said"),
    [
        (0, rf"attempt 1 of the task's {DEFAULT_RETRIES + 1}, retries={DEFAULT_RETRIES}\) and starts the next: "
         rf"at least {DEFAULT_RETRIES} more attempts left"),
        (DEFAULT_RETRIES - 1, r"at least 1 more attempt left"),
        (DEFAULT_RETRIES, rf"no attempt is left: this was attempt {DEFAULT_RETRIES + 1} and the task has "
         rf"retries={DEFAULT_RETRIES}, so the task fails here"),
    ],
)  # fmt: skip
def test_a_createtask_error_says_how_many_attempts_are_left(aws_env, grpc_stubs, monkeypatch, retry_attempt, said):
    """Any CreateTask error ends the attempt (flyteplugins/v1.16.8 internal/webapi/launcher.go
    ``launch``); what is left is read from the request: the template's retries (the SDK's default for
    a connector task, cdao_sdk.decorators.CONNECTOR_TASK_RETRIES) and the execution's retry_attempt."""
    stub, _ = grpc_stubs
    monkeypatch.setenv("CDAO_ATTEMPT_TABLE", "unused-before-validation")
    template = serialize(emr_tasks.on_cluster)
    assert template.metadata.retries.retries == DEFAULT_RETRIES
    template.custom["cluster_id"] = ["j-1", "j-2"]
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    inputs = write_inputs(emr_tasks.on_cluster, prefix, rows=1)
    with pytest.raises(grpc.RpcError) as err:
        create_task(stub, template, prefix, inputs, execution_metadata("t", retry=retry_attempt))
    assert "EMRSpark.cluster_id = ['j-1', 'j-2'] must be a string or null, not list; " in err.value.details()
    assert re.search(said, err.value.details()), err.value.details()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # The plugin's from_dict drops an unknown key: a typo would run on the default application.
        ({"applicaton_id": "00f0abc"}, r"unknown EMRServerless fields \['applicaton_id'\]"),
        ({"application_id": ["00f0abc"]}, r"EMRServerless\.application_id = \['00f0abc'\] must be a string"),
        ({"execution_timeout_minutes": "sixty"}, r"EMRServerless\.execution_timeout_minutes = 'sixty' must be an"),
        ({"tags": {"team": 7.0}}, r"EMRServerless\.tags\['team'\] = 7\.0 must be a string"),
        # StartJobRun's tags (botocore emr-serverless/2021-07-13 TagKey, TagValue, TagMap): a key of
        # 1 to 128 characters, a value of at most 256, of the model's characters; 200 tags with the
        # plugin's two and the connector's attempt tag.
        ({"tags": {"k" * 129: "v"}}, r"EMRServerless\.tags: key 'k{129}' is 129 characters, over EMR Serverless's 128"),
        ({"tags": {"team": "v" * 257}}, r"EMRServerless\.tags\['team'\] is 257 characters, over EMR Serverless's 256"),
        ({"tags": {"team#1": "v"}}, r"EMRServerless\.tags: key 'team#1' holds a character EMR Serverless refuses"),
        ({"tags": {"": "v"}}, r"EMRServerless\.tags: key '' is 0 characters, under EMR Serverless's 1"),
        (
            {"tags": {f"k{i}": "v" for i in range(205)}},
            r"EMRServerless\.tags holds 205 tags; with the 3 the connector adds .* over EMR Serverless's 200",
        ),
        (
            {"spark_job_driver": {"entryPoint": "s3://b/job.py", "entryPointArguments": "--x"}},
            r"EMRServerlessSparkJobDriver\.entry_point_arguments = '--x' must be a list of str",
        ),
        ({"spark_job_driver": {"entry_point": "s3://b/job.py"}}, r"unknown EMRServerlessSparkJobDriver fields"),
        # One application serves every task: a task may not switch its image (UpdateApplication).
        ({"sync_image": True}, r"EMRServerless\.sync_image = True would change the shared application's image"),
        # A value check of the plugin's own (EMRServerless.__post_init__), and the maximum StartJobRun takes.
        ({"execution_timeout_minutes": 0.0}, r"EMRServerless: execution_timeout_minutes must be at least 1"),
        (
            {"execution_timeout_minutes": 1000001.0},
            r"EMRServerless: execution_timeout_minutes=1000001 is over EMR Serverless's 1000000",
        ),
    ],
)
def test_emr_serverless_config_is_checked_whole_before_any_call(aws_env, change, message):
    import asyncio  # noqa: PLC0415

    from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector  # noqa: PLC0415

    template = serialize(emr_tasks.on_serverless)
    template.custom.update(change)
    with pytest.raises(ValueError, match=rf"task .*on_serverless: {message}.*; propeller fails this attempt"):
        asyncio.run(
            IdempotentEMRServerlessConnector().create(
                template, None, execution_metadata("emrs-bad"), output_prefix="s3://flyte-data/metadata/x"
            )
        )


def test_emr_serverless_tags_are_checked_when_decorating():
    """The connector's tag check runs at decoration too (ServerlessSpark.__post_init__), so a task
    whose tags StartJobRun would refuse, or that leave no room for the attempt's, is never registered."""
    from cdao_connectors.emr.task import ServerlessSpark  # noqa: PLC0415

    role = "arn:aws:iam::123456789012:role/cdao-emr-job"
    assert ServerlessSpark(execution_role_arn=role, tags={f"k{i}": "v" for i in range(197)})
    with pytest.raises(ValueError, match=r"^tags holds 198 tags; with the 3 the connector adds"):
        ServerlessSpark(execution_role_arn=role, tags={f"k{i}": "v" for i in range(198)})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # The plugin reads its config with .get(): a misspelt key would run on-demand at full price.
        ({"use_spot_instance": False}, r"unknown SpotTraining fields \['use_spot_instance'\]"),
        ({"instance_count": "2"}, r"SpotTraining\.instance_count = '2' must be an integer"),
        ({"environment": ["A=1"]}, r"SpotTraining\.environment = \['A=1'\] must be "),
        ({"max_wait_in_seconds": 7200.5}, r"SpotTraining\.max_wait_in_seconds = 7200\.5 must be an integer"),
    ],
)
def test_sagemaker_training_config_is_checked_whole_before_any_call(aws_env, change, message):
    import asyncio  # noqa: PLC0415

    import sm_tasks  # noqa: PLC0415
    from cdao_connectors.sagemaker.connector import SpotTrainingConnector  # noqa: PLC0415

    template = serialize(sm_tasks.fit)
    template.custom.update(change)
    with pytest.raises(ValueError, match=rf"task .*fit: {message}.*; propeller fails this attempt"):
        asyncio.run(
            SpotTrainingConnector().create(
                template, "s3://flyte-data/metadata/x", None, task_execution_metadata=execution_metadata("sm-bad")
            )
        )

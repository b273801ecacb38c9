"""The SDK's decorators: what they serialize to (what propeller and the connectors receive), the
routing rules, local in-process execution, and errors at decoration time."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import cdao_sdk
import propeller
import pytest
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.emr.task import (
    EMR_SERVERLESS_PYTHON,
    EMR_SERVERLESS_TASK_TYPE,
    EMR_SPARK_TASK_TYPE,
    PYSPARK_PYTHON_KEYS,
)
from cdao_connectors.sagemaker.task import SAGEMAKER_PROCESSING_TASK_TYPE, SAGEMAKER_TRAINING_TASK_TYPE
from cdao_sdk import batch_task, cpu_task, gpu_task, settings, spark_task, task
from cdao_sdk.pools import NODE_POOLS
from flytekit import workflow
from propeller import serialize

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cdao/ml:1.0.0"


@pytest.fixture(autouse=True)
def clean_settings():
    settings.reset()
    yield
    settings.reset()


def _pod(t) -> dict:
    tmpl = serialize(t)
    return tmpl.k8s_pod.pod_spec


def _primary(pod: dict) -> dict:
    return next(c for c in pod["containers"] if c["name"] == "primary")


def test_gpu_task_on_a100_timeslice():
    @gpu_task(gpu_type="a100", gpus=1, memory="64Gi")
    def train(x: int) -> int:
        return x

    pod = _pod(train)
    assert pod["nodeSelector"] == {"cdao.io/node-pool": "a100-timeslice", "workload-type.cdao.io/training": "true"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert _primary(pod)["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_gpu_task_on_mig_slice_and_h100():
    @gpu_task(gpu_type="a100", mig_profile="2g.20gb", inference=True)
    def serve(x: int) -> int:
        return x

    pod = _pod(serve)
    assert pod["nodeSelector"]["cdao.io/node-pool"] == "a100-mig"
    assert pod["nodeSelector"]["workload-type.cdao.io/production-inference"] == "true"
    assert pod["tolerations"][0]["value"] == "mig"
    assert _primary(pod)["resources"]["limits"] == {"cpu": "4", "memory": "32Gi", "nvidia.com/mig-2g.20gb": "1"}

    @gpu_task(gpu_type="h100", workload_type="fine-tuning")
    def tune(x: int) -> int:
        return x

    pod = _pod(tune)
    assert pod["nodeSelector"] == {"cdao.io/node-pool": "h100-timeslice", "workload-type.cdao.io/fine-tuning": "true"}
    assert pod["tolerations"][0] == NODE_POOLS["h100-timeslice"].taint.toleration()


def test_gpu_task_routes_catalogue_gpus_to_codeweave():
    @gpu_task(gpu_type="nvidia-h100-80gb", gpus=4)
    def infer(x: int) -> int:
        return x

    tmpl = serialize(infer)
    assert tmpl.type == CODEWEAVE_TASK_TYPE
    assert tmpl.custom == {"gpu_type": "nvidia-h100-80gb", "gpus": 4, "cpu": "4", "memory": "32Gi"}


def test_cpu_task_and_task_with_workload_type():
    @cpu_task(cpu="2", memory="4Gi", workload_type="control")
    def light(x: int) -> int:
        return x

    pod = _pod(light)
    assert pod["nodeSelector"] == {"cdao.io/node-pool": "cpu", "workload-type.cdao.io/control": "true"}
    assert _primary(pod)["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}

    @task(workload_type="research")
    def explore(x: int) -> int:
        return x

    pod = _pod(explore)
    assert pod["nodeSelector"] == {"workload-type.cdao.io/research": "true"}
    assert pod["tolerations"][0]["value"] == "true"

    @task
    def plain(x: int) -> int:
        return x

    assert serialize(plain).type == "python-task"


def test_batch_task_serializes_queue_choice_and_retries():
    @batch_task(spot=False, vcpus=4, memory="16Gi", timeout=7200)
    def etl(x: int) -> int:
        return x

    tmpl = serialize(etl)
    assert tmpl.type == BATCH_TASK_TYPE
    assert tmpl.custom == {"spot": False, "vcpus": 4, "memory": "16Gi", "gpus": 0, "timeout_seconds": 7200}
    assert tmpl.metadata.retries.retries == 3  # every connector task's default (a create may be refused)
    assert tmpl.metadata.timeout.total_seconds() == 7200

    @batch_task
    def prep(x: int) -> int:
        return x

    tmpl = serialize(prep)
    assert tmpl.custom["spot"] is True
    assert tmpl.metadata.retries.retries == 3  # spot reclamation is retried


def test_batch_task_takes_any_timeout_aws_batch_takes_on_ec2():
    # AWS Batch sets no maximum job timeout (AWS Batch User Guide, "Job timeouts",
    # https://docs.aws.amazon.com/batch/latest/userguide/job_timeouts.html); its 14-day note concerns
    # Fargate, and the stack's compute environments are EC2/SPOT (infra/components/compute.py).
    @batch_task(timeout=30 * 24 * 3600)
    def long_etl(x: int) -> int:
        return x

    assert serialize(long_etl).custom["timeout_seconds"] == 30 * 24 * 3600


def test_spark_task_routing():
    @spark_task(cluster_id="j-2AXXXXXXGAPLF")
    def on_cluster(x: int) -> int:
        return x

    assert serialize(on_cluster).type == EMR_SPARK_TASK_TYPE

    @spark_task(spark_conf={"spark.executor.cores": "4"})
    def serverless(x: int) -> int:
        return x + 1

    # Defined and run locally without any AWS value; registering needs the job role.
    assert serverless(x=1) == 2
    with pytest.raises(ValueError, match=r"spark_task\(platform='emr-serverless'\) .*serverless needs the 'emr_ser"):
        serialize(serverless)
    _configure_emr_serverless()
    tmpl = serialize(serverless)
    assert (tmpl.custom["application_id"], tmpl.custom["region"]) == ("00fabc123", "eu-west-1")
    assert tmpl.type == EMR_SERVERLESS_TASK_TYPE
    assert tmpl.custom["execution_role_arn"] == "arn:aws:iam::123456789012:role/emr"
    assert "--conf spark.executor.cores=4" in tmpl.custom["spark_submit_parameters"]
    # Driver and executors run the image's Python (flytekitplugins-awsemrserverless connector.py
    # _PYTHONIC_SPARK_DEFAULTS names these keys; its _merge_spark_submit_params keeps a task's own).
    for key in PYSPARK_PYTHON_KEYS:
        assert f"--conf {key}={EMR_SERVERLESS_PYTHON}" in tmpl.custom["spark_submit_parameters"]


def _configure_emr_serverless() -> None:
    """The settings an EMR Serverless task registers with: its job role and application, in eu-west-1."""
    cdao_sdk.configure(
        "flyte.example.com:443",
        "ml",
        emr_serverless_role="arn:aws:iam::123456789012:role/emr",
        emr_serverless_application_id="00fabc123",
        region="eu-west-1",
        remote=object(),
    )


def test_spark_task_keeps_an_author_s_own_python_on_emr_serverless():
    @spark_task(platform="emr-serverless", spark_conf={"spark.executorEnv.PYSPARK_PYTHON": "/opt/other/bin/python"})
    def own(x: int) -> int:
        return x

    _configure_emr_serverless()
    params = serialize(own).custom["spark_submit_parameters"].split()
    assert "spark.executorEnv.PYSPARK_PYTHON=/opt/other/bin/python" in params
    assert f"spark.executorEnv.PYSPARK_PYTHON={EMR_SERVERLESS_PYTHON}" not in params


def test_sagemaker_decorators_apply_platform_defaults():
    cdao_sdk.configure(
        "flyte.example.com", "ml", region="us-east-1", sagemaker_role=ROLE, default_bucket="ml-art", remote=object()
    )

    @cdao_sdk.sagemaker_training_task(instance_type="ml.g5.xlarge", container_image=IMAGE)
    def train(x: int) -> int:
        return x

    tmpl = serialize(train)
    assert tmpl.type == SAGEMAKER_TRAINING_TASK_TYPE
    assert tmpl.custom["execution_role_arn"] == ROLE
    assert tmpl.custom["use_spot_instances"] is True
    assert tmpl.custom["output_s3_path"] == "s3://ml-art/sagemaker/training"
    assert tmpl.custom["checkpoint_s3_uri"] == "s3://ml-art/sagemaker/checkpoints"

    @cdao_sdk.sagemaker_processing_task(container_image=IMAGE)
    def process(x: int) -> int:
        return x

    assert serialize(process).type == SAGEMAKER_PROCESSING_TASK_TYPE

    score = cdao_sdk.sagemaker_batch_transform_task("score", env_inputs={"threshold": float})
    custom = serialize(score).custom
    assert custom["transform"]["output_s3_path"] == "s3://ml-art/sagemaker/transform"
    assert custom["transform"]["execution_role_arn"] == ROLE
    assert set(score.python_interface.inputs) == {"model", "data", "threshold"}

    deploy = cdao_sdk.sagemaker_endpoint("fraud-model", image=IMAGE)
    assert set(deploy.python_interface.inputs) >= {"model_path"}


def test_tasks_run_in_process_locally_by_default(monkeypatch):
    """``pyflyte run`` without --remote: bodies run here, no connector, no cloud."""

    @gpu_task(gpu_type="nvidia-a100-40gb")
    def double(x: int) -> int:
        return 2 * x

    @batch_task(vcpus=2)
    def inc(x: int) -> int:
        return x + 1

    @spark_task(cluster_id="j-2AXXXXXXGAPLF")
    def square(x: int) -> int:
        return x * x

    @workflow
    def pipeline(x: int) -> int:
        return square(x=inc(x=double(x=x)))

    assert pipeline(x=3) == 49

    monkeypatch.setenv("CDAO_LOCAL_EXECUTION", "sideways")
    with pytest.raises(ValueError, match="CDAO_LOCAL_EXECUTION"):
        double(x=1)


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (lambda: gpu_task(gpu_type="tpu-v5"), "neither an EKS pool GPU"),
        (lambda: gpu_task(gpu_type="a100", gpus=0), "gpus=0"),
        (lambda: gpu_task(gpu_type="h100", mig_profile="1g.10gb"), "needs gpu_type='a100'"),
        (lambda: gpu_task(gpu_type="a100", mig_profile="4g.40gb"), "unknown MIG profile"),
        (lambda: gpu_task(gpu_type="nvidia-a100-80gb", platform="codeweave", mig_profile="1g.10gb"), "whole GPUs"),
        (lambda: gpu_task(gpu_type="nvidia-a100-80gb", gpus=9), "1 to 8"),
        (lambda: gpu_task(gpu_type="a100", memory="lots"), "memory='lots'"),
        (lambda: gpu_task(gpu_type="a100", workload_type="fine-tuning"), "a100-timeslice serves"),
        (lambda: gpu_task(gpu_type="a100", platform="gce"), "platform='gce'"),
        (lambda: cpu_task(workload_type="training"), "the cpu pool serves"),
        (lambda: task(workload_type="gaming"), "not served by any node pool"),
        (lambda: batch_task(vcpus=0), "vcpus=0"),
        (lambda: batch_task(spot="yes"), "spot='yes'"),
        (lambda: batch_task(timeout=10), "timeout=10 is under AWS Batch.s minimum of 60s"),
        (lambda: batch_task(memory="2GB"), "memory='2GB'"),
        (lambda: batch_task(memory="1Mi"), "memory='1Mi' is under AWS Batch's minimum of 4 MiB"),
        (
            lambda: cdao_sdk.sagemaker_training_task(instance_type="ml.m5.xlarge", max_runtime_seconds=29 * 86400),
            "max_runtime_seconds=2505600 is over SageMaker's 2419200",
        ),
        (
            lambda: cdao_sdk.sagemaker_processing_task(instance_type="ml.m5.xlarge", max_runtime_seconds=777601),
            "max_runtime_seconds=777601 is over SageMaker's 777600",
        ),
        (
            lambda: cdao_sdk.sagemaker_processing_task(instance_type="ml.m5.xlarge", volume_size_gb=16385),
            "volume_size_gb=16385 is over SageMaker's 16384",
        ),
        # Integers over the AWS member they become (cdao_connectors._aws_limits; Smithy integer: 32-bit).
        (lambda: batch_task(timeout=10**12), "timeout=1000000000000 is over AWS Batch's 2147483647s"),
        (lambda: batch_task(timeout=datetime.timedelta(days=10**5)), "timeout=8640000000 is over AWS Batch's"),
        (lambda: batch_task(vcpus=10**9), "vcpus=1000000000 is over AWS Batch's 2097151"),
        (lambda: batch_task(gpus=2**31), "gpus=2147483648 is over AWS Batch's 2147483647"),
        (
            lambda: spark_task(instance_type="m5.xlarge", instance_count=2**31),
            "instance_count=2147483648 is over EMR's",
        ),
        (
            lambda: cdao_sdk.sagemaker_training_task(volume_size_gb=2**31),
            "volume_size_gb=2147483648 is over SageMaker's 2147483647",
        ),
        (
            lambda: cdao_sdk.sagemaker_training_task(max_wait_seconds=2**31),
            "max_wait_seconds=2147483648 is over SageMaker's 2147483647",
        ),
        (
            lambda: cdao_sdk.sagemaker_batch_transform_task(instance_count=2**31),
            "instance_count=2147483648 is over SageMaker's 2147483647",
        ),
        (
            lambda: cdao_sdk.sagemaker_batch_transform_task(max_payload_mb=20, max_concurrent_transforms=6),
            "max_concurrent_transforms=6 times max_payload_mb=20 is over SageMaker's 100",
        ),
        (
            lambda: cdao_sdk.sagemaker_endpoint("ep", image="img:1", instance_count=2**31),
            "instance_count=2147483648 is over SageMaker's 2147483647",
        ),
        (lambda: spark_task(cluster_id="cluster-1"), "not an EMR cluster id"),
        (lambda: spark_task(cluster_id="j-2AXXXXXXGAPLF", instance_count=3), "not both"),
        (lambda: spark_task(platform="emr", instance_type="huge"), "instance_type='huge'"),
    ],
)
def test_bad_arguments_fail_at_decoration(decorate, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        dec = decorate()

        def f(x: int) -> int:
            return x

        dec(f)


def test_sagemaker_tasks_take_the_stacks_values_at_registration(monkeypatch):
    for name in ("CDAO_SAGEMAKER_ROLE_ARN", "CDAO_AWS_REGION", "AWS_REGION", "CDAO_DEFAULT_BUCKET"):
        monkeypatch.delenv(name, raising=False)

    @cdao_sdk.sagemaker_training_task(instance_type="ml.g5.xlarge")
    def fit(x: int) -> int:
        return x + 1

    @cdao_sdk.sagemaker_processing_task()
    def clean(x: int) -> int:
        return x * 2

    # Defining and running the tasks locally needs no AWS value.
    assert clean(x=fit(x=1)) == 4
    for t, decorator in ((fit, "sagemaker_training_task"), (clean, "sagemaker_processing_task")):
        with pytest.raises(
            ValueError, match=rf"{decorator} .*\.{t.name.rsplit('.', 1)[-1]} needs the 'sagemaker_role'"
        ):
            serialize(t)

    monkeypatch.setenv("CDAO_SAGEMAKER_ROLE_ARN", ROLE)
    monkeypatch.setenv("CDAO_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("CDAO_DEFAULT_BUCKET", "stack-bucket")
    training = serialize(fit)
    assert (training.custom["execution_role_arn"], training.custom["region"]) == (ROLE, "eu-west-1")
    assert training.custom["output_s3_path"] == "s3://stack-bucket/sagemaker/training"
    assert training.custom["checkpoint_s3_uri"] == "s3://stack-bucket/sagemaker/checkpoints"
    # No default image configured: the job runs the image given to `pyflyte register --image`.
    assert training.container.image == IMAGE
    assert serialize(clean).custom["region"] == "eu-west-1"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: cdao_sdk.sagemaker_batch_transform_task("score", strategy="Bulk"), "strategy='Bulk'"),
        (lambda: cdao_sdk.sagemaker_batch_transform_task("score me"), "name='score me'"),
        (lambda: cdao_sdk.sagemaker_batch_transform_task("s", env_inputs={"rows": list}), "['rows'] must be int"),
        (lambda: cdao_sdk.sagemaker_batch_transform_task("s", env_inputs={"data": str}), "may not be named ['data']"),
        (lambda: cdao_sdk.sagemaker_batch_transform_task("s", cache=True), "needs a cache_version"),
    ],
)
def test_bad_transform_arguments_fail_where_the_task_is_defined(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        make()


def test_registering_a_transform_needs_the_stack_settings(monkeypatch):
    # Defining the task needs nothing (a laptop run calls no AWS); registering it names what is missing.
    for name in ("CDAO_SAGEMAKER_ROLE_ARN", "CDAO_AWS_REGION", "AWS_REGION", "CDAO_DEFAULT_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    score = cdao_sdk.sagemaker_batch_transform_task("score")
    with pytest.raises(ValueError, match=r"sagemaker_batch_transform_task score needs the 'sagemaker_role' setting"):
        serialize(score)


def test_pyflyte_run_executes_a_codeweave_task_body_locally():
    """The data scientist's loop: ``pyflyte run`` without --remote needs no connector, no cloud."""
    support = Path(propeller.__file__).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDAO_", "AWS_ENDPOINT"))}
    pyflyte = [sys.executable, "-m", "flytekit.clis.sdk_in_container.pyflyte"]
    result = subprocess.run(
        [*pyflyte, "run", str(support / "cw_tasks.py"), "scale", "--values", "[1, 2, 3]", "--factor", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "o0=12.0" in result.stdout and "scaled 3 values" in result.stdout


def _typed(x: int) -> int:
    return x


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: cdao_sdk.sagemaker_training_task(max_runtime_seconds="3600"),
            r"max_runtime_seconds='3600': expected an integer",
        ),
        (
            lambda: cdao_sdk.spark_task(spark_conf=["a"]),
            r"spark_task spark_conf=\['a'\]: expected a mapping of str to str",
        ),
        (lambda: cdao_sdk.configure(admin_endpoint=123, project="p"), r"configure admin_endpoint=123: expected str"),
        (
            lambda: cdao_sdk.sagemaker_training_task(output_s3_path="bucket/x"),
            r"output_s3_path='bucket/x': expected an s3://<bucket>/<prefix> URI",
        ),
        (
            lambda: cdao_sdk.sagemaker_batch_transform_task("score.m", output_s3_path="bucket/x"),
            r"sagemaker_batch_transform_task output_s3_path='bucket/x': expected an s3://",
        ),
        (
            lambda: cdao_sdk.sagemaker_training_task(instance_type="m5.xlarge"),
            r"sagemaker_training_task instance_type='m5.xlarge': expected one of the SageMaker API's "
            r"TrainingInstanceType values",
        ),
        (
            lambda: cdao_sdk.sagemaker_processing_task(instance_type="m5.xlarge"),
            r"ProcessingInstanceType values",
        ),
        (
            lambda: cdao_sdk.sagemaker_batch_transform_task("score.m", instance_type="m5.large"),
            r"TransformInstanceType values",
        ),
        (
            lambda: cdao_sdk.sagemaker_training_task(use_spot_instances=None),
            r"use_spot_instances=None: expected True or False",
        ),
        (
            lambda: cdao_sdk.sagemaker_training_task(execution_role_arn="cdao-role"),
            r"execution_role_arn='cdao-role': expected an IAM role ARN",
        ),
        (lambda: cdao_sdk.batch_task(vcpus="4"), r"batch_task vcpus='4': expected an integer"),
        (lambda: cdao_sdk.gpu_task(gpu_type=100), r"gpu_task gpu_type=100: expected str or None"),
        (
            lambda: cdao_sdk.spark_task(
                platform="emr-serverless", spark_conf={"spark.driver.extraJavaOptions": "-Da=1 -Db=2"}
            ),
            r"spark_task spark_conf=.*values without whitespace or quotes on EMR Serverless",
        ),
    ],
)
def test_every_sdk_keyword_of_the_wrong_type_or_shape_names_the_decorator_and_the_form(call, message):
    """The SageMaker instance types are the API's enums in botocore's service model
    (botocore data/sagemaker/2017-07-24/service-2.json TrainingInstanceType and siblings)."""
    with pytest.raises(ValueError, match=message):
        made = call()
        made(_typed)  # a decorator with keywords checks them on the function it decorates


# --- review 8, item 3: a transient CreateTask error must not end a workflow silently ------------


def _retries_of(decorated) -> int:
    return decorated.metadata.retries


def _body(x: int) -> int:
    return x


# Every decorator whose task type the connector service serves (plugins/README.md's table).
_CONNECTOR_TASKS = {
    "batch_task spot": lambda **kw: batch_task(**kw)(_body),
    "batch_task on-demand": lambda **kw: batch_task(on_demand=True, **kw)(_body),
    "gpu_task on Codeweave": lambda **kw: gpu_task(platform="codeweave", **kw)(_body),
    "spark_task on EMR": lambda **kw: spark_task(instance_type="m5.xlarge", **kw)(_body),
    "spark_task on a cluster": lambda **kw: spark_task(cluster_id="j-2AXXXXXXGAPLF", **kw)(_body),
    "spark_task on EMR Serverless": lambda **kw: spark_task(platform="emr-serverless", **kw)(_body),
    "sagemaker_training_task": lambda **kw: cdao_sdk.sagemaker_training_task(**kw)(_body),
    "sagemaker_processing_task": lambda **kw: cdao_sdk.sagemaker_processing_task(**kw)(_body),
    "sagemaker_task": lambda **kw: cdao_sdk.sagemaker_task(job_type="training", **kw)(_body),
    "sagemaker_batch_transform_task": lambda **kw: cdao_sdk.sagemaker_batch_transform_task("m.score", **kw),
    "sagemaker_batch_transform_task as a decorator": lambda **kw: cdao_sdk.sagemaker_batch_transform_task(**kw)(_body),
}


@pytest.mark.parametrize("make", _CONNECTOR_TASKS.values(), ids=_CONNECTOR_TASKS.keys())
def test_connector_tasks_get_the_default_retry_budget_and_keep_an_explicit_one(make):
    from cdao_sdk.decorators import CONNECTOR_TASK_RETRIES  # noqa: PLC0415

    assert CONNECTOR_TASK_RETRIES >= 1
    assert _retries_of(make()) == CONNECTOR_TASK_RETRIES
    assert _retries_of(make(retries=None)) == CONNECTOR_TASK_RETRIES  # None: not given
    assert _retries_of(make(retries=0)) == 0
    assert _retries_of(make(retries=7)) == 7
    with pytest.raises(ValueError, match=r"retries=-1 must be an integer >= 0"):
        make(retries=-1)


# Every decorator whose task runs as a pod: flytekit's own default (0 in flytekit 1.16.31's ``task``).
_POD_TASKS = {
    "task": lambda **kw: task(**kw)(_body),
    "task with a workload_type": lambda **kw: task(workload_type="mlops", **kw)(_body),
    "cpu_task": lambda **kw: cpu_task(**kw)(_body),
    "gpu_task on a time-sliced pool": lambda **kw: gpu_task(gpu_type="a100", **kw)(_body),
    "gpu_task on MIG slices": lambda **kw: gpu_task(gpu_type="a100", mig_profile="1g.10gb", **kw)(_body),
}


@pytest.mark.parametrize("make", _POD_TASKS.values(), ids=_POD_TASKS.keys())
def test_tasks_that_run_as_pods_keep_flytekits_default_of_no_retries(make):
    # Not served by a connector: a pod's own failure is the code's, and flytekit's default stands.
    assert _retries_of(make()) == 0
    assert _retries_of(make(retries=None)) == 0  # None: not given
    assert _retries_of(make(retries=2)) == 2
    with pytest.raises(ValueError, match=r"retries=-1 must be an integer >= 0"):
        make(retries=-1)


def test_every_decorator_taking_retries_is_covered_by_the_retry_tests():
    # Each of the SDK's decorators takes retries: a keyword of its own or one of flytekit.task's.
    taking = {name for name in cdao_sdk.__all__ if getattr(cdao_sdk, name).__module__ == "cdao_sdk.decorators"}
    covered = {key.split()[0] for key in (*_CONNECTOR_TASKS, *_POD_TASKS)} | {"sagemaker_endpoint"}
    assert taking <= covered, taking - covered


def test_the_endpoint_deployments_connector_tasks_get_the_default_retry_budget(monkeypatch):
    from cdao_sdk.decorators import CONNECTOR_TASK_RETRIES  # noqa: PLC0415

    monkeypatch.setenv("CDAO_SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/sagemaker-exec")
    monkeypatch.setenv("CDAO_AWS_REGION", "us-east-1")
    deploy = cdao_sdk.sagemaker_endpoint("fraud-model", image="img:1")
    # model, endpoint config, endpoint: each a connector's CreateTask (the boto and endpoint connectors)
    # On the tasks themselves: the template a CreateTask carries holds them (a node override does not).
    assert [serialize(n.flyte_entity).metadata.retries.retries for n in deploy.nodes] == [CONNECTOR_TASK_RETRIES] * 3
    unset = cdao_sdk.sagemaker_endpoint("fraud-model", image="img:1", retries=None)
    assert [serialize(n.flyte_entity).metadata.retries.retries for n in unset.nodes] == [CONNECTOR_TASK_RETRIES] * 3
    kept = cdao_sdk.sagemaker_endpoint("fraud-model", image="img:1", retries=0)
    assert [serialize(n.flyte_entity).metadata.retries.retries for n in kept.nodes] == [0] * 3

"""SageMaker tasks for the tests; the region is the environment's when they are serialised."""

from __future__ import annotations

from typing import Any

from cdao_sdk import sagemaker_training_task

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cdao/ml:1.0.0"


@sagemaker_training_task(
    instance_type="ml.g5.xlarge",
    execution_role_arn=ROLE,
    container_image=IMAGE,
    max_runtime_seconds=1800,
    checkpoint_s3_uri="s3://flyte-data/checkpoints",
)
def fit(epochs: int) -> float:
    return 0.5 * epochs


def training_job_task(name: str, region: str, tags: Any = None, inputs: dict[str, type] | None = None) -> Any:
    """A request-based training task of flytekitplugins-awssagemaker (task type
    ``sagemaker-training-job``) naming its job ``name`` (a ``{idempotence_token}`` in it is the
    plugin's hash of the rendered request), its request's ``Tags`` ``tags`` when given, its inputs
    (placeholders ``{inputs.X}`` in the request) ``inputs``."""
    import uuid  # noqa: PLC0415

    from flytekitplugins.awssagemaker_training.task import SageMakerTrainingJobTask  # noqa: PLC0415

    config = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "OutputDataConfig": {"S3OutputPath": "s3://flyte-data/models"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    if tags is not None:
        config["Tags"] = tags
    return SageMakerTrainingJobTask(
        name=f"tests.fit_{uuid.uuid4().hex[:6]}", config=config, region=region, inputs=inputs
    )


def deploy_endpoint_boto_calls(role: str, region: str, run) -> list:
    """Runs the ``boto`` tasks of ``cdao_sdk.sagemaker_endpoint`` (create_model, then
    create_endpoint_config, chained by the token the first returns, as the plugin's
    ``create_sagemaker_deployment`` workflow wires them) through the service's ``boto`` connector;
    ``run`` drives a coroutine. Returns the Resources, in order."""
    import uuid  # noqa: PLC0415

    import cdao_sdk  # noqa: PLC0415
    from flytekit.core.context_manager import FlyteContextManager  # noqa: PLC0415
    from flytekit.core.type_engine import TypeEngine  # noqa: PLC0415
    from flytekit.extend.backend.base_connector import ConnectorRegistry  # noqa: PLC0415
    from flytekitplugins.awssagemaker_inference.boto3_task import BotoTask  # noqa: PLC0415
    from propeller import serialize  # noqa: PLC0415

    cdao_sdk.settings.reset()
    try:
        cdao_sdk.configure("flyte.example.com", "ml", region=region, sagemaker_role=role, remote=object())
        deploy = cdao_sdk.sagemaker_endpoint(f"m-{uuid.uuid4().hex[:8]}", image=IMAGE)
    finally:
        cdao_sdk.settings.reset()
    tasks = [n.flyte_entity for n in deploy.nodes if isinstance(n.flyte_entity, BotoTask)]
    tasks.sort(key=lambda t: t.task_config.method != "create_model")
    connector = ConnectorRegistry.get_connector("boto")
    ctx = FlyteContextManager.current_context()
    values = {"model_path": "s3://flyte-data/model.tar.gz"}
    resources = []
    for task in tasks:
        wanted = {k: v for k, v in values.items() if k in task.python_interface.inputs}
        inputs = TypeEngine.dict_to_literal_map(ctx, wanted, task.python_interface.inputs)
        resource = run(connector.do(task_template=serialize(task), output_prefix="s3://flyte-data/x", inputs=inputs))
        resources.append(resource)
        if resource.outputs is not None:
            values["idempotence_token"] = resource.outputs.literals["idempotence_token"].scalar.primitive.string_value
    return resources

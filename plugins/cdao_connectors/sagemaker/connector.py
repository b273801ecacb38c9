"""SageMaker connectors written here: spot training, and a safe status map for endpoints.

Everything else (processing, transform, tuning, models, endpoint configs) is served by the
connectors flytekitplugins-awssagemaker registers through its entry points.
"""

from __future__ import annotations

from typing import Any

from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import ConnectorRegistry, Resource
from flytekitplugins.awssagemaker_inference.connector import SageMakerEndpointConnector, SageMakerEndpointMetadata
from flytekitplugins.awssagemaker_training import SageMakerTrainingTaskConnector

from cdao_connectors._common import log_link
from cdao_connectors.sagemaker.task import SAGEMAKER_TRAINING_TASK_TYPE


class SpotTrainingConnector(SageMakerTrainingTaskConnector):
    name = "CDAO SageMaker Spot Training Connector"
    task_type_name = SAGEMAKER_TRAINING_TASK_TYPE

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


class SafeEndpointConnector(SageMakerEndpointConnector):
    """Same task type and name as the plugin's endpoint connector, replacing it in the registry."""

    async def get(self, resource_meta: SageMakerEndpointMetadata, **kwargs: Any) -> Resource:
        described, _ = await self._call(
            method="describe_endpoint",
            config={"EndpointName": resource_meta.config.get("EndpointName")},
            inputs=resource_meta.inputs,
            region=resource_meta.region,
        )
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


ConnectorRegistry.register(SpotTrainingConnector())
ConnectorRegistry.register(SafeEndpointConnector(), override=True)

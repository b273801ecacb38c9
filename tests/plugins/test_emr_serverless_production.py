"""``@spark_task()`` (EMR Serverless) end to end the way production runs it: the SDK's serialised
template unmodified, the connector with exactly the environment the Argo CD ApplicationSet gives the
connector Deployment (rendered from platform/ for a stack), against moto.

The application is STARTED (busy), or STOPPED as it is after 15 idle minutes (infra/components/compute.py's
auto-stop), so the connector must start it (flytekitplugins-awsemrserverless ``boto_handler.py``
``start_application_if_needed`` sends StartApplication for CREATED/STOPPED applications).
moto creates EMR Serverless applications STARTED and, like AWS, refuses UpdateApplication unless the
application is CREATED or STOPPED (moto ``emrserverless/models.py`` ``update_application``; AWS:
https://docs.aws.amazon.com/emr-serverless/latest/APIReference/API_UpdateApplication.html).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import boto3
import emr_tasks
import pytest
from aws_setup import provision_attempt_table
from cdao_connectors.emr.task import EMR_SERVERLESS_PYTHON, PYSPARK_PYTHON_KEYS
from propeller import PHASE, create_task, execution_metadata, get_task, serialize, write_inputs

# The platform tests' offline Argo CD renderer: the Deployment's environment is read from the
# manifests, never restated here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform" / "support"))
from platform_render import (
    GoTemplate,
    application_sets,
    render_application,
    render_application_set,
)
from platform_stack import cluster_secret

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"


def _connector_environment(stack: str) -> dict[str, str]:
    secret = cluster_secret(stack)
    appset = next(a for a in application_sets() if a["metadata"]["name"] == "connectors")
    (app,) = render_application_set(appset, secret, GoTemplate(strict_index=True))
    rendered = render_application(app, secret["metadata"]["annotations"]["cdao.io/repo-url"])
    deployment = next(
        m for m in rendered.manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "cdao-connector"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.fixture
def production_env(aws_env, monkeypatch):
    env = _connector_environment("dev")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The one departure from the pod: tests change a job's state in moto and expect the next GetTask
    # to see it, not the Deployment's 5 s later.
    monkeypatch.setenv("CDAO_STATUS_REFRESH_SECONDS", aws_env["CDAO_STATUS_REFRESH_SECONDS"])
    region = env["CDAO_AWS_REGION"]
    boto3.client("s3", region_name=region).create_bucket(Bucket=env["CDAO_EMR_ENTRYPOINT_BUCKET"])
    # infra/ makes the stack's attempt table, which every CreateTask records its answer in.
    provision_attempt_table(region, env["CDAO_ATTEMPT_TABLE"])
    return env


@pytest.mark.parametrize("application_state", ["STARTED", "STOPPED"])
def test_default_spark_task_runs_with_the_deployments_environment(
    application_state, production_env, grpc_stubs, monkeypatch
):
    from moto.emrserverless.models import emrserverless_backends  # noqa: PLC0415

    region = production_env["CDAO_AWS_REGION"]
    client = boto3.client("emr-serverless", region_name=region)
    app = client.create_application(name="cdao-dev-spark", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    if application_state == "STOPPED":
        client.stop_application(applicationId=app)
    monkeypatch.setenv("CDAO_EMR_SERVERLESS_APPLICATION_ID", app)
    monkeypatch.setenv("CDAO_EMR_SERVERLESS_ROLE_ARN", f"arn:aws:iam::{ACCOUNT}:role/cdao-dev-emr-serverless")

    stub, _ = grpc_stubs
    template = serialize(emr_tasks.on_default_serverless)  # as registered: no field changed afterwards
    prefix = f"s3://flyte-data/metadata/{uuid.uuid4().hex}"
    inputs = write_inputs(emr_tasks.on_default_serverless, prefix, rows=3)
    meta = create_task(stub, template, prefix, inputs, execution_metadata(f"emrs-{application_state.lower()}"))

    resource = get_task(stub, "emr_serverless", meta)
    assert resource.phase != PHASE.FAILED, resource.message
    application = client.get_application(applicationId=app)["application"]
    assert application["state"] == "STARTED", "the connector must start an auto-stopped application"
    assert "imageConfiguration" not in application, "a task must not change the shared application's image"

    (run,) = emrserverless_backends[ACCOUNT][region].job_runs[app]
    entry_point = run.job_driver["sparkSubmit"]["entryPoint"]
    bucket = production_env["CDAO_EMR_ENTRYPOINT_BUCKET"]
    assert entry_point.startswith(f"s3://{bucket}/flyte/emr-serverless/entrypoint-")
    key = entry_point.removeprefix(f"s3://{bucket}/")
    assert boto3.client("s3", region_name=region).head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    # The task runs under the application image's Python, which has flytekit (plugins/Dockerfile target
    # emr-serverless), not the plugin's default /usr/bin/python3 of AWS's base image.
    submitted = run.job_driver["sparkSubmit"]["sparkSubmitParameters"].split()
    for key in PYSPARK_PYTHON_KEYS:
        assert f"{key}={EMR_SERVERLESS_PYTHON}" in submitted
    assert not [p for p in submitted if p.endswith("=/usr/bin/python3")]
    assert json.loads(meta)["application_id"] == app

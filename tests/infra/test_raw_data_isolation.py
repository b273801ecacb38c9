"""Each Flyte project-domain's task role reaches only its own raw data in the `userdata` bucket:
`data/<project>/<domain>/`, the raw output location `cdao flyte-projects --set-raw-data-prefix` sets in
flyteadmin for every execution (cdao_cli/flyte_projects.py). Propeller puts a task's raw data under
`<prefix>/<shard>/<unique id>` (flyteorg/flyte v1.16.8
flytepropeller/pkg/controller/nodes/task/taskexec_context.go, ioutils.NewShardedRawOutputPath): the keys
below are shaped so.
Policies are evaluated as IAM does (tests/infra/test_mlops_prefixes.py)."""

from __future__ import annotations

import pytest

from cdao_cli.plan.runner import PlanRun
from infra.contract import SAGEMAKER_OUTPUTS_PREFIX, SHARED_INPUTS_PREFIX, raw_data_prefix
from tests.infra.test_mlops_prefixes import TASKS, _allowed, _statements, _userdata

DOMAINS = ("development", "staging", "production")
WRITES = ("s3:PutObject", "s3:AbortMultipartUpload")


@pytest.fixture
def prod(plan_of) -> PlanRun:
    return plan_of("prod")


def _raw(bucket: str, project: str, domain: str) -> str:
    return f"{bucket}/{raw_data_prefix(project, domain)}/ab/f1a2b3c4-n0-0/output.parquet"


@pytest.mark.parametrize("domain", DOMAINS)
def test_a_task_role_reads_and_writes_its_own_raw_data_only(prod: PlanRun, domain: str):
    bucket = _userdata(prod)
    statements = _statements(prod, TASKS.format(domain))
    own = _raw(bucket, "ml-experiments", domain)
    assert all(_allowed(statements, action, own) for action in ("s3:GetObject", *WRITES))
    others = [_raw(bucket, "ml-experiments", d) for d in DOMAINS if d != domain]
    others += [_raw(bucket, "fraud-models", domain), f"{bucket}/ab/f1a2b3c4-n0-0/output.parquet"]
    for key in others:  # another project-domain's raw data, and propeller's default location
        for action in ("s3:GetObject", *WRITES):
            assert not _allowed(statements, action, key), (domain, action, key)


@pytest.mark.parametrize("domain", DOMAINS)
def test_shared_inputs_and_sagemaker_outputs_are_read_only(prod: PlanRun, domain: str):
    bucket = _userdata(prod)
    statements = _statements(prod, TASKS.format(domain))
    for key in (
        f"{bucket}/{SHARED_INPUTS_PREFIX}credit-scoring/applications.csv",
        f"{bucket}/{SAGEMAKER_OUTPUTS_PREFIX}transform/job-1/transform_input.csv.out",
    ):
        assert _allowed(statements, "s3:GetObject", key)
        assert not any(_allowed(statements, action, key) for action in WRITES), (domain, key)

"""Who may touch the MLOps prefixes of the `userdata` bucket (infra/lib/mlops.py): MLflow's
artifacts only through the MLflow server's role, model weights written only by production-domain
pipelines (review of issue 13 #2). The roles' policies are evaluated as IAM does: an explicit Deny
overrides any Allow (IAM User Guide, "Policy evaluation logic",
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html)."""

from __future__ import annotations

import json
import re

import pytest

from cdao_cli.plan.runner import PlanRun
from infra.contract import raw_data_prefix
from infra.lib import mlops

TASKS = "workload-identity-flyte-tasks-ml-experiments-{}"


def _like(pattern: str, value: str) -> bool:
    return re.fullmatch("".join(".*" if c == "*" else re.escape(c) for c in pattern), value) is not None


def _listed(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _statements(run: PlanRun, name: str) -> list[dict]:
    (policy,) = [p for p in run.registrations if p.type == "aws:iam/rolePolicy:RolePolicy" and p.name == name]
    return json.loads(policy.inputs["policy"])["Statement"]


def _allowed(statements: list[dict], action: str, resource: str) -> bool:
    """Unconditional statements only: each case below names an object, where none of ours has one."""

    def matches(s: dict) -> bool:
        return (
            not s.get("Condition")
            and any(_like(a, action) for a in _listed(s["Action"]))
            and any(_like(r, resource) for r in _listed(s["Resource"]))
        )

    denied = any(s["Effect"] == "Deny" and matches(s) for s in statements)
    return not denied and any(s["Effect"] == "Allow" and matches(s) for s in statements)


@pytest.fixture
def prod(plan_of) -> PlanRun:
    return plan_of("prod")


def _userdata(run: PlanRun) -> str:
    (mlflow,) = [s for s in _statements(run, "workload-identity-mlflow") if s.get("Sid") == "Artifacts"]
    return _listed(mlflow["Resource"])[0].removesuffix(f"/{mlops.MLFLOW_ARTIFACTS_PREFIX}*")


@pytest.mark.parametrize(
    "policy",
    [TASKS.format(d) for d in ("development", "staging", "production")]
    + ["workload-identity-flyteadmin", "workload-identity-flytepropeller", "workload-identity-connector"],
)
def test_only_the_mlflow_server_touches_mlflow_artifacts(prod: PlanRun, policy: str):
    bucket = _userdata(prod)
    artifact = f"{bucket}/{mlops.MLFLOW_ARTIFACTS_PREFIX}1/abc/artifacts/model.pkl"
    statements = _statements(prod, policy)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert not _allowed(statements, action, artifact), (policy, action)
    assert _allowed(_statements(prod, "workload-identity-mlflow"), "s3:PutObject", artifact)


@pytest.mark.parametrize("domain", ["development", "staging", "production"])
def test_only_production_pipelines_publish_model_weights(prod: PlanRun, domain: str):
    bucket = _userdata(prod)
    weights = f"{bucket}/{mlops.MODELS_PREFIX}credit-scoring/v7/model.safetensors"
    statements = _statements(prod, TASKS.format(domain))
    assert _allowed(statements, "s3:PutObject", weights) == (domain == "production")
    # Every domain still reads what production published, and writes its raw data elsewhere.
    assert _allowed(statements, "s3:GetObject", weights)
    raw = f"{bucket}/{raw_data_prefix('ml-experiments', domain)}/ab/f1a2b3c4-n0-0/output.parquet"
    assert _allowed(statements, "s3:PutObject", raw)

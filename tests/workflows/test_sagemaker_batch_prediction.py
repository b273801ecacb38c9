from __future__ import annotations

import json
from pathlib import Path

import pytest
from cdao_connectors.sagemaker.task import (
    BATCH_TRANSFORM_TASK_TYPE,
    SAGEMAKER_PROCESSING_TASK_TYPE,
    SAGEMAKER_TRAINING_TASK_TYPE,
)
from cdao_sdk import settings
from flytekit import LaunchPlan, WorkflowExecutionPhase
from flytekit.models.core.execution import WorkflowExecutionPhase as Phase
from workflow_test_support import IMAGE_FQN, IMAGE_TAG, ROOT, run_cli, serialize, task_templates

from infra.contract import SAGEMAKER_OUTPUTS_PREFIX, SHARED_INPUTS_PREFIX
from workflows._data import credit_scoring
from workflows.sagemaker_batch_prediction import launch_plans_for, sagemaker_batch_prediction_pipeline

STRONG_DRIVERS = {"late_payments_2y", "debt_to_income", "credit_utilization", "employment_unemployed"}


def test_pipeline_with_the_seeds_defaults_scores_credit_risk() -> None:
    metrics, report = sagemaker_batch_prediction_pipeline()

    baseline = metrics["majority_baseline_accuracy"]
    assert 0.75 <= baseline <= 0.82  # the generated portfolio's ~21% default rate
    # Predicting "no default" for everyone reaches the baseline with F1 = 0; this model must beat it.
    assert metrics["accuracy"] >= baseline + 0.05
    assert metrics["roc_auc"] >= 0.87
    assert 0.55 <= metrics["f1_score"] <= 0.9
    assert 0.5 <= metrics["precision"] <= 1.0
    assert 0.45 <= metrics["recall"] <= 1.0

    doc = json.loads(Path(report.path).read_text())
    assert doc["rows"] == 1200  # the 20% test split of 6,000 applications, each predicted once
    assert sum(map(sum, doc["confusion_matrix"])) == 1200
    top3 = list(doc["mean_abs_shap"])[:3]
    assert set(top3) & STRONG_DRIVERS, top3


def test_a_crippled_model_is_caught_by_the_metrics() -> None:
    # One depth-1 tree cannot rank borrowers: the same assertions as above must fail for it.
    metrics, _ = sagemaker_batch_prediction_pipeline(n_estimators=1, max_depth=1, compute_shap=False)
    assert metrics["roc_auc"] < 0.87 or metrics["f1_score"] < 0.55


def test_bad_hyperparameters_fail_with_a_clear_message() -> None:
    with pytest.raises(Exception, match=r"max_depth=0 must be 1\.\.20"):
        sagemaker_batch_prediction_pipeline(max_depth=0, compute_shap=False)


def test_batch_size_reaches_the_model_server() -> None:
    # The workflow's batch_size is the transform's BATCH_SIZE; the model server refuses it at start.
    with pytest.raises(Exception, match=r"model server did not start.*BATCH_SIZE='0' must be an integer >= 1"):
        # The model is irrelevant here: one stump trains in a fraction of the default 100 trees.
        sagemaker_batch_prediction_pipeline(batch_size=0, n_estimators=1, max_depth=1, compute_shap=False)


def test_raw_table_missing_columns_is_rejected(tmp_path: Path) -> None:
    csv = tmp_path / "applications.csv"
    credit_scoring(n_rows=200).drop(columns=["employment"]).to_csv(csv, index=False)
    with pytest.raises(Exception, match=r"lacks required columns \['employment'\]"):
        sagemaker_batch_prediction_pipeline(raw_data_path=str(csv))


def test_steps_run_as_sagemaker_jobs() -> None:
    templates = task_templates(sagemaker_batch_prediction_pipeline)
    assert templates["preprocess_data_sagemaker"].type == SAGEMAKER_PROCESSING_TASK_TYPE
    transform = templates["batch_transform_sagemaker"]
    assert transform.type == BATCH_TRANSFORM_TASK_TYPE
    # The registered image serves the package; SageMaker keeps the id out of the model's input
    # and joins it back onto each prediction.
    assert transform.custom["image"] == f"{IMAGE_FQN}:{IMAGE_TAG}"
    request = transform.custom["transform"]
    assert (request["input_filter"], request["join_source"], request["output_filter"]) == (
        "$[1:]",
        "Input",
        "$[0,-2,-1]",
    )
    assert request["env_inputs"] == ["batch_size"]
    assert request["execution_role_arn"] == settings.get("sagemaker_role")
    # SageMaker's outputs land where every task role may read them (infra/contract.py).
    outputs = f"s3://{settings.get('default_bucket')}/{SAGEMAKER_OUTPUTS_PREFIX}"
    assert request["output_s3_path"] == f"{outputs}transform"
    assert templates["evaluate_predictions_sagemaker"].type == SAGEMAKER_PROCESSING_TASK_TYPE
    training = templates["train_model_sagemaker"]
    assert training.type == SAGEMAKER_TRAINING_TASK_TYPE
    assert training.custom["use_spot_instances"] is True
    assert training.custom["instance_type"] == "ml.m5.xlarge"
    assert training.custom["output_s3_path"].startswith(outputs)
    assert training.custom["checkpoint_s3_uri"].startswith(outputs)


@pytest.fixture
def fresh_launch_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    # flytekit keeps launch plans in a process-wide cache keyed by name; each domain builds its own.
    monkeypatch.setattr(LaunchPlan, "CACHE", {})


@pytest.mark.usefixtures("fresh_launch_plans")
def test_production_runs_nightly_with_failure_and_success_notifications() -> None:
    plans = {lp.name: lp for lp in launch_plans_for("production")}
    nightly = plans["credit_scoring_nightly"]
    assert nightly.schedule.cron_schedule.schedule == "0 2 * * *"
    phases = {(type(n).__name__, p) for n in nightly.notifications for p in n.phases}
    assert ("Slack", WorkflowExecutionPhase.FAILED) in phases
    assert ("Email", WorkflowExecutionPhase.FAILED) in phases
    assert ("Email", Phase.SUCCEEDED) in phases
    bucket = settings.get("default_bucket")
    assert nightly.fixed_inputs.literals["raw_data_path"].scalar.primitive.string_value == (
        f"s3://{bucket}/{SHARED_INPUTS_PREFIX}credit-scoring/applications.csv"
    )
    for lp in plans.values():
        assert serialize(lp, domain="production")


@pytest.mark.usefixtures("fresh_launch_plans")
@pytest.mark.parametrize("domain", ["development", "staging"])
def test_other_domains_have_no_schedule(domain: str) -> None:
    plans = launch_plans_for(domain)
    assert [lp.name for lp in plans] == ["credit_scoring_batch_prediction"]
    (lp,) = plans
    assert lp.schedule is None
    path = lp.fixed_inputs.literals["raw_data_path"].scalar.primitive.string_value
    # Staging's task role reads the bucket's shared inputs only (infra/components/identity.py).
    bucket = settings.get("default_bucket")
    assert path.startswith("builtin://" if domain == "development" else f"s3://{bucket}/{SHARED_INPUTS_PREFIX}")
    assert bool(lp.notifications) == (domain == "staging")
    assert serialize(lp, domain=domain)


def test_unknown_domain_is_rejected() -> None:
    with pytest.raises(ValueError, match="'prod' is not one of"):
        launch_plans_for("prod")


def test_pyflyte_run_needs_no_aws_settings(tmp_path: Path) -> None:
    # A fresh laptop: no region, role or bucket anywhere; every step (the transform's model server
    # included) runs here.
    blank = dict.fromkeys(("CDAO_AWS_REGION", "AWS_REGION", "CDAO_SAGEMAKER_ROLE_ARN", "CDAO_DEFAULT_BUCKET"), "")
    args = ["run", "workflows/sagemaker_batch_prediction.py", "sagemaker_batch_prediction_pipeline"]
    proc = run_cli([*args, "--no_compute_shap"], cwd=ROOT, env=blank, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "'roc_auc': 0.9" in proc.stdout, proc.stdout


def test_serialising_without_the_stacks_settings_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDAO_SAGEMAKER_ROLE_ARN")
    with pytest.raises(
        ValueError,
        match=r"sagemaker_processing_task .*preprocess_data_sagemaker needs the "
        r"'sagemaker_role' setting.*CDAO_SAGEMAKER_ROLE_ARN",
    ):
        serialize(sagemaker_batch_prediction_pipeline)

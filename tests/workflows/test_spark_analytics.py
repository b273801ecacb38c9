from __future__ import annotations

import pandas as pd
import pytest
from cdao_connectors.emr.task import EMR_SPARK_TASK_TYPE
from workflow_test_support import task_templates

from workflows._data import MIN_TRAINING_ROWS, credit_scoring
from workflows.segment_scoring import segment_scoring_pipeline
from workflows.spark_analytics import spark_analytics_pipeline


def test_spark_report_matches_an_independent_pandas_computation() -> None:
    report = pd.read_csv(spark_analytics_pipeline().path).set_index(["region", "employment"])

    raw = credit_scoring()
    expected = raw.groupby(["region", "employment"]).agg(
        applications=("target", "size"), default_rate=("target", "mean"), total_loan_amount=("loan_amount", "sum")
    )
    assert len(report) == len(expected) == 16
    assert report["applications"].sum() == len(raw)
    joined = report.join(expected.add_suffix("_pandas"))
    assert (joined["applications"] == joined["applications_pandas"]).all()
    assert joined["default_rate"].to_numpy() == pytest.approx(joined["default_rate_pandas"].to_numpy())
    assert joined["total_loan_amount"].to_numpy() == pytest.approx(joined["total_loan_amount_pandas"].to_numpy())

    # The generator makes unemployment the riskiest status: it must top every region's ranking.
    riskiest = report[report["risk_rank_in_region"] == 1].reset_index()
    assert set(riskiest["employment"]) == {"unemployed"}
    assert (report["defaulted_loan_amount"] <= report["total_loan_amount"]).all()


def test_spark_step_runs_on_a_transient_emr_cluster() -> None:
    step = task_templates(spark_analytics_pipeline)["segment_risk_report"]
    assert step.type == EMR_SPARK_TASK_TYPE
    assert step.custom["cluster_id"] is None
    assert step.custom["instance_count"] == 3


def test_a_small_table_is_enough_for_a_report(tmp_path) -> None:
    # Only pipelines that train need MIN_TRAINING_ROWS; a report over ten applications is a report.
    csv = tmp_path / "ten.csv"
    credit_scoring(n_rows=100).head(10).to_csv(csv, index=False)
    report = pd.read_csv(spark_analytics_pipeline(raw_data_path=str(csv)).path)
    assert report["applications"].sum() == 10


def test_a_training_pipeline_still_refuses_a_table_too_small_to_split(tmp_path) -> None:
    csv = tmp_path / "ten.csv"
    credit_scoring(n_rows=100).head(10).to_csv(csv, index=False)
    with pytest.raises(Exception, match=rf"has 10 rows; this pipeline needs at least {MIN_TRAINING_ROWS}"):
        segment_scoring_pipeline(raw_data_path=str(csv))

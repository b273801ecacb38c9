from __future__ import annotations

import pandas as pd
import pytest
from cdao_connectors.emr.task import EMR_SPARK_TASK_TYPE
from workflow_test_support import task_templates

from workflows._data import credit_scoring
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

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_test_support import ROOT, run_cli, serialize

from workflows._data import credit_scoring
from workflows.segment_scoring import HOLDOUT_EVERY, segment_scoring_pipeline


def test_every_region_is_scored_by_the_map_task() -> None:
    scores = segment_scoring_pipeline()

    assert sorted(s.segment for s in scores) == ["east", "north", "south", "west"]
    assert sum(s.rows for s in scores) == len(credit_scoring()) // HOLDOUT_EVERY
    for s in scores:
        assert s.roc_auc >= 0.85, s  # a random scorer sits at 0.5
        # Logistic regression is calibrated on average: per segment within a few points.
        assert abs(s.predicted_default_rate - s.observed_default_rate) <= 0.06, s


def test_unknown_segment_column_is_rejected() -> None:
    with pytest.raises(Exception, match="segment_column='age'"):
        segment_scoring_pipeline(segment_column="age")


def test_the_fan_out_is_an_array_node() -> None:
    names = [getattr(getattr(e, "template", None), "id", None) for e in serialize(segment_scoring_pipeline).values()]
    assert any(n is not None and "map_score_segment" in n.name for n in names), names


def test_pyflyte_run_from_the_cli_on_a_csv(tmp_path: Path) -> None:
    csv = tmp_path / "applications.csv"
    credit_scoring(n_rows=2000, seed=5).to_csv(csv, index=False)
    proc = run_cli(
        [
            "run",
            str(ROOT / "workflows" / "segment_scoring.py"),
            "segment_scoring_pipeline",
            "--raw_data_path",
            str(csv),
            "--segment_column",
            "home_ownership",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for segment in ("own", "mortgage", "rent"):
        assert f"segment='{segment}'" in proc.stdout
    # Task outputs go to each task's scratch directory, not into the caller's working directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["applications.csv"]

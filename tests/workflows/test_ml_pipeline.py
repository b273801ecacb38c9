from __future__ import annotations

from pathlib import Path

import pytest
import torch
from workflow_test_support import task_templates

from workflows._data import breast_cancer
from workflows.ml_pipeline import ml_pipeline, predict


def test_ml_pipeline_trains_an_accurate_classifier() -> None:
    model = ml_pipeline(epochs=30)

    artifact = torch.load(model.path, weights_only=True)
    assert len(artifact["scaling"]["features"]) == 30
    # A constant or untrained classifier scores ~0.63 (the majority class) on this data set.
    assert artifact["test_accuracy"] >= 0.93
    df = breast_cancer()
    assert (predict(model.path, df) == df["target"].to_numpy()).mean() >= 0.95


def test_ml_pipeline_reads_a_csv_path(tmp_path: Path) -> None:
    csv = tmp_path / "raw.csv"
    breast_cancer().sample(frac=1.0, random_state=3).to_csv(csv, index=False)
    artifact = torch.load(ml_pipeline(data_path=str(csv), epochs=10).path, weights_only=True)
    assert artifact["test_accuracy"] >= 0.9


@pytest.mark.parametrize(
    ("data_path", "message"),
    [("builtin://no_such_set", "unknown built-in data set"), ("", "data path is empty")],
)
def test_ml_pipeline_rejects_bad_data_paths(data_path: str, message: str) -> None:
    with pytest.raises(Exception, match=message):
        ml_pipeline(data_path=data_path, epochs=1)


def test_ml_pipeline_rejects_a_table_without_target(tmp_path: Path) -> None:
    csv = tmp_path / "no_target.csv"
    breast_cancer().drop(columns=["target"]).to_csv(csv, index=False)
    with pytest.raises(Exception, match="lacks required columns"):
        ml_pipeline(data_path=str(csv), epochs=1)


def test_ml_pipeline_targets_batch_spot_and_codeweave() -> None:
    templates = task_templates(ml_pipeline)
    pre, train = templates["preprocess_data"], templates["train_model"]
    assert pre.type == "cdao-aws-batch"
    assert pre.custom["spot"] is True
    assert pre.metadata.retries.retries == 3
    assert train.type == "cdao-codeweave-gpu"
    assert train.custom["gpu_type"] == "nvidia-tesla-v100"
    assert train.custom["gpus"] == 1

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cdao_sdk.pools import A100_MIG, A100_TIMESLICE, GPU_RESOURCE, NODE_POOL_LABEL, mig_resource
from flytekit.core.checkpointer import SyncCheckpoint
from workflow_test_support import task_templates

from workflows.gpu_training import digits_split, fit, gpu_training_pipeline


def test_gpu_training_pipeline_learns_the_digits() -> None:
    model, metrics = gpu_training_pipeline(epochs=8)
    # Chance is 0.10 and a model stuck on one digit scores ~0.10 macro-F1.
    assert metrics["accuracy"] >= 0.95
    assert metrics["macro_f1"] >= 0.95
    state = torch.load(model.path, weights_only=True)
    assert state["8.weight"].shape == (10, 128)


def test_training_resumes_from_the_checkpoint_of_an_interrupted_attempt(tmp_path: Path) -> None:
    data = digits_split()
    # Attempt 1 is reclaimed after two of four epochs; attempt 2 gets attempt 1's checkpoint as its source.
    first = fit(data, epochs=2, lr=0.003, batch_size=64, checkpoint=SyncCheckpoint(str(tmp_path / "attempt-1")))
    assert first.trained_epochs == [1, 2]
    resumed = fit(
        data,
        epochs=4,
        lr=0.003,
        batch_size=64,
        checkpoint=SyncCheckpoint(str(tmp_path / "attempt-2"), checkpoint_src=str(tmp_path / "attempt-1")),
    )
    assert resumed.trained_epochs == [3, 4]
    assert len(resumed.losses) == 4
    assert resumed.losses[-1] < resumed.losses[0] * 0.5

    uninterrupted = fit(data, epochs=4, lr=0.003, batch_size=64, checkpoint=None)
    assert resumed.losses == pytest.approx(uninterrupted.losses)
    for (name, a), b in zip(resumed.model.state_dict().items(), uninterrupted.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b), f"resumed weights {name} differ from an uninterrupted run"


def test_resuming_with_other_hyperparameters_is_refused(tmp_path: Path) -> None:
    data = digits_split()
    fit(data, epochs=1, lr=0.003, batch_size=64, checkpoint=SyncCheckpoint(str(tmp_path / "a")))
    with pytest.raises(ValueError, match="would mix two different runs"):
        fit(
            data,
            epochs=2,
            lr=0.01,
            batch_size=64,
            checkpoint=SyncCheckpoint(str(tmp_path / "b"), checkpoint_src=str(tmp_path / "a")),
        )


def test_bad_hyperparameters_are_rejected() -> None:
    with pytest.raises(Exception, match=r"lr=1\.5 must be in \(0, 1\)"):
        gpu_training_pipeline(epochs=1, lr=1.5)


def _container(template: object) -> dict:
    (container,) = template.k8s_pod.pod_spec["containers"]
    return container


def test_training_asks_for_a_time_sliced_gpu_and_evaluation_for_a_mig_slice() -> None:
    templates = task_templates(gpu_training_pipeline)
    train, evaluate = templates["train_cnn"], templates["evaluate_cnn"]

    assert train.metadata.interruptible is True
    assert train.metadata.retries.retries >= 1
    assert train.k8s_pod.pod_spec["nodeSelector"][NODE_POOL_LABEL] == A100_TIMESLICE.name
    assert _container(train)["resources"]["limits"][GPU_RESOURCE] == "1"
    assert A100_TIMESLICE.taint.toleration() in train.k8s_pod.pod_spec["tolerations"]

    assert evaluate.k8s_pod.pod_spec["nodeSelector"][NODE_POOL_LABEL] == A100_MIG.name
    assert _container(evaluate)["resources"]["limits"][mig_resource("1g.10gb")] == "1"
    assert GPU_RESOURCE not in _container(evaluate)["resources"]["limits"]

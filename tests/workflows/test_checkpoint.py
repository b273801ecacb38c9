"""The one resume routine both spot-trained pipelines use (workflows/_checkpoint.py), on flytekit's
real SyncCheckpoint (a retried attempt reads the previous attempt's checkpoint as its source)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from flytekit.core.checkpointer import SyncCheckpoint

from workflows import _checkpoint

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def _model_and_optimizer(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()  # momentum buffers exist, so the optimiser's state is not empty
    return model, optimizer


def test_a_retried_attempt_resumes_where_the_previous_one_stopped(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer(1)
    first = SyncCheckpoint(str(tmp_path / "attempt-1"))
    _checkpoint.save(first, model, optimizer, next_epoch=3, losses=[0.9, 0.5, 0.4], lr=0.1, batch_size=8)

    fresh, fresh_optimizer = _model_and_optimizer(2)
    second = SyncCheckpoint(str(tmp_path / "attempt-2"), checkpoint_src=str(tmp_path / "attempt-1"))
    start, losses = _checkpoint.restore(second, fresh, fresh_optimizer, "cpu", lr=0.1, batch_size=8)
    assert (start, losses) == (3, [0.9, 0.5, 0.4])
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    saved, restored = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for key, state in saved.items():
        assert torch.equal(state["momentum_buffer"], restored[key]["momentum_buffer"])


def test_a_first_attempt_starts_from_epoch_zero(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer(1)
    assert _checkpoint.restore(None, model, optimizer, "cpu", lr=0.1, batch_size=8) == (0, [])
    empty = SyncCheckpoint(str(tmp_path / "attempt-1"))
    assert _checkpoint.restore(empty, model, optimizer, "cpu", lr=0.1, batch_size=8) == (0, [])


def test_other_hyper_parameters_refuse_to_resume(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer(1)
    _checkpoint.save(
        SyncCheckpoint(str(tmp_path / "a")), model, optimizer, next_epoch=1, losses=[1.0], lr=0.1, batch_size=8
    )
    second = SyncCheckpoint(str(tmp_path / "b"), checkpoint_src=str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"lr=0.1, batch_size=8; resuming with lr=0.1, batch_size=16"):
        _checkpoint.restore(second, model, optimizer, "cpu", lr=0.1, batch_size=16)


@pytest.mark.parametrize("module", ["gpu_training.py", "distributed_training.py"])
def test_the_pipelines_resume_through_the_one_routine(module: str) -> None:
    """The checkpoint's layout has one owner: a pipeline that read or wrote it itself would drift."""
    tree = ast.parse((WORKFLOWS / module).read_text())
    calls = {
        f"{n.func.value.id}.{n.func.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
    }
    assert {"_checkpoint.restore", "_checkpoint.save"} <= calls
    assert not {"checkpoint.read", "checkpoint.write"} & calls

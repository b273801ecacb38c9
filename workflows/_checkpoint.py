"""Resuming a training task from Flyte's task checkpoint, for the pipelines that train on spot.

A checkpoint is one ``torch.save`` blob written after every finished epoch through
``flytekit.current_context().checkpoint`` (``Checkpoint.read() -> bytes | None`` and
``write(bytes)``, flytekit ``core/checkpointer.py``); Flyte hands a retried attempt the previous
attempt's checkpoint. The blob holds the model's and optimiser's state dicts, the next epoch, the loss
history, and the hyper-parameters that must not change across a resume.
"""

from __future__ import annotations

import io
from typing import Any


def restore(
    checkpoint: Any | None, model: Any, optimizer: Any, device: Any, *, lr: float, batch_size: int
) -> tuple[int, list[float]]:
    """Load a previous attempt's state into ``model`` and ``optimizer``.

    Returns the epoch to start from (0 without a checkpoint) and the mean losses of the epochs
    already trained. Raises ``ValueError`` when the checkpoint was written with another ``lr`` or
    ``batch_size``: resuming would mix two different runs.
    """
    import torch  # noqa: PLC0415

    saved = checkpoint.read() if checkpoint is not None else None
    if not saved:
        return 0, []
    state = torch.load(io.BytesIO(saved), map_location=device, weights_only=True)
    if (state["lr"], state["batch_size"]) != (lr, batch_size):
        raise ValueError(
            f"checkpoint was written with lr={state['lr']}, batch_size={state['batch_size']}; "
            f"resuming with lr={lr}, batch_size={batch_size} would mix two different runs"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["next_epoch"], list(state["losses"])


def save(
    checkpoint: Any, model: Any, optimizer: Any, *, next_epoch: int, losses: list[float], lr: float, batch_size: int
) -> None:
    """Write the state ``restore`` reads after epoch ``next_epoch`` (1-based count of finished epochs)."""
    import torch  # noqa: PLC0415

    buf = io.BytesIO()
    state = {"next_epoch": next_epoch, "losses": losses, "lr": lr, "batch_size": batch_size}
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **state}, buf)
    checkpoint.write(buf.getvalue())

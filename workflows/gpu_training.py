"""Deep-learning training on the EKS GPU pools, resumable after a spot interruption.

Training asks for one whole A100 on the time-sliced pool; evaluation needs far less and takes a
``1g.10gb`` MIG slice. The training task runs on interruptible (spot) capacity: it checkpoints
every epoch through Flyte's task checkpoint, and a retried attempt starts from the last finished
epoch. Data is scikit-learn's bundled 8x8 handwritten digits (1,797 images), so nothing is
downloaded; locally PyTorch's CPU build runs the same code.
"""

from __future__ import annotations

import datetime
import typing
from typing import Any

import flytekit
from cdao_sdk import gpu_task, workflow
from flytekit.types.file import FlyteFile

from workflows import _checkpoint, _data, _platform
from workflows._data import Digits

CACHE_VERSION = "1.0"
SEED = 1234
N_CLASSES = 10


def digits_split() -> Digits:
    """The fixed train/test split every step uses (stratified, 25% test), as 1x8x8 images."""
    return _data.digits(SEED, images=True)


def build_model() -> Any:
    from torch import nn  # noqa: PLC0415

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(32 * 2 * 2, N_CLASSES),
    )


class FitResult(typing.NamedTuple):
    model: Any
    trained_epochs: list[int]  # the epochs this call ran (a resumed call skips the finished ones)
    losses: list[float]  # mean training loss of every epoch, including restored ones


def fit(data: Digits, *, epochs: int, lr: float, batch_size: int, checkpoint: Any | None) -> FitResult:
    """Train, saving model, optimiser and history after every epoch; resume from ``checkpoint``.

    Each epoch's shuffling and dropout are seeded from the epoch number, so a resumed run ends with
    exactly the weights of an uninterrupted one.
    """
    import torch  # noqa: PLC0415

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs={epochs} and batch_size={batch_size} must be >= 1")
    if not 0 < lr < 1:
        raise ValueError(f"lr={lr} must be in (0, 1)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(SEED)
    model = build_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start, losses = _checkpoint.restore(checkpoint, model, optimizer, device, lr=lr, batch_size=batch_size)

    x, y = data.x_train.to(device), data.y_train.to(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    trained = []
    for epoch in range(start, epochs):
        torch.manual_seed(SEED + epoch)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED + epoch))
        model.train()
        total = 0.0
        for batch in order.split(batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(x))
        trained.append(epoch + 1)
        if checkpoint is not None:
            _checkpoint.save(
                checkpoint, model, optimizer, next_epoch=epoch + 1, losses=losses, lr=lr, batch_size=batch_size
            )
    return FitResult(model, trained, losses)


def accuracy_and_macro_f1(model: Any, x: Any, y: Any) -> dict[str, float]:
    import torch  # noqa: PLC0415
    from sklearn.metrics import accuracy_score, f1_score  # noqa: PLC0415

    model.eval()
    with torch.no_grad():
        predicted = model(x).argmax(dim=1).cpu().numpy()
    truth = y.cpu().numpy()
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
    }


@gpu_task(
    gpu_type="a100",  # whole time-sliced A100 on the a100-timeslice pool
    gpus=1,
    cpu="8",
    memory="32Gi",
    workload_type="training",
    interruptible=True,  # spot capacity; checkpoints make a reclaimed node cost one epoch at most
    retries=3,
    timeout=datetime.timedelta(hours=3),
    cache=True,
    cache_version=CACHE_VERSION,
)
def train_cnn(epochs: int, lr: float, batch_size: int) -> FlyteFile:
    import torch  # noqa: PLC0415

    result = fit(
        digits_split(),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        checkpoint=flytekit.current_context().checkpoint,
    )
    out = _platform.work_dir() / "digits_cnn.pt"
    torch.save({k: v.cpu() for k, v in result.model.state_dict().items()}, out)
    return FlyteFile(str(out))


@gpu_task(
    gpu_type="a100",
    mig_profile="1g.10gb",  # scoring 450 images needs a slice, not a whole A100
    cpu="2",
    memory="8Gi",
    retries=2,
    timeout=datetime.timedelta(minutes=30),
    cache=True,
    cache_version=CACHE_VERSION,
)
def evaluate_cnn(model: FlyteFile) -> dict[str, float]:
    import torch  # noqa: PLC0415

    net = build_model()
    net.load_state_dict(torch.load(model.download(), map_location="cpu", weights_only=True))
    data = digits_split()
    return accuracy_and_macro_f1(net, data.x_test, data.y_test)


class Trained(typing.NamedTuple):
    model: FlyteFile
    metrics: dict[str, float]


@workflow
def gpu_training_pipeline(epochs: int = 15, lr: float = 0.003, batch_size: int = 64) -> Trained:
    model = train_cnn(epochs=epochs, lr=lr, batch_size=batch_size)
    return Trained(model=model, metrics=evaluate_cnn(model=model))

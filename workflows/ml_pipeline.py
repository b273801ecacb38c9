"""The seeds' multi-compute pipeline: preprocessing on AWS Batch spot, training on a Codeweave GPU.

``pyflyte run workflows/ml_pipeline.py ml_pipeline`` runs both bodies here (the GPU code falls back
to the CPU); registered, preprocessing is an AWS Batch job on the spot queue and training a
Codeweave job. The result is the model artifact itself, not a path string.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Annotated, Any

from cdao_sdk import batch_task, gpu_task, workflow
from flytekit import HashMethod
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from workflows import _platform
from workflows._data import MIN_TRAINING_ROWS, TARGET, load_table

CACHE_VERSION = "1.0"
RANDOM_STATE = 7
TEST_FRACTION = 0.2
HIDDEN_UNITS = 32

HashedDirectory = Annotated[FlyteDirectory, HashMethod(_platform.file_sha256)]


@batch_task(
    spot=True,
    vcpus=2,
    memory="8Gi",
    retries=3,  # spot reclamation ends an attempt through no fault of the code
    timeout=datetime.timedelta(minutes=30),
    # Not cached: `data_path` names a location whose contents may change between runs.
)
def preprocess_data(data_path: str) -> HashedDirectory:
    """Split stratified, then standardise with training-split statistics only."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    df = load_table(data_path, min_rows=MIN_TRAINING_ROWS)
    features = [c for c in df.columns if c != TARGET]
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise ValueError(f"{data_path!r}: ml_pipeline takes numeric features only; encode {non_numeric} first")
    if sorted(df[TARGET].dropna().unique().tolist()) != [0, 1]:
        raise ValueError(f"{data_path!r}: column {TARGET!r} must be binary 0/1")
    df = df.dropna(subset=[TARGET])

    rng = np.random.default_rng(RANDOM_STATE)
    test_mask = np.zeros(len(df), dtype=bool)
    for label in (0, 1):
        idx = np.flatnonzero(df[TARGET].to_numpy() == label)
        test_mask[rng.choice(idx, size=round(len(idx) * TEST_FRACTION), replace=False)] = True
    train, test = df[~test_mask], df[test_mask]

    mean = train[features].mean()
    std = train[features].std(ddof=0).replace(0, 1.0)  # a constant column must not divide by zero
    out = _platform.work_dir() / "processed"
    out.mkdir(exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        scaled = ((part[features] - mean) / std).fillna(0.0)  # missing values land on the training mean
        scaled[TARGET] = part[TARGET].astype(int).to_numpy()
        scaled.to_csv(out / f"{name}.csv", index=False)
    (out / "scaling.json").write_text(json.dumps({"features": features, "mean": mean.tolist(), "std": std.tolist()}))
    return FlyteDirectory(str(out))


@gpu_task(
    platform="codeweave",
    gpu_type="nvidia-tesla-v100",
    gpus=1,
    cpu="8",
    memory="32Gi",
    retries=2,
    timeout=datetime.timedelta(hours=2),
    cache=True,
    cache_version=CACHE_VERSION,
)
def train_model(dataset: FlyteDirectory, epochs: int, lr: float) -> FlyteFile:
    """A small MLP classifier; the artifact carries its scaling so it scores raw rows on its own."""
    import pandas as pd  # noqa: PLC0415
    import torch  # noqa: PLC0415

    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    if not 0 < lr < 1:
        raise ValueError(f"lr={lr} must be in (0, 1)")
    root = Path(dataset.download())
    train = pd.read_csv(root / "train.csv")
    test = pd.read_csv(root / "test.csv")
    scaling = json.loads((root / "scaling.json").read_text())

    torch.manual_seed(RANDOM_STATE)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.tensor(train.drop(columns=[TARGET]).to_numpy(), dtype=torch.float32, device=device)
    y = torch.tensor(train[TARGET].to_numpy(), dtype=torch.float32, device=device)
    model = _network(x.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    order = torch.Generator().manual_seed(RANDOM_STATE)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=order).split(32):
            optimizer.zero_grad()
            loss_fn(model(x[batch]).squeeze(1), y[batch]).backward()
            optimizer.step()

    model.eval()
    with torch.no_grad():
        x_test = torch.tensor(test.drop(columns=[TARGET]).to_numpy(), dtype=torch.float32, device=device)
        predicted = (model(x_test).squeeze(1) > 0).cpu().numpy().astype(int)
    test_accuracy = float((predicted == test[TARGET].to_numpy()).mean())
    artifact = {
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "scaling": scaling,
        "hidden_units": HIDDEN_UNITS,
        "test_accuracy": test_accuracy,
        "epochs": epochs,
        "lr": lr,
    }
    out = _platform.work_dir() / "model.pt"
    torch.save(artifact, out)
    return FlyteFile(str(out))


def _network(n_features: int) -> Any:
    import torch  # noqa: PLC0415

    return torch.nn.Sequential(
        torch.nn.Linear(n_features, HIDDEN_UNITS), torch.nn.ReLU(), torch.nn.Linear(HIDDEN_UNITS, 1)
    )


def predict(model_path: str, rows: Any) -> Any:
    """Class predictions (0/1) of the saved artifact for raw (unscaled) rows of a DataFrame."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    artifact = torch.load(model_path, weights_only=True)
    scaling = artifact["scaling"]
    x = (rows[scaling["features"]].to_numpy() - np.array(scaling["mean"])) / np.array(scaling["std"])
    net = _network(len(scaling["features"]))
    net.load_state_dict(artifact["state_dict"])
    net.eval()
    with torch.no_grad():
        logits = net(torch.tensor(np.nan_to_num(x), dtype=torch.float32)).squeeze(1)
    return (logits > 0).numpy().astype(int)


@workflow
def ml_pipeline(data_path: str = "builtin://breast_cancer", epochs: int = 100, lr: float = 0.001) -> FlyteFile:
    processed = preprocess_data(data_path=data_path)
    return train_model(dataset=processed, epochs=epochs, lr=lr)

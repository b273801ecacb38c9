"""Inference code of the credit-scoring model package (``code/inference.py`` inside model.tar.gz).

SageMaker's batch transform runs it in the serving container, which has the task image's
libraries but not this repository's code: so it imports nothing from ``workflows``.

Requests are headerless CSV lines of the model's features in training order (the transform's
InputFilter drops the application id); each answer line is ``default_probability,predicted_default``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import xgboost as xgb

MODEL_FILE = "model.json"
THRESHOLD = 0.5
# Rows scored per predict call, bounding memory however large SageMaker's mini-batch is.
BATCH_SIZE_ENV = "BATCH_SIZE"


def _batch_size() -> int:
    raw = os.environ.get(BATCH_SIZE_ENV, "1000")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{BATCH_SIZE_ENV}={raw!r} must be an integer >= 1")
    return int(raw)


def model_fn(model_dir: str) -> tuple[xgb.XGBClassifier, int]:
    batch_size = _batch_size()  # checked at start: a bad value fails the job before any request
    model = xgb.XGBClassifier()
    model.load_model(Path(model_dir) / MODEL_FILE)
    return model, batch_size


def transform_fn(loaded: tuple[xgb.XGBClassifier, int], body: bytes, content_type: str, accept: str) -> tuple[str, str]:
    if content_type != "text/csv" or accept not in ("text/csv", "*/*"):
        raise ValueError(f"credit scoring reads and writes text/csv, not {content_type!r} -> {accept!r}")
    model, batch_size = loaded
    rows = np.loadtxt(io.BytesIO(body), delimiter=",", ndmin=2, dtype=np.float64)
    expected = model.n_features_in_
    if rows.shape[1] != expected:
        raise ValueError(f"records have {rows.shape[1]} features; the model was trained on {expected}")
    parts = [model.predict_proba(rows[i : i + batch_size])[:, 1] for i in range(0, len(rows), batch_size)]
    proba = np.concatenate(parts)
    return "".join(f"{p:.6f},{int(p >= THRESHOLD)}\n" for p in proba), "text/csv"

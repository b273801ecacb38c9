"""Small real data sets the pipelines run on, with nothing downloaded at run time.

``builtin://breast_cancer`` is the Wisconsin diagnostic data set shipped inside scikit-learn's
wheel. ``builtin://credit_scoring`` is a credit-application table generated here, deterministically,
from a documented risk model (defaults rise with debt-to-income, utilisation and late payments),
so every laptop and every CI run sees the same rows. Any other value is read as a CSV through
flytekit's file handling (local path or s3://).
"""

from __future__ import annotations

import typing
from typing import Any

import numpy as np
import pandas as pd

BUILTIN = "builtin://"
TARGET = "target"

CREDIT_NUMERIC = (
    "age",
    "annual_income",
    "debt_to_income",
    "credit_history_years",
    "open_accounts",
    "late_payments_2y",
    "loan_amount",
    "credit_utilization",
)
CREDIT_CATEGORICAL = ("employment", "home_ownership", "loan_purpose", "region")
CREDIT_ROWS = 6000
CREDIT_SEED = 20241101

_EMPLOYMENT = {"salaried": -0.2, "self_employed": 0.4, "unemployed": 1.3, "retired": 0.1}
_HOME = {"own": -0.4, "mortgage": -0.1, "rent": 0.35}
_PURPOSE = {
    "debt_consolidation": 0.2,
    "home_improvement": -0.2,
    "car": -0.1,
    "education": 0.15,
    "medical": 0.45,
    "business": 0.6,
}
# Regions differ in mix, not in the risk model: segment scores should differ only through the mix.
_REGION_P = {"north": 0.3, "south": 0.25, "east": 0.25, "west": 0.2}


def credit_scoring(n_rows: int = CREDIT_ROWS, seed: int = CREDIT_SEED) -> pd.DataFrame:
    """Credit applications with a ``target`` column (1 = defaulted within 24 months)."""
    if n_rows < 100:
        raise ValueError(f"credit_scoring n_rows={n_rows}: at least 100 rows are needed to train and test")
    rng = np.random.default_rng(seed)

    def pick(options: dict[str, float], p: list[float] | None = None) -> np.ndarray:
        return rng.choice(list(options), size=n_rows, p=p)

    age = rng.integers(21, 75, n_rows)
    income = np.round(rng.lognormal(mean=np.log(55_000), sigma=0.5, size=n_rows), -2)
    dti = np.clip(rng.beta(2.2, 5.0, n_rows), 0.01, 0.95)
    history = np.clip(age - 18 - rng.integers(0, 8, n_rows), 0, None).astype(float)
    accounts = rng.poisson(4, n_rows)
    late = rng.poisson(0.6 + 1.5 * dti, n_rows)
    loan = np.round(rng.lognormal(mean=np.log(15_000), sigma=0.7, size=n_rows), -2)
    utilization = np.clip(rng.beta(2.0, 3.0, n_rows) + 0.2 * (late > 2), 0, 1)
    employment = pick(_EMPLOYMENT, [0.62, 0.18, 0.08, 0.12])
    home = pick(_HOME, [0.25, 0.4, 0.35])
    purpose = pick(_PURPOSE)
    region = pick(_REGION_P, list(_REGION_P.values()))

    # Scaled so the classes are learnable (AUC ~0.85) yet far from separable.
    logit = 1.8 * (
        -1.75
        + 3.0 * (dti - 0.3)
        + 0.55 * np.minimum(late, 5)
        - 0.05 * (history - 15)
        + 2.2 * (utilization - 0.4)
        - 0.6 * np.log(income / 55_000)
        + 0.35 * np.log(loan / 15_000)
        + np.vectorize(_EMPLOYMENT.get)(employment)
        + np.vectorize(_HOME.get)(home)
        + np.vectorize(_PURPOSE.get)(purpose)
        # A non-linear effect a linear model misses: young borrowers near their limit.
        + 0.9 * ((age < 30) & (utilization > 0.7))
    )
    defaulted = rng.random(n_rows) < 1 / (1 + np.exp(-logit))

    df = pd.DataFrame(
        {
            "application_id": np.arange(1, n_rows + 1),
            "age": age,
            "annual_income": income,
            "debt_to_income": dti.round(4),
            "credit_history_years": history,
            "open_accounts": accounts,
            "late_payments_2y": late,
            "loan_amount": loan,
            "credit_utilization": utilization.round(4),
            "employment": employment,
            "home_ownership": home,
            "loan_purpose": purpose,
            "region": region,
            TARGET: defaulted.astype(int),
        }
    )
    # Real application forms have gaps; the preprocessing must impute them.
    df.loc[rng.random(n_rows) < 0.02, "annual_income"] = np.nan
    return df


def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer  # noqa: PLC0415  (only this data set needs sklearn)

    bunch = load_breast_cancer(as_frame=True)
    df = bunch.frame.rename(columns={"target": TARGET})
    df.columns = [c.replace(" ", "_") for c in df.columns]
    return df


_BUILTINS = {"credit_scoring": credit_scoring, "breast_cancer": breast_cancer}


class Digits(typing.NamedTuple):
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


def digits(seed: int, *, images: bool) -> Digits:
    """scikit-learn's bundled 8x8 digits as torch tensors, split 75/25 (stratified) with ``seed``.

    ``images`` gives inputs of shape (n, 1, 8, 8) for convolutions, else flat rows of 64 pixels.
    """
    import torch  # noqa: PLC0415  (torch loads only in the steps that train)
    from sklearn.datasets import load_digits  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.data / 16.0, data.target, test_size=0.25, random_state=seed, stratify=data.target
    )  # pixel intensities are 0..16

    def features(x: Any) -> Any:
        tensor = torch.tensor(x, dtype=torch.float32)
        return tensor.reshape(-1, 1, 8, 8) if images else tensor

    return Digits(
        features(x_tr), torch.tensor(y_tr, dtype=torch.long), features(x_te), torch.tensor(y_te, dtype=torch.long)
    )


# Fewest rows a training pipeline accepts: enough for a stratified train/test split to hold both classes.
MIN_TRAINING_ROWS = 50


def load_table(uri: str, required: tuple[str, ...] = (TARGET,), min_rows: int = 1) -> pd.DataFrame:
    """Read a data set by URI and check it has the columns the pipeline needs and at least
    ``min_rows`` rows (pipelines that train pass ``MIN_TRAINING_ROWS``); ``ValueError`` naming the URI."""
    if not uri:
        raise ValueError("data path is empty: give a CSV path or URI, or one of " + ", ".join(_builtin_uris()))
    if uri.startswith(BUILTIN):
        name = uri.removeprefix(BUILTIN)
        if name not in _BUILTINS:
            raise ValueError(f"unknown built-in data set {uri!r}; available: {', '.join(_builtin_uris())}")
        df = _BUILTINS[name]()
    else:
        from flytekit.types.file import FlyteFile  # noqa: PLC0415

        try:
            local = FlyteFile(uri).download()
            df = pd.read_csv(local)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"data file {uri!r} does not exist") from e
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"data set {uri!r} lacks required columns {missing}; it has {list(df.columns)}")
    if len(df) < min_rows:
        raise ValueError(f"data set {uri!r} has {len(df)} rows; this pipeline needs at least {min_rows}")
    return df


def _builtin_uris() -> list[str]:
    return [f"{BUILTIN}{n}" for n in sorted(_BUILTINS)]

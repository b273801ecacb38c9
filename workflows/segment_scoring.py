"""Per-segment scoring as a map task: one model, scored on every customer segment in parallel.

The hold-out applications are split by a segment column (region by default) and
``map_task(score_segment)`` fans out one array-node sub-task per segment; a segment's failure or
retry is isolated from the others, and cached segments are not re-scored.
"""

from __future__ import annotations

import datetime
import functools
import re
import typing
from dataclasses import dataclass
from pathlib import Path

from cdao_sdk import cpu_task, workflow
from flytekit import map_task
from flytekit.types.file import CSVFile, JoblibSerializedFile

from workflows import _platform
from workflows._data import CREDIT_CATEGORICAL, CREDIT_NUMERIC, MIN_TRAINING_ROWS, TARGET, load_table

CACHE_VERSION = "1.0"
HOLDOUT_EVERY = 4  # every 4th application (by id) is held out for scoring
_RETRIES = 2


@dataclass
class SegmentScore:
    segment: str
    rows: int
    observed_default_rate: float
    predicted_default_rate: float
    roc_auc: float


class Prepared(typing.NamedTuple):
    train: CSVFile
    segments: list[CSVFile]


@cpu_task(cpu="1", memory="2Gi", retries=_RETRIES, timeout=datetime.timedelta(minutes=20))
def prepare_segments(raw_data_path: str, segment_column: str) -> Prepared:
    """Training rows, and one hold-out file per value of ``segment_column``. Not cached: the path's
    contents may change between runs."""
    df = load_table(
        raw_data_path,
        required=("application_id", TARGET, *CREDIT_NUMERIC, *CREDIT_CATEGORICAL),
        min_rows=MIN_TRAINING_ROWS,
    )
    if segment_column not in CREDIT_CATEGORICAL:
        raise ValueError(f"segment_column={segment_column!r}: choose one of {CREDIT_CATEGORICAL}")
    holdout = df["application_id"] % HOLDOUT_EVERY == 0
    work = _platform.work_dir()
    df[~holdout].to_csv(work / "train.csv", index=False)
    out = work / "segments"
    out.mkdir(exist_ok=True)
    files = []
    for value, part in sorted(df[holdout].groupby(segment_column)):
        path = out / f"{re.sub(r'[^A-Za-z0-9_-]', '_', str(value))}.csv"
        part.to_csv(path, index=False)
        files.append(CSVFile(str(path)))
    return Prepared(CSVFile(str(work / "train.csv")), files)


@cpu_task(
    cpu="2",
    memory="4Gi",
    retries=_RETRIES,
    timeout=datetime.timedelta(minutes=30),
    cache=True,
    cache_version=CACHE_VERSION,
)
def train_scorer(train: CSVFile) -> JoblibSerializedFile:
    """A calibrated-probability scorer: one-hot + scaling + logistic regression."""
    import joblib  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: PLC0415

    df = pd.read_csv(train.download())
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), list(CREDIT_NUMERIC)),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(CREDIT_CATEGORICAL)),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(df, df[TARGET])
    out = _platform.work_dir() / "scorer.joblib"
    joblib.dump(model, out)
    return JoblibSerializedFile(str(out))


@cpu_task(
    cpu="1",
    memory="2Gi",
    retries=_RETRIES,
    timeout=datetime.timedelta(minutes=15),
    cache=True,
    cache_version=CACHE_VERSION,
)
def score_segment(model: JoblibSerializedFile, segment: CSVFile) -> SegmentScore:
    import joblib  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    df = pd.read_csv(segment.download())
    if df[TARGET].nunique() < 2:
        raise ValueError(f"segment file {Path(segment.path).name} has one class only; ROC AUC is undefined")
    proba = joblib.load(model.download()).predict_proba(df)[:, 1]
    return SegmentScore(
        segment=Path(segment.path).stem,
        rows=len(df),
        observed_default_rate=float(df[TARGET].mean()),
        predicted_default_rate=float(proba.mean()),
        roc_auc=float(roc_auc_score(df[TARGET], proba)),
    )


@workflow
def segment_scoring_pipeline(
    raw_data_path: str = "builtin://credit_scoring", segment_column: str = "region"
) -> list[SegmentScore]:
    prepared = prepare_segments(raw_data_path=raw_data_path, segment_column=segment_column)
    model = train_scorer(train=prepared.train)
    return map_task(functools.partial(score_segment, model=model), concurrency=8)(segment=prepared.segments)

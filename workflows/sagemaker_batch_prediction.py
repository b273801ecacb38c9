"""Credit scoring on SageMaker: processing, XGBoost training, batch transform and evaluation.

The seeds' pipeline, with its defaults as typed inputs (``model_config.params`` ->
``n_estimators``/``max_depth``, ``preprocessing_config.normalize``, ``prediction_config.batch_size``,
``evaluation_config.compute_shap``) and every artifact passed as a Flyte file instead of a
hard-coded S3 string. Registered, every step is a SageMaker job of the registered image.

Training returns a model package (the XGBoost model plus ``_credit_scoring_inference.py`` as its
inference code), and batch transform serves that package: a SageMaker transform job remotely, the
same serving code on 127.0.0.1 under ``pyflyte run``. The transform drops the application id before
the model sees a record and joins it back onto each prediction, as SageMaker's data processing does.
"""

from __future__ import annotations

import datetime
import json
import typing
from typing import Annotated

from cdao_sdk import (
    package_model,
    sagemaker_batch_transform_task,
    sagemaker_processing_task,
    sagemaker_training_task,
    settings,
    task,
    workflow,
)
from flytekit import CronSchedule, Email, HashMethod, LaunchPlan, Slack, WorkflowExecutionPhase
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import CSVFile, FlyteFile, JoblibSerializedFile

from workflows import _credit_scoring_inference, _platform
from workflows._data import CREDIT_CATEGORICAL, CREDIT_NUMERIC, MIN_TRAINING_ROWS, TARGET, load_table

ID = "application_id"
PREDICTION = "predicted_default"
PROBABILITY = "default_probability"
RANDOM_STATE = 42
TEST_FRACTION = 0.2
# Bump when a step's code changes what it produces: cached results of older code are then ignored.
CACHE_VERSION = "2.0"

HashedCSV = Annotated[CSVFile, HashMethod(_platform.file_sha256)]
HashedFile = Annotated[FlyteFile, HashMethod(_platform.file_sha256)]


class Processed(typing.NamedTuple):
    train: HashedCSV
    test_features: HashedCSV
    # The test features as batch transform reads them: id first, no header (every line a record).
    transform_input: HashedCSV
    test_labels: HashedCSV
    preprocessor: JoblibSerializedFile


class Evaluation(typing.NamedTuple):
    metrics: dict[str, float]
    report: FlyteFile


@task(
    workload_type="mlops",
    retries=3,
    timeout=datetime.timedelta(minutes=20),
    # Not cached: the same path (e.g. a nightly drop) holds new data on every run.
)
def ingest_raw_data(raw_data_path: str) -> HashedCSV:
    """Copy the raw table into Flyte's store, so every later step reads one immutable snapshot."""
    df = load_table(
        raw_data_path, required=(ID, TARGET, *CREDIT_NUMERIC, *CREDIT_CATEGORICAL), min_rows=MIN_TRAINING_ROWS
    )
    if df[ID].duplicated().any():
        raise ValueError(f"{raw_data_path!r}: {ID} must be unique; {int(df[ID].duplicated().sum())} duplicates")
    out = _platform.work_dir() / "raw_credit_applications.csv"
    df.to_csv(out, index=False)
    return CSVFile(str(out))


@sagemaker_processing_task(
    instance_type="ml.m5.2xlarge",
    max_runtime_seconds=3600,
    cache=True,
    cache_version=CACHE_VERSION,
    retries=2,
    timeout=datetime.timedelta(minutes=70),
)
def preprocess_data_sagemaker(raw: CSVFile, normalize: bool) -> Processed:
    """Impute, scale and one-hot encode, fitted on the training split only (no test leakage)."""
    import joblib  # noqa: PLC0415  (heavy imports stay inside the job)
    import pandas as pd  # noqa: PLC0415
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: PLC0415

    df = pd.read_csv(raw.download())
    train_df, test_df = train_test_split(df, test_size=TEST_FRACTION, random_state=RANDOM_STATE, stratify=df[TARGET])
    numeric = [SimpleImputer(strategy="median")] + ([StandardScaler()] if normalize else [])
    pre = ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric), list(CREDIT_NUMERIC)),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(CREDIT_CATEGORICAL)),
        ],
        verbose_feature_names_out=False,
    )
    pre.fit(train_df)
    columns = list(pre.get_feature_names_out())

    def transformed(part: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(pre.transform(part), columns=columns, index=part.index)
        out.insert(0, ID, part[ID].to_numpy())
        return out

    work = _platform.work_dir()
    train = transformed(train_df)
    train[TARGET] = train_df[TARGET].to_numpy()
    train.to_csv(work / "train.csv", index=False)
    test = transformed(test_df)
    test.to_csv(work / "test_features.csv", index=False)
    test.to_csv(work / "transform_input.csv", index=False, header=False)
    test_df[[ID, TARGET]].to_csv(work / "test_labels.csv", index=False)
    joblib.dump(pre, work / "preprocessor.joblib")
    return Processed(
        CSVFile(str(work / "train.csv")),
        CSVFile(str(work / "test_features.csv")),
        CSVFile(str(work / "transform_input.csv")),
        CSVFile(str(work / "test_labels.csv")),
        JoblibSerializedFile(str(work / "preprocessor.joblib")),
    )


@sagemaker_training_task(
    instance_type="ml.m5.xlarge",
    use_spot_instances=True,
    max_runtime_seconds=3600,
    max_wait_seconds=7200,
    cache=True,
    cache_version=CACHE_VERSION,
    retries=2,
    timeout=datetime.timedelta(hours=2, minutes=10),
)
def train_model_sagemaker(train: CSVFile, n_estimators: int, max_depth: int, learning_rate: float) -> HashedFile:
    """XGBoost on the processed features, packaged with its inference code for batch transform.

    The model is saved in XGBoost's own JSON format (portable, no pickle).
    """
    import pandas as pd  # noqa: PLC0415
    import xgboost as xgb  # noqa: PLC0415

    if not 1 <= n_estimators <= 5000:
        raise ValueError(f"n_estimators={n_estimators} must be 1..5000")
    if not 1 <= max_depth <= 20:
        raise ValueError(f"max_depth={max_depth} must be 1..20")
    if not 0 < learning_rate <= 1:
        raise ValueError(f"learning_rate={learning_rate} must be in (0, 1]")
    df = pd.read_csv(train.download())
    features = df.drop(columns=[ID, TARGET])
    model = xgb.XGBClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        subsample=0.9,
        colsample_bytree=0.9,
        # A little regularisation: the seeds' max_depth=10 overfits a table of a few thousand rows.
        min_child_weight=5,
        reg_lambda=2.0,
        tree_method="hist",
        random_state=RANDOM_STATE,
        eval_metric="logloss",
    )
    model.fit(features, df[TARGET])
    out = _platform.work_dir() / _credit_scoring_inference.MODEL_FILE
    model.save_model(out)
    return package_model({out.name: out}, inference_code=_credit_scoring_inference)


# Scores in SageMaker's MultiRecord mini-batches of up to 6 MB; the id column is filtered out of
# what the model sees ($[1:]) and the output keeps id, probability and prediction ($[0,-2,-1]).
batch_transform_sagemaker = sagemaker_batch_transform_task(
    f"{__name__}.batch_transform_sagemaker",
    instance_type="ml.m5.large",
    strategy="MultiRecord",
    max_payload_mb=6,
    content_type="text/csv",
    accept="text/csv",
    split_type="Line",
    input_filter="$[1:]",
    join_source="Input",
    output_filter="$[0,-2,-1]",
    env_inputs={"batch_size": int},
    cache=True,
    cache_version=CACHE_VERSION,
    retries=2,
    timeout=datetime.timedelta(minutes=70),
)


@sagemaker_processing_task(
    instance_type="ml.m5.large",
    max_runtime_seconds=1800,
    cache=True,
    cache_version=CACHE_VERSION,
    retries=2,
    timeout=datetime.timedelta(minutes=40),
)
def evaluate_predictions_sagemaker(
    predictions: FlyteDirectory, labels: CSVFile, model: FlyteFile, features: CSVFile, compute_shap: bool
) -> Evaluation:
    """Accuracy, precision, recall and F1 of the default class, plus ROC AUC and SHAP importances."""
    import tarfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    import xgboost as xgb  # noqa: PLC0415
    from sklearn.metrics import (  # noqa: PLC0415
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    outputs = sorted(Path(predictions.download()).rglob("*.out"))
    if not outputs:
        raise ValueError(f"{predictions.path}: the transform wrote no .out files")
    pred = pd.concat(pd.read_csv(p, header=None, names=[ID, PROBABILITY, PREDICTION]) for p in outputs)
    truth = pd.read_csv(labels.download())
    if pred[ID].duplicated().any() or set(pred[ID]) != set(truth[ID]):
        raise ValueError("predictions and labels do not cover the same applications exactly once")
    joined = truth.merge(pred, on=ID, validate="one_to_one")
    y, y_hat = joined[TARGET], joined[PREDICTION]
    metrics = {
        "accuracy": float(accuracy_score(y, y_hat)),
        "precision": float(precision_score(y, y_hat, zero_division=0)),
        "recall": float(recall_score(y, y_hat, zero_division=0)),
        "f1_score": float(f1_score(y, y_hat, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, joined[PROBABILITY])),
        "majority_baseline_accuracy": float(max(y.mean(), 1 - y.mean())),
    }
    report: dict[str, object] = {
        "metrics": metrics,
        "rows": len(joined),
        "confusion_matrix": confusion_matrix(y, y_hat).tolist(),
    }
    if compute_shap:
        with tarfile.open(model.download()) as package:
            package.extract(_credit_scoring_inference.MODEL_FILE, _platform.work_dir(), filter="data")
        clf = xgb.XGBClassifier()
        clf.load_model(_platform.work_dir() / _credit_scoring_inference.MODEL_FILE)
        x = pd.read_csv(features.download()).drop(columns=[ID])
        # XGBoost's exact TreeSHAP: one contribution per feature plus the bias column, summing to the margin.
        contribs = clf.get_booster().predict(xgb.DMatrix(x), pred_contribs=True)
        mean_abs = np.abs(contribs[:, :-1]).mean(axis=0)
        report["mean_abs_shap"] = dict(
            sorted(zip(x.columns, mean_abs.round(6).tolist(), strict=True), key=lambda kv: -kv[1])
        )
    out = _platform.work_dir() / "evaluation_report.json"
    out.write_text(json.dumps(report, indent=2))
    return Evaluation(metrics, FlyteFile(str(out)))


@workflow
def sagemaker_batch_prediction_pipeline(  # noqa: PLR0917  (each parameter is a workflow input)
    raw_data_path: str = "builtin://credit_scoring",
    n_estimators: int = 100,
    max_depth: int = 10,
    learning_rate: float = 0.1,
    normalize: bool = True,
    batch_size: int = 1000,
    compute_shap: bool = True,
) -> Evaluation:
    raw = ingest_raw_data(raw_data_path=raw_data_path)
    processed = preprocess_data_sagemaker(raw=raw, normalize=normalize)
    model = train_model_sagemaker(
        train=processed.train, n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate
    )
    predictions = batch_transform_sagemaker(model=model, data=processed.transform_input, batch_size=batch_size)
    return evaluate_predictions_sagemaker(
        predictions=predictions,
        labels=processed.test_labels,
        model=model,
        features=processed.test_features,
        compute_shap=compute_shap,
    )


# Launch plans. `pyflyte register` puts every launch plan of the package into the domain it
# registers to, and `--activate-launchplans` would switch on every schedule it finds; so the
# nightly schedule is only *built* when registering to production (FLYTE_DOMAIN, exported by CI).
NIGHTLY_CRON = "0 2 * * *"  # 02:00 UTC, after the nightly application extract lands
ALERT_SLACK = "ml-platform-alerts@cdao.slack.com"  # the Slack channel's e-mail address
ALERT_EMAIL = "credit-risk-models@cdao.example.com"
_FAILED = [WorkflowExecutionPhase.FAILED, WorkflowExecutionPhase.TIMED_OUT, WorkflowExecutionPhase.ABORTED]


def _domain_inputs(domain: str) -> dict[str, object]:
    """Fixed inputs per domain: development trains on the built-in table, later domains on the stack's bucket."""
    if domain == "development":
        return {"raw_data_path": "builtin://credit_scoring", "compute_shap": False}
    bucket = settings.require("default_bucket", f"the {domain} credit-scoring launch plan")
    # Under the bucket's shared inputs (`inputs/`, infra/contract.py SHARED_INPUTS_PREFIX), the one
    # prefix outside its own raw data that every task role may read (workflows/README.md).
    return {"raw_data_path": f"s3://{bucket}/inputs/credit-scoring/applications.csv", "compute_shap": True}


def launch_plans_for(domain: str) -> list[LaunchPlan]:
    if domain not in _platform.DOMAINS:
        raise ValueError(f"domain {domain!r} is not one of {_platform.DOMAINS}")
    on_failure = [Slack(phases=_FAILED, recipients_email=[ALERT_SLACK])] if domain != "development" else []
    plans = [
        LaunchPlan.get_or_create(
            sagemaker_batch_prediction_pipeline,
            name="credit_scoring_batch_prediction",
            fixed_inputs=_domain_inputs(domain),
            notifications=on_failure,
        )
    ]
    if domain == "production":
        plans.append(
            LaunchPlan.get_or_create(
                sagemaker_batch_prediction_pipeline,
                name="credit_scoring_nightly",
                schedule=CronSchedule(schedule=NIGHTLY_CRON),
                fixed_inputs=_domain_inputs(domain),
                notifications=[
                    *on_failure,
                    Email(phases=_FAILED, recipients_email=[ALERT_EMAIL]),
                    Email(phases=[WorkflowExecutionPhase.SUCCEEDED], recipients_email=[ALERT_EMAIL]),
                ],
            )
        )
    return plans


LAUNCH_PLANS = launch_plans_for(_platform.target_domain())

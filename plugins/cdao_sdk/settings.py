"""What ``cdao_sdk.configure`` records, with environment fallbacks for notebooks the platform sets up.

| setting | ``configure(...)`` argument | environment fallback |
|---|---|---|
| Flyte admin endpoint | ``admin_endpoint`` | ``CDAO_ADMIN_ENDPOINT`` |
| project / domain | ``project`` / ``domain`` | ``CDAO_PROJECT`` / ``CDAO_DOMAIN`` (``development``) |
| AWS region | ``region`` | ``CDAO_AWS_REGION`` / ``AWS_REGION`` |
| SageMaker execution role | ``sagemaker_role`` | ``CDAO_SAGEMAKER_ROLE_ARN`` |
| EMR Serverless job role | ``emr_serverless_role`` | ``CDAO_EMR_SERVERLESS_ROLE_ARN`` |
| EMR Serverless application | ``emr_serverless_application_id`` | ``CDAO_EMR_SERVERLESS_APPLICATION_ID`` |
| bucket for job outputs | ``default_bucket`` | ``CDAO_DEFAULT_BUCKET`` |
| image of managed jobs | ``default_image`` | ``CDAO_DEFAULT_IMAGE`` |
| MLflow tracking server | ``mlflow_tracking_uri`` | ``MLFLOW_TRACKING_URI`` (what MLflow's own client reads) |

A role, bucket or region, from ``configure`` or from its variable, has the one shape
``cdao_sdk._keywords.SHAPES`` gives it; a malformed one is a ValueError naming the setting and the
argument or variable it came from.

``run`` hands the MLflow tracking URI to every task of the execution as ``MLFLOW_TRACKING_URI``, so
tasks log to the platform's MLflow without naming it. Inside the cluster that is the mlflow add-on at
``IN_CLUSTER_MLFLOW_TRACKING_URI``; from outside, ``https://<flyte-hostname>/mlflow`` (Flyte's ALB
strips ``/mlflow``, platform/addons/mlflow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from cdao_sdk._keywords import shape_error

# The mlflow add-on's Service (release mlflow, namespace mlflow, port 5000); the server serves at its
# root. tests/platform/test_endpoints.py checks this URL against platform/.
IN_CLUSTER_MLFLOW_TRACKING_URI = "http://mlflow.mlflow.svc:5000"

_ENV = {
    "admin_endpoint": "CDAO_ADMIN_ENDPOINT",
    "project": "CDAO_PROJECT",
    "domain": "CDAO_DOMAIN",
    "region": "CDAO_AWS_REGION",
    "sagemaker_role": "CDAO_SAGEMAKER_ROLE_ARN",
    "emr_serverless_role": "CDAO_EMR_SERVERLESS_ROLE_ARN",
    "emr_serverless_application_id": "CDAO_EMR_SERVERLESS_APPLICATION_ID",
    "default_bucket": "CDAO_DEFAULT_BUCKET",
    "default_image": "CDAO_DEFAULT_IMAGE",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
}


@dataclass(frozen=True)
class Settings:
    admin_endpoint: str | None = None
    project: str | None = None
    domain: str | None = None
    region: str | None = None
    sagemaker_role: str | None = None
    emr_serverless_role: str | None = None
    emr_serverless_application_id: str | None = None
    default_bucket: str | None = None
    default_image: str | None = None
    mlflow_tracking_uri: str | None = None
    insecure: bool = False


_current = Settings()


def update(**values: object) -> Settings:
    global _current  # noqa: PLW0603  (the SDK's one piece of session state, like flytekit's config)
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"configure() got unknown settings {unknown}; known: {sorted(known)}")
    _current = replace(_current, **{k: v for k, v in values.items() if v is not None})
    return _current


def reset() -> None:
    global _current  # noqa: PLW0603
    _current = Settings()


def get(name: str) -> str | None:
    """The setting: ``configure``'s value (checked there), else its environment variable's, checked
    here against the same shape (``cdao_sdk._keywords.SHAPES``): ValueError naming the variable and
    the setting when it is malformed."""
    value = getattr(_current, name)
    if value is None and name in _ENV:
        variable = _ENV[name]
        value = os.environ.get(variable)
        if not value and name == "region" and os.environ.get("AWS_REGION"):
            variable, value = "AWS_REGION", os.environ["AWS_REGION"]
        if value:
            form = shape_error(name, value)
            if form is not None:
                raise ValueError(f"environment variable {variable}={value!r} (the {name!r} setting): expected {form}")
        value = value or None
        if value is None and name == "domain":
            value = "development"
    return value


def require(name: str, needed_by: str) -> str:
    value = get(name)
    if not value:
        raise ValueError(
            f"{needed_by} needs the {name!r} setting: pass it to the decorator, call "
            f"cdao_sdk.configure({name}=...), or set {_ENV[name]}"
        )
    return value

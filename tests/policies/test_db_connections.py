"""How CDAO-DATA-021 counts the connections platform/'s services may hold on the shared RDS instance:
each upstream default it falls back on, read from the pinned charts where ../shared has them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdao_catalog import rds
from policies.rules import _db_connections as dbc

_CHARTS = Path(os.environ.get("CDAO_CHART_CACHE") or Path(__file__).resolve().parents[2].parent / "shared" / "charts")


def _platform(tmp_path: Path, files: dict[str, Any]) -> Path:
    for rel, values in files.items():
        path = tmp_path / "addons" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values))
    # The ApplicationSets' choice of the second values file, as platform/bootstrap/appsets writes it.
    appsets = tmp_path / "bootstrap" / "appsets"
    appsets.mkdir(parents=True)
    for addon, (chart, _) in dbc.SHARED_DATABASE_ADDONS.items():
        (appsets / f"{addon}.yaml").write_text(
            f"- '$values/x/addons/{chart}/values-{{{{ .metadata.labels.stage }}}}.yaml'\n"
        )
    return tmp_path


def _total(platform: Path, stage: str = "dev", **enabled: bool) -> int:
    labels = {"stage": stage, **{f"enable_{a}": "true" if on else "false" for a, on in enabled.items()}}
    return sum(c.connections for c in dbc.consumers(labels, platform))


MLFLOW_OK = {"extraEnvVars": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}}


def test_flyte_without_pool_values_counts_flytestdlib_defaults(tmp_path: Path) -> None:
    # flyteadmin: 1 replica + 1 surge pod, two pools each; datacatalog and syncresources one each;
    # 100 per pool (flytestdlib defaultConfig): 400 + 200 + 200.
    platform = _platform(tmp_path, {"flyte/flyte-core/values.yaml": {}})
    assert _total(platform, flyte=True) == 800


def test_environment_values_override_and_null_deletes(tmp_path: Path) -> None:
    platform = _platform(
        tmp_path,
        {
            "flyte/flyte-core/values.yaml": {
                "db": {"admin": {"database": {"maxOpenConnections": 10}}},
                "cluster_resource_manager": {"enabled": False},
                "datacatalog": {"enabled": False},
                "flyteadmin": {"replicaCount": 4},
            },
            # Helm merges maps key by key; null removes a key, so the default (100) applies again.
            "flyte/flyte-core/values-dev.yaml": {"db": {"admin": {"database": {"maxOpenConnections": None}}}},
        },
    )
    # 4 replicas + ceil(25% of 4) = 5 pods x 2 pools.
    assert _total(platform, "staging", flyte=True) == 5 * 2 * 10
    assert _total(platform, "dev", flyte=True) == 5 * 2 * 100


def test_mlflow_zero_pool_values_mean_sqlalchemy_defaults(tmp_path: Path) -> None:
    # mlflow/store/db/utils.py passes pool_size / max_overflow only when truthy: 0 is SQLAlchemy's 5 / 10.
    env = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "0", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "0"}
    platform = _platform(
        tmp_path, {"mlflow/mlflow/values.yaml": {"extraEnvVars": {**MLFLOW_OK["extraEnvVars"], **env}}}
    )
    # 1 replica + 100% surge = 2 pods x 4 workers x 3 engines x 15.
    assert _total(platform, mlflow=True) == 2 * 4 * 3 * 15


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"MLFLOW_SQLALCHEMYSTORE_POOLCLASS": "NullPool"}, "MLFLOW_SQLALCHEMYSTORE_POOLCLASS"),
        ({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"),
    ],
)
def test_mlflow_pools_without_a_bound_are_refused(tmp_path: Path, env: dict[str, str], names: str) -> None:
    platform = _platform(
        tmp_path, {"mlflow/mlflow/values.yaml": {"extraEnvVars": {**MLFLOW_OK["extraEnvVars"], **env}}}
    )
    with pytest.raises(dbc.ConnectionBudgetError, match=names):
        _total(platform, mlflow=True)


def test_autoscaling_counts_the_maximum(tmp_path: Path) -> None:
    values = {**MLFLOW_OK, "autoscaling": {"enabled": True, "maxReplicas": 5}, "strategy": {"type": "Recreate"}}
    platform = _platform(tmp_path, {"mlflow/mlflow/values.yaml": values})
    assert _total(platform, mlflow=True) == 5 * 4 * 3 * 15


def test_a_missing_values_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(dbc.ConnectionBudgetError, match=r"flyte-core/values\.yaml is missing"):
        _total(tmp_path, flyte=True)


def test_the_values_file_follows_the_label_the_application_set_names(tmp_path: Path) -> None:
    platform = _platform(tmp_path, {"flyte/flyte-core/values.yaml": {}})
    with pytest.raises(dbc.ConnectionBudgetError, match="no 'stage' label"):
        dbc.consumers({"enable_flyte": "true", "environment": "dev"}, platform)


def test_the_application_sets_pick_values_files_by_a_label_infra_writes() -> None:
    from infra.contract import LABEL_KEYS  # noqa: PLC0415

    for addon, (chart, _) in dbc.SHARED_DATABASE_ADDONS.items():
        assert dbc.values_label(addon, chart) in LABEL_KEYS, addon


def test_disabled_addons_hold_nothing(tmp_path: Path) -> None:
    platform = _platform(tmp_path, {"flyte/flyte-core/values.yaml": {}, "mlflow/mlflow/values.yaml": {}})
    assert _total(platform, flyte=False, mlflow=False) == 0


def test_max_connections_bound_follows_rds_formula() -> None:
    # LEAST(memory/9531392, 5000): 1 GiB -> 112, 16 GiB -> 1802, and the cap.
    assert rds.max_connections_bound("db.t4g.micro") == 112
    assert rds.max_connections_bound("db.r6g.large") == 1802
    assert rds.max_connections_bound("db.r7g.xlarge") == 3604
    with pytest.raises(rds.UnknownDbInstanceClassError):
        rds.max_connections_bound("db.t4g.nano")


def test_chart_defaults_match_the_pinned_charts() -> None:
    flyte = yaml.safe_load((_CHARTS / "flyte-core" / "v1.16.8" / "values.yaml").read_text())
    for component in ("flyteadmin", "datacatalog"):
        assert flyte[component]["replicaCount"] == dbc._FLYTE_CHART_REPLICAS
    for component in ("flyteadmin", "datacatalog", "flytescheduler", "cluster_resource_manager"):
        assert flyte[component]["strategy"] == {}, component  # Kubernetes's own 25% surge applies
    assert flyte["cluster_resource_manager"]["enabled"] is True
    assert flyte["workflow_scheduler"]["enabled"] is False
    mlflow = yaml.safe_load((_CHARTS / "mlflow" / "1.11.2" / "values.yaml").read_text())
    assert mlflow["replicaCount"] == dbc._MLFLOW_CHART_REPLICAS
    assert mlflow["strategy"]["rollingUpdate"]["maxSurge"] == dbc._MLFLOW_CHART_MAX_SURGE


def test_every_priced_db_class_has_a_memory_figure() -> None:
    prices = yaml.safe_load((Path(__file__).resolve().parents[2] / "cdao_cost" / "prices.yaml").read_text())
    assert set(prices["rds_hourly"]) <= set(rds.DB_INSTANCE_MEMORY_GIB)


def test_every_addon_on_the_shared_database_is_counted() -> None:
    """An ApplicationSet that hands an add-on the database endpoint (cdao.io/db-endpoint) puts its
    pools on the shared instance: the budget must know how to count them."""
    appsets = Path(__file__).resolve().parents[2] / "platform" / "bootstrap" / "appsets"
    on_db = {p.stem for p in appsets.glob("*.yaml") if "cdao.io/db-endpoint" in p.read_text()}
    assert on_db == set(dbc.SHARED_DATABASE_ADDONS)

"""The PostgreSQL connections platform/'s services may hold at once on the stack's RDS instance.

flyteadmin, datacatalog (and flyte-core's cluster-resource sync and native scheduler, when on) and
MLflow share the one instance infra/ creates. Each process keeps a pool whose size its own config
bounds; this module reads those bounds from the values files Argo CD gives each chart
(platform/addons/<add-on>/<chart>/values.yaml, then values-<environment>.yaml, merged the way Helm
merges values files) and counts pods at the peak of a rolling update, when old and new pods both hold
their pools. What a chart or program does when a value is left out is written next to each default,
with its source.

Not counted: the Argo CD Sync-hook Jobs that create the databases (one connection each, seconds long)
and the migration init containers, which run inside the pods counted here before their main
container opens its pool.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cdao_stacks
from cdao_cost.volumes import merge_values

PLATFORM_DIR = Path(__file__).resolve().parents[2] / "platform"

# A Deployment's spec.strategy.rollingUpdate.maxSurge when the chart leaves strategy empty: 25%,
# rounded up to whole pods (Kubernetes documentation, "Deployments", Max Surge).
_KUBERNETES_MAX_SURGE = "25%"

# flytestdlib's database section when a key is left out: maxOpenConnections 100
# (flyteorg/flyte v1.16.8 flytestdlib/database/config.go, defaultConfig).
_FLYTE_MAX_OPEN = 100
# flyte-core v1.16.8 values.yaml: flyteadmin.replicaCount and datacatalog.replicaCount are 1;
# strategy is {} for every component.
_FLYTE_CHART_REPLICAS = 1

# MLflow: SQLAlchemy's QueuePool holds pool_size + max_overflow connections at most; create_engine's
# defaults are 5 and 10 (SQLAlchemy 2.0 documentation, "Engine Configuration", create_engine
# pool_size / max_overflow). mlflow 3.14.0 mlflow/store/db/utils.py create_sqlalchemy_engine passes
# MLFLOW_SQLALCHEMYSTORE_POOL_SIZE / _MAX_OVERFLOW only when truthy, so 0 means the default.
_SQLALCHEMY_POOL_SIZE = 5
_SQLALCHEMY_MAX_OVERFLOW = 10
# Engines per server process: the tracking, model-registry and job stores each keep a class-level
# engine per URI (mlflow 3.14.0 mlflow/store/{tracking,model_registry,jobs}/sqlalchemy_store.py
# `_engine_map`), each with its own pool.
_MLFLOW_ENGINES_PER_PROCESS = 3
# `mlflow server` starts 4 worker processes unless --workers says otherwise (mlflow 3.14.0
# mlflow/server/__init__.py `workers or 4`).
_MLFLOW_WORKERS = 4
# community-charts mlflow-1.11.2 charts/mlflow/values.yaml: replicaCount 1, rollingUpdate maxSurge 100%.
_MLFLOW_CHART_REPLICAS = 1
_MLFLOW_CHART_MAX_SURGE = "100%"


class ConnectionBudgetError(ValueError):
    """A values file gives a pool size this model cannot bound (the message names file and key)."""


@dataclass(frozen=True)
class Consumer:
    """One workload's share: `pods` at the peak of a rollout, each with `pools` pools of `pool_size`."""

    addon: str
    workload: str
    pods: int
    pools: int
    pool_size: int

    @property
    def connections(self) -> int:
        return self.pods * self.pools * self.pool_size

    def describe(self) -> str:
        return f"{self.workload} {self.pods} pods x {self.pools} pools x {self.pool_size} = {self.connections}"


def chart_values(chart_dir: Path, environment: str) -> dict[str, Any]:
    """values.yaml merged with values-<environment>.yaml (missing: ignored, as the ApplicationSets'
    ignoreMissingValueFiles says)."""
    values: dict[str, Any] = {}
    for path in (chart_dir / "values.yaml", chart_dir / f"values-{environment}.yaml"):
        if path.is_file():
            values = merge_values(values, cdao_stacks.load_yaml(path.read_text()) or {})
    return values


def _dig(values: Mapping[str, Any], *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(values, Mapping) or key not in values:
            return default
        values = values[key]
    return values


def _count(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConnectionBudgetError(f"{where} = {value!r}: expected a whole number") from None
    if number < 0:
        raise ConnectionBudgetError(f"{where} = {value!r}: expected a whole number >= 0")
    return number


def _peak_pods(component: Mapping[str, Any], replicas: int, default_surge: str, where: str) -> int:
    """Replicas (the HPA's maximum when autoscaling is on) plus the rollout's maxSurge."""
    if _dig(component, "autoscaling", "enabled", default=False):
        replicas = _count(_dig(component, "autoscaling", "maxReplicas"), f"{where}.autoscaling.maxReplicas")
    strategy = _dig(component, "strategy", default={}) or {}
    if strategy.get("type") == "Recreate":
        return replicas
    surge = _dig(strategy, "rollingUpdate", "maxSurge", default=default_surge)
    if isinstance(surge, str) and surge.endswith("%"):
        extra = math.ceil(replicas * _count(surge[:-1], f"{where}.strategy.rollingUpdate.maxSurge") / 100)
    else:
        extra = _count(surge, f"{where}.strategy.rollingUpdate.maxSurge")
    return replicas + extra


def flyte_consumers(values: Mapping[str, Any], where: str) -> list[Consumer]:
    """flyte-core v1.16.8's processes that open the database and how many pools each keeps.

    flyteadmin's server opens two pools (flyteadmin/pkg/rpc/adminservice/base.go and
    pkg/rpc/signal_service.go each call repositories.GetDB); datacatalog one (pkg/repositories/factory.go);
    the `syncresources` Deployment (templates/clusterresourcesync, on when cluster_resource_manager is
    enabled, chart default true) one unless its config says standaloneDeployment (it then talks to
    flyteadmin's API: flyteadmin/pkg/clusterresource/controller.go); the native scheduler
    (templates/flytescheduler, on with workflow_scheduler type native) one (flyteadmin/scheduler/start.go).
    flyteadmin, syncresources and the scheduler read db.admin; datacatalog reads db.datacatalog.
    """

    def pool(section: str) -> int:
        key = f"{where}: db.{section}.database.maxOpenConnections"
        return _count(_dig(values, "db", section, "database", "maxOpenConnections", default=_FLYTE_MAX_OPEN), key)

    def replicas(component: str) -> int:
        key = f"{where}: {component}.replicaCount"
        return _count(_dig(values, component, "replicaCount", default=_FLYTE_CHART_REPLICAS), key)

    def peak(component: str, count: int) -> int:
        return _peak_pods(
            _dig(values, component, default={}) or {}, count, _KUBERNETES_MAX_SURGE, f"{where}: {component}"
        )

    admin, catalog = pool("admin"), pool("datacatalog")
    out = []
    if _dig(values, "flyteadmin", "enabled", default=True):
        out.append(Consumer("flyte", "flyteadmin", peak("flyteadmin", replicas("flyteadmin")), 2, admin))
    if _dig(values, "datacatalog", "enabled", default=True):
        out.append(Consumer("flyte", "datacatalog", peak("datacatalog", replicas("datacatalog")), 1, catalog))
    crm = _dig(values, "cluster_resource_manager", default={}) or {}
    standalone = _dig(crm, "config", "cluster_resources", "standaloneDeployment", default=False)
    if crm.get("enabled", True) and not standalone:
        # The chart fixes `replicas: 1` (templates/clusterresourcesync/deployment.yaml).
        out.append(Consumer("flyte", "syncresources", peak("cluster_resource_manager", 1), 1, admin))
    scheduler = _dig(values, "workflow_scheduler", default={}) or {}
    if scheduler.get("enabled", False) and scheduler.get("type") == "native":
        # The chart fixes `replicas: 1` (templates/flytescheduler/deployment.yaml).
        out.append(Consumer("flyte", "flytescheduler", peak("flytescheduler", 1), 1, admin))
    return out


def mlflow_consumers(values: Mapping[str, Any], where: str) -> list[Consumer]:
    """The MLflow server's pods: worker processes x engines x (pool_size + max_overflow)."""
    env = _dig(values, "extraEnvVars", default={}) or {}
    poolclass = env.get("MLFLOW_SQLALCHEMYSTORE_POOLCLASS")
    if poolclass not in (None, "", "QueuePool"):
        # NullPool opens one connection per request and the others have no overflow bound we model.
        raise ConnectionBudgetError(
            f"{where}: extraEnvVars.MLFLOW_SQLALCHEMYSTORE_POOLCLASS = {poolclass!r}: only QueuePool has a bound"
        )
    if str(env.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")).lower() not in ("false", "0"):
        # Its huey job runner starts processes of its own (mlflow/server/__init__.py _launch_job_runner),
        # each with its own stores, in numbers no value here bounds.
        raise ConnectionBudgetError(
            f"{where}: extraEnvVars.MLFLOW_SERVER_ENABLE_JOB_EXECUTION is not 'false': the job runner's "
            "processes open pools this budget cannot bound"
        )
    # Parsed first, then tested for truth, as MLflow's _EnvironmentVariable.get() and `if pool_size:` do.
    size = _count(env.get("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", 0), f"{where}: POOL_SIZE") or _SQLALCHEMY_POOL_SIZE
    overflow = (
        _count(env.get("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", 0), f"{where}: MAX_OVERFLOW") or _SQLALCHEMY_MAX_OVERFLOW
    )
    workers = _count(_dig(values, "extraArgs", "workers", default=0), f"{where}: extraArgs.workers") or _MLFLOW_WORKERS
    replicas = _count(_dig(values, "replicaCount", default=_MLFLOW_CHART_REPLICAS), f"{where}: replicaCount")
    pods = _peak_pods(values, replicas, _MLFLOW_CHART_MAX_SURGE, where)
    return [Consumer("mlflow", "mlflow", pods, workers * _MLFLOW_ENGINES_PER_PROCESS, size + overflow)]


# Add-on label -> (chart folder under platform/addons, the function that reads its values).
SHARED_DATABASE_ADDONS = {
    "flyte": ("flyte/flyte-core", flyte_consumers),
    "mlflow": ("mlflow/mlflow", mlflow_consumers),
}


def values_label(addon: str, chart: str, platform_dir: Path = PLATFORM_DIR) -> str:
    """The cluster-Secret label whose value names the add-on's second values file, read from its
    ApplicationSet (`.../addons/<chart>/values-{{ .metadata.labels.<label> }}.yaml`), which owns that choice."""
    appset = platform_dir / "bootstrap" / "appsets" / f"{addon}.yaml"
    text = appset.read_text() if appset.is_file() else ""
    found = re.search(rf"/addons/{re.escape(chart)}/values-\{{\{{ \.metadata\.labels\.(\w+) \}}\}}\.yaml", text)
    if found is None:
        raise ConnectionBudgetError(
            f"{appset} names no values-<label>.yaml of {chart}: the {addon} pools cannot be counted"
        )
    return found.group(1)


def consumers(labels: Mapping[str, Any], platform_dir: Path = PLATFORM_DIR) -> list[Consumer]:
    """Every enabled add-on's workloads on the shared database, from the values files the cluster
    Secret's `labels` (`enable_<addon>`, and the label each ApplicationSet picks values files by) select.

    Raises ConnectionBudgetError when a values file is missing or sets a pool this model cannot bound.
    """
    out: list[Consumer] = []
    for addon, (chart, read) in SHARED_DATABASE_ADDONS.items():
        if labels.get(f"enable_{addon}") != "true":
            continue
        chart_dir = platform_dir / "addons" / chart
        if not (chart_dir / "values.yaml").is_file():
            raise ConnectionBudgetError(f"{chart_dir / 'values.yaml'} is missing: the {addon} pools cannot be counted")
        label = values_label(addon, chart, platform_dir)
        suffix = labels.get(label)
        if not isinstance(suffix, str):
            raise ConnectionBudgetError(f"the cluster Secret has no {label!r} label, which picks {chart}'s values file")
        where = f"platform/addons/{chart}/values(-{suffix}).yaml"
        out.extend(read(chart_values(chart_dir, suffix), where))
    return out

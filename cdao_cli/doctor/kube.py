"""Checks answered by the Kubernetes API: service accounts, GPU nodes, Argo CD Applications.

The official `kubernetes` client (already in the lock through flytekit) loads the kubeconfig,
including the `aws eks get-token` exec credential pulumi-eks writes. Shapes relied on:
- core/v1 ServiceAccount (GET /api/v1/namespaces/{ns}/serviceaccounts/{name}, 404 when absent) and
  Node `metadata.labels` and `status.allocatable` (Kubernetes API reference, v1.34).
- Argo CD `Application` (argoproj.io/v1alpha1, pkg/apis/application/v1alpha1/types.go in
  argoproj/argo-cd): `spec.source` or `spec.sources[]` with `chart` and `targetRevision`,
  `status.sync.status` ("Synced", "OutOfSync", "Unknown"), `status.sync.revision` /
  `status.sync.revisions[]` (for a Helm source: the chart version it synced), and
  `status.health.status` ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdao_cli.doctor.context import DoctorContext
from cdao_cli.doctor.report import CheckResult, failed, passed, skipped
from infra.config import NODE_POOL_LABEL
from infra.contract import ARGOCD_NAMESPACE

ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "applications"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


def load_client(kubeconfig: str, context: str | None) -> Any:
    """An ApiClient for the kubeconfig (raises kubernetes' ConfigException on a bad file)."""
    from kubernetes import config  # noqa: PLC0415 - only when Kubernetes checks run

    return config.new_client_from_config(config_file=kubeconfig, context=context)


def _api_error(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or str(exc)
    return f"HTTP {status}: {reason}" if status else reason


def service_account_lookup(ctx: DoctorContext) -> Callable[[str, str], bool | None]:
    """(namespace, name) -> True / False, or None when no cluster can be asked."""
    if ctx.kube is None:
        return lambda namespace, name: None
    from kubernetes.client import CoreV1Api  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    core = CoreV1Api(ctx.kube)

    def exists(namespace: str, name: str) -> bool:
        try:
            core.read_namespaced_service_account(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    return exists


def gpu_nodes(ctx: DoctorContext) -> list[CheckResult]:
    """GPU nodes advertise what their pool's sharing mode promises (time-slicing: replicas x GPUs as
    nvidia.com/gpu; MIG mixed strategy: nvidia.com/mig-<profile> per GPU)."""
    from infra.components.node_pool import gpu_resources  # noqa: PLC0415 - the program's own arithmetic

    pools = {n: p for n, p in ctx.config.enabled_pools.items() if gpu_resources(p)}
    if not pools:
        return [skipped("gpu", "pools", "no GPU pool is enabled in this stack", "")]
    if ctx.kube is None:
        return [skipped("gpu", "nodes", ctx.skipped_kube_reason, "pass --kubeconfig to check GPU nodes")]
    from kubernetes.client import CoreV1Api  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    core = CoreV1Api(ctx.kube)
    results = []
    for pool_name, pool in sorted(pools.items()):
        try:
            nodes = core.list_node(label_selector=f"{NODE_POOL_LABEL}={pool_name}").items
        except ApiException as exc:
            results.append(failed("gpu", pool_name, f"cannot list nodes: {_api_error(exc)}", "check RBAC: list nodes"))
            continue
        if not nodes:
            results.append(
                skipped("gpu", pool_name, "no node is running (the pool scales from zero)", "run a GPU task, re-run")
            )
            continue
        want = gpu_resources(pool)
        for node in nodes:
            have = node.status.allocatable or {}
            wrong = {r: (have.get(r, "0"), n) for r, n in want.items() if str(have.get(r, "0")) != str(n)}
            name = node.metadata.name
            if wrong:
                shown = ", ".join(f"{r}={h} (want {n})" for r, (h, n) in sorted(wrong.items()))
                results.append(
                    failed(
                        "gpu",
                        f"{pool_name}/{name}",
                        f"advertises {shown}",
                        "check the gpu-operator's device plugin and MIG manager pods on this node and their config",
                    )
                )
            else:
                results.append(passed("gpu", f"{pool_name}/{name}", ", ".join(f"{r}={n}" for r, n in want.items())))
    return results


def _sources(app: dict[str, Any]) -> list[dict[str, Any]]:
    spec = app.get("spec", {})
    return list(spec.get("sources") or ([spec["source"]] if spec.get("source") else []))


def _synced_revisions(app: dict[str, Any]) -> list[str]:
    sync = app.get("status", {}).get("sync", {})
    return list(sync.get("revisions") or ([sync["revision"]] if sync.get("revision") else []))


def argocd_applications(ctx: DoctorContext) -> list[CheckResult]:
    """Every Application is Synced and Healthy, and each chart runs the version its stack pins."""
    if ctx.kube is None:
        return [skipped("argocd", "applications", ctx.skipped_kube_reason, "pass --kubeconfig")]
    from kubernetes.client import CustomObjectsApi  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    try:
        apps = CustomObjectsApi(ctx.kube).list_namespaced_custom_object(
            ARGO_GROUP, ARGO_VERSION, ARGOCD_NAMESPACE, ARGO_PLURAL
        )["items"]
    except ApiException as exc:
        return [
            failed(
                "argocd",
                "applications",
                f"cannot list Applications in {ARGOCD_NAMESPACE}: {_api_error(exc)}",
                "is Argo CD installed (pulumi up's gitops component) and may you read applications.argoproj.io?",
            )
        ]
    if not apps:
        return [failed("argocd", "applications", "no Application exists", "check the root Application's sync")]
    pins = ctx.config.gitops.chart_versions
    results = []
    for app in sorted(apps, key=lambda a: a["metadata"]["name"]):
        name = app["metadata"]["name"]
        status = app.get("status", {})
        sync = status.get("sync", {}).get("status", "Unknown")
        health = status.get("health", {}).get("status", "Unknown")
        problems = []
        if sync != "Synced":
            problems.append(f"sync {sync}")
        if health != "Healthy":
            message = status.get("health", {}).get("message")
            problems.append(f"health {health}" + (f" ({message})" if message else ""))
        synced = _synced_revisions(app)
        for i, source in enumerate(_sources(app)):
            chart = source.get("chart")
            if not chart or chart not in pins:
                continue
            wanted = source.get("targetRevision")
            running = synced[i] if i < len(synced) else None
            if wanted != pins[chart] or running != pins[chart]:
                problems.append(f"chart {chart} wants {wanted}, runs {running}, stack pins {pins[chart]}")
        if problems:
            results.append(
                failed(
                    "argocd",
                    name,
                    "; ".join(problems),
                    f"argocd app get {name} (or the Argo CD UI) shows the failing resources and sync errors",
                )
            )
        else:
            results.append(passed("argocd", name, "Synced and Healthy"))
    return results

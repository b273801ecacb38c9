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

from typing import Any

from cdao_pools import NODE_POOL_LABEL

from cdao_cli.doctor.context import DoctorContext
from cdao_cli.doctor.report import CheckResult, failed, passed, skipped
from infra.contract import ARGOCD_NAMESPACE

ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "applications"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


# Every Kubernetes call: 5 s to connect, 15 s to answer. The endpoint may be private (a laptop off
# the VPN never connects); the client's default is to wait for the OS and retry.
REQUEST_TIMEOUT = (5, 15)


class KubeUnavailable(RuntimeError):
    """The cluster did not answer, or refused the caller (401/403): say so once, not per check."""


def load_client(kubeconfig: str, context: str | None) -> Any:
    """An ApiClient for the kubeconfig, without urllib3's retries (raises on a bad file)."""
    from kubernetes import client, config  # noqa: PLC0415 - only when Kubernetes checks run

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    configuration.retries = False
    return client.ApiClient(configuration)


def _api_error(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or str(exc)
    return f"HTTP {status}: {reason}" if status else f"{type(exc).__name__}: {reason}"


def _unavailable(exc: Exception) -> KubeUnavailable:
    status = getattr(exc, "status", None)
    if status in (401, 403):
        hint = "the kubeconfig's identity is not allowed (an EKS access entry for your role? a fresh token?)"
    else:
        hint = "the API server did not answer (private endpoint: are you in the VPC or on the VPN?)"
    return KubeUnavailable(f"{_api_error(exc)}; {hint}")


class ServiceAccountLookup:
    """(namespace, name) -> the service account's annotations, None when it does not exist.

    Without a cluster to ask, `available` is False and nothing is looked up. The first time the
    cluster cannot be reached or refuses the caller, the lookup raises KubeUnavailable and keeps
    raising it without calling again, so one unreachable endpoint costs one timeout.
    """

    def __init__(self, ctx: DoctorContext):
        self.available = ctx.kube is not None
        self._core = None
        self._broken: KubeUnavailable | None = None
        if self.available:
            from kubernetes.client import CoreV1Api  # noqa: PLC0415

            self._core = CoreV1Api(ctx.kube)

    def __call__(self, namespace: str, name: str) -> dict[str, str] | None:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        if self._broken is not None:
            raise self._broken
        try:
            account = self._core.read_namespaced_service_account(name, namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            self._broken = _unavailable(exc)
            raise self._broken from None
        except Exception as exc:  # urllib3 connection and timeout errors
            self._broken = _unavailable(exc)
            raise self._broken from None
        return dict(account.metadata.annotations or {})


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

    core = CoreV1Api(ctx.kube)
    results = []
    for pool_name, pool in sorted(pools.items()):
        try:
            nodes = core.list_node(
                label_selector=f"{NODE_POOL_LABEL}={pool_name}", _request_timeout=REQUEST_TIMEOUT
            ).items
        except Exception as exc:  # ApiException, or urllib3's connection and timeout errors
            return [*results, failed("gpu", pool_name, f"cannot list nodes: {_unavailable(exc)}", "fix access, re-run")]
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


def _applicationset_errors(appsets: list[dict[str, Any]]) -> list[CheckResult]:
    """An ApplicationSet that cannot render (a missing annotation under missingkey=error) makes no
    Application at all, so its add-on would be missing silently: read its `ErrorOccurred` condition
    (argoproj/argo-cd pkg/apis/application/v1alpha1/applicationset_types.go,
    ApplicationSetConditionErrorOccurred)."""
    results = []
    for appset in sorted(appsets, key=lambda a: a["metadata"]["name"]):
        for condition in appset.get("status", {}).get("conditions", []):
            if condition.get("type") == "ErrorOccurred" and condition.get("status") == "True":
                results.append(
                    failed(
                        "argocd",
                        f"applicationset/{appset['metadata']['name']}",
                        f"cannot generate Applications: {condition.get('message', '')}",
                        "fix the cluster Secret annotation or template it names, then let it reconcile",
                    )
                )
    return results


def argocd_applications(ctx: DoctorContext) -> list[CheckResult]:
    """Every Application is Synced and Healthy, and each chart runs the version its stack pins."""
    if ctx.kube is None:
        return [skipped("argocd", "applications", ctx.skipped_kube_reason, "pass --kubeconfig")]
    from kubernetes.client import CustomObjectsApi  # noqa: PLC0415

    api = CustomObjectsApi(ctx.kube)
    try:
        apps = api.list_namespaced_custom_object(
            ARGO_GROUP, ARGO_VERSION, ARGOCD_NAMESPACE, ARGO_PLURAL, _request_timeout=REQUEST_TIMEOUT
        )["items"]
        appsets = api.list_namespaced_custom_object(
            ARGO_GROUP, ARGO_VERSION, ARGOCD_NAMESPACE, "applicationsets", _request_timeout=REQUEST_TIMEOUT
        )["items"]
    except Exception as exc:  # ApiException, or urllib3's connection and timeout errors
        return [
            failed(
                "argocd",
                "applications",
                f"cannot list Applications and ApplicationSets in {ARGOCD_NAMESPACE}: {_unavailable(exc)}",
                "is Argo CD installed (pulumi up's gitops component) and may you read argoproj.io resources?",
            )
        ]
    results = _applicationset_errors(appsets)
    if not apps:
        return [*results, failed("argocd", "applications", "no Application exists", "check the root Application")]
    pins = ctx.config.gitops.chart_versions
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

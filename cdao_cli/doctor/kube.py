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

import re
from dataclasses import dataclass
from typing import Any

import cdao_stacks
from cdao_cli.doctor.context import DoctorContext, PlatformFiles
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
    """GPU nodes advertise what their pool's sharing mode promises, as the deployment declared it
    (`declared.nodePools[*].gpuResources`; time-slicing: replicas x GPUs as nvidia.com/gpu; MIG mixed
    strategy: nvidia.com/mig-<profile> per GPU)."""
    pools = {n: p["gpuResources"] for n, p in ctx.declared["nodePools"].items() if p["gpuResources"]}
    pool_label = ctx.declared["nodePoolLabel"]
    if not pools:
        return [skipped("gpu", "pools", "no GPU pool is enabled in this stack", "")]
    if ctx.kube is None:
        return [skipped("gpu", "nodes", ctx.skipped_kube_reason, "pass --kubeconfig to check GPU nodes")]
    from kubernetes.client import CoreV1Api  # noqa: PLC0415

    core = CoreV1Api(ctx.kube)
    results = []
    for pool_name, want in sorted(pools.items()):
        try:
            nodes = core.list_node(label_selector=f"{pool_label}={pool_name}", _request_timeout=REQUEST_TIMEOUT).items
        except Exception as exc:  # ApiException, or urllib3's connection and timeout errors
            return [*results, failed("gpu", pool_name, f"cannot list nodes: {_unavailable(exc)}", "fix access, re-run")]
        if not nodes:
            results.append(
                skipped("gpu", pool_name, "no node is running (the pool scales from zero)", "run a GPU task, re-run")
            )
            continue
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


#: The ApplicationSets the root Application syncs (platform/bootstrap/appsets): what Argo CD generates.
APPSETS_DIR = "platform/bootstrap/appsets"
_CHART_PIN = re.compile(r'^\{\{ index \.metadata\.annotations "cdao\.io/chart-version-(?P<key>[^"]+)" \}\}$')
_REPO_REVISION = '{{ index .metadata.annotations "cdao.io/repo-revision" }}'
_PARAMETER = re.compile(r"\{\{ \.(?P<key>\w+) \}\}")


@dataclass(frozen=True)
class ExpectedApplication:
    """An Application an enabled add-on's ApplicationSet generates: its name, the ApplicationSet, the
    add-on's `enable_<addon>` label, and per source (in the template's order, which is the order of
    the Application's `spec.sources` and `status.sync.revisions`) the targetRevision the stack pins
    (None where the template fixes none)."""

    name: str
    appset: str
    label: str
    revisions: tuple[str | None, ...]


def expected_applications(
    declared: dict[str, Any], files: PlatformFiles | None = None
) -> dict[str, ExpectedApplication]:
    """The Applications Argo CD should generate for this stack, by name, from the ApplicationSets in
    APPSETS_DIR of `files` (platform/ at the deployment's revision; the working tree when None) and the
    deployment's `declared` output (infra/declared.py).

    An ApplicationSet's cluster generator selects the cluster Secret by `matchLabels`; the Secret
    carries `enable_<addon>` per add-on (`declared.clusterLabels`), so the Applications of enabled
    add-ons are expected. Shapes from Argo CD's ApplicationSet CRD (argoproj/argo-cd v2.14.1
    manifests/crds/applicationset-crd.yaml, ../shared/charts/argo-cd/7.8.0/crds-upstream):
    `spec.generators[].clusters.selector.matchLabels`, `spec.generators[].matrix.generators[]` (a
    clusters and a `list.elements` generator) and `spec.template.metadata.name` /
    `spec.template.spec.source(s)[].targetRevision`. The templates' revisions are the cluster Secret's
    `cdao.io/chart-version-<key>` (`declared.chartVersions`) and `cdao.io/repo-revision`
    (`declared.repoRevision`) annotations, resolved here from the deployment's record. Names use only
    `{{ .<element key> }}` of a list generator, substituted by hand: there is no maintained Go
    template renderer for Python, and tests/cdao_cli keeps this equal to every ApplicationSet here.

    Raises ValueError naming the file for a template this reading does not understand, and
    DoctorInputError when a file cannot be read at the revision.
    """
    files = files or PlatformFiles()
    labels = {k: v for k, v in declared["clusterLabels"].items() if k.startswith("enable_")}
    pins = declared["chartVersions"]
    expected: dict[str, ExpectedApplication] = {}
    for path in files.list(APPSETS_DIR, ".yaml"):
        for appset in cdao_stacks.load_yaml_all(files.read(path)):
            if not appset or appset.get("kind") != "ApplicationSet":
                continue
            where = f"{path} at {files.where}: ApplicationSet {appset['metadata']['name']}"
            selectors, elements = [], [{}]
            for generator in appset["spec"]["generators"]:
                for inner in generator.get("matrix", {}).get("generators", [generator]):
                    if "clusters" in inner:
                        selectors.append(inner["clusters"]["selector"]["matchLabels"])
                    elif "list" in inner:
                        elements = inner["list"]["elements"]
            if len(selectors) != 1 or len(selectors[0]) != 1 or next(iter(selectors[0])) not in labels:
                raise ValueError(f"{where}: expected one clusters generator selecting one enable_<addon> label")
            ((label, value),) = selectors[0].items()
            if labels[label] != value:
                continue
            template = appset["spec"]["template"]
            spec = template["spec"]
            sources = spec.get("sources") or [spec["source"]]
            revisions = []
            for source in sources:
                revision = source.get("targetRevision")
                pin = _CHART_PIN.match(revision or "")
                if pin:
                    revisions.append(pins.get(pin["key"]))
                elif revision == _REPO_REVISION:
                    revisions.append(declared["repoRevision"])
                elif revision is None or "{{" not in revision:
                    revisions.append(revision)
                else:
                    raise ValueError(f"{where}: targetRevision {revision!r} is not a stack pin")
            for element in elements:
                name = _PARAMETER.sub(lambda m, e=element: str(e[m["key"]]), template["metadata"]["name"])
                expected[name] = ExpectedApplication(name, appset["metadata"]["name"], label, tuple(revisions))
    return expected


def _revision_problems(app: dict[str, Any], expected: ExpectedApplication | None, pins: dict[str, str]) -> list[str]:
    """Each source's targetRevision against the stack's pin (a Git source: tag or commit; a Helm
    source: the chart version), and for a Helm chart the version it synced (`status.sync.revision(s)`:
    for Git, the commit the branch or tag resolved to, so only a Helm source's can be compared)."""
    problems = []
    synced = _synced_revisions(app)
    for i, source in enumerate(_sources(app)):
        chart = source.get("chart")
        if expected is not None:
            if i >= len(expected.revisions):
                problems.append(f"source {i} is not in ApplicationSet {expected.appset}'s template")
                continue
            pinned = expected.revisions[i]
        elif chart in pins:
            pinned = pins[chart]
        else:
            continue
        wanted = source.get("targetRevision")
        what = f"chart {chart}" if chart else f"source {source.get('repoURL')}"
        running = synced[i] if i < len(synced) else None
        if wanted != pinned or (chart and running != pinned):
            shown = f", runs {running}" if chart else ""
            problems.append(f"{what} wants {wanted}{shown}, stack pins {pinned}")
    return problems


def argocd_applications(ctx: DoctorContext) -> list[CheckResult]:
    """Every Application an enabled add-on's ApplicationSet generates exists (expected_applications),
    every Application is Synced and Healthy, and each source's targetRevision (and a Helm chart's
    synced version) is the one its stack pins."""
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
        results.append(failed("argocd", "applications", "no Application exists", "check the root Application"))
    expected = expected_applications(ctx.declared, ctx.platform)
    present = {app["metadata"]["name"] for app in apps}
    for name, want in sorted(expected.items()):
        if name not in present:
            results.append(
                failed(
                    "argocd",
                    name,
                    f"missing: ApplicationSet {want.appset} should generate it ({want.label}=true in this stack)",
                    f"kubectl -n {ARGOCD_NAMESPACE} describe applicationset {want.appset} (its conditions say why), "
                    f"and check the cluster Secret's {want.label} label",
                )
            )
    pins = ctx.declared["chartVersions"]
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
        problems += _revision_problems(app, expected.get(name), pins)
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

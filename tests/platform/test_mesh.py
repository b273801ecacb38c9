"""What Linkerd does to meshed pods: init containers run before the proxy, behind its CNI plugin's
iptables redirect, so each of their destinations must be a skipped outbound port; and the proxy stops
taking requests at its TERM, so a meshed server's shutdown must keep it up until it is done; vLLM's
drain script runs here for real against a loopback double of its metrics and the proxy's /shutdown
(tests/platform/upstream/init-containers.yaml, linkerd.yaml, pod-termination.yaml and vllm.yaml record
the upstream facts)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any

import prometheus_client
import pytest
from chart_cache import default_values
from platform_render import PLATFORM, RenderedApp, _merge, load_yaml_documents
from upstream import at, facts, holds

# The Kubernetes API behind the `kubernetes` Service, S3 and the AWS APIs: HTTPS.
HTTPS = 443
# flyte-core v1.16.8 templates/common/ingress.yaml `grpcRoutes`: flyteadmin's gRPC Service port
# without configmap.adminServer.server.security.secure.
FLYTEADMIN_GRPC_PORT = 81


def _namespace_annotations() -> dict[str, dict[str, str]]:
    docs = load_yaml_documents(PLATFORM / "addons" / "security-baseline" / "base" / "namespaces.yaml")
    return {d["metadata"]["name"]: d["metadata"].get("annotations", {}) for d in docs if d["kind"] == "Namespace"}


def _meshed(namespace: str, pod_annotations: dict[str, str]) -> bool:
    inject = facts("linkerd")["inject_annotation"]
    value = pod_annotations.get(inject) or _namespace_annotations().get(namespace, {}).get(inject)
    return value == "enabled"


def _skipped_ports(namespace: str, pod_annotations: dict[str, str]) -> set[int]:
    """The outbound ports the CNI plugin leaves alone: the pod's annotation, else the namespace's."""
    key = facts("linkerd")["skip_outbound_ports_annotation"]
    value = pod_annotations.get(key) or _namespace_annotations().get(namespace, {}).get(key, "")
    ports: set[int] = set()
    for part in filter(None, (p.strip() for p in str(value).split(","))):
        low, _, high = part.partition("-")
        ports |= set(range(int(low), int(high or low) + 1))
    return ports


def _ports(destinations: list[str], values: dict[str, Any]) -> dict[str, int]:
    resolved = {
        "kube-api": HTTPS,
        "s3": HTTPS,
        "flyteadmin": FLYTEADMIN_GRPC_PORT,
        "database": int(at(values, "db.admin.database.port") or 0),
    }
    return {d: resolved[d] for d in destinations}


def _chart_pods(app: RenderedApp, chart: str) -> list[tuple[str, dict[str, str], dict[str, int]]]:
    """(workload/init container, pod annotations, destination ports) of a recorded chart's init
    containers that the chart renders with this Application's values."""
    entry = facts("init-containers")["charts"][chart]
    source, ours = app.charts[chart]
    values = _merge(default_values(chart, source["targetRevision"]), ours)
    found = []
    for workload in entry["workloads"]:
        if not holds(values, workload["when"]):
            continue
        annotations = at(values, workload["pod_annotations"]) or {}
        for init in workload["init_containers"]:
            if holds(values, init.get("when", [])):
                found.append((f"{workload['name']}/{init['name']}", annotations, _ports(init["connects"], values)))
    return found


def _own_pods(app: RenderedApp) -> list[tuple[str, str, dict[str, str], list[str]]]:
    """(namespace/workload, init container, pod annotations, init container names) of this
    repository's manifests."""
    found = []
    for doc in app.manifests:
        template = doc.get("spec", {}).get("template", {})
        inits = template.get("spec", {}).get("initContainers", [])
        if inits:
            namespace = doc["metadata"].get("namespace", app.app["spec"]["destination"]["namespace"])
            annotations = template.get("metadata", {}).get("annotations", {})
            found.append((namespace, f"{namespace}/{doc['metadata']['name']}", annotations, [i["name"] for i in inits]))
    return found


def test_meshed_init_containers_reach_what_they_connect_to(apps: dict[str, RenderedApp]) -> None:
    """Every init container of a meshed pod (charts' and ours) has each destination port skipped, so
    Flyte's migrations, secret generation and cluster-resource sync, and vLLM's weight download, run."""
    recorded_charts = facts("init-containers")["charts"]
    own = facts("init-containers")["own"]
    unhandled = []
    for name, app in apps.items():
        namespace = app.app["spec"]["destination"]["namespace"]
        for chart in app.charts:
            if chart not in recorded_charts:
                continue
            for where, pod_annotations, ports in _chart_pods(app, chart):
                if _meshed(namespace, pod_annotations):
                    skipped = _skipped_ports(namespace, pod_annotations)
                    missing = {d: p for d, p in ports.items() if p not in skipped}
                    if missing:
                        unhandled.append(f"{name}: {chart} {where} cannot reach {missing} before the proxy starts")
        for ns, workload, pod_annotations, inits in _own_pods(app):
            if not _meshed(ns, pod_annotations):
                continue
            for init in inits:
                entry = next((i for i in own.get(workload, []) if i["name"] == init), None)
                if entry is None:
                    unhandled.append(f"{name}: {workload} init container {init} is not in init-containers.yaml")
                    continue
                skipped = _skipped_ports(ns, pod_annotations)
                missing = {d: p for d, p in _ports(entry["connects"], {}).items() if p not in skipped}
                if missing:
                    unhandled.append(f"{name}: {workload}/{init} cannot reach {missing} before the proxy starts")
    assert unhandled == []


def _opts_into_mesh(values: Any) -> bool:
    """Our values for a chart set `linkerd.io/inject: enabled` somewhere (a pod annotation)."""
    inject = facts("linkerd")["inject_annotation"]
    if isinstance(values, dict):
        return values.get(inject) == "enabled" or any(_opts_into_mesh(v) for v in values.values())
    if isinstance(values, list):
        return any(_opts_into_mesh(v) for v in values)
    return False


def _chart_meshed(namespace: str, chart: str, ours: dict[str, Any]) -> bool:
    """Some pod of the chart may be meshed: its namespace is, our values opt a pod in, or the chart
    renders Linkerd's proxy into its own pods."""
    return _meshed(namespace, {}) or _opts_into_mesh(ours) or chart in facts("linkerd")["charts_that_mesh_themselves"]


def test_every_chart_in_a_meshed_namespace_has_its_init_containers_recorded(apps: dict[str, RenderedApp]) -> None:
    """A chart whose pods may be meshed (its namespace, a pod annotation in our values, or the chart
    itself) is recorded at its pinned version; a new chart or a version bump fails here until its
    templates' init containers are read and written down."""
    recorded = facts("init-containers")["charts"]
    for name, app in apps.items():
        namespace = app.app["spec"]["destination"]["namespace"]
        for chart, (source, ours) in app.charts.items():
            if not _chart_meshed(namespace, chart, ours):
                continue
            assert chart in recorded, f"{name}: record {chart}'s init containers in init-containers.yaml"
            assert recorded[chart]["version"] == source["targetRevision"], (
                f"{name}: init-containers.yaml records {chart} {recorded[chart]['version']}, "
                f"the stack pins {source['targetRevision']}: read the new templates"
            )


def test_a_pod_annotation_in_values_opts_a_chart_into_the_mesh() -> None:
    assert _opts_into_mesh({"server": {"podAnnotations": {"linkerd.io/inject": "enabled"}}})
    assert not _opts_into_mesh({"podAnnotations": {"linkerd.io/inject": "disabled"}, "l": [1]})


def test_skipped_ports_read_lists_and_ranges_as_linkerd_does() -> None:
    assert _skipped_ports("flyte", {}) == set()
    assert _skipped_ports("x", {facts("linkerd")["skip_outbound_ports_annotation"]: "443,5432,6000-6002"}) == {
        443,
        5432,
        6000,
        6001,
        6002,
    }


@pytest.mark.parametrize("namespace", ["flyte", "inference"])
def test_meshed_namespaces_are_the_documented_ones(namespace: str) -> None:
    assert _meshed(namespace, {})


def _label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes' LabelSelector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist), as
    k8s.io/apimachinery pkg/labels evaluates it; no maintained Python library evaluates one."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def test_meshed_pods_are_refused_until_the_proxy_injector_answers(apps: dict[str, RenderedApp]) -> None:
    """The root Application moves past linkerd-control-plane before it is healthy, so a meshed pod
    created early must be refused (failurePolicy Fail), not started without a proxy; the injector
    selects every namespace with a meshed pod and none of the namespaces it needs to start itself."""
    injector = facts("linkerd")["injector"]
    (app,) = [a for a in apps.values() if "linkerd-control-plane" in a.charts]
    source, ours = app.charts["linkerd-control-plane"]
    values = _merge(default_values("linkerd-control-plane", source["targetRevision"]), ours)
    assert at(values, injector["failure_policy"]) == "Fail"
    selector = at(values, injector["namespace_selector"])
    docs = load_yaml_documents(PLATFORM / "addons" / "security-baseline" / "base" / "namespaces.yaml")
    # The API server labels every namespace with kubernetes.io/metadata.name.
    labels = {
        d["metadata"]["name"]: {**d["metadata"].get("labels", {}), "kubernetes.io/metadata.name": d["metadata"]["name"]}
        for d in docs
        if d["kind"] == "Namespace"
    }
    meshed = {ns for ns in labels if _meshed(ns, {})}
    for a in apps.values():
        for doc in a.manifests:
            template = doc.get("spec", {}).get("template", {})
            ns = doc["metadata"].get("namespace", a.app["spec"]["destination"]["namespace"])
            if _meshed(ns, (template.get("metadata") or {}).get("annotations") or {}):
                meshed.add(ns)
    unselected = sorted(ns for ns in meshed if not _label_selector_matches(selector, labels.get(ns, {})))
    assert unselected == [], f"the proxy injector does not see the meshed namespaces {unselected}"
    # With Fail, a selected namespace that is not meshed would wait for the injector for nothing.
    idle = sorted(ns for ns in labels if _label_selector_matches(selector, labels[ns]) and ns not in meshed)
    assert idle == [], f"the proxy injector selects namespaces without meshed pods: {idle}"
    for ns in ("kube-system", app.app["spec"]["destination"]["namespace"], "cert-manager", "linkerd-cni"):
        assert not _label_selector_matches(selector, labels.get(ns, {"kubernetes.io/metadata.name": ns})), ns


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split("."))


def _own_meshed_deployments(apps: dict[str, RenderedApp]) -> list[tuple[str, dict[str, Any]]]:
    """(namespace/name, pod template) of this repository's meshed Deployments."""
    found = []
    for app in apps.values():
        for doc in app.manifests:
            if doc["kind"] != "Deployment":
                continue
            namespace = doc["metadata"].get("namespace", app.app["spec"]["destination"]["namespace"])
            template = doc["spec"]["template"]
            if _meshed(namespace, template.get("metadata", {}).get("annotations", {})):
                found.append((f"{namespace}/{doc['metadata']['name']}", template))
    return found


def _cluster_autoscaler_grace_limit(apps: dict[str, RenderedApp]) -> float:
    """The longest termination grace the cluster autoscaler gives a pod on a node it scales down
    (no limit on a stack without it)."""
    ca = facts("pod-termination")["cluster_autoscaler"]
    limits = [
        int(
            (a.charts["cluster-autoscaler"][1].get("extraArgs") or {}).get(
                ca["max_graceful_termination_flag"], ca["max_graceful_termination_default"]
            )
        )
        for a in apps.values()
        if "cluster-autoscaler" in a.charts
    ]
    return min(limits, default=float("inf"))


# The drain preStop's command: [python, "-c", script, metrics URL, proxy shutdown URL, floor, ceiling,
# poll interval] (platform/addons/inference/base/deployment.yaml says so above the command).
_DRAIN_ARGS = ("python", "-c", "script", "metrics", "shutdown", "floor", "ceiling", "poll")


def _drain_args(pre_stop: dict[str, Any]) -> dict[str, str] | None:
    command = (pre_stop.get("exec") or {}).get("command") or []
    if len(command) != len(_DRAIN_ARGS) or command[1] != "-c":
        return None
    return dict(zip(_DRAIN_ARGS, command, strict=True))


def _keeps_serving(pre_stop: dict[str, Any]) -> tuple[float, float] | None:
    """(least, most) seconds a container's preStop keeps it serving before its TERM: a native
    ``sleep``, or the drain command's floor and ceiling; None for anything else."""
    if set(pre_stop) == {"sleep"}:
        return float(pre_stop["sleep"]["seconds"]), float(pre_stop["sleep"]["seconds"])
    drain = _drain_args(pre_stop)
    return None if drain is None else (float(drain["floor"]), float(drain["ceiling"]))


def test_meshed_servers_keep_serving_until_no_request_can_reach_them(apps: dict[str, RenderedApp]) -> None:
    """A terminating pod leaves its Services' endpoints as the kubelet starts its shutdown, and clients
    and Linkerd learn it by a watch a moment later (tests/platform/upstream/pod-termination.yaml): a
    server that stops on SIGTERM at once refuses what they still send. So each container that serves
    a port sleeps in its preStop hook first (native `sleep`, no binary in the image), and the pod's
    Linkerd proxy, which refuses new requests from its own TERM on (https://linkerd.io/2.14/tasks/graceful-shutdown/),
    waits at least as long as the hook can (``config.alpha.linkerd.io/proxy-wait-before-exit-seconds`` becomes a
    preStop ``/bin/sleep`` on the proxy: linkerd2 stable-2.14.10 pkg/inject/inject.go,
    charts/partials/templates/_proxy.tpl; the chart's default waits 0 s), inside
    terminationGracePeriodSeconds with time to drain; a grace period longer than the cluster
    autoscaler gives a pod on a node it removes would be cut there."""
    from infra.config import ClusterConfig  # noqa: PLC0415

    termination = facts("pod-termination")
    assert _version(ClusterConfig().kubernetes_version) >= _version(termination["prestop_sleep_since"])
    wait_annotation = facts("linkerd")["wait_before_exit_annotation"]
    limit = _cluster_autoscaler_grace_limit(apps)
    deployments = _own_meshed_deployments(apps)
    assert deployments, "no meshed Deployment of this repository: nothing was checked"
    for name, template in deployments:
        grace = template["spec"].get("terminationGracePeriodSeconds", 30)
        sleeps = []
        for container in template["spec"]["containers"]:
            if not container.get("ports"):
                continue
            pre_stop = container.get("lifecycle", {}).get("preStop", {})
            kept = _keeps_serving(pre_stop)
            assert kept is not None, f"{name} {container['name']}: no preStop sleep or drain before TERM: {pre_stop}"
            least, most = kept
            sleeps.append(most)
            assert least >= termination["endpoint_removal_seconds"], (name, container["name"])
        annotations = template["metadata"].get("annotations", {})
        assert wait_annotation in annotations, f"{name}: its Linkerd proxy stops at the pod's TERM"
        proxy_wait = int(annotations[wait_annotation])
        slack = termination["proxy_drain_slack_seconds"]
        assert max(sleeps, default=0) <= proxy_wait <= grace - slack, (name, sleeps, proxy_wait, grace)
        assert grace <= limit, f"{name}: terminationGracePeriodSeconds {grace} > the cluster autoscaler's {limit}"


def _flag(args: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    return value


def _vllm_template(apps: dict[str, RenderedApp]) -> dict[str, Any] | None:
    found = [t for name, t in _own_meshed_deployments(apps) if name == "inference/vllm"]
    return found[0] if found else None


def test_vllm_drains_its_longest_request_before_sigterm_and_its_proxy_outlives_it(
    apps: dict[str, RenderedApp], stack: str
) -> None:
    """vLLM v0.11.0 aborts every generation in flight on SIGTERM (tests/platform/upstream/vllm.yaml),
    so its preStop is its drain: at least the endpoint removal, at most the longest request the
    server accepts (--max-model-len tokens, one engine step each, a step reading at most vLLM's share
    of the slice's memory at the slice's share of the bandwidth) after it, then SIGTERM. It runs on
    the image's interpreter, polls the server's own port and ends the proxy on the proxy's admin port,
    whose exit ends its wait (the pod shares no process namespace); the proxy's wait (an upper bound)
    still outlasts vLLM's exit, and the grace period holds both (the
    generic bounds above). Checked on each stack's rendered Deployment, so a profile or ApplicationSet
    patch of it is checked too."""
    vllm = facts("vllm")
    linkerd = facts("linkerd")
    termination = facts("pod-termination")
    template = _vllm_template(apps)
    if template is None:
        pytest.skip(f"{stack} does not enable inference")
    (server,) = [c for c in template["spec"]["containers"] if c["name"] == "vllm"]
    assert server["image"].rsplit(":", 1)[1] == vllm["image_tag"], "re-read vLLM's shutdown at the new tag"
    assert vllm["drains_on_sigterm"] is False
    slice_ = vllm["slice"]
    assert slice_["resource"] in server["resources"]["limits"]
    slice_memory_gb = slice_["gpu_memory_gb"] * slice_["memory_fraction"]
    bytes_per_step_gb = float(_flag(server["args"], "--gpu-memory-utilization")) * slice_memory_gb
    steps_per_second = (
        vllm["assumed_bandwidth_efficiency"] * slice_["gpu_memory_bandwidth_gb_per_s"] * slice_["memory_fraction"]
    ) / bytes_per_step_gb
    longest_request = int(_flag(server["args"], "--max-model-len")) / steps_per_second
    drain = _drain_args(server.get("lifecycle", {}).get("preStop", {}))
    assert drain is not None, "vLLM's preStop is not the drain"
    assert drain["python"] == vllm["python"]
    assert float(drain["floor"]) >= termination["endpoint_removal_seconds"]
    assert float(drain["ceiling"]) >= termination["endpoint_removal_seconds"] + longest_request
    metrics = urllib.parse.urlsplit(drain["metrics"])
    (port,) = [p["containerPort"] for p in server["ports"] if p["name"] == "http"]
    assert (metrics.hostname, metrics.port, metrics.path) == ("127.0.0.1", port, vllm["metrics_path"])
    assert f"--port={port}" in server["args"]
    assert vllm["stats_off_flag"] not in server["args"], "vLLM would export no queue gauges to drain on"
    annotations = template["metadata"]["annotations"]
    (control_plane,) = [a for a in apps.values() if "linkerd-control-plane" in a.charts]
    source, ours = control_plane.charts["linkerd-control-plane"]
    values = _merge(default_values("linkerd-control-plane", source["targetRevision"]), ours)
    admin_port = int(annotations.get(linkerd["admin_port_annotation"], at(values, linkerd["admin_port_value"])))
    shutdown = urllib.parse.urlsplit(drain["shutdown"])
    expected = ("127.0.0.1", admin_port, linkerd["admin_shutdown_path"])
    assert (shutdown.hostname, shutdown.port, shutdown.path) == expected
    proxy_wait = int(annotations.get(linkerd["wait_before_exit_annotation"], 0))
    assert float(drain["ceiling"]) + vllm["exit_seconds"] <= proxy_wait
    # The proxy's exit ends its wait only while it is its container's first process.
    assert not template["spec"].get(termination["shared_process_namespace_field"]), "the proxy's wait would outlive it"


class _FakeVllm:
    """vLLM's /metrics (the busy gauges with their labels, rendered by prometheus_client as vLLM
    does: tests/platform/upstream/vllm.yaml) and the Linkerd proxy's POST /shutdown (linkerd.yaml),
    on one loopback port. Busy for ``busy_for`` seconds from the first poll (so the interpreter's
    start does not eat the busy time), until ``busy_until`` (time.monotonic()); ``fail`` answers 500;
    without ``gauges`` /metrics answers without vLLM's queue gauges (as with --disable-log-stats)."""

    def __init__(self, busy_for: float, fail: bool = False, gauges: bool = True) -> None:
        self.busy_for, self.fail, self.with_gauges = busy_for, fail, gauges
        self.busy_until = float("inf")
        self.polls: list[float] = []
        self.shutdowns: list[tuple[float, str]] = []
        vllm = facts("vllm")
        self.registry = prometheus_client.CollectorRegistry()
        self.gauges = [
            prometheus_client.Gauge(name, name, vllm["gauge_labels"], registry=self.registry).labels(
                model_name="qwen2.5-7b-instruct", engine="0"
            )
            for name in vllm["busy_gauges"]
        ]
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.polls.append(time.monotonic())
                if len(fake.polls) == 1:
                    fake.busy_until = fake.polls[0] + fake.busy_for
                if fake.fail or self.path != facts("vllm")["metrics_path"]:
                    self.send_error(500 if fake.fail else 404)
                    return
                busy = time.monotonic() < fake.busy_until
                for gauge, value in zip(fake.gauges, (2, 1), strict=True):
                    gauge.set(value if busy else 0)
                registry = fake.registry if fake.with_gauges else prometheus_client.CollectorRegistry()
                body = prometheus_client.generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                fake.shutdowns.append((time.monotonic(), self.path))
                self.send_response(200)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"shutdown\n")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _FakeVllm:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _run_drain(metrics: str, shutdown: str, floor: float, ceiling: float, poll: float) -> float:
    """Runs the prod Deployment's drain script (this interpreter has prometheus_client, as the
    image's has) with small bounds; returns when it started (time.monotonic()). Each run takes about
    a second: the proof is the deployed script in its own interpreter, whose start is most of it."""
    from platform_checks import rendered  # noqa: PLC0415

    template = _vllm_template(rendered("prod"))
    assert template is not None, "prod enables inference"
    (server,) = [c for c in template["spec"]["containers"] if c["name"] == "vllm"]
    drain = _drain_args(server["lifecycle"]["preStop"])
    assert drain is not None
    started = time.monotonic()
    args = [metrics, shutdown, str(floor), str(ceiling), str(poll)]
    subprocess.run([sys.executable, "-c", drain["script"], *args], check=True, timeout=ceiling + 10)
    return started


def test_vllm_drain_returns_once_no_request_runs_or_waits_and_then_ends_the_proxy() -> None:
    """Busy for 0.5 s, polled every 0.1 s: the hook returns after the gauges read 0, not before and
    long before its ceiling, then posts the proxy's /shutdown once."""
    with _FakeVllm(busy_for=0.5) as fake:
        started = _run_drain(f"{fake.url}/metrics", f"{fake.url}/shutdown", floor=0.2, ceiling=8, poll=0.1)
        ended = time.monotonic()
    assert ended >= fake.busy_until
    assert ended - started < 4, "it waited for the ceiling, not for the drain"
    assert [p for p in fake.polls if p < fake.busy_until], "it never saw vLLM busy"
    assert len(fake.shutdowns) == 1
    when, path = fake.shutdowns[0]
    assert when >= fake.busy_until
    assert path == facts("linkerd")["admin_shutdown_path"]


def test_vllm_drain_waits_for_the_endpoint_removal_floor_even_when_idle() -> None:
    with _FakeVllm(busy_for=0) as fake:
        started = _run_drain(f"{fake.url}/metrics", f"{fake.url}/shutdown", floor=0.5, ceiling=8, poll=0.1)
        ended = time.monotonic()
    assert 0.5 <= ended - started < 4
    assert min(fake.polls) - started >= 0.5
    assert len(fake.shutdowns) == 1


def test_vllm_drain_ends_at_its_ceiling_when_requests_never_finish() -> None:
    with _FakeVllm(busy_for=float("inf")) as fake:
        started = _run_drain(f"{fake.url}/metrics", f"{fake.url}/shutdown", floor=0.1, ceiling=1, poll=0.1)
        ended = time.monotonic()
    assert 1 <= ended - started < 4
    assert len(fake.shutdowns) == 1


@pytest.mark.parametrize("metrics", ["error", "refused", "no gauges"])
def test_vllm_drain_ends_after_a_few_failed_polls_of_its_metrics(metrics: str) -> None:
    """A /metrics that answers 500, or a port nothing listens on: vLLM's API server serves no request
    either, so the hook gives up after three failed polls instead of holding the slice to its ceiling.
    A /metrics without the queue gauges tells nothing: it fails too, it does not read as idle."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/metrics"
    with _FakeVllm(busy_for=float("inf"), fail=metrics == "error", gauges=metrics != "no gauges") as fake:
        url = refused if metrics == "refused" else f"{fake.url}/metrics"
        started = _run_drain(url, f"{fake.url}/shutdown", floor=0.1, ceiling=8, poll=0.1)
        ended = time.monotonic()
    assert ended - started < 4, "a dead metrics endpoint held the pod to the ceiling"
    assert len(fake.polls) == (0 if metrics == "refused" else 3)
    assert len(fake.shutdowns) == 1


def test_a_rollout_step_fits_the_deployments_progress_deadline(apps: dict[str, RenderedApp]) -> None:
    """Every Deployment of this repository, meshed or not: one rollout step of a Deployment that surges
    no pod (maxSurge 0) waits for an old pod's whole shutdown before its replacement can take the
    freed resources (a MIG slice), then for the new pod's start-up probe. Past
    spec.progressDeadlineSeconds without a new pod ready, Kubernetes marks the rollout failed and
    Argo CD reports the Application Degraded (tests/platform/upstream/pod-termination.yaml)."""
    default = facts("pod-termination")["progress_deadline_default_seconds"]
    deployments = [d for a in apps.values() for d in a.manifests if d["kind"] == "Deployment"]
    assert deployments, "no Deployment of this repository: nothing was checked"
    for doc in deployments:
        pod = doc["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        starts = 0
        for container in pod["containers"]:
            probe = container.get("startupProbe")
            if probe:
                period = probe.get("periodSeconds", 10)
                starts = max(starts, probe.get("initialDelaySeconds", 0) + period * probe.get("failureThreshold", 3))
        deadline = doc["spec"].get("progressDeadlineSeconds", default)
        name = doc["metadata"]["name"]
        assert grace + starts <= deadline, f"{name}: shutdown {grace} s + start-up {starts} s > deadline {deadline} s"

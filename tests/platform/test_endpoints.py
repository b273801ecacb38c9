"""Every in-cluster URL one component uses to reach another (tasks to MLflow, propeller to the connector
service, KEDA to Prometheus, Prometheus to its targets) resolves to a Service port, passes the network
policies both ways and the mesh, and is accepted by the server it names (TLS, path prefix, Host check).

The URLs are found in what platform/ deploys (our manifests and the values we give each chart) and
in the SDK's documented tracking URI, not listed by hand; tests/platform/upstream/endpoints.yaml
records how the charts name their Services and what their servers accept, with its sources.
"""

from __future__ import annotations

import ast
import fnmatch
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from chart_cache import default_values_with_subcharts
from platform_render import PLATFORM, REPO_ROOT, RenderedApp, _merge, load_yaml_documents
from upstream import at, facts, mlflow_accepts_host

# `<service>.<namespace>[.svc[.cluster.local]]:<port>[/path]` behind a scheme: http(s), gRPC's dns:///
# and Flyte's k8s:// resolver (flytestdlib resolver: `k8s://<service>.<namespace>:<port>`).
URL = re.compile(
    r"\b(?P<scheme>https?|k8s|dns):///?(?P<service>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.(?P<namespace>[a-z0-9-]+)"
    r"(?P<suffix>\.svc(?:\.cluster\.local)?)?:(?P<port>\d+)(?P<path>/[^\s\"'`,)]*)?"
)
TASK_NAMESPACE = "project-domain"
INBOUND_POLICY_ANNOTATION = "config.linkerd.io/default-inbound-policy"
# Linkerd stable-2.14.10 policy-controller: these defaults admit a client without a mesh identity.
ADMITS_UNMESHED = {"all-unauthenticated", "cluster-unauthenticated"}


@dataclass
class Caller:
    where: str
    namespace: str
    pod_labels: dict[str, str] = field(default_factory=dict)
    meshed: bool = False


@dataclass
class Endpoint:
    caller: Caller
    url: str
    scheme: str
    service: str
    namespace: str
    port: int
    path: str
    tls_expected: bool


def _strings(node: Any, found: list[tuple[str, dict[str, Any]]], parent: dict[str, Any] | None = None) -> None:
    """Every string in a document, with the mapping that holds it (for sibling flags like `insecure`)."""
    if isinstance(node, dict):
        for value in node.values():
            _strings(value, found, node)
    elif isinstance(node, list):
        for value in node:
            _strings(value, found, parent)
    elif isinstance(node, str):
        found.append((node, parent or {}))


def _endpoints_in(doc: Any, caller: Caller) -> list[Endpoint]:
    found: list[tuple[str, dict[str, Any]]] = []
    _strings(doc, found)
    endpoints = []
    for text, holder in found:
        for m in URL.finditer(text):
            scheme = m["scheme"]
            tls = scheme == "https" if scheme in ("http", "https") else not holder.get("insecure", False)
            endpoints.append(
                Endpoint(caller, m[0], scheme, m["service"], m["namespace"], int(m["port"]), m["path"] or "", tls)
            )
    return endpoints


def _namespaces(apps: dict[str, RenderedApp]) -> dict[str, dict[str, Any]]:
    """Namespace name -> metadata (labels with kubernetes.io/metadata.name, annotations)."""
    docs = load_yaml_documents(PLATFORM / "addons" / "security-baseline" / "base" / "namespaces.yaml")
    out = {d["metadata"]["name"]: d["metadata"] for d in docs if d["kind"] == "Namespace"}
    for name, meta in [*out.items(), (TASK_NAMESPACE, _task_namespace(apps))]:
        labels = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
        out[name] = {**meta, "labels": labels}
    return out


def _task_templates(apps: dict[str, RenderedApp]) -> list[dict[str, Any]]:
    """flyteadmin's cluster-resource templates, rendered for one task namespace."""
    values = apps["flyte"].charts["flyte-core"][1]
    docs = []
    for template in values["cluster_resource_manager"]["templates"]:
        text = re.sub(
            r"\{\{ *(\w+) *\}\}", lambda m: TASK_NAMESPACE if m[1] == "namespace" else m[1], template["value"]
        )
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def _task_namespace(apps: dict[str, RenderedApp]) -> dict[str, Any]:
    (namespace,) = [d for d in _task_templates(apps) if d["kind"] == "Namespace"]
    return namespace["metadata"]


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    assert not selector.get("matchExpressions"), f"matchExpressions are not modelled here: {selector}"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _admits(
    policies: list[dict[str, Any]],
    direction: str,
    pod: tuple[str, dict[str, str]],
    peer: tuple[str, dict[str, str], dict[str, str]],
    port: int | None,
) -> bool:
    """Kubernetes NetworkPolicy semantics for one direction: a pod no policy of that type selects is
    open; else some rule of a selecting policy must admit the peer (namespace, its labels, pod labels)
    on the port (None: any port the pod serves, so the rule must not restrict ports). ipBlock peers are
    not counted for pod-to-pod traffic (whether they match pod IPs depends on the CNI)."""
    pod_ns, pod_labels = pod
    peer_ns, peer_ns_labels, peer_labels = peer
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = []
    for p in policies:
        spec = p["spec"]
        types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
        if (
            p["metadata"]["namespace"] == pod_ns
            and direction in types
            and _selects(spec.get("podSelector"), pod_labels)
        ):
            selecting.append(spec)
    if not selecting:
        return True
    for spec in selecting:
        for rule in spec.get(key) or []:
            ports = rule.get("ports")
            port_ok = not ports or (port is not None and any(p.get("port") == port for p in ports))
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                "ipBlock" not in q
                and (
                    _selects(q["namespaceSelector"], peer_ns_labels) if "namespaceSelector" in q else peer_ns == pod_ns
                )
                and (_selects(q["podSelector"], peer_labels) if "podSelector" in q else True)
                for q in peers
            )
            if port_ok and peer_ok:
                return True
    return False


@dataclass
class Server:
    ports: dict[int, int | None]  # Service port -> the pods' port (None: not resolved here)
    pod_labels: dict[str, str]
    meshed: bool
    tls: bool
    path_prefix: str
    host_check: list[str] | None = None  # MLflow's allowed Host patterns
    path_roots: list[str] | None = None  # first segments of the routes under path_prefix (None: any)


def _container_port(apps: dict[str, RenderedApp], namespace: str, selector: dict[str, str], name: Any) -> int:
    if isinstance(name, int):
        return name
    for app in apps.values():
        for doc in app.manifests:
            template = doc.get("spec", {}).get("template", {})
            if doc["metadata"].get("namespace") == namespace and _selects(
                {"matchLabels": selector}, template.get("metadata", {}).get("labels", {})
            ):
                for container in template["spec"]["containers"]:
                    for port in container.get("ports", []):
                        if port.get("name") == name:
                            return int(port["containerPort"])
    raise AssertionError(f"no pod in {namespace} selected by {selector} has a port named {name}")


def _servers(apps: dict[str, RenderedApp], namespaces: dict[str, dict[str, Any]]) -> dict[tuple[str, str], Server]:
    """(namespace, Service name) -> what serves it: our Services, and those charts render."""
    inject = facts("linkerd")["inject_annotation"]
    out = {}
    for app in apps.values():
        for doc in app.manifests:
            if doc["kind"] != "Service":
                continue
            ns = doc["metadata"].get("namespace", app.app["spec"]["destination"]["namespace"])
            selector = doc["spec"].get("selector", {})
            pods = [
                d["spec"]["template"]["metadata"]
                for d in app.manifests
                if "template" in d.get("spec", {})
                and _selects({"matchLabels": selector}, d["spec"]["template"]["metadata"].get("labels", {}))
            ]
            meshed = any((p.get("annotations") or {}).get(inject) == "enabled" for p in pods) or (
                namespaces.get(ns, {}).get("annotations", {}).get(inject) == "enabled"
            )
            ports = {
                p["port"]: _container_port(apps, ns, selector, p.get("targetPort", p["port"]))
                for p in doc["spec"]["ports"]
            }
            out[(ns, doc["metadata"]["name"])] = Server(
                ports, selector, meshed, facts("endpoints")["own_servers_tls"], ""
            )
        for chart, (source, ours) in app.charts.items():
            entry = facts("endpoints")["services"].get(chart)
            if entry is None:
                continue
            values = _merge(default_values_with_subcharts(chart, source["targetRevision"]), ours)
            ns = app.app["spec"]["destination"]["namespace"]
            name = entry["name"].format(release=source.get("helm", {}).get("releaseName", chart))
            host_check = None
            if entry.get("host_check"):
                option = at(values, f"extraArgs.{facts(entry['host_check'])['option']}")
                host_check = [h.strip() for h in str(option).split(",")] if option else []
            out[(ns, name)] = Server(
                {int(at(values, entry["port"])): int(at(values, entry["target_port"]))},
                entry["pod_labels"],
                namespaces.get(ns, {}).get("annotations", {}).get(inject) == "enabled",
                bool(at(values, entry["tls"])) if isinstance(entry["tls"], str) else entry["tls"],
                str(at(values, entry["path_prefix"]) or ""),
                host_check,
                facts(entry["path_roots"])["routes"]["roots"] if entry.get("path_roots") else None,
            )
    return out


def _endpoints(apps: dict[str, RenderedApp], namespaces: dict[str, dict[str, Any]]) -> list[Endpoint]:
    inject = facts("linkerd")["inject_annotation"]
    callers = facts("endpoints")["callers"]

    def meshed(ns: str, annotations: dict[str, str]) -> bool:
        value = annotations.get(inject) or namespaces.get(ns, {}).get("annotations", {}).get(inject)
        return value == "enabled"

    found = []
    for name, app in apps.items():
        app_ns = app.app["spec"]["destination"]["namespace"]
        for doc in app.manifests:
            ns = doc["metadata"].get("namespace", app_ns)
            if doc["kind"] in callers:
                c = callers[doc["kind"]]
                caller = Caller(
                    f"{name}: {doc['kind']} {ns}/{doc['metadata']['name']}", c["namespace"], c["pod_labels"]
                )
            else:
                meta = doc.get("spec", {}).get("template", {}).get("metadata", {})
                caller = Caller(
                    f"{name}: {doc['kind']} {ns}/{doc['metadata']['name']}",
                    ns,
                    meta.get("labels", {}),
                    meshed(ns, meta.get("annotations", {})),
                )
            found += _endpoints_in(doc, caller)
        for chart, (_, ours) in app.charts.items():
            found += _endpoints_in(ours, Caller(f"{name}: {chart} values", app_ns, {}, meshed(app_ns, {})))
    # The SDK's in-cluster tracking URI, which tasks use by default (cdao_sdk.settings
    # IN_CLUSTER_MLFLOW_TRACKING_URI); read without importing the SDK, which would load flytekit.
    settings_py = ast.parse((REPO_ROOT / "plugins" / "cdao_sdk" / "settings.py").read_text())
    task = Caller("cdao_sdk.settings", TASK_NAMESPACE, {}, meshed(TASK_NAMESPACE, {}))
    found += _endpoints_in([n.value for n in ast.walk(settings_py) if isinstance(n, ast.Constant)], task)
    return found


def _policies(apps: dict[str, RenderedApp]) -> list[dict[str, Any]]:
    docs = [d for app in apps.values() for d in app.manifests] + _task_templates(apps)
    return [d for d in docs if d["kind"] == "NetworkPolicy"]


def _linkerd_servers(apps: dict[str, RenderedApp]) -> set[str]:
    return {d["metadata"].get("namespace", "") for app in apps.values() for d in app.manifests if d["kind"] == "Server"}


def _default_inbound_policy(apps: dict[str, RenderedApp], namespaces: dict[str, dict[str, Any]], ns: str) -> str:
    annotation = namespaces.get(ns, {}).get("annotations", {}).get(INBOUND_POLICY_ANNOTATION)
    if annotation:
        return annotation
    source, ours = apps["linkerd-control-plane"].charts["linkerd-control-plane"]
    values = _merge(default_values_with_subcharts("linkerd-control-plane", source["targetRevision"]), ours)
    return str(at(values, "proxy.defaultInboundPolicy"))


def _problems(apps: dict[str, RenderedApp], endpoint: Endpoint) -> list[str]:
    namespaces = _namespaces(apps)
    servers = _servers(apps, namespaces)
    policies = _policies(apps)
    c, e = endpoint.caller, endpoint
    where = f"{c.where} -> {e.url}"
    server = servers.get((e.namespace, e.service))
    if server is None or e.port not in server.ports:
        return [f"{where}: no Service {e.namespace}/{e.service} with port {e.port}"]
    pod_port = server.ports[e.port]
    caller_ns_labels = namespaces.get(c.namespace, {}).get("labels", {"kubernetes.io/metadata.name": c.namespace})
    target_ns_labels = namespaces.get(e.namespace, {}).get("labels", {"kubernetes.io/metadata.name": e.namespace})
    problems = []
    dns = facts("endpoints")["dns"]
    dns_ns_labels = {"kubernetes.io/metadata.name": dns["namespace"]}
    if not _admits(
        policies,
        "Egress",
        (c.namespace, c.pod_labels),
        (dns["namespace"], dns_ns_labels, dns["pod_labels"]),
        dns["port"],
    ):
        problems.append(
            f"{where}: {c.namespace}'s NetworkPolicies block DNS, so {e.service}.{e.namespace} never resolves"
        )
    if not _admits(
        policies, "Egress", (c.namespace, c.pod_labels), (e.namespace, target_ns_labels, server.pod_labels), pod_port
    ):
        problems.append(f"{where}: {c.namespace}'s NetworkPolicies do not let it out to port {pod_port}")
    if not _admits(
        policies, "Ingress", (e.namespace, server.pod_labels), (c.namespace, caller_ns_labels, c.pod_labels), pod_port
    ):
        problems.append(f"{where}: {e.namespace}'s NetworkPolicies do not let it in on port {pod_port}")
    if server.meshed and not c.meshed:
        if e.namespace in _linkerd_servers(apps):
            problems.append(f"{where}: Linkerd Server resources in {e.namespace} are not modelled here")
        policy = _default_inbound_policy(apps, namespaces, e.namespace)
        if policy not in ADMITS_UNMESHED:
            problems.append(f"{where}: an unmeshed caller is refused by the default inbound policy {policy}")
    if e.tls_expected != server.tls:
        caller_tls = "expects" if e.tls_expected else "does not use"
        server_tls = "serves" if server.tls else "does not serve"
        problems.append(f"{where}: the caller {caller_tls} TLS, the server {server_tls} it")
    problems += [f"{where}: {p}" for p in _path_problems(server, e.path)]
    if server.host_check is not None:
        host = f"{e.service}.{e.namespace}{_url_suffix(e.url)}:{e.port}"
        allowed = server.host_check
        if not mlflow_accepts_host(allowed, host):
            problems.append(f"{where}: the server's Host check refuses {host} (allowed: {allowed})")
    return problems


def _path_problems(server: Server, path: str) -> list[str]:
    """Why the server answers a request for `path` (without query) with a 404: outside its path
    prefix, or under it but outside every route it has."""
    prefix = server.path_prefix.rstrip("/")
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        return [f"the server serves only under {prefix}"]
    root = path.removeprefix(prefix).lstrip("/").split("/")[0]
    if server.path_roots is not None and root not in server.path_roots:
        return [f"the server serves nothing at {path} (its routes under {prefix or '/'}: {server.path_roots})"]
    return []


def _url_suffix(url: str) -> str:
    match = URL.search(url)
    return (match and match["suffix"]) or ""


def test_every_in_cluster_url_reaches_a_server_that_accepts_it(stack: str, apps: dict[str, RenderedApp]) -> None:
    endpoints = _endpoints(apps, _namespaces(apps))
    assert {e.service for e in endpoints} >= {"cdao-connector", "mlflow"}, "the URL search missed a known caller"
    problems = [p for e in endpoints for p in _problems(apps, e)]
    assert problems == [], "\n".join(problems)


def test_prometheus_reaches_every_service_monitor_target(stack: str, apps: dict[str, RenderedApp]) -> None:
    """Prometheus scrapes each ServiceMonitor's Service endpoints by pod IP and target port: the target
    namespace's NetworkPolicies and the mesh must let it in."""
    scraper = facts("endpoints")["callers"]["ServiceMonitor"]
    problems = []
    for name, app in apps.items():
        for doc in app.manifests:
            if doc["kind"] != "ServiceMonitor":
                continue
            ns = doc["metadata"]["namespace"]
            selector = doc["spec"]["selector"]
            services = [
                d
                for a in apps.values()
                for d in a.manifests
                if d["kind"] == "Service"
                and d["metadata"].get("namespace") == ns
                and _selects(selector, d["metadata"].get("labels", {}))
            ]
            if not services:
                problems.append(f"{name}: ServiceMonitor {ns}/{doc['metadata']['name']} selects no Service")
            for service in services:
                by_name = {p.get("name"): p["port"] for p in service["spec"]["ports"]}
                for endpoint in doc["spec"]["endpoints"]:
                    if endpoint["port"] not in by_name:
                        problems.append(f"{name}: {ns}/{service['metadata']['name']} has no port {endpoint['port']}")
                        continue
                    path = endpoint.get("path", "/metrics")
                    url = f"http://{service['metadata']['name']}.{ns}.svc:{by_name[endpoint['port']]}{path}"
                    caller = Caller(
                        f"{name}: ServiceMonitor {ns}/{doc['metadata']['name']}",
                        scraper["namespace"],
                        scraper["pod_labels"],
                    )
                    problems += _problems(apps, _endpoints_in(url, caller)[0])
    assert problems == [], "\n".join(problems)


def test_chart_service_monitors_can_be_scraped(stack: str, apps: dict[str, RenderedApp]) -> None:
    """A ServiceMonitor a chart renders (every `...serviceMonitor.enabled` we set, chart-gates.yaml)
    scrapes a port we do not resolve here, so its namespace must admit Prometheus on any port."""
    namespaces = _namespaces(apps)
    scraper = facts("endpoints")["callers"]["ServiceMonitor"]
    scraper_ns = namespaces.get(scraper["namespace"], {}).get("labels", {})
    problems = []
    for name, app in apps.items():
        ns = app.app["spec"]["destination"]["namespace"]
        for chart, (_, ours) in app.charts.items():
            for key in _enabled(ours):
                if key.endswith("serviceMonitor.enabled") and not _admits(
                    _policies(apps),
                    "Ingress",
                    (ns, {}),
                    (scraper["namespace"], scraper_ns, scraper["pod_labels"]),
                    None,
                ):
                    problems.append(f"{name}: {chart} {key}: {ns}'s NetworkPolicies keep Prometheus out")
    assert problems == [], "\n".join(problems)


def _enabled(values: Any, prefix: str = "") -> list[str]:
    found = []
    if isinstance(values, dict):
        for key, value in values.items():
            found += [f"{prefix}{key}"] if key == "enabled" and value is True else _enabled(value, f"{prefix}{key}.")
    return found


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://mlflow.mlflow.svc:5000", None),
        ("http://mlflow.mlflow.svc:5000/api/2.0/mlflow/runs/get", None),
        ("http://mlflow.mlflow.svc:5000/mlflow", "serves nothing at /mlflow"),
        ("http://mlflow.mlflow.svc.cluster.local:5000", "Host check refuses"),
        ("https://mlflow.mlflow.svc:5000", "expects TLS"),
        ("http://mlflow.mlflow.svc:80", "no Service mlflow/mlflow with port 80"),
        ("http://vllm.inference.svc:8000/v1", "do not let it in"),
    ],
)
def test_a_task_url_is_refused_for_the_right_reason(
    apps: dict[str, RenderedApp], url: str, refused: str | None
) -> None:
    """From a task namespace: the checks above refuse what the servers and policies would."""
    (endpoint,) = _endpoints_in(url, Caller("a task", TASK_NAMESPACE, {}))
    if endpoint.service == "vllm":
        if "inference" not in apps:
            pytest.skip("inference is off in this stack")
        # Not a task: a pod of a namespace that vLLM's allow-callers policy does not list.
        endpoint.caller = Caller("a kube-system pod", "kube-system", {})
    problems = _problems(apps, endpoint)
    if refused is None:
        assert problems == []
    else:
        assert any(refused in p for p in problems), problems


def _values_at(values: Any, path: str) -> list[Any]:
    """Values at a dotted path where `*` spans a list's items."""
    head, star, tail = path.partition(".*.")
    if not star:
        return [at(values, path)]
    return [at(item, tail) for item in at(values, head) or []]


def _ip_admits(policies: list[dict[str, Any]], namespace: str, cidr: str, port: int) -> bool:
    """Ingress from an address range (the ALB's subnets) to a pod port of the namespace, by the
    policies' ipBlock peers (a range is admitted when it lies inside a block and outside its excepts)."""
    network = ipaddress.ip_network(cidr)
    selecting = [
        p["spec"]
        for p in policies
        if p["metadata"]["namespace"] == namespace
        and "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])
        and not (p["spec"].get("podSelector") or {}).get("matchLabels")
    ]
    if not selecting:
        return True
    for spec in selecting:
        for rule in spec.get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            for peer in rule.get("from") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}]:
                block = peer.get("ipBlock")
                if block and network.subnet_of(ipaddress.ip_network(block["cidr"])):
                    excepts = [ipaddress.ip_network(e) for e in block.get("except", [])]
                    if not any(network.overlaps(e) for e in excepts):
                        return True
    return False


def test_flyte_alb_serves_its_host_over_tls_and_reaches_its_pods(stack: str, apps: dict[str, RenderedApp]) -> None:
    """The SDK reaches flyteadmin (and browsers flyteconsole and MLflow) at `<flyte-hostname>:443`
    through Flyte's internal ALB: every Ingress on it names that host, listens on HTTPS:443 with a
    certificate, and the ALB's subnets may reach each backend pod port (target-type ip)."""
    from platform_stack import cluster_secret, stack_config  # noqa: PLC0415

    annotations = cluster_secret(stack)["metadata"]["annotations"]
    hostname = annotations["cdao.io/flyte-hostname"]
    policies = _policies(apps)
    private = stack_config(stack).subnet_cidrs("private")
    problems = []
    for name, app in apps.items():
        ns = app.app["spec"]["destination"]["namespace"]
        for chart, (source, ours) in app.charts.items():
            entry = facts("endpoints")["ingresses"].get(chart)
            values = _merge(default_values_with_subcharts(chart, source["targetRevision"]), ours)
            if entry is None or not at(values, entry["enabled"]):
                continue
            ingress = at(values, entry["annotations"]) or {}
            hosts = [h for path in entry["hosts"] for h in _values_at(values, path)]
            problems += _alb_ingress_problems(f"{name}: {chart} Ingress", ingress, hosts, hostname)
            for port_path in entry["backend_pod_ports"]:
                port = port_path if isinstance(port_path, int) else int(at(values, port_path))
                for cidr in private:
                    if not _ip_admits(policies, ns, cidr, port):
                        problems.append(f"{name}: {ns}'s NetworkPolicies keep the ALB ({cidr}) from pod port {port}")
        # Our own Ingresses on Flyte's ALB (an action without a backend, such as a redirect).
        for doc in app.manifests:
            annotations = doc["metadata"].get("annotations") or {}
            if doc["kind"] == "Ingress" and annotations.get(facts("endpoints")["alb"]["group_annotation"]) == "flyte":
                hosts = [rule.get("host") for rule in doc["spec"]["rules"]]
                where = f"{name}: Ingress {doc['metadata']['name']}"
                problems += _alb_ingress_problems(where, annotations, hosts, hostname)
    assert problems == [], "\n".join(problems)


def _alb_ingress_problems(where: str, annotations: dict[str, str], hosts: list[Any], hostname: str) -> list[str]:
    problems = []
    if hosts != [hostname] * len(hosts) or not hosts:
        problems.append(f"{where} hosts {hosts}, the SDK and browsers use {hostname}")
    listen = annotations.get("alb.ingress.kubernetes.io/listen-ports")
    certificate = annotations.get("alb.ingress.kubernetes.io/certificate-arn")
    listeners = yaml.safe_load(listen) if listen else [{"HTTPS": 443} if certificate else {"HTTP": 80}]
    if {"HTTPS": 443} not in listeners or not certificate:
        problems.append(f"{where} has no HTTPS:443 listener with a certificate ({listeners})")
    if annotations.get("alb.ingress.kubernetes.io/scheme") != "internal":
        problems.append(f"{where} is not on the internal ALB")
    return problems


def test_kubelet_probes_ask_for_a_path_the_server_serves(stack: str, apps: dict[str, RenderedApp]) -> None:
    """A chart's fixed probe paths (endpoints.yaml `probe_paths`) are under the server's path prefix:
    otherwise readiness never passes and liveness restarts the pod (MLflow's --static-prefix moves
    /health too: mlflow 3.14.0 mlflow/server/__init__.py `_add_static_prefix("/health")`)."""
    servers = _servers(apps, _namespaces(apps))
    problems = []
    for app in apps.values():
        for chart, (source, _) in app.charts.items():
            entry = facts("endpoints")["services"].get(chart)
            if not entry or not entry.get("probe_paths"):
                continue
            ns = app.app["spec"]["destination"]["namespace"]
            name = entry["name"].format(release=source.get("helm", {}).get("releaseName", chart))
            server = servers[(ns, name)]
            for path in entry["probe_paths"]:
                problems += [f"{chart}: the kubelet probes {path}: {p}" for p in _path_problems(server, path)]
    assert problems == [], "\n".join(problems)


def _alb_patterns(path: str, path_type: str) -> list[str]:
    """The path patterns of the ALB rule the controller builds for an Ingress path (endpoints.yaml `alb`)."""
    if path_type != "Prefix":
        return [path]
    if path == "/":
        return ["/*"]
    return [p.format(path=path.rstrip("/")) for p in facts("endpoints")["alb"]["prefix_patterns"]]


def _alb_rewrite(transforms: list[dict[str, Any]], url: str) -> str:
    """The URL the ALB sends on after a rule's url-rewrite transform: the first match of the regex is
    replaced, `$n` naming a capture group; no match leaves the URL as it came."""
    for transform in transforms:
        if transform["type"] != "url-rewrite":
            continue
        for rewrite in transform["urlRewriteConfig"]["rewrites"]:
            if re.search(rewrite["regex"], url):
                return re.sub(rewrite["regex"], re.sub(r"\$(\d+)", r"\\g<\1>", rewrite["replace"]), url, count=1)
    return url


def _redirects(apps: dict[str, RenderedApp], group: str | None, path: str, to: str) -> bool:
    """Some Ingress of the ALB group answers `path` with a redirect to `to` (endpoints.yaml `alb`)."""
    alb = facts("endpoints")["alb"]
    for app in apps.values():
        for doc in app.manifests:
            annotations = doc["metadata"].get("annotations") or {}
            if doc["kind"] != "Ingress" or annotations.get(alb["group_annotation"]) != group:
                continue
            for rule in doc["spec"]["rules"]:
                for item in rule["http"]["paths"]:
                    service = item["backend"]["service"]
                    patterns = _alb_patterns(item["path"], item.get("pathType", "ImplementationSpecific"))
                    if service["port"].get("name") != "use-annotation" or path not in patterns:
                        continue
                    key = alb["actions_annotation"].format(service=service["name"])
                    action = json.loads(annotations.get(key, "{}"))
                    if action.get("type") == "redirect" and action["redirectConfig"].get("path") == to:
                        return True
    return False


def test_alb_paths_reach_the_server_routes(stack: str, apps: dict[str, RenderedApp]) -> None:
    """What reaches a server through Flyte's ALB lands on one of its routes: MLflow's client at the
    tracking URI `https://<flyte-hostname><ingress path>` (mlflow-server.yaml `routes.rest_api`), the web
    UI at `<ingress path>/` with every file and API call it makes by relative URL (`ui.relative_refs`),
    each matched by the Ingress's ALB rule and rewritten by its transform (endpoints.yaml `alb`); and the
    target group's health check, which the ALB sends straight to the pods, asks for the server's health
    route (`routes.health`)."""
    alb = facts("endpoints")["alb"]
    servers = _servers(apps, _namespaces(apps))
    problems = []
    for name, app in apps.items():
        ns = app.app["spec"]["destination"]["namespace"]
        for chart, (source, ours) in app.charts.items():
            entry = facts("endpoints")["ingresses"].get(chart)
            values = _merge(default_values_with_subcharts(chart, source["targetRevision"]), ours)
            if entry is None or "service" not in entry or not at(values, entry["enabled"]):
                continue
            release = source.get("helm", {}).get("releaseName", chart)
            service = facts("endpoints")["services"][entry["service"]]["name"].format(release=release)
            server = servers[(ns, service)]
            routes = facts(facts("endpoints")["services"][entry["service"]]["path_roots"])
            annotations = at(values, entry["annotations"]) or {}
            transforms = json.loads(annotations.get(alb["transforms_annotation"].format(service=service), "[]"))
            health = annotations.get(alb["healthcheck_annotation"], alb["healthcheck_default"])
            problems += [f"{name}: ALB health check {health}: {p}" for p in _path_problems(server, health)]
            if health != server.path_prefix.rstrip("/") + routes["routes"]["health"]:
                problems.append(f"{name}: the ALB health check asks for {health}, not the health route")
            for paths in _values_at(values, entry["paths"]):
                for item in paths or []:
                    patterns = _alb_patterns(item["path"], item.get("pathType", "ImplementationSpecific"))
                    base = re.sub(r"/\*?$", "", item["path"])
                    page = f"https://alb{base}/"
                    if not _redirects(apps, annotations.get(alb["group_annotation"]), base, f"{base}/"):
                        problems.append(f"{name}: nothing on the ALB sends {base} to {base}/, where the UI works")
                    wanted = [base + routes["routes"]["rest_api"]] + [
                        urlsplit(urljoin(page, ref)).path for ref in [page, *routes["ui"]["relative_refs"]]
                    ]
                    for request in wanted:
                        if not any(fnmatch.fnmatchcase(request, p) for p in patterns):
                            problems.append(f"{name}: the ALB does not send {request} to {service} ({patterns})")
                            continue
                        sent = _alb_rewrite(transforms, request)
                        problems += [f"{name}: {request} -> {sent}: {p}" for p in _path_problems(server, sent)]
    assert problems == [], "\n".join(problems)

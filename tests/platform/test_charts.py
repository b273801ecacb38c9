"""What the pinned charts' templates do with our values: features gated by a second flag, annotation
merges, and pins that exist (tests/platform/upstream/ records the templates' facts with their source)."""

from __future__ import annotations

from typing import Any

from chart_cache import chart_dir, crd_schemas, default_values_with_subcharts
from platform_render import RenderedApp, _merge
from upstream import at, facts, holds


def _values(app: RenderedApp, chart: str) -> dict[str, Any]:
    """Our values over the chart's defaults and its packaged subcharts' (as Helm coalesces them)."""
    source, ours = app.charts[chart]
    return _merge(default_values_with_subcharts(chart, source["targetRevision"]), ours)


def _is_enabling(key: str) -> bool:
    """A values key that switches a chart feature on, by the charts' naming conventions: `enabled`,
    `create` (serviceAccount.create), `enable*`/`*Enabled` (Linkerd's enablePodDisruptionBudget,
    cniEnabled), `install*` (installCRDs) and `create*` (createIngressClassResource)."""
    return key in ("enabled", "create") or key.startswith(("enable", "install", "create")) or key.endswith("Enabled")


def _enabled_keys(values: Any, prefix: str = "") -> list[str]:
    """Every enabling key (`_is_enabling`) set to true in our values (dotted paths)."""
    found = []
    if isinstance(values, dict):
        for key, value in values.items():
            path = f"{prefix}{key}"
            if _is_enabling(str(key)) and value is True:
                found.append(path)
            found += _enabled_keys(value, f"{path}.")
    return found


def _installed_apis(apps: dict[str, RenderedApp]) -> set[str]:
    return {
        api_version
        for app in apps.values()
        for chart, (source, _) in app.charts.items()
        for api_version, _kind in crd_schemas(chart, source["targetRevision"])
    }


def _gate_holds(values: dict[str, Any], condition: str, apis: set[str]) -> bool:
    if condition.startswith("api:"):
        return condition.removeprefix("api:") in apis
    path, eq, expected = condition.partition("=")
    if eq:
        return str(at(values, path)) == expected
    return holds(values, [condition])


def test_every_pinned_chart_version_exists(apps: dict[str, RenderedApp]) -> None:
    """Each chart an Application pulls is in the chart cache at the pinned version: a version that the
    chart repository does not publish would leave Argo CD with a ComparisonError."""
    for app in apps.values():
        for chart, (source, _) in app.charts.items():
            assert (chart_dir(chart, source["targetRevision"]) / "values.yaml").is_file()


def test_features_we_enable_are_not_gated_off(apps: dict[str, RenderedApp]) -> None:
    """Every enabling key we set in a chart renders: the chart is recorded in chart-gates.yaml and the
    key's other gates in its template hold (flyte-core's propeller ServiceMonitor also needs
    flytepropeller.service.enabled)."""
    gates = facts("chart-gates")["charts"]
    apis = _installed_apis(apps)
    problems = []
    for name, app in apps.items():
        for chart, (source, ours) in app.charts.items():
            if chart not in gates:
                keys = _enabled_keys(ours)
                if keys:
                    problems.append(f"{name}: {chart} sets {keys}; record their gates in chart-gates.yaml")
                continue
            assert gates[chart]["version"] == source["targetRevision"], (
                f"chart-gates.yaml records {chart} {gates[chart]['version']}; the stack pins "
                f"{source['targetRevision']}: read the new templates"
            )
            values = _values(app, chart)
            for key in _enabled_keys(ours):
                gate = gates[chart]["gates"].get(key)
                if gate is None:
                    problems.append(f"{name}: {chart} {key} is not recorded in chart-gates.yaml")
                    continue
                off = [c for c in gate["requires"] if not _gate_holds(values, c, apis)]
                if off:
                    problems.append(f"{name}: {chart} {key} has no effect unless {off} ({gate['template']})")
    assert problems == [], "\n".join(problems)


def _sprig_merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Sprig's `merge $dst $src` (mergo without override): keys of dst win, src only fills gaps."""
    merged = dict(dst)
    for key, value in src.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = _sprig_merge(merged[key], value)
    return merged


def test_grpc_ingress_keeps_its_own_annotations(apps: dict[str, RenderedApp]) -> None:
    """flyte-core v1.16.8 templates/common/ingress.yaml builds the gRPC Ingress's annotations as
    `merge (deepCopy .common.ingress.annotations) .common.ingress.separateGrpcIngressAnnotations`, so
    a key in both keeps the shared value: every gRPC-only annotation must survive that merge."""
    ingress = _values(apps["flyte"], "flyte-core")["common"]["ingress"]
    grpc_only = ingress.get("separateGrpcIngressAnnotations") or {}
    effective = _sprig_merge(dict(ingress.get("annotations") or {}), grpc_only)
    overridden = {k: (effective[k], v) for k, v in grpc_only.items() if effective[k] != v}
    assert overridden == {}, "shared Ingress annotations override the gRPC Ingress's (effective, intended)"
    # What the gRPC target group's probe gets back: grpc.health.v1 Check answers OK (0) when serving;
    # any path that is not a `/<service>/<method>` name is answered UNIMPLEMENTED (12) by grpc-go
    # (server.go handleStream, "malformed method name"), the code ALB's default gRPC check expects.
    path = effective.get("alb.ingress.kubernetes.io/healthcheck-path", "/AWS.ALB/healthcheck")
    answer = "0" if path == "/grpc.health.v1.Health/Check" else "12" if path.count("/") < 2 else None
    assert answer is not None, f"gRPC health check path {path} names a method flyteadmin may not serve"
    assert answer in effective.get("alb.ingress.kubernetes.io/success-codes", "12").split(",")


def test_sprig_merge_keeps_the_destination() -> None:
    assert _sprig_merge({"a": "1", "m": {"x": 1}}, {"a": "2", "b": "3", "m": {"x": 2, "y": 3}}) == {
        "a": "1",
        "b": "3",
        "m": {"x": 1, "y": 3},
    }


def _flyte_loaded(raw: Any, *, in_list: bool = False) -> Any:
    """A config file as flytestdlib's viper loader hands it to the code (flyte-config-loader.yaml)."""
    loader = facts("flyte-config-loader")["loader"]
    if isinstance(raw, list):
        return [_flyte_loaded(v, in_list=True) for v in raw]
    if not isinstance(raw, dict):
        return raw
    out = {}
    for key, value in raw.items():
        keep = (in_list and loader["keeps_case_inside_lists"]) or ("." in str(key) and loader["keeps_dotted_keys"])
        name = key if keep or not loader["lowercases_map_keys"] else str(key).lower()
        out[name] = _flyte_loaded(value, in_list=in_list)
    return out


def test_flyte_config_map_keys_survive_the_loader(apps: dict[str, RenderedApp]) -> None:
    """Each Go map we set in Flyte's config keeps the keys the code looks up after the loader
    lowercases them: a `timeouts: {CreateTask: 30s}` becomes `createtask` and is never used."""
    maps = facts("flyte-config-loader")["maps"]
    problems = []
    values = _values(apps["flyte"], "flyte-core")
    files = {f"configmap.{f}": doc for f, doc in values["configmap"].items()}
    files["cluster_resource_manager.config"] = values["cluster_resource_manager"]["config"]
    for file, doc in files.items():
        if not isinstance(doc, dict):
            continue
        loaded = _flyte_loaded(doc)
        for path, entry in maps.items():
            raw = at(doc, path)
            if not isinstance(raw, dict):
                continue
            kept = at(loaded, path.lower()) or {}
            lost = sorted(set(raw) - set(kept))
            if lost:
                problems.append(f"{file}: {path} keys {lost} reach the code as {sorted(kept)}")
            unused = sorted(set(kept) - set(entry.get("lookups", kept)))
            if unused:
                problems.append(f"{file}: {path} keys {unused} are never looked up ({entry['lookup']})")
    assert problems == [], "\n".join(problems)


def test_flyte_loader_lowercases_map_keys_but_not_in_lists_or_dotted() -> None:
    assert _flyte_loaded({"Timeouts": {"CreateTask": "30s"}, "L": [{"Keep": 1}], "nvidia.com/GPU": 1}) == {
        "timeouts": {"createtask": "30s"},
        "l": [{"Keep": 1}],
        "nvidia.com/GPU": 1,
    }


def _port_names(values: dict[str, Any], names: list[str]) -> set[str]:
    return {str(at(values, n.removeprefix("values:"))) if n.startswith("values:") else n for n in names}


def test_chart_service_monitors_name_a_port_that_exists(apps: dict[str, RenderedApp]) -> None:
    """Each ServiceMonitor a chart renders for us names, in `port`, a port of its Service, or in
    `targetPort` a container port of the Service's pods (service-monitors.yaml): otherwise Prometheus
    finds no target and the dashboards stay empty (mlflow's default targetPort `http` is the Service's
    port name; the container's is `mlflow`)."""
    monitors = facts("service-monitors")["charts"]
    problems = []
    for name, app in apps.items():
        for chart, (source, ours) in app.charts.items():
            keys = [k for k in _enabled_keys(ours) if k.endswith("serviceMonitor.enabled")]
            if not keys:
                continue
            if chart not in monitors or monitors[chart]["version"] != source["targetRevision"]:
                problems.append(f"{name}: record {chart} {source['targetRevision']} in service-monitors.yaml")
                continue
            values = _values(app, chart)
            for key in keys:
                monitor = monitors[chart]["monitors"].get(key)
                if monitor is None:
                    problems.append(f"{name}: {chart} {key} is not recorded in service-monitors.yaml")
                    continue
                if "endpoints_from" in monitor:
                    endpoints = at(values, monitor["endpoints_from"]) or []
                    ports = at(values, monitor["service_ports_from"]) or {}
                    service_ports = {k for k, p in ports.items() if p.get("enabled")}
                else:
                    endpoints = [e for e in monitor["endpoints"] if holds(values, [e["when"]] if "when" in e else [])]
                    service_ports = _port_names(values, monitor["service_ports"])
                container_ports = _port_names(values, monitor.get("container_ports", []))
                if not endpoints:
                    problems.append(f"{name}: {chart} {key} renders a ServiceMonitor without endpoints")
                for endpoint in endpoints:
                    for field, existing, side in (
                        ("port", service_ports, "the Service's ports"),
                        ("targetPort", container_ports, "the pods' container ports"),
                    ):
                        named = _port_names(values, [endpoint[field]]) if field in endpoint else set()
                        if named - existing:
                            problems.append(
                                f"{name}: {chart} {key}: endpoint {field} {sorted(named)} is not one of "
                                f"{side} {sorted(existing)}"
                            )
    assert problems == [], "\n".join(problems)

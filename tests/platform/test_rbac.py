"""RBAC of the platform's controllers: each rule is something the component does through the
Kubernetes API at the pinned version (tests/platform/upstream/flyte-rbac.yaml, read from its source),
nothing is granted by wildcard, and no Secret is readable cluster-wide (the RDS master user's
credentials sit in `flyte-db-admin` and `mlflow-db-admin`)."""

from __future__ import annotations

from typing import Any

import yaml
from chart_cache import default_values
from platform_render import RenderedApp, _merge
from upstream import at, facts

READ = {"get", "list", "watch"}


def _flyte(apps: dict[str, RenderedApp]) -> tuple[dict[str, Any], RenderedApp]:
    app = next(a for a in apps.values() if "flyte-core" in a.charts)
    source, ours = app.charts["flyte-core"]
    assert source["targetRevision"] == facts("flyte-rbac")["version"], "flyte-rbac.yaml is for another flyte-core"
    return _merge(default_values("flyte-core", source["targetRevision"]), ours), app


def _granted(apps: dict[str, RenderedApp]) -> dict[str, list[dict[str, Any]]]:
    """Service account -> the cluster-wide rules it is given, as the chart renders them from our values
    (flyte-rbac.yaml `chart`), plus our own ClusterRoles bound to it."""
    values, app = _flyte(apps)
    chart = facts("flyte-rbac")["chart"]
    granted: dict[str, list[dict[str, Any]]] = {}
    for account in ("flytepropeller", "flyte-pod-webhook"):
        assert at(values, chart[account]["scope"]) == "cluster"
        granted[account] = list(at(values, chart[account]["rules"]))
    if at(values, chart["flyteadmin"]["switch"]):
        rule = at(values, "flyteadmin.serviceAccount.rbacRules")
        granted["flyteadmin"] = [rule]
    roles = {d["metadata"]["name"]: d for d in app.manifests if d["kind"] == "ClusterRole"}
    for binding in (d for d in app.manifests if d["kind"] == "ClusterRoleBinding"):
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount" and subject["namespace"] == "flyte":
                granted.setdefault(subject["name"], []).extend(roles[binding["roleRef"]["name"]]["rules"])
    return granted


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {
        (group, resource, verb, tuple(rule.get("resourceNames", [])))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_flyte_components_get_exactly_what_they_use(apps: dict[str, RenderedApp]) -> None:
    needs = facts("flyte-rbac")["needs"]
    granted = _granted(apps)
    assert set(granted) == set(needs)
    for account, rules in granted.items():
        wanted = [
            {
                "apiGroups": [n["group"]],
                "resources": [n["resource"]],
                "verbs": n["verbs"],
                **({"resourceNames": n["resourceNames"]} if "resourceNames" in n else {}),
            }
            for n in needs[account]
        ]
        assert _grants(rules) == _grants(wanted), account


def test_no_flyte_component_reads_secrets_cluster_wide_or_by_wildcard(apps: dict[str, RenderedApp]) -> None:
    for account, rules in _granted(apps).items():
        for group, resource, verb, names in _grants(rules):
            assert "*" not in (group, resource, verb), f"{account}: {group}/{resource} {verb}"
            if resource == "secrets" and verb in READ:
                assert names, f"{account} may {verb} every Secret"


def test_the_plugins_propeller_runs_are_granted(apps: dict[str, RenderedApp]) -> None:
    values, _ = _flyte(apps)
    enabled = at(values, "configmap.enabled_plugins.tasks.task-plugins.enabled-plugins")
    granted = _grants(_granted(apps)["flytepropeller"])
    for need in facts("flyte-rbac")["needs"]["flytepropeller"]:
        if set(need.get("plugins", [])) & set(enabled):
            assert {(need["group"], need["resource"], v, ()) for v in need["verbs"]} <= granted, need


def test_flyteadmin_may_create_what_its_cluster_resource_templates_hold(apps: dict[str, RenderedApp]) -> None:
    values, _ = _flyte(apps)
    assert at(values, "cluster_resource_manager.service_account_name") == "flyteadmin"
    kinds = {
        yaml.safe_load(t["value"].replace("{{", "").replace("}}", ""))["kind"]
        for t in at(values, "cluster_resource_manager.templates")
    }
    by_kind = {n["kind"]: n for n in facts("flyte-rbac")["needs"]["flyteadmin"] if "kind" in n}
    assert kinds <= set(by_kind), f"no recorded rule for {sorted(kinds - set(by_kind))}"
    granted = _grants(_granted(apps)["flyteadmin"])
    for kind in kinds:
        need = by_kind[kind]
        assert {(need["group"], need["resource"], v, ()) for v in ("create", "get", "patch")} <= granted, kind


def test_every_init_container_that_calls_the_kubernetes_api_has_its_calls_granted() -> None:
    """An init container that talks to the API server (init-containers.yaml `connects: [kube-api]`)
    runs as its workload's service account: the calls it makes are recorded among that account's
    needs (flyte-rbac.yaml `init_containers`), so a narrowed role cannot leave the pod stuck in Init."""
    needs = facts("flyte-rbac")["needs"]
    for workload in facts("init-containers")["charts"]["flyte-core"]["workloads"]:
        for init in workload.get("init_containers", []):
            if "kube-api" not in init.get("connects", []):
                continue
            account = needs.get(workload["name"], [])
            assert any(init["name"] in n.get("init_containers", []) for n in account), (
                f"{workload['name']}'s init container {init['name']} calls the Kubernetes API, but no need of "
                f"service account {workload['name']} in flyte-rbac.yaml names it"
            )

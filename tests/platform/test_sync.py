"""Argo CD's sync order inside an Application: phases (PreSync, Sync, PostSync), then waves. Argo CD
applies one wave and waits for it to be healthy before the next (Argo CD docs, "Sync Phases and
Waves"), so whatever an object needs must come from an earlier phase or wave."""

from __future__ import annotations

import re
from typing import Any

from chart_cache import crd_schemas, default_values, default_values_with_subcharts
from platform_render import REPO_ROOT, RenderedApp, _merge, application_sets
from upstream import at, facts, holds

PHASES = {"PreSync": 0, "Sync": 1, "PostSync": 2}
WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"


def _order(doc: dict[str, Any]) -> tuple[int, int]:
    """(phase, wave) of an object: a non-hook object syncs in Sync; the default wave is 0."""
    annotations = doc.get("metadata", {}).get("annotations", {})
    return PHASES[annotations.get(HOOK, "Sync")], int(annotations.get(WAVE, "0"))


def _secret_producers(app: RenderedApp) -> dict[str, dict[str, Any]]:
    """Secret name -> the ExternalSecret of this Application that writes it."""
    return {
        d["spec"].get("target", {}).get("name", d["metadata"]["name"]): d
        for d in app.manifests
        if d["kind"] == "ExternalSecret"
    }


def _secrets_used(pod_spec: dict[str, Any]) -> set[str]:
    names = {v["secret"]["secretName"] for v in pod_spec.get("volumes", []) if "secret" in v}
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
    return names


def test_nothing_waits_for_a_later_wave_or_hook(apps: dict[str, RenderedApp]) -> None:
    problems = []
    for name, app in apps.items():
        by_ref = {f"{d['kind']}/{d['metadata']['name']}": d for d in app.manifests}
        # A chart's objects carry no sync annotations of ours (mlflow 1.11.2 and flyte-core v1.16.8
        # set none on their workloads): Sync phase, wave 0.
        for need in facts("needs").get(name, []):
            if need["chart"] not in app.charts:
                continue
            assert app.charts[need["chart"]][0]["targetRevision"] == need["version"], f"re-read {need['source']}"
            for ref in need["needs"]:
                producer = by_ref.get(ref)
                assert producer is not None, f"{name}: {need['chart']} needs {ref}, which it does not deploy"
                if not _order(producer) < (PHASES["Sync"], 0):
                    problems.append(f"{name}: {need['chart']} {need['consumer']} waits for {ref} at {_order(producer)}")
        producers = _secret_producers(app)
        for doc in app.manifests:
            pod = doc.get("spec", {}).get("template", {}).get("spec")
            if pod is None:
                continue
            for secret in _secrets_used(pod) & set(producers):
                producer = producers[secret]
                # A Secret volume or reference makes the kubelet wait, so the same wave is enough
                # for a Deployment; a hook Job must find it already there.
                hook = HOOK in doc["metadata"].get("annotations", {})
                late = _order(producer) >= _order(doc) if hook else _order(producer) > _order(doc)
                if late:
                    problems.append(
                        f"{name}: {doc['kind']}/{doc['metadata']['name']} at {_order(doc)} needs Secret "
                        f"{secret} from ExternalSecret {producer['metadata']['name']} at {_order(producer)}"
                    )
    assert problems == []


def test_order_of_phases_and_waves() -> None:
    hook = {"metadata": {"annotations": {HOOK: "PreSync", WAVE: "5"}}}
    assert _order(hook) < _order({"metadata": {"annotations": {WAVE: "-5"}}}) < _order({})


def _shipped_kinds(app: RenderedApp) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every CRD this Application installs (its charts' and remote sources')."""
    kinds: set[tuple[str, str]] = set()
    for chart, (source, ours) in app.charts.items():
        kinds |= set(crd_schemas(chart, source["targetRevision"]))
        # Templated CRDs with no plain upstream copy are not in the cache; their kinds are recorded.
        recorded = facts("templated-crds").get(chart, {}).get(source["targetRevision"], {}).get("kinds", [])
        values = _merge(default_values(chart, source["targetRevision"]), ours)
        kinds |= {(k["apiVersion"], k["kind"]) for k in recorded if holds(values, k.get("when", []))}
    for remote in app.remote_sources:
        kinds |= set(crd_schemas(_remote_name(remote), remote["targetRevision"]))
    for doc in app.manifests:
        if doc["kind"] == "CustomResourceDefinition":
            spec = doc["spec"]
            kinds |= {(f"{spec['group']}/{v['name']}", spec["names"]["kind"]) for v in spec["versions"]}
    return kinds


def _remote_name(source: dict[str, Any]) -> str:
    return source["repoURL"].rstrip("/").removesuffix(".git").rsplit("/", 1)[1]


def test_custom_resources_of_another_add_on_skip_the_dry_run(apps: dict[str, RenderedApp]) -> None:
    """Argo CD dry-runs every object before applying any; a custom resource whose CRD another
    Application installs fails that dry run until the CRD exists, unless the Application (or the
    object) carries SkipDryRunOnMissingResource=true (Argo CD docs, "Sync Options")."""
    problems = []
    for name, app in apps.items():
        options = app.app["spec"].get("syncPolicy", {}).get("syncOptions", [])
        if "SkipDryRunOnMissingResource=true" in options:
            continue
        own = _shipped_kinds(app)
        recorded = facts("chart-custom-resources")["charts"]
        for chart, (source, ours) in app.charts.items():
            if chart not in recorded:
                continue
            assert recorded[chart]["version"] == source["targetRevision"], f"re-read {recorded[chart]['source']}"
            values = _merge(default_values(chart, source["targetRevision"]), ours)
            for resource in recorded[chart]["renders"]:
                key = (resource["apiVersion"], resource["kind"])
                if holds(values, resource["when"]) and key not in own:
                    problems.append(f"{name}: chart {chart} renders a {resource['kind']} of another add-on's CRD")
        for doc in app.manifests:
            key = (doc["apiVersion"], doc["kind"])
            if "/" not in doc["apiVersion"] or key in own or doc["apiVersion"].endswith(".k8s.io/v1"):
                continue
            if _is_custom(doc["apiVersion"]):
                annotations = doc["metadata"].get("annotations", {})
                if "SkipDryRunOnMissingResource=true" not in annotations.get("argocd.argoproj.io/sync-options", ""):
                    problems.append(f"{name}: {doc['kind']}/{doc['metadata']['name']} needs another add-on's CRD")
    assert problems == []


def _is_custom(api_version: str) -> bool:
    group = api_version.split("/", maxsplit=1)[0]
    return "." in group and not group.endswith(".k8s.io") and group not in {"apps", "batch", "policy"}


def test_add_ons_that_install_crds_preserve_their_resources(apps: dict[str, RenderedApp]) -> None:
    """Switching an add-on off deletes its Applications; without preserveResourcesOnDeletion Argo CD
    deletes what they created, CRDs included, and with a CRD every object of its kind (every
    TargetGroupBinding, ExternalSecret, ScaledObject...). Argo CD docs, "ApplicationSet: Application
    Pruning & Resource Deletion"."""
    owners = {app.app["metadata"]["name"] for app in apps.values() if _shipped_kinds(app)}
    problems = []
    for appset in application_sets():
        generated = {a for a in owners if _generated_by(appset, apps[a])}
        # One whose Applications make an ALB must let them go (the next test says why): its custom
        # resources go with it, a choice its ApplicationSet states.
        if any(_makes_an_ingress(app) for app in apps.values() if _generated_by(appset, app)):
            continue
        if generated and not appset["spec"].get("syncPolicy", {}).get("preserveResourcesOnDeletion"):
            problems.append(f"ApplicationSet {appset['metadata']['name']} ({sorted(generated)}) installs CRDs")
    assert problems == []


def test_flyte_is_known_to_own_its_templated_crd(apps: dict[str, RenderedApp]) -> None:
    """flyte-core's FlyteWorkflow CRD is a Helm template absent from the chart cache; the recorded fact
    (upstream/templated-crds.yaml) makes the Flyte Application its owner all the same."""
    flyte = next(app for app in apps.values() if "flyte-core" in app.charts)
    assert ("flyte.lyft.com/v1alpha1", "FlyteWorkflow") in _shipped_kinds(flyte)


def _makes_an_ingress(app: RenderedApp) -> bool:
    """The Application renders an Ingress: ours, or a chart's behind its enabling value (endpoints.yaml
    `ingresses`, read from each chart's ingress template)."""
    if any(doc["kind"] == "Ingress" for doc in app.manifests):
        return True
    for chart, (source, ours) in app.charts.items():
        entry = facts("endpoints")["ingresses"].get(chart)
        values = _merge(default_values_with_subcharts(chart, source["targetRevision"]), ours)
        if entry is not None and at(values, entry["enabled"]):
            return True
    return False


def test_add_ons_with_an_ingress_delete_it_and_the_readme_names_them(apps: dict[str, RenderedApp]) -> None:
    """An ApplicationSet whose Applications make an Ingress (so an ALB, which keeps ENIs in the VPC's
    subnets) must not preserve its resources: deleting the Application deletes the Ingress and the
    load-balancer controller its ALB before `pulumi destroy` reaches the VPC. platform/README.md names
    exactly those ApplicationSets."""
    with_ingress = {
        appset["metadata"]["name"]
        for appset in application_sets()
        if any(_generated_by(appset, app) and _makes_an_ingress(app) for app in apps.values())
    }
    assert with_ingress, "no ApplicationSet makes an Ingress"
    preserving = [
        a["metadata"]["name"]
        for a in application_sets()
        if a["metadata"]["name"] in with_ingress and a["spec"].get("syncPolicy", {}).get("preserveResourcesOnDeletion")
    ]
    assert preserving == []
    readme = " ".join((REPO_ROOT / "platform" / "README.md").read_text().split())
    said = re.search(r"not those whose Ingress makes an ALB \(((?:`[^`]+`(?:, | and )?)+)\)", readme)
    assert said, "platform/README.md does not say which ApplicationSets make an ALB"
    assert set(re.findall(r"`([^`]+)`", said.group(1))) == with_ingress, said.group(0)


def _generated_by(appset: dict[str, Any], app: RenderedApp) -> bool:
    template = appset["spec"]["template"]["metadata"]["name"]
    fixed = template.split("{{")[0]
    name = app.app["metadata"]["name"]
    return name == template or ("{{" in template and bool(fixed) and name.startswith(fixed))

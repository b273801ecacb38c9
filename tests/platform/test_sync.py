"""Argo CD's sync order inside an Application: phases (PreSync, Sync, PostSync), then waves. Argo CD
applies one wave and waits for it to be healthy before the next (Argo CD docs, "Sync Phases and
Waves"), so whatever an object needs must come from an earlier phase or wave."""

from __future__ import annotations

from typing import Any

from platform_render import RenderedApp
from upstream import facts

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

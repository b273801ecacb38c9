"""Volumes platform/'s add-ons claim: priced by the estimate from the files the ApplicationSets really
pick, and never left behind by a dev teardown (`pulumi destroy --stack dev` removes everything: README)."""

from __future__ import annotations

from typing import Any

from platform_render import PLATFORM, RenderedApp

from cdao_cost import volumes

# Argo CD deletes an Application's resources before the Application only with this finalizer
# (https://argo-cd.readthedocs.io/en/stable/user-guide/app_deletion/); the ApplicationSet controller
# adds it to a generated Application only when the template sets no finalizer and the
# ApplicationSet's preserveResourcesOnDeletion is false (argoproj/argo-cd
# applicationset/utils/utils.go, RenderTemplateParams, read at 013f9ddc).
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"


def _spec(values: Any, path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        values = (values or {}).get(key) if isinstance(values, dict) else None
    return values or {}


def _app_named(apps: dict[str, RenderedApp], claim: volumes.Claim) -> RenderedApp:
    (app,) = [
        a for a in apps.values() if any(f.parent == PLATFORM / "addons" / claim.values_dir for f in a.value_files)
    ]
    return app


def test_the_estimate_reads_the_values_files_the_application_set_picks(stack: str, apps, secret):
    profile = secret["metadata"]["labels"]["profile"]
    for claim in volumes.CLAIMS:
        app = _app_named(apps, claim)
        assert volumes.values_files(claim, profile) == app.value_files


def test_every_volume_claim_in_platform_values_is_one_the_estimate_prices():
    """A StatefulSet's volumeClaimTemplate (or a chart's `persistence`) anywhere in platform/'s values
    must be in cdao_cost.volumes.CLAIMS, or the estimate misses a billed EBS volume."""
    found = set()
    for path in PLATFORM.glob("addons/**/values*.yaml"):
        text = path.read_text()
        if "volumeClaimTemplate" in text or "persistence:" in text:
            found.add(str(path.parent.relative_to(PLATFORM / "addons")))
    assert found <= {c.values_dir for c in volumes.CLAIMS}, found


def test_a_dev_teardown_leaves_no_volume_behind(stack: str, apps, secret):
    """Review of issue 13 #4: the EKS cluster goes with `pulumi destroy`, but an EBS volume a PVC made
    stays and is billed unless the PVC is deleted inside the cluster first. On a dev-profile cluster
    every claim of an enabled add-on is therefore either absent, or deleted with its StatefulSet
    (persistentVolumeClaimRetentionPolicy.whenDeleted: Delete, kubernetes.io StatefulSet docs,
    "PersistentVolumeClaim retention") by an Application that cascades (RESOURCES_FINALIZER)."""
    labels = secret["metadata"]["labels"]
    if labels["profile"] != "dev":
        return
    for claim in volumes.CLAIMS:
        if labels.get(f"enable_{claim.addon}") != "true":
            continue
        app = _app_named(apps, claim)
        values = next(iter(app.charts.values()))[1]
        spec = _spec(values, claim.spec)
        if not (spec.get(claim.storage_key) or {}).get("volumeClaimTemplate"):
            continue
        assert spec.get("persistentVolumeClaimRetentionPolicy", {}).get("whenDeleted") == "Delete", claim.workload
        assert RESOURCES_FINALIZER in app.app["metadata"].get("finalizers", []), claim.workload

"""Static checks of platform/: yamllint, strict Kubernetes schemas, JSON schemas of the Argo CD and
custom resources, pinned charts and images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from platform_checks import all_manifests, validate
from platform_render import (
    PLATFORM,
    REPO_ROOT,
    TemplateError,
    app_projects,
    application_sets,
    kustomize_build,
    load_yaml_documents,
)
from platform_stack import STACKS
from yamllint import config as yamllint_config
from yamllint import linter

from infra.config import ClusterConfig

# The clusters' Kubernetes version (every stack uses the default; tests/infra checks the stack files).
K8S_VERSION = f"{ClusterConfig().kubernetes_version}.0"
CRD_KINDS = {
    "ExternalSecret",
    "ClusterSecretStore",
    "Password",
    "Certificate",
    "ClusterIssuer",
    "Bundle",
    "PrometheusRule",
    "ServiceMonitor",
    "ScaledObject",
}


def _yaml_files() -> list[Path]:
    return sorted(p for p in PLATFORM.rglob("*") if p.suffix in {".yaml", ".yml"} or p.name == ".yamllint")


def _kustomize_dirs() -> list[Path]:
    return sorted(p.parent for p in (PLATFORM / "addons").rglob("kustomization.yaml"))


def _plain_manifest_files() -> list[Path]:
    """Every manifest file a kustomization lists (not values files, not the kustomizations)."""
    files: set[Path] = set()
    for directory in _kustomize_dirs():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        files |= {(directory / r).resolve() for r in kustomization["resources"] if (directory / r).is_file()}
    return sorted(files)


def test_yamllint_is_clean() -> None:
    conf = yamllint_config.YamlLintConfig(file=str(PLATFORM / ".yamllint"))
    problems = []
    for path in _yaml_files():
        if path.name == ".yamllint":
            continue
        for problem in linter.run(path.read_text(), conf, str(path)):
            problems.append(f"{path.relative_to(REPO_ROOT)}:{problem.line}:{problem.column} {problem.message}")
    assert problems == []


def test_every_yaml_file_is_used() -> None:
    """Nothing under platform/ is dead: each file is an Argo CD object, a kustomization or what one
    lists, or a Helm values file some ApplicationSet names."""
    appset_text = "\n".join(p.read_text() for p in (PLATFORM / "bootstrap" / "appsets").glob("*.yaml"))
    listed = set(_plain_manifest_files()) | {d / "kustomization.yaml" for d in _kustomize_dirs()}
    unused = []
    for path in _yaml_files():
        rel = path.relative_to(PLATFORM)
        if path.name == ".yamllint" or rel.parts[0] == "bootstrap" or path.resolve() in listed:
            continue
        match = re.fullmatch(r"values(-(?P<stack>[a-z]+))?\.yaml", path.name)
        folder = str(rel.parent)
        named = match is not None and f"/addons/{folder.removeprefix('addons/')}/values" in appset_text
        if named and match.group("stack") in (None, *STACKS):
            continue
        unused.append(str(rel))
    assert unused == []


@pytest.mark.parametrize("path", _plain_manifest_files(), ids=lambda p: str(p.relative_to(PLATFORM)))
def test_plain_manifests_pass_strict_kubernetes_validation(path: Path) -> None:
    for doc in load_yaml_documents(path):
        if doc["kind"] in CRD_KINDS:
            continue  # validated after rendering (test_rendered_custom_resources), when complete
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_no_unknown_custom_resource_kinds() -> None:
    docs = [doc for path in _plain_manifest_files() for doc in load_yaml_documents(path)]
    unknown = {f"{d['apiVersion']} {d['kind']}" for d in docs if d["kind"] not in CRD_KINDS and not _is_builtin(d)}
    assert unknown == set(), "pin the chart that ships its CRD (its schema comes from the chart cache)"


def _is_builtin(doc: dict[str, Any]) -> bool:
    probe = {"apiVersion": doc["apiVersion"], "kind": doc["kind"], "metadata": {"name": "probe"}}
    try:
        kubernetes_validate.validate(probe, K8S_VERSION, strict=False)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError:
        return True
    return True


@pytest.mark.parametrize("stack", STACKS)
def test_rendered_manifests_pass_strict_validation(stack: str) -> None:
    """What Argo CD applies from this repository, after the cluster Secret's values are patched in."""
    for doc in all_manifests(stack):
        if doc["kind"] in CRD_KINDS:
            validate(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_crd_schemas_reject_what_they_should() -> None:
    """The CRD schemas are not vacuous: a misspelt ExternalSecret field and a missing store fail."""
    doc = load_yaml_documents(PLATFORM / "addons" / "flyte" / "manifests" / "database-secret.yaml")[0]
    misspelt = {**doc, "spec": {**doc["spec"], "refreshIntervall": "1h"}}
    with pytest.raises(Exception, match="Additional properties"):
        validate(misspelt)
    store = load_yaml_documents(PLATFORM / "addons" / "external-secrets" / "store" / "cluster-secret-store.yaml")[0]
    del store["spec"]["provider"]
    with pytest.raises(Exception, match="'provider' is a required property"):
        validate(store)


def test_argo_cd_objects_match_schema() -> None:
    for project in app_projects():
        validate(project)
    for appset in application_sets():
        validate(appset)


def test_argo_cd_schema_rejects_a_misspelt_field() -> None:
    appset = application_sets()[0]
    appset["spec"]["goTemplateOption"] = ["missingkey=error"]
    with pytest.raises(Exception, match="Additional properties"):
        validate(appset)


def test_bootstrap_holds_only_what_the_root_application_may_create() -> None:
    """infra/'s root Application (project cdao-bootstrap) may only create AppProjects and
    ApplicationSets in Argo CD's namespace."""
    for path in (PLATFORM / "bootstrap").rglob("*"):
        if path.is_file():
            assert path.suffix == ".yaml", path
            for doc in load_yaml_documents(path):
                assert doc["kind"] in {"AppProject", "ApplicationSet"}, path
                assert doc["metadata"]["namespace"] == "argocd", path


def test_no_default_project_and_no_unpinned_chart() -> None:
    for appset in application_sets():
        spec = appset["spec"]["template"]["spec"]
        assert spec["project"] != "default"
        for src in spec.get("sources", [spec.get("source")]):
            if "chart" in src:
                pinned = r"'?\{\{ index \.metadata\.annotations \"cdao\.io/chart-version-[a-z0-9-]+\" \}\}'?"
                name = appset["metadata"]["name"]
                assert re.fullmatch(pinned, src["targetRevision"]), f"{name}: {src['chart']} needs its pin"


def _images(obj: Any) -> list[str]:
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "image" and isinstance(value, str):
                found.append(value)
            elif key == "image" and isinstance(value, dict) and "tag" in value:
                found.append(f"{value.get('repository', '')}:{value['tag']}")
            else:
                found += _images(value)
    elif isinstance(obj, list):
        for value in obj:
            found += _images(value)
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_no_latest_or_untagged_image(stack: str) -> None:
    images = _images(all_manifests(stack))
    for path in (PLATFORM / "addons").rglob("values*.yaml"):
        images += _images(yaml.safe_load(path.read_text()))
    for image in images:
        name = image.split("@")[0]
        tag = name.rsplit(":", 1)[1] if ":" in name.split("/")[-1] else ""
        assert tag and tag != "latest", f"{image}: pin a tag"


def test_kustomize_subset_rejects_unknown_fields(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(TemplateError, match="outside the supported subset"):
        kustomize_build(tmp_path)

"""Each ApplicationSet rendered with a stack's mocked cluster Secret gives valid Applications that
Argo CD could sync: schema-valid, fully rendered, inside their AppProject, in a sensible order."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from platform_checks import rendered, validate
from platform_render import (
    CLUSTER_SCOPED,
    REPO_ROOT,
    GoTemplate,
    RenderedApp,
    TemplateError,
    app_projects,
    application_sets,
    render_application_set,
    sources,
    walk_strings,
)
from platform_stack import STACKS, cluster_secret, stack_config

from infra.contract import ADDONS

APPSETS = {a["metadata"]["name"]: a for a in application_sets()}
PROJECTS = {p["metadata"]["name"]: p for p in app_projects()}


def _wave(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])


def test_every_stack_renders_every_enabled_add_on(stack: str, apps: dict[str, RenderedApp]) -> None:
    config = stack_config(stack)
    enabled = {name for name in ADDONS if getattr(config.addons, name)}
    assert {a.app["metadata"]["labels"]["cdao.io/addon"] for a in apps.values()} == enabled


def test_rendered_applications_match_schema_and_are_fully_rendered(apps: dict[str, RenderedApp]) -> None:
    for name, rendered_app in apps.items():
        validate(rendered_app.app)
        leftovers = [s for s in walk_strings(rendered_app.app) if "{{" in s or "}}" in s]
        assert leftovers == [], f"{name}: unrendered template text"


def test_disabled_add_ons_generate_nothing(stack: str) -> None:
    engine = GoTemplate(strict_index=True)
    for addon in ADDONS:
        secret = cluster_secret(stack)
        secret["metadata"]["labels"][f"enable_{addon}"] = "false"
        generated = [
            app
            for appset in APPSETS.values()
            for app in render_application_set(appset, secret, engine)
            if app["metadata"]["labels"]["cdao.io/addon"] == addon
        ]
        assert generated == [], addon


@pytest.mark.parametrize("appset_name", sorted(APPSETS))
def test_a_missing_annotation_fails_the_render(appset_name: str) -> None:
    """Every annotation a template reads is really needed: without it the (strict) render fails.

    Argo CD's own `index` would render "" instead (missingkey=error does not cover `index`), which is
    why test_contract_consistency proves infra/ writes every key these templates read."""
    # A stack that enables the add-on (inference is off in dev, which has no MIG pool).
    stack = next(s for s in STACKS if render_application_set(APPSETS[appset_name], cluster_secret(s), GoTemplate(True)))
    secret = cluster_secret(stack)
    text = yaml.safe_dump(APPSETS[appset_name])
    keys = [k for k in secret["metadata"]["annotations"] if f'"{k}"' in text]
    assert keys, f"{appset_name} reads no annotation"
    for key in keys:
        with pytest.raises(TemplateError, match="no key"):
            render_application_set(APPSETS[appset_name], cluster_secret(stack, drop=key), GoTemplate(True))
    faithful = render_application_set(APPSETS[appset_name], cluster_secret(stack, drop=keys[0]), GoTemplate())
    assert faithful, "Go's index renders the zero value for a missing key"


def test_missing_field_is_an_error_even_for_go() -> None:
    with pytest.raises(TemplateError, match="missingkey=error"):
        GoTemplate().render("{{ .metadata.labels.environment }}", {"metadata": {"labels": {}}})


def test_range_over_split_list_trims_like_go() -> None:
    """text/template: `{{-` trims the whitespace before an action, `-}}` after; range runs its body
    once per element (https://pkg.go.dev/text/template, "Text and spaces", "Actions")."""
    text = 'value:\n{{- range $c := splitList "," (index .a "k") }}\n  - cidr: "{{ $c }}"\n{{- end }}\nnext'
    out = GoTemplate(strict_index=True).render(text, {"a": {"k": "10.0.0.0/19,10.0.32.0/19"}})
    assert out == 'value:\n  - cidr: "10.0.0.0/19"\n  - cidr: "10.0.32.0/19"\nnext'
    with pytest.raises(TemplateError, match=re.escape("no {{ end }}")):
        GoTemplate().render('{{ range $c := splitList "," .x }}', {"x": "a"})
    with pytest.raises(TemplateError, match="undefined variable"):
        GoTemplate().render("{{ $c }}", {})
    # splitList of an empty string is one empty element: `if` skips it, as an empty string is false.
    guarded = '{{- range $c := splitList "," .x }}{{- if $c }}[{{ $c }}]{{- end }}{{- end }}'
    assert GoTemplate().render(guarded, {"x": ""}) == ""
    assert GoTemplate().render(guarded, {"x": "a,b"}) == "[a][b]"


def test_template_subset_rejects_pipelines() -> None:
    with pytest.raises(TemplateError, match="pipelines"):
        GoTemplate().render("{{ .name | quote }}", {"name": "x"})


def test_applications_stay_inside_their_project(apps: dict[str, RenderedApp], stack: str) -> None:
    repo_url = stack_config(stack).gitops.repo_url
    for name, rendered_app in apps.items():
        spec = rendered_app.app["spec"]
        project = PROJECTS[spec["project"]]["spec"]
        for src in sources(rendered_app.app):
            assert src["repoURL"] in project["sourceRepos"], f"{name}: {src['repoURL']}"
        allowed = {(d["server"], d["namespace"]) for d in project["destinations"]}
        namespaces = {spec["destination"]["namespace"]}
        namespaces |= {m["metadata"]["namespace"] for m in rendered_app.manifests if m["kind"] not in CLUSTER_SCOPED}
        for namespace in namespaces:
            assert any(
                server == spec["destination"]["server"] and _glob(pattern, namespace) for server, pattern in allowed
            ), f"{name}: namespace {namespace} outside project {spec['project']}"
        whitelist = {(g["group"], g["kind"]) for g in project["clusterResourceWhitelist"]}
        for manifest in rendered_app.manifests:
            if manifest["kind"] in CLUSTER_SCOPED:
                group = manifest["apiVersion"].rpartition("/")[0]
                assert (group, manifest["kind"]) in whitelist, f"{name}: {manifest['kind']} not whitelisted"
        assert repo_url in project["sourceRepos"] or all(s["repoURL"] != repo_url for s in sources(rendered_app.app))


def _glob(pattern: str, value: str) -> bool:
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return pattern == value


def test_projects_are_dedicated_and_used() -> None:
    used = {a["spec"]["template"]["spec"]["project"] for a in APPSETS.values()}
    assert "default" not in PROJECTS
    assert used == set(PROJECTS)


def test_charts_run_the_stack_pinned_version(apps: dict[str, RenderedApp], stack: str) -> None:
    pins = stack_config(stack).gitops.chart_versions
    for appset in APPSETS.values():
        template = appset["spec"]["template"]
        for src in template["spec"].get("sources", [template["spec"].get("source")]):
            if "chart" not in src:
                continue
            key = re.search(r"cdao\.io/chart-version-([a-z0-9-]+)", src["targetRevision"])
            assert key, f"{appset['metadata']['name']}: {src['chart']} is not pinned through the cluster Secret"
            app = apps[appset["metadata"]["name"]]
            assert app.charts[src["chart"]][0]["targetRevision"] == pins[key.group(1)]


def test_value_files_exist(apps: dict[str, RenderedApp]) -> None:
    for name, rendered_app in apps.items():
        for src in sources(rendered_app.app):
            files = src.get("helm", {}).get("valueFiles", [])
            if files:
                base = REPO_ROOT / files[0].partition("/")[2]
                assert base.is_file(), f"{name}: base values {base} missing"


def test_per_stack_values_hold_only_differences() -> None:
    for path in (REPO_ROOT / "platform" / "addons").rglob("values-*.yaml"):
        base = yaml.safe_load((path.parent / "values.yaml").read_text())
        override = yaml.safe_load(path.read_text())
        assert _differences_only(base, override), f"{path}: repeats a base value"


def _differences_only(base: Any, override: Any) -> bool:
    if isinstance(base, dict) and isinstance(override, dict):
        return all(k not in base or _differences_only(base[k], v) for k, v in override.items())
    return base != override


def test_sync_waves_order_providers_before_users() -> None:
    """CRDs and operators come before what uses them (the root Application applies the
    ApplicationSets wave by wave); each generated Application carries its ApplicationSet's wave."""
    wave = {name: _wave(a) for name, a in APPSETS.items()}
    before = [
        ("security-baseline", "external-secrets"),  # namespaces, priority classes
        ("external-secrets", "external-secrets-store"),
        ("external-secrets-store", "flyte"),
        ("cert-manager", "trust-manager"),
        ("trust-manager", "linkerd-identity"),
        ("cert-manager", "linkerd-identity"),
        ("linkerd-crds", "linkerd-control-plane"),
        ("linkerd2-cni", "linkerd-control-plane"),
        ("linkerd-identity", "linkerd-control-plane"),
        ("kube-prometheus-stack", "observability-dashboards"),
        ("kube-prometheus-stack", "aws-for-fluent-bit"),
        ("aws-load-balancer-controller", "flyte"),
        ("linkerd-control-plane", "flyte"),
        ("kube-prometheus-stack", "flyte"),
        ("flyte", "connectors"),
        ("keda", "connectors"),
        ("metrics-server", "connectors"),
    ]
    for first, then in before:
        assert wave[first] < wave[then], f"{first} must sync before {then}"
    for project in PROJECTS.values():
        assert _wave(project) < min(wave.values())


def test_sync_policy_is_automated_with_self_heal(apps: dict[str, RenderedApp]) -> None:
    for name, rendered_app in apps.items():
        automated = rendered_app.app["spec"]["syncPolicy"]["automated"]
        assert automated == {"prune": True, "selfHeal": True}, name


def test_objects_argo_cd_must_never_delete_are_protected(apps: dict[str, RenderedApp]) -> None:
    """Pruning a namespace, a StorageClass or a namespace's default service account would take down
    what depends on it."""
    for rendered_app in apps.values():
        for manifest in rendered_app.manifests:
            if manifest["kind"] in {"Namespace", "StorageClass"} or (
                manifest["kind"] == "ServiceAccount" and manifest["metadata"]["name"] == "default"
            ):
                options = manifest["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-options", "")
                assert "Prune=false" in options, manifest["metadata"]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl's built-in kustomize to compare with")
def test_kustomize_subset_matches_real_kustomize(tmp_path: Path) -> None:
    """Where kubectl is installed, the hand-written kustomize gives exactly what kustomize gives."""
    for rendered_app in rendered(STACKS[-1]).values():
        for src in sources(rendered_app.app):
            if "path" not in src or src in rendered_app.remote_sources:
                continue
            options = src.get("kustomize", {})
            overlay = tmp_path / rendered_app.app["metadata"]["name"]
            overlay.mkdir()
            kustomization: dict[str, Any] = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [_relative(REPO_ROOT / src["path"], overlay)],
            }
            for key in ("namespace", "patches"):
                if key in options:
                    kustomization[key] = options[key]
            if "images" in options:
                kustomization["images"] = [_image(i) for i in options["images"]]
            (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            out = subprocess.run(
                ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
                capture_output=True,
                text=True,
                check=True,
            )
            real = sorted(yaml.safe_load_all(out.stdout), key=_identity)
            names = {_identity(m) for m in real}
            mine = sorted((m for m in rendered_app.manifests if _identity(m) in names), key=_identity)
            assert mine == real, rendered_app.app["metadata"]["name"]


def _identity(manifest: dict[str, Any]) -> tuple[str, str]:
    return manifest["kind"], manifest["metadata"]["name"]


def _relative(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)


def _image(spec: str) -> dict[str, str]:
    name, _, new = spec.partition("=")
    new_name, _, tag = new.rpartition(":")
    return {"name": name, "newName": new_name, "newTag": tag}

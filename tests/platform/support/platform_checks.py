"""Shared helpers of the platform tests: custom-resource schemas from the real CRDs, and every stack's
rendered Applications."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
from chart_cache import crd_schemas
from platform_render import GoTemplate, RenderedApp, application_sets, render_application, render_application_set
from platform_stack import STACKS, cluster_secret, stack_config

from infra.config import GitOpsConfig

# Argo CD's own chart, which infra/ installs (its CRDs: Application, ApplicationSet, AppProject).
ARGOCD = ("argo-cd", GitOpsConfig.model_fields["argocd_chart_version"].default)


def _structural(schema: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema, with the API server's rules: `nullable` admits null,
    `x-kubernetes-int-or-string` admits both, and unknown fields are refused (kubectl's strict field
    validation) except under `x-kubernetes-preserve-unknown-fields`."""
    if isinstance(schema, list):
        return [_structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: _structural(v)
        for k, v in schema.items()
        if not k.startswith("x-kubernetes-") and k not in {"nullable", "properties"}
    }
    if "properties" in schema:
        out["properties"] = {k: _structural(v) for k, v in schema["properties"].items()}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if isinstance(schema.get("pattern"), str) and "(?i)" in schema["pattern"]:
        # Go's RE2 takes an inline flag anywhere; Python's re only at the start.
        out["pattern"] = "(?i)" + schema["pattern"].replace("(?i)", "")
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def custom_resource_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema of every CRD that a chart or remote source pinned by any
    stack ships, and Argo CD's, from the chart cache."""
    found = dict(crd_schemas(*ARGOCD))
    for stack in STACKS:
        for app in rendered(stack).values():
            for chart, (source, _) in app.charts.items():
                found.update(crd_schemas(chart, source["targetRevision"]))
            for remote in app.remote_sources:
                found.update(
                    crd_schemas(
                        remote["repoURL"].rstrip("/").removesuffix(".git").rsplit("/", 1)[1], remote["targetRevision"]
                    )
                )
    return {key: _structural(schema) for key, schema in found.items()}


def validate(doc: dict[str, Any]) -> None:
    """Validate a custom resource against its CRD's schema (KeyError when no pinned chart ships it)."""
    error = jsonschema.exceptions.best_match(_validator(doc["apiVersion"], doc["kind"]).iter_errors(doc))
    if error is not None:
        raise error


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = custom_resource_schemas()[(api_version, kind)]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@functools.cache
def rendered(stack: str) -> dict[str, RenderedApp]:
    """Every Application generated for the stack's cluster Secret, by name, with what it deploys."""
    return render_for_secret(cluster_secret(stack), stack_config(stack).gitops.repo_url)


def render_for_secret(secret: dict[str, Any], repo_url: str) -> dict[str, RenderedApp]:
    """Every Application the ApplicationSets generate for one cluster Secret, by name."""
    engine = GoTemplate(strict_index=True)
    apps: dict[str, RenderedApp] = {}
    for appset in application_sets():
        for app in render_application_set(appset, secret, engine):
            name = app["metadata"]["name"]
            if name in apps:
                raise AssertionError(f"two ApplicationSets generate Application {name}")
            apps[name] = render_application(app, repo_url)
    return apps


def all_manifests(stack: str) -> list[dict[str, Any]]:
    return [m for app in rendered(stack).values() for m in app.manifests]

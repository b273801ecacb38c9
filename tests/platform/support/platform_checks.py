"""Shared helpers of the platform tests: JSON schemas, and every stack's rendered Applications."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from platform_render import GoTemplate, RenderedApp, application_sets, render_application, render_application_set
from platform_stack import cluster_secret, stack_config

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@functools.cache
def schema(file: str, definition: str) -> dict[str, Any]:
    document = json.loads((SCHEMAS / file).read_text())
    return {"$schema": document["$schema"], "$defs": document["$defs"], "$ref": f"#/$defs/{definition}"}


def validate(instance: Any, file: str, definition: str) -> None:
    jsonschema.validate(instance, schema(file, definition), cls=jsonschema.Draft202012Validator)


@functools.cache
def rendered(stack: str) -> dict[str, RenderedApp]:
    """Every Application generated for the stack's cluster Secret, by name, with what it deploys."""
    secret = cluster_secret(stack)
    engine = GoTemplate(strict_index=True)
    apps: dict[str, RenderedApp] = {}
    for appset in application_sets():
        for app in render_application_set(appset, secret, engine):
            name = app["metadata"]["name"]
            if name in apps:
                raise AssertionError(f"two ApplicationSets generate Application {name}")
            apps[name] = render_application(app, stack_config(stack).gitops.repo_url)
    return apps


def all_manifests(stack: str) -> list[dict[str, Any]]:
    return [m for app in rendered(stack).values() for m in app.manifests]

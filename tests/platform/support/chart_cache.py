"""The chart cache: every pinned chart's real data, laid out as `helm pull --untar` leaves a chart.

`<cache>/<chart>/<version>/` holds the chart's Chart.yaml, values.yaml, values.schema.json (where
the chart has one), its plain CRDs under `crds/` and `charts/<subchart>/crds/`, and, for charts whose
CRDs are Helm templates, the same CRDs as published upstream under `crds-upstream/` (see
../shared/charts/SOURCES.md and tests/platform/upstream/templated-crds.yaml); files under a chart's
`templates/` are never read as CRDs. The cache is `$CDAO_CHART_CACHE`, else `../shared/charts` beside the
repository. A chart missing from an existing cache fails the test and names the chart and version
(filling the cache pulls every pin, so a missing one is a pin that does not exist upstream); so does
a missing cache under CI (`CI` set). On a laptop without a cache the test is skipped with a pointer to
platform/README.md ("Tests"), which says how to fill it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from platform_render import REPO_ROOT

CACHE = Path(os.environ.get("CDAO_CHART_CACHE") or REPO_ROOT.parent / "shared" / "charts")


class _YamlLoader(yaml.CSafeLoader):
    """SafeLoader that also reads the `=` value tag (`tag:yaml.org,2002:value`) that valid YAML may
    carry, as kube-prometheus-stack 79.12.0's crd-alertmanagerconfigs.yaml does (SOURCES.md)."""


_YamlLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def chart_dir(chart: str, version: str) -> Path:
    """The cached chart folder; fails under CI, skips elsewhere, when it is missing."""
    path = CACHE / chart / version
    if not path.is_dir() or not any(path.iterdir()):
        message = f"chart {chart} {version} is not in the chart cache {CACHE}"
        if os.environ.get("CI") or CACHE.is_dir():
            pytest.fail(message, pytrace=False)
        pytest.skip(f"{message}; fill it as platform/README.md says (Tests)")
    return path


@functools.cache
def default_values(chart: str, version: str) -> dict[str, Any]:
    """The chart's own values.yaml."""
    return yaml.load((chart_dir(chart, version) / "values.yaml").read_text(), Loader=_YamlLoader) or {}  # noqa: S506 (a SafeLoader)


@functools.cache
def default_values_with_subcharts(chart: str, version: str) -> dict[str, Any]:
    """values.yaml with each packaged subchart's values.yaml under its name or alias, as Helm
    coalesces them (the parent's settings win)."""
    root = chart_dir(chart, version)
    meta = yaml.safe_load((root / "Chart.yaml").read_text()) if (root / "Chart.yaml").is_file() else {}
    aliases = {d["name"]: d.get("alias", d["name"]) for d in (meta or {}).get("dependencies", [])}
    values = default_values(chart, version)
    merged: dict[str, Any] = {}
    for sub in sorted((root / "charts").glob("*/values.yaml")) if (root / "charts").is_dir() else []:
        sub_meta = yaml.safe_load((sub.parent / "Chart.yaml").read_text())
        key = aliases.get(sub_meta["name"], sub_meta["name"])
        merged[key] = yaml.load(sub.read_text(), Loader=_YamlLoader) or {}  # noqa: S506 (a SafeLoader)
    return _coalesce(merged, values)


def _coalesce(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _coalesce(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


@functools.cache
def values_schema(chart: str, version: str) -> dict[str, Any] | None:
    """The chart's values.schema.json, or None where the chart has none."""
    path = chart_dir(chart, version) / "values.schema.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _crd_files(root: Path) -> Iterator[Path]:
    # Helm installs a chart's plain CRDs from its `crds/` folder and each subchart's (`charts/<sub>/crds/`,
    # nested alike), and never templates them; CRDs under `templates/` (argo-cd's `templates/crds/`,
    # keda's, external-secrets') are Helm templates, not YAML, so they are read only through the plain
    # upstream copy in `crds-upstream/` (tests/platform/upstream/templated-crds.yaml).
    # https://helm.sh/docs/chart_best_practices/custom_resource_definitions/ (Helm 3, "Let Helm do it
    # for you": plain CRD files in the chart's crds/ directory, which Helm does not template).
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).parts
        if rel[0] in ("crds-upstream", "manifests"):
            yield path
            continue
        while len(rel) > 2 and rel[0] == "charts":
            rel = rel[2:]
        if rel[0] == "crds":
            yield path


@functools.cache
def crd_schemas(chart: str, version: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of every CRD the chart ships."""
    return crd_schemas_in(chart_dir(chart, version))


def crd_schemas_in(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """crd_schemas() of the chart folder `root`."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in _crd_files(root):
        for doc in yaml.load_all(path.read_text(), Loader=_YamlLoader):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for served in spec["versions"]:
                if served.get("served", True) and "schema" in served:
                    api_version = f"{spec['group']}/{served['name']}"
                    found[(api_version, spec["names"]["kind"])] = served["schema"]["openAPIV3Schema"]
    return found

"""Print every chart (and remote kustomize source) that any stack's Applications pull, one per line:
`<chart> <repository URL> <version> <helm|git>`, plus Argo CD's own chart. A chart whose CRDs are
templates and have a plain upstream copy (tests/platform/upstream/templated-crds.yaml) carries three
more fields: `<git repository URL> <tag> <path glob>[ <path glob>...]`. The GitHub workflow fills the
chart cache from this list (.github/scripts/fill-chart-cache.sh)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from platform_checks import ARGOCD, rendered
from platform_stack import STACKS
from upstream import facts

from infra.components.gitops import ARGOCD_CHART_REPO


def pins() -> list[tuple[str, str, str, str]]:
    found = {(ARGOCD[0], ARGOCD_CHART_REPO, ARGOCD[1], "helm")}
    for stack in STACKS:
        for app in rendered(stack).values():
            for chart, (source, _) in app.charts.items():
                found.add((chart, source["repoURL"], source["targetRevision"], "helm"))
            for remote in app.remote_sources:
                name = remote["repoURL"].rstrip("/").removesuffix(".git").rsplit("/", 1)[1]
                found.add((name, remote["repoURL"], remote["targetRevision"], "git"))
    return sorted(found)


def lines() -> list[tuple[str, ...]]:
    """pins(), each helm chart with the plain upstream source of its templated CRDs where there is one."""
    crds = facts("templated-crds")
    out: list[tuple[str, ...]] = []
    for chart, repo, version, kind in pins():
        source = crds.get(chart, {}).get(version, {}) if kind == "helm" else {}
        extra = (source["repository"], source["tag"], *source["paths"]) if "repository" in source else ()
        out.append((chart, repo, version, kind, *extra))
    return out


if __name__ == "__main__":
    for line in lines():
        print(*line)

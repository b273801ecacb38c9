"""Print every chart (and remote kustomize source) that any stack's Applications pull, one per line:
`<chart> <repository URL> <version> <helm|git>`, plus Argo CD's own chart. The GitHub workflow fills
the chart cache from this list (.github/scripts/fill-chart-cache.sh)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from platform_checks import ARGOCD, rendered
from platform_stack import STACKS

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


if __name__ == "__main__":
    for line in pins():
        print(*line)

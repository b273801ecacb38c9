"""The chart cache as the pull-request workflow fills it (.github/scripts/fill-chart-cache.sh) and as
the platform tests read it (tests/platform/support/chart_cache.py).

The script runs here against a stand-in `helm` on PATH (there is no Helm binary on these machines:
../shared/FACTS.md) that behaves as Helm's documented CLI does: `helm pull <chart> --repo <url>
--version <v> --untar --untardir <dir>` expands the chart into `<dir>/<chart>/`
(https://helm.sh/docs/v3/helm/helm_pull, Helm 3.19.0), and `helm template` renders every template and
fails when a `required` value is empty, as aws/eks-charts aws-load-balancer-controller 1.17.1
`templates/deployment.yaml` (commit 9639b8b6, line 67: `required "Chart cannot be installed without a
valid clusterName!"`) does with its default values. Git is the real one, on local repositories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from chart_cache import chart_dir, crd_schemas_in
from platform_render import REPO_ROOT

SCRIPT = REPO_ROOT / ".github" / "scripts" / "fill-chart-cache.sh"
ARGO = "argo-cd https://argoproj.github.io/argo-helm 7.8.0 helm"

_STANDIN_HELM = textwrap.dedent(
    """\
    import os, pathlib, re, shutil, sys
    args = sys.argv[1:]
    with open(os.environ["STANDIN_HELM_LOG"], "a") as log:
        log.write(" ".join(args) + "\\n")
    def flag(name):
        return args[args.index(name) + 1] if name in args else None
    repo = pathlib.Path(os.environ["STANDIN_HELM_REPO"])
    if args[0] == "pull":
        chart, version = args[1], flag("--version")
        source = repo / chart / version
        if "--untar" not in args or not source.is_dir():
            sys.exit(f'Error: chart "{chart}" version "{version}" not found in {flag("--repo")} repository')
        shutil.copytree(source, pathlib.Path(flag("--untardir") or ".") / chart)
    elif args[0] == "template":
        # Helm renders every template before --show-only filters them: one empty `required` fails all.
        for template in pathlib.Path(args[2], "templates").rglob("*"):
            found = template.is_file() and re.search(r'required "([^"]+)"', template.read_text())
            if found:
                sys.exit(f"Error: execution error at ({template.name}): {found.group(1)}")
    else:
        sys.exit(f"Error: unknown command {args[0]!r} for stand-in helm")
    """
)


def _chart(root: Path, name: str, version: str, templates: dict[str, str]) -> None:
    root.mkdir(parents=True)
    (root / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n")
    (root / "values.yaml").write_text("crds:\n  install: true\n")
    for path, text in templates.items():
        (root / "templates" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "templates" / path).write_text(text)


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


# Written by us on the shape of argoproj/argo-helm argo-cd-7.8.0
# charts/argo-cd/templates/crds/crd-application.yaml: a Helm template, not YAML.
_TEMPLATED_CRD = """\
{{- if .Values.crds.install }}
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  annotations:
    {{- if .Values.crds.keep }}
    "helm.sh/resource-policy": keep
    {{- end }}
  name: applications.argoproj.io
{{- end }}
"""


_REQUIRED = '- --cluster-name={{ required "Chart cannot be installed without a valid clusterName!" "" }}\n'


@pytest.fixture
def upstream(tmp_path):
    """A Helm repository with a chart that has a `required` value and one with templated CRDs, and a git
    repository at argo-cd's tag holding its plain CRDs (the real ones, from the chart cache)."""
    repo = tmp_path / "helm-repo"
    _chart(
        repo / "aws-load-balancer-controller" / "1.17.1",
        "aws-load-balancer-controller",
        "1.17.1",
        {"deployment.yaml": _REQUIRED},
    )
    _chart(repo / "argo-cd" / "7.8.0", "argo-cd", "7.8.0", {"crds/crd-application.yaml": _TEMPLATED_CRD})
    git = tmp_path / "argo-cd-git"
    (git / "manifests" / "crds").mkdir(parents=True)
    for crd in sorted((chart_dir("argo-cd", "7.8.0") / "crds-upstream").glob("*-crd.yaml")):
        shutil.copy(crd, git / "manifests" / "crds" / crd.name)
    (git / "manifests" / "crds" / "kustomization.yaml").write_text("resources: [application-crd.yaml]\n")
    _git("init", "-q", cwd=git)
    _git("add", ".", cwd=git)
    _git("commit", "-q", "-m", "crds", cwd=git)
    _git("tag", "v2.14.1", cwd=git)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").write_text(f"#!{sys.executable}\n{_STANDIN_HELM}")
    (bin_dir / "helm").chmod(0o755)
    return {"repo": repo, "git": git, "bin": bin_dir, "log": tmp_path / "helm.log"}


def _fill(tmp_path: Path, upstream: dict[str, Path], pins: list[str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pins").write_text("".join(f"{line}\n" for line in pins))
    env = {
        "PATH": f"{upstream['bin']}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "CDAO_CHART_CACHE": str(tmp_path / "cache"),
        "STANDIN_HELM_REPO": str(upstream["repo"]),
        "STANDIN_HELM_LOG": str(upstream["log"]),
    }
    command = ["bash", str(SCRIPT), str(tmp_path / "pins")]
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def test_the_cache_fills_with_charts_that_need_values_and_plain_upstream_crds(tmp_path, upstream):
    result = _fill(
        tmp_path,
        upstream,
        [
            f"{ARGO} file://{upstream['git']} v2.14.1 manifests/crds/*-crd.yaml",
            "aws-load-balancer-controller https://aws.github.io/eks-charts 1.17.1 helm",
        ],
    )
    assert result.returncode == 0, result.stderr
    cache = tmp_path / "cache"
    assert (cache / "aws-load-balancer-controller" / "1.17.1" / "templates" / "deployment.yaml").is_file()
    argo = cache / "argo-cd" / "7.8.0"
    assert sorted(p.name for p in (argo / "crds-upstream").iterdir()) == [
        "application-crd.yaml",
        "applicationset-crd.yaml",
        "appproject-crd.yaml",
    ]
    # Only `helm pull` ran: nothing was rendered with the charts' default values.
    assert {line.split()[0] for line in upstream["log"].read_text().splitlines()} == {"pull"}
    # The cache as `helm pull --untar` leaves it reads: templated CRDs are skipped, the plain ones read.
    schemas = crd_schemas_in(argo)
    assert ("argoproj.io/v1alpha1", "Application") in schemas
    assert ("argoproj.io/v1alpha1", "AppProject") in schemas


def test_a_chart_that_cannot_be_pulled_fails_the_fill_and_leaves_nothing_behind(tmp_path, upstream):
    result = _fill(
        tmp_path,
        upstream,
        [
            "aws-load-balancer-controller https://aws.github.io/eks-charts 1.17.1 helm",
            "mlflow https://community-charts.github.io/helm-charts 1.12.0 helm",
            ARGO,
        ],
    )
    assert result.returncode != 0
    assert 'chart "mlflow" version "1.12.0" not found' in result.stderr
    assert not (tmp_path / "cache" / "mlflow").exists()
    assert not (tmp_path / "cache" / "argo-cd").exists()  # stopped at the first failure


def test_a_missing_crd_path_at_the_tag_fails_the_fill_and_leaves_nothing_behind(tmp_path, upstream):
    result = _fill(
        tmp_path,
        upstream,
        [f"{ARGO} file://{upstream['git']} v2.14.1 manifests/crds/none-*.yaml"],
    )
    assert result.returncode != 0
    assert "manifests/crds/none-*.yaml" in result.stderr
    assert not (tmp_path / "cache" / "argo-cd").exists()


def test_templated_crd_files_in_a_pulled_chart_are_not_read_as_yaml(tmp_path):
    # A chart as `helm pull --untar` leaves it, templated CRDs and no crds-upstream/: those CRDs are
    # absent from the schemas (no ParserError), its plain crds/ and subcharts' crds/ are read.
    chart = tmp_path / "argo-cd"
    _chart(chart, "argo-cd", "7.8.0", {"crds/crd-application.yaml": _TEMPLATED_CRD})
    plain = (chart_dir("argo-cd", "7.8.0") / "crds-upstream" / "appproject-crd.yaml").read_text()
    (chart / "crds").mkdir()
    (chart / "crds" / "appproject-crd.yaml").write_text(plain)
    (chart / "charts" / "sub" / "crds").mkdir(parents=True)
    (chart / "charts" / "sub" / "crds" / "applicationset-crd.yaml").write_text(
        (chart_dir("argo-cd", "7.8.0") / "crds-upstream" / "applicationset-crd.yaml").read_text()
    )
    (chart / "charts" / "sub" / "templates" / "crds").mkdir(parents=True)
    (chart / "charts" / "sub" / "templates" / "crds" / "crd.yaml").write_text(_TEMPLATED_CRD)
    assert sorted(kind for _, kind in crd_schemas_in(chart)) == ["AppProject", "ApplicationSet"]

"""The offline checkers on .github/: actionlint (with shellcheck on every `run:` step), shellcheck
on the scripts, zizmor --offline, checkov's GitHub Actions checks; and the action pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent  # the environment's scripts: actionlint, shellcheck, zizmor

# Every third-party action the workflows may use, at one reviewed release each. The SHAs were read
# from the actions' own repositories (tag -> commit); Dependabot (.github/dependabot.yml) proposes
# updates, and this table changes with them.
PINNED_ACTIONS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
    "astral-sh/setup-uv": ("20cfd1bf945f4377ade1205e4dbc17946fc9a30d", "v10.0.1"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
    "aws-actions/configure-aws-credentials": ("e6de054238d6b7531b4efff3b6587d9aade6a06c", "v6.2.3"),
    "aws-actions/amazon-ecr-login": ("03f1aad4c6c7ffd436567f42f9384779290529bd", "v2.1.7"),
    "docker/setup-buildx-action": ("37fe631027851001ddb9b187196cc803df7f5f0e", "v4.3.0"),
    "docker/build-push-action": ("53b7df96c91f9c12dcc8a07bcb9ccacbed38856a", "v7.3.0"),
}


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} is not installed: run `uv sync --locked` (it is in the dev dependency group)"
    return found


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT, **kwargs)


def test_there_are_workflows_to_check():
    names = {p.name for p in WORKFLOWS}
    assert {"pull-request.yml", "pull-request-comment.yml", "deploy.yml", "promote.yml", "drift.yml"} <= names


def test_actionlint_with_shellcheck_on_every_run_step():
    result = _run(
        [_tool("actionlint"), "-no-color", "-oneline", "-shellcheck", _tool("shellcheck"), *map(str, WORKFLOWS)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_shellcheck_finding(tmp_path):
    # Guards the test above: shellcheck really runs inside actionlint here.
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo $HOME\n"
    )
    result = _run([_tool("actionlint"), "-no-color", "-oneline", "-shellcheck", _tool("shellcheck"), str(bad)])
    assert result.returncode == 1
    assert "SC2086" in result.stdout


def test_shellcheck_on_the_scripts():
    scripts = sorted((GITHUB / "scripts").glob("*.sh"))
    assert scripts
    result = _run([_tool("shellcheck"), "--severity=style", *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_has_no_finding():
    # zizmor goes online when it sees a GitHub token; the offline audits are the ones that count here.
    env = {k: v for k, v in os.environ.items() if k not in {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}}
    result = _run([_tool("zizmor"), "--offline", "--no-progress", "--format", "plain", str(GITHUB)], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_checkov_github_actions_checks_pass():
    project = ROOT / "tests" / "tools" / "checkov"
    assert (project / "uv.lock").is_file(), f"{project}/uv.lock is missing: checkov runs from its own locked project"
    uv = shutil.which("uv")
    assert uv, "uv is required to run checkov from tests/tools/checkov"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)  # the main environment's; uv must use the checkov project's own
    result = _run(
        [
            uv,
            "run",
            "--project",
            str(project),
            "--locked",
            "--quiet",
            "checkov",
            "--framework",
            "github_actions",
            "--directory",
            str(GITHUB),
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = yaml.safe_load(result.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100  # the checks really ran over the workflow files
    # The skips are CKV_GHA_7 (no workflow_dispatch inputs) on the promotion workflow, whose inputs
    # pick the environments to promote, and on deploy, whose input picks the stack to redeploy at its
    # pin; neither input changes what is built.
    skipped = sorted((c["check_id"], c["file_path"]) for c in report["results"].get("skipped_checks", []))
    assert skipped == [("CKV_GHA_7", "/workflows/deploy.yml"), ("CKV_GHA_7", "/workflows/promote.yml")]


def _uses() -> list[tuple[Path, str, str]]:
    found = []
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if match:
                found.append((path, match.group(1), match.group(2).strip()))
    return found


def test_every_action_is_pinned_by_full_sha_with_its_version_comment():
    uses = _uses()
    assert uses
    for path, ref, comment in uses:
        action, _, sha = ref.partition("@")
        assert action in PINNED_ACTIONS, f"{path.name}: {ref} is not a reviewed action (add it to PINNED_ACTIONS)"
        expected_sha, version = PINNED_ACTIONS[action]
        assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{path.name}: {ref} is not pinned by a full commit SHA"
        assert sha == expected_sha, f"{path.name}: {action} at {sha}, expected {expected_sha} ({version})"
        assert comment == f"# {version}", f"{path.name}: {ref} needs the trailing comment '# {version}'"


def test_the_pulumi_cli_matches_the_locked_sdk():
    lock = (ROOT / "uv.lock").read_text()
    match = re.search(r'\[\[package\]\]\nname = "pulumi"\nversion = "([^"]+)"', lock)
    assert match, "pulumi is not in uv.lock"
    assert (GITHUB / "pulumi-version").read_text().strip() == match.group(1)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_never_keeps_credentials(path):
    text = path.read_text()
    checkouts = text.count("uses: actions/checkout@")
    assert checkouts == len(re.findall(r"persist-credentials: false", text)), path.name

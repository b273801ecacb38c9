"""checkov's Kubernetes checks on everything Argo CD applies from this repository, for every stack.

checkov lives in its own uv project (tests/tools/checkov: it pins a boto3 the workspace cannot
have); `uv run --locked` installs it on first use, which takes about a minute on a fresh machine.
Every skip is an inline `checkov.io/skipN: CKV_ID=reason` annotation on the manifest it concerns.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from platform_checks import all_manifests
from platform_render import REPO_ROOT
from platform_stack import STACKS

CHECKOV_PROJECT = REPO_ROOT / "tests" / "tools" / "checkov"


def _write_manifests(directory: Path) -> int:
    count = 0
    for stack in STACKS:
        for index, manifest in enumerate(all_manifests(stack)):
            name = f"{stack}-{index:03d}-{manifest['kind']}-{manifest['metadata']['name']}.yaml"
            (directory / name).write_text(yaml.safe_dump(manifest, sort_keys=False))
            count += 1
    return count


def _skips() -> list[tuple[str, str]]:
    found = []
    for stack in STACKS:
        for manifest in all_manifests(stack):
            for key, value in manifest["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    found.append((manifest["metadata"]["name"], value))
    return found


def test_every_checkov_skip_names_a_check_and_a_reason() -> None:
    skips = _skips()
    assert skips, "expected the documented skips (connector image pull, Flyte task accounts)"
    for name, value in skips:
        assert re.fullmatch(r"CKV_K8S_\d+=\S.{20,}", value), f"{name}: {value!r} needs a check id and a reason"


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("uv") is None, reason="checkov runs through uv in its own project")
def test_checkov_kubernetes_checks_pass(tmp_path: Path) -> None:
    count = _write_manifests(tmp_path)
    result = subprocess.run(
        [
            "uv",
            "run",
            "--project",
            str(CHECKOV_PROJECT),
            "--locked",
            "--quiet",
            "checkov",
            "--directory",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout, result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [r for r in reports if r.get("check_type") == "kubernetes"]
    summary = kubernetes["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= count
    failed = sorted(
        {f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in kubernetes["results"]["failed_checks"]}
    )
    assert failed == []
    assert summary["skipped"] == len(_skips())

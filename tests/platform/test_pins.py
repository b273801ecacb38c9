"""An enabled add-on has every chart pin its ApplicationSets read. Go's `index` renders a missing
annotation as "" (missingkey=error covers only `.field`), so a missing pin would reach Argo CD as
`targetRevision: ''`: the stack parser refuses it, naming the key (exit 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from platform_render import APPSETS_DIR, REPO_ROOT

from cdao_cli.main import main
from infra.config import ADDON_CHART_KEYS, AddonsConfig


def _appset_pins() -> dict[str, set[str]]:
    """Add-on -> the chart-version annotations its ApplicationSets read."""
    pins: dict[str, set[str]] = {}
    for path in APPSETS_DIR.glob("*.yaml"):
        text = path.read_text()
        for addon in set(re.findall(r"enable_([a-z_]+)", text)):
            pins.setdefault(addon, set()).update(re.findall(r'"cdao\.io/chart-version-([a-z0-9-]+)"', text))
    return pins


def test_the_parser_knows_every_pin_the_application_sets_read() -> None:
    read = _appset_pins()
    expected = {a: read.get(a, set()) for a in AddonsConfig.model_fields}
    assert {a: set(k) for a, k in ADDON_CHART_KEYS.items()} == expected


def test_a_missing_pin_of_an_enabled_add_on_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = yaml.safe_load((REPO_ROOT / "environments" / "Pulumi.dev.yaml").read_text())
    assert stack["config"]["cdao:addons"]["keda"] is True
    del stack["config"]["cdao:gitops"]["chartVersions"]["keda"]
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(stack))
    code = main(["plan", "--stack", "dev", "--environments", str(tmp_path)])
    assert code == 2
    assert "cdao:gitops.chartVersions.keda" in capsys.readouterr().err


def _readme_annotations() -> set[str]:
    text = (REPO_ROOT / "platform" / "README.md").read_text()
    section = text.split("## Annotations read", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for token in re.findall(r"`([a-z0-9<>{}, -]+)`", section):
        braces = re.fullmatch(r"([a-z-]*)\{([a-z0-9,-]+)\}", token)
        names |= {braces.group(1) + part for part in braces.group(2).split(",")} if braces else {token}
    return names


def test_readme_lists_exactly_the_annotations_read() -> None:
    """platform/README.md "Annotations read" names what the ApplicationSets read, nothing pending."""
    text = "\n".join(p.read_text() for p in APPSETS_DIR.glob("*.yaml"))
    read = set(re.findall(r'index \.metadata\.annotations "cdao\.io/([a-z0-9-]+)"', text))
    read = {"chart-version-<chart key>" if r.startswith("chart-version-") else r for r in read}
    read |= {"role-arn-flyte-tasks-<project>-<domain>"} if "cdao.io/role-arn-flyte-tasks-%s-%s" in text else set()
    assert _readme_annotations() == read

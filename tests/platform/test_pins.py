"""An enabled add-on has every chart pin its ApplicationSets read. Go's `index` renders a missing
annotation as "" (missingkey=error covers only `.field`), so a missing pin would reach Argo CD as
`targetRevision: ''`: the stack parser refuses it, naming the key (exit 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from platform_render import APPSETS_DIR, REPO_ROOT

from infra.cli import main
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

"""cdao_stacks.load_yaml reads with PyYAML's C safe loader where PyYAML was built with libyaml: it
must read every YAML file the CLI, the policy pack and the scripts read exactly as yaml.safe_load
does (PyYAML's two loaders share resolvers and constructors; only the parser differs), and fail on
bad text with yaml.YAMLError naming the line, as the callers' messages rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import cdao_stacks

ROOT = Path(__file__).resolve().parents[2]
# The folders whose YAML the CLI, the policy pack and .github/scripts read.
READ = ("environments", "platform", ".github")


def _yaml_files() -> list[Path]:
    return sorted(p for folder in READ for p in (ROOT / folder).rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def test_pyyaml_here_has_its_c_loader():
    assert yaml.__with_libyaml__, "PyYAML without libyaml: load_yaml falls back to the pure loader, slower"


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_reads_as_safe_load_reads_it(path: Path):
    text = path.read_text(encoding="utf-8")
    assert cdao_stacks.load_yaml_all(text) == list(yaml.safe_load_all(text))


@pytest.mark.parametrize(
    "text",
    [
        "on: yes\noff: no\nport: 0o17\nversion: 1.10\nwhen: 2001-12-14\nempty:\n",  # YAML 1.1 resolvers
        "a: &x {b: 1}\nc: *x\n<<: *x\n",  # anchors and merge keys
        "",
    ],
)
def test_yaml_1_1_quirks_read_alike(text: str):
    assert cdao_stacks.load_yaml(text) == yaml.safe_load(text)


def test_bad_text_is_a_yaml_error_naming_the_line():
    with pytest.raises(yaml.YAMLError, match="line 2"):
        cdao_stacks.load_yaml("config:\n  key: [unclosed\n")

"""Every stack-config key that platform/ and the docs name (`cdao:<section>.<key>`) exists in the
schema infra/config.py owns, so a comment or doc cannot send a reader to a key that sets nothing."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from infra.config import _SECTIONS, StackConfig, parse_stack_config
from tests.infra.test_config import VALID

ROOT = Path(__file__).resolve().parents[2]
_REFERENCE = re.compile(r"\bcdao:([a-zA-Z]+)\.([a-zA-Z]+)\b")


def _section_model(section: str) -> type[BaseModel] | None:
    annotation = StackConfig.model_fields[_SECTIONS[section]].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None  # a mapping section (nodePools): its keys are user-chosen names


def _keys(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_every_named_config_key_exists():
    files = [*ROOT.glob("platform/**/*.yaml"), *ROOT.glob("docs/**/*.md"), ROOT / "README.md"]
    wrong = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for section, key in _REFERENCE.findall(line):
                if section not in _SECTIONS:
                    wrong.append(f"{path.relative_to(ROOT)}:{number}: no section cdao:{section}")
                    continue
                model = _section_model(section)
                if model is not None and key not in _keys(model):
                    wrong.append(f"{path.relative_to(ROOT)}:{number}: cdao:{section} has no key {key}")
    assert not wrong, "\n".join(wrong)


def test_fluent_bit_names_the_container_log_retention_key():
    """fluent-bit's values defer the container log group's retention to infra/; the key they name
    must be the one infra/ applies to that group (StackConfig.log_retention_days()["containers"]), not
    the control plane's (review of issue 13 #7)."""
    config, _ = parse_stack_config("dev", VALID)
    key, _days = config.log_retention_days()["containers"]
    values = (ROOT / "platform/addons/observability/aws-for-fluent-bit/values.yaml").read_text()
    named = {f"cdao:{s}.{k}" for s, k in _REFERENCE.findall(values)}
    assert named == {key}, named

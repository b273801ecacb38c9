"""Names infra/ derives from config values fit AWS's limits for every value the config accepts.

The limits and their sources are infra/names.py. Config validation refuses a value whose derived
name would not fit; the mocks refuse an over-long name as the provider would. Planning the longest
values the config accepts, all at once, proves the two agree with what the program builds.
"""

from __future__ import annotations

import copy

import pytest

from infra.config import ConfigError, parse_stack_config
from infra.plan.runner import read_stack_file, run_program_with_config


def _raw(stack_file: str, pool: str | None = None, project: str | None = None) -> dict:
    raw, _ = read_stack_file(stack_file)
    raw = copy.deepcopy(raw)
    if pool:
        raw["cdao:nodePools"] = {
            **raw["cdao:nodePools"],
            pool: {
                **raw["cdao:nodePools"]["cpu"],
                "instanceTypes": ["m5.large"],
                "minSize": 0,
                "maxSize": 1,
                "workloadTypes": ["control"],
            },
        }
    if project:
        raw["cdao:flyte"] = {**raw["cdao:flyte"], "projects": [project]}
    return raw


def _accepted(stack: str, raw: dict) -> bool:
    try:
        parse_stack_config(stack, raw)
    except ConfigError:
        return False
    return True


def _longest(make, accepted) -> str:
    candidates = [make(n) for n in range(1, 80)]
    return max((c for c in candidates if accepted(c)), key=len)


def test_the_longest_accepted_names_plan_without_breaking_an_aws_limit():
    # prod's shape: replication and backups on, so every derived name exists.
    stack = _longest(lambda n: "p" + "r" * (n - 1), lambda s: _accepted(s, _raw("prod")))
    pool = _longest(lambda n: "g" * n, lambda p: _accepted("prod", _raw("prod", pool=p)))
    project = _longest(lambda n: "x" * n, lambda p: _accepted("prod", _raw("prod", project=p)))
    raw = _raw("prod", pool=pool, project=project)
    assert _accepted(stack, raw)

    registrations, error = run_program_with_config(stack, "us-east-1", raw)

    assert error is None, error
    assert registrations


@pytest.mark.parametrize(
    ("what", "key"),
    [("pool", "cdao:nodePools"), ("project", "cdao:flyte.projects")],
)
def test_a_name_one_character_too_long_is_refused_with_the_limit_and_its_source(what, key):
    value = "a" * 37 if what == "pool" else "a" * 15
    with pytest.raises(ConfigError) as err:
        parse_stack_config("prod", _raw("prod", **{what: value}))
    assert key in err.value.keys
    assert "docs.aws.amazon.com" in str(err.value)


def test_a_stack_name_too_long_for_its_bucket_names_is_refused():
    with pytest.raises(ConfigError) as err:
        parse_stack_config("production-east", _raw("prod"))
    assert "stack" in err.value.keys
    assert "37" in str(err.value)

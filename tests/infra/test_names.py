"""Names infra/ derives from config values fit AWS's limits for every value the config accepts.

The limits and their sources are infra/names.py. Config validation refuses a value whose derived
name would not fit; the mocks refuse an over-long name as the provider would. Planning the longest
values the config accepts, all at once, proves the two agree with what the program builds.
"""

from __future__ import annotations

import copy

import pytest

from cdao_cli.plan.runner import read_stack_file, run_program_with_config
from infra import names
from infra.config import ConfigError, parse_stack_config


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


# ---------------------------------------------------------------- node-group labels and taints
# EKS API reference: UpdateLabelsPayload (the labels of CreateNodegroup/UpdateNodegroupConfig): key
# and value 1-63 characters each, the whole key with its prefix; Taint: key 1-63, value 0-63.
# https://docs.aws.amazon.com/eks/latest/APIReference/API_UpdateLabelsPayload.html
# https://docs.aws.amazon.com/eks/latest/APIReference/API_Taint.html


def _pool_raw(**override) -> dict:
    raw = _raw("dev")
    raw["cdao:nodePools"] = {**raw.get("cdao:nodePools", {}), "cpu": {**raw["cdao:nodePools"]["cpu"], **override}}
    return raw


@pytest.mark.parametrize(
    ("override", "key"),
    [
        # workload-type.cdao.io/ (22 characters) + 42 = 64
        ({"workloadTypes": ["w" * 42]}, "cdao:nodePools.cpu.workloadTypes"),
        ({"labels": {"team.example.com/" + "o" * 47: "x"}}, "cdao:nodePools.cpu.labels"),
        ({"labels": {"team.example.com/owner": ""}}, "cdao:nodePools.cpu.labels.team.example.com/owner"),
        ({"taints": [{"key": "t.example.com/" + "k" * 50, "value": "v", "effect": "NoSchedule"}]}, None),
        ({"taints": [{"key": "dedicated", "value": "v" * 64, "effect": "NoSchedule"}]}, None),
    ],
    ids=["workload-type", "label-key", "empty-label-value", "taint-key", "taint-value"],
)
def test_node_group_labels_and_taints_over_eks_limits_are_refused(override, key):
    with pytest.raises(ConfigError) as err:
        parse_stack_config("dev", _pool_raw(**override))
    if key is None:
        key = "cdao:nodePools.cpu.taints[0].key" if "k" * 50 in str(override) else "cdao:nodePools.cpu.taints[0].value"
    assert key in err.value.keys
    assert "docs.aws.amazon.com/eks/latest/APIReference" in str(err.value)


def test_the_longest_accepted_labels_and_taints_plan_as_node_group_inputs_within_eks_limits():
    raw = _pool_raw(
        workloadTypes=["w" * 41],
        labels={"team.example.com/" + "o" * 46: "v" * 63},
        taints=[{"key": "t.example.com/" + "k" * 49, "value": "v" * 63, "effect": "PreferNoSchedule"}],
    )
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is None, error
    (group,) = [r for r in registrations if r.type == "aws:eks/nodeGroup:NodeGroup" and "cpu" in r.name]
    assert max(len(k) for k in group.inputs["labels"]) == 63
    assert all(1 <= len(v) <= 63 for v in group.inputs["labels"].values())
    assert [(len(t["key"]), len(t["value"])) for t in group.inputs["taints"]] == [(63, 63)]
    # The autoscaler's node-template tags carry each label and taint key in their own key
    # (infra/components/node_pool.py): AWS's tag-key limit, infra/names.py.
    tag_keys = [r.inputs["tag"]["key"] for r in registrations if r.type == "aws:autoscaling/tag:Tag"]
    assert tag_keys
    assert max(len(k) for k in tag_keys) <= names.LIMITS["aws-tag-key"].max_length


# ---------------------------------------------------------------- stack-name characters
@pytest.mark.parametrize("stack", ["qa_1", "QA", "qa.1", "-qa", "qa-"])
def test_a_stack_name_aws_would_refuse_in_a_derived_name_is_refused(stack):
    """The stack name goes into S3 bucket prefixes (lowercase letters, digits, '.', '-'; no '_' or
    capitals: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html), the RDS
    identifier (letters, digits, single hyphens, no trailing hyphen: API_CreateDBInstance,
    DBInstanceIdentifier), ECR repositories (lowercase), the EKS cluster and Backup vault names;
    lowercase letters, digits and inner single hyphens fit all of them."""
    with pytest.raises(ConfigError) as err:
        parse_stack_config(stack, _raw("prod"))
    assert "stack" in err.value.keys
    assert "docs.aws.amazon.com" in str(err.value)

"""The cluster-Secret contract is a typed object: a value left out fails where the Secret is built,
naming the field and its annotation, not later in Argo CD (tests/platform/test_consistency.py checks
platform/'s side against the same owner)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from infra.config import AddonsConfig
from infra.contract import (
    ANNOTATION_KEYS,
    ANNOTATION_PREFIX,
    FLYTE_DOMAINS,
    LABEL_KEYS,
    SERVICE_ACCOUNTS,
    ClusterSecret,
    flyte_task_account,
    stack_annotation_keys,
)

PROJECTS = ("ml",)
ROLES = {sa.role: f"arn:aws:iam::111122223333:role/{sa.role}" for sa in SERVICE_ACCOUNTS} | {
    flyte_task_account(p, d).role: f"arn:aws:iam::111122223333:role/{p}-{d}" for p in PROJECTS for d in FLYTE_DOMAINS
}


def _values() -> dict[str, object]:
    """A value for every field: the field's annotation key stands in for what infra/ would write."""
    values: dict[str, object] = {
        f.name: f.metadata["annotation"] for f in dataclasses.fields(ClusterSecret) if "annotation" in f.metadata
    }
    return values | {
        "environment": "dev",
        "profile": "dev",
        "addons": AddonsConfig(),
        "role_arns": dict(ROLES),
        "flyte_projects": PROJECTS,
        "chart_versions": {"flyte-core": "v1.16.2"},
    }


def test_a_complete_secret_carries_every_contract_key():
    secret = ClusterSecret(**_values())
    assert set(secret.annotations()) == set(stack_annotation_keys(["flyte-core"], list(PROJECTS)))
    assert set(secret.labels()) == set(LABEL_KEYS)
    assert secret.labels()["environment"] == "dev"
    assert secret.annotations()[f"{ANNOTATION_PREFIX}container-log-group"] == "container-log-group"
    assert f"{ANNOTATION_PREFIX}container-log-group" in ANNOTATION_KEYS


def test_a_missing_value_fails_at_construction_naming_the_field():
    values = _values()
    del values["container_log_group"]
    with pytest.raises(TypeError, match="container_log_group"):
        ClusterSecret(**values)


def test_a_none_value_fails_naming_the_annotation():
    with pytest.raises(ValueError, match=re.escape("cdao.io/vpc-id (vpc_id)")):
        ClusterSecret(**(_values() | {"vpc_id": None}))


def test_role_arns_must_cover_every_service_account_and_no_more():
    roles = dict(ROLES)
    del roles["fluent-bit"]
    with pytest.raises(ValueError, match=re.escape("role_arns: missing ['fluent-bit']")):
        ClusterSecret(**(_values() | {"role_arns": roles}))
    with pytest.raises(ValueError, match=re.escape("unknown ['nosuch']")):
        ClusterSecret(**(_values() | {"role_arns": ROLES | {"nosuch": "arn"}}))


def test_the_profile_label_is_a_registered_policy_profile():
    """platform/ names its overlays and values files by profile: a label outside cdao_stacks.PROFILES
    would select none of them."""
    secret = ClusterSecret(**(_values() | {"environment": "sandbox", "profile": "staging"}))
    assert (secret.labels()["environment"], secret.labels()["profile"]) == ("sandbox", "staging")
    with pytest.raises(ValueError, match="label profile = 'sandbox'"):
        ClusterSecret(**(_values() | {"profile": "sandbox"}))

"""The pack's public API, the `cdao policy check` command and the Pulumi (CrossGuard) adapter."""

from __future__ import annotations

import dataclasses
import json
import operator
import re
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

import policies
from cdao_cli.main import main
from policies import RULES, ConfigError, Violation, evaluate
from policies.core import Resource, Rule, UnknownValue, UnknownValueFound, normalize
from policies.engine import run_resource_rule
from policies.settings import DEFAULTS, STACKS

PACK_DIR = Path(policies.__file__).parent
TAGS = {"team": "ml", "cost-center": "cc-42", "environment": "dev"}
NO_COST = lambda _r: SimpleNamespace(peak_usd_month=0.0)  # noqa: E731


def efs(encrypted: Any = True, tags: Any = None) -> dict[str, Any]:
    return {
        "type": "aws:efs/fileSystem:FileSystem",
        "name": "shared",
        "props": {"encrypted": encrypted, "tags": dict(TAGS) if tags is None else tags},
    }


# ------------------------------------------------------------------------------------------ RULES


def test_rules_are_complete_and_stable() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids, key=lambda i: (["IAM", "COST", "DATA", "NET", "K8S", "NAME"].index(i.split("-")[1]), i))
    for rule in RULES:
        assert re.fullmatch(r"CDAO-(IAM|COST|DATA|NET|K8S|NAME)-\d{3}", rule.id)
        assert rule.name and "\n" not in rule.name
        assert rule.description and rule.remediation
        assert rule.level in ("mandatory", "advisory")
        assert rule.kind in ("resource", "stack")
        assert rule.family in ("iam", "cost", "data_protection", "network", "kubernetes", "naming")
        assert set(rule.settings) <= set(DEFAULTS)


def test_defaults_cover_every_stack() -> None:
    for key, per_stack in DEFAULTS.items():
        assert set(per_stack) == set(STACKS), key
    assert "p5.48xlarge" not in DEFAULTS["allowedInstanceTypes"]["dev"]
    assert "p5.48xlarge" in DEFAULTS["allowedInstanceTypes"]["prod"]
    assert DEFAULTS["gpuPoolMaxNodes"]["dev"] < DEFAULTS["gpuPoolMaxNodes"]["prod"]


def test_violation_to_dict_has_exactly_the_contract_keys() -> None:
    v = Violation("CDAO-DATA-012", "aws:efs/fileSystem:FileSystem", "shared", "mandatory", "encrypted is not true")
    assert v.to_dict() == {
        "rule": "CDAO-DATA-012",
        "resource_type": "aws:efs/fileSystem:FileSystem",
        "resource_name": "shared",
        "level": "mandatory",
        "message": "encrypted is not true",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.level = "advisory"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ evaluate


def test_unknown_stack_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown stack 'qa'"):
        evaluate([efs()], "qa")


def test_config_adds_a_stack_but_must_give_every_setting() -> None:
    with pytest.raises(ConfigError, match="stack 'qa'"):
        evaluate([efs()], "qa", {"stacks": {"qa": {}}})


def test_enforcement_level_overrides() -> None:
    bad = [efs(encrypted=False)]
    assert {v.level for v in evaluate(bad, "dev", cost_estimator=NO_COST)} == {"mandatory"}
    adv = evaluate(bad, "dev", {"CDAO-DATA-012": {"enforcementLevel": "advisory"}}, cost_estimator=NO_COST)
    assert [(v.rule, v.level) for v in adv] == [("CDAO-DATA-012", "advisory")]
    assert evaluate(bad, "dev", {"CDAO-DATA-012": {"enforcementLevel": "disabled"}}, cost_estimator=NO_COST) == []
    with pytest.raises(ConfigError, match="enforcementLevel"):
        evaluate(bad, "dev", {"CDAO-DATA-012": {"enforcementLevel": "sometimes"}})


def test_per_rule_setting_beats_shared_setting_beats_default() -> None:
    lt = {
        "type": "aws:ec2/launchTemplate:LaunchTemplate",
        "name": "lt",
        "props": {"instanceType": "r5.large", "tags": TAGS, "metadataOptions": {"httpTokens": "required"}},
    }
    assert [v.rule for v in evaluate([lt], "dev", cost_estimator=NO_COST)] == ["CDAO-COST-001"]
    shared = {"stacks": {"dev": {"allowedInstanceTypes": ["r5.*"]}}}
    assert evaluate([lt], "dev", shared, cost_estimator=NO_COST) == []
    per_rule = {**shared, "CDAO-COST-001": {"allowedInstanceTypes": {"dev": ["m5.large"]}}}
    assert [v.rule for v in evaluate([lt], "dev", per_rule, cost_estimator=NO_COST)] == ["CDAO-COST-001"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"CDAO-COST-01": {"enforcementLevel": "advisory"}}, "unknown rule id 'CDAO-COST-01'"),
        ({"CDAO-COST-001": {"allowedInstanceType": {"dev": []}}}, "unknown setting 'allowedInstanceType'"),
        ({"CDAO-COST-001": {"allowedInstanceTypes": ["m5.large"]}}, "expected a map from stack name"),
        ({"stacks": {"dev": {"budget": 1}}}, "unknown setting(s) ['budget']"),
        ({"stacks": ["dev"]}, "'stacks' must map"),
    ],
)
def test_config_typos_are_errors_not_silently_ignored(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        evaluate([efs()], "dev", config)


def test_bad_config_value_names_stack_setting_and_rule() -> None:
    with pytest.raises(ConfigError, match=r"stack 'dev', setting 'gpuPoolMaxNodes' \(rule CDAO-COST-002\)"):
        evaluate([efs()], "dev", {"stacks": {"dev": {"gpuPoolMaxNodes": "lots"}}})


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"name": "x", "props": {}}, "'type'"),
        ({"type": "aws:efs/fileSystem:FileSystem", "props": {}}, "'name'"),
        ({"type": "aws:efs/fileSystem:FileSystem", "name": "x", "props": [1]}, "'props'"),
        ("not-a-resource", "object"),
    ],
)
def test_malformed_resources_are_config_errors(resource: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        evaluate([resource], "dev")


def test_a_crashing_rule_fails_closed() -> None:
    def broken(_res: Resource, _ctx: Any) -> Any:
        raise KeyError("boom")

    rule = Rule("CDAO-TEST-001", "broken", "d", "r", "advisory", "test", "resource", broken, frozenset())
    violations = evaluate([efs()], "dev", rules=[rule])
    assert [(v.rule, v.level) for v in violations] == [("CDAO-TEST-001", "advisory")]
    assert "failed to evaluate: KeyError" in violations[0].message


def test_budget_estimator_receives_plain_json_with_the_unknown_token() -> None:
    seen: list[Any] = []

    def estimator(resources: list[dict[str, Any]]) -> Any:
        seen.extend(resources)
        return SimpleNamespace(peak_usd_month=1.0)

    evaluate([efs(encrypted="<unknown>")], "dev", cost_estimator=estimator)
    assert seen == [
        {"type": "aws:efs/fileSystem:FileSystem", "name": "shared", "props": {"encrypted": "<unknown>", "tags": TAGS}}
    ]


def test_budget_estimator_errors_fail_closed_unless_caused_by_unknowns() -> None:
    def estimator(_resources: list[dict[str, Any]]) -> Any:
        raise ValueError("could not convert string to float: '<unknown>'")

    budget = [r for r in RULES if r.id == "CDAO-COST-009"]
    known = evaluate([efs()], "dev", rules=budget, cost_estimator=estimator)
    assert [(v.rule, v.level) for v in known] == [("CDAO-COST-009", "mandatory")]
    assert "failed to evaluate" in known[0].message
    unknown = evaluate([efs(encrypted="<unknown>")], "dev", rules=budget, cost_estimator=estimator)
    assert [(v.rule, v.level) for v in unknown] == [("CDAO-COST-009", "advisory")]
    assert "unknown at preview" in unknown[0].message


def test_budget_with_the_plan_price_table() -> None:
    cost = pytest.importorskip("cdao_cost.estimate")
    pool = {
        "type": "aws:eks/nodeGroup:NodeGroup",
        "name": "gpu",
        "props": {
            "instanceTypes": ["p4d.24xlarge"],
            "scalingConfig": {"minSize": 0, "desiredSize": 0, "maxSize": 2},
            "tags": TAGS,
        },
    }
    peak = cost.estimate_cost([pool]).peak_usd_month
    assert peak > 0
    budget = [r for r in RULES if r.id == "CDAO-COST-009"]
    under = {"stacks": {"dev": {"budgetUsdMonth": peak + 1}}}
    over = {"stacks": {"dev": {"budgetUsdMonth": peak - 1}}}
    assert evaluate([pool], "dev", under, rules=budget) == []
    assert [v.rule for v in evaluate([pool], "dev", over, rules=budget)] == ["CDAO-COST-009"]


def test_engine_sentinels_in_json_count_as_unknown() -> None:
    violations = evaluate([efs(encrypted=UNKNOWN_BOOLEAN_VALUE)], "dev", cost_estimator=NO_COST)
    assert [(v.rule, v.level) for v in violations] == [("CDAO-DATA-012", "advisory")]


def test_unknown_marker_refuses_every_use() -> None:
    marker = normalize({"a": "<unknown>"})["a"]
    assert isinstance(marker, UnknownValue)
    for use in (
        bool,
        lambda m: m == "x",
        lambda m: m > 1,
        list,
        len,
        lambda m: "x" in m,
        lambda m: operator.eq("x", m),
    ):
        with pytest.raises(UnknownValueFound, match=r"^a$"):
            use(marker)


def test_analyzer_proxies_are_normalized_with_unknown_paths() -> None:
    props = unknown_checking_proxy({"metadataOptions": {"httpTokens": UNKNOWN_STRING_VALUE}, "tags": {"a": "b"}})
    plain = normalize(props)
    assert isinstance(plain["metadataOptions"]["httpTokens"], UnknownValue)
    assert plain["metadataOptions"]["httpTokens"].path == "metadataOptions.httpTokens"
    assert plain["tags"] == {"a": "b"}


def test_raw_proxy_access_raising_is_reported_not_crashing() -> None:
    def touches_raw(res: Resource, _ctx: Any) -> Any:
        yield str(res.props["raw"]["x"])

    rule = Rule("CDAO-TEST-002", "raw", "d", "r", "mandatory", "test", "resource", touches_raw, frozenset())
    raw = Resource("aws:efs/fileSystem:FileSystem", "fs", {"raw": unknown_checking_proxy({"x": UNKNOWN_STRING_VALUE})})
    ctx = SimpleNamespace(stack="dev", settings={})
    [finding] = run_resource_rule(rule, raw, ctx)  # type: ignore[arg-type]
    assert finding.unknown and "unknown at preview" in finding.message


# ------------------------------------------------------------------------------------------ CLI


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_check_json_output_and_exit_1_on_mandatory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r.json", [efs(encrypted=False)])
    config = write(tmp_path, "c.json", {"CDAO-COST-009": {"enforcementLevel": "disabled"}})
    assert main(["policy", "check", path, "--stack", "dev", "--format", "json", "--config", config]) == 1
    assert json.loads(capsys.readouterr().out) == [
        {
            "rule": "CDAO-DATA-012",
            "resource_type": "aws:efs/fileSystem:FileSystem",
            "resource_name": "shared",
            "level": "mandatory",
            "message": "encrypted is not true",
        }
    ]


def test_check_text_output_exit_0_with_only_advisories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r.json", [efs(encrypted="<unknown>")])
    config = write(tmp_path, "c.json", {"CDAO-COST-009": {"enforcementLevel": "disabled"}})
    assert main(["policy", "check", path, "--stack", "prod", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "[advisory] CDAO-DATA-012 aws:efs/fileSystem:FileSystem shared: cannot verify" in out
    assert "1 violation(s) in stack 'prod': 0 mandatory, 1 advisory" in out


def test_check_clean_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r.json", [])
    config = write(tmp_path, "c.json", {"CDAO-COST-009": {"enforcementLevel": "disabled"}})
    assert main(["policy", "check", path, "--stack", "staging", "--format", "json", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, ["--stack", "dev"], "cannot read resource file"),
        ("{not json", ["--stack", "dev"], "is not valid JSON"),
        ('{"type": "x"}', ["--stack", "dev"], "must hold a JSON list"),
        ("[]", ["--stack", "nope"], "unknown stack 'nope'"),
        ('[{"type": "", "name": "a", "props": {}}]', ["--stack", "dev"], "'type' must be a non-empty string"),
        ("[]", ["--stack", "dev", "--config", "/nonexistent/c.json"], "cannot read config file"),
        ("[]", ["--stack", "dev", "--format", "yaml"], "invalid choice"),
        ("[]", [], "--stack"),
    ],
)
def test_check_exit_2_on_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, args: list[str], message: str
) -> None:
    path = str(tmp_path / "missing.json") if content is None else write(tmp_path, "r.json", content)
    assert main(["policy", "check", path, *args]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ Pulumi pack


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


@pytest.fixture
def pack_policies(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from policies.pack import build_policies  # noqa: PLC0415

    monkeypatch.setenv("PULUMI_STACK", "prod")
    monkeypatch.delenv("CDAO_POLICY_STACK", raising=False)
    return {p.name: p for p in build_policies()}


def test_pack_has_one_policy_per_rule_with_metadata(pack_policies: dict[str, Any]) -> None:
    assert list(pack_policies) == [r.id for r in RULES]
    for rule in RULES:
        policy = pack_policies[rule.id]
        expected_class = StackValidationPolicy if rule.kind == "stack" else ResourceValidationPolicy
        assert isinstance(policy, expected_class)
        assert policy.enforcement_level == EnforcementLevel(rule.level)
        assert policy.remediation_steps == rule.remediation
        if rule.settings:
            assert set(policy.config_schema.properties) == set(rule.settings)
            for key in rule.settings:
                assert policy.config_schema.properties[key]["default"] == DEFAULTS[key]


def _validate(policy: ResourceValidationPolicy, rtype: str, props: dict[str, Any], **kw: Any) -> list[str]:
    reported: list[str] = []
    args = ResourceValidationArgs(
        rtype,
        unknown_checking_proxy(props),
        f"urn:pulumi:prod::cdao::{rtype}::x",
        "x",
        _opts(),
        kw.get("provider"),
        kw.get("config", {}),
    )
    policy.validate(args, lambda msg, urn=None: reported.append(msg))
    return reported


def test_pack_resource_policy_reports_and_passes(pack_policies: dict[str, Any]) -> None:
    policy = pack_policies["CDAO-DATA-012"]
    assert _validate(policy, "aws:efs/fileSystem:FileSystem", {"encrypted": False}) == ["encrypted is not true"]
    assert _validate(policy, "aws:efs/fileSystem:FileSystem", {"encrypted": True}) == []


def test_pack_unknown_raises_the_engines_unknown_error(pack_policies: dict[str, Any]) -> None:
    policy = pack_policies["CDAO-DATA-012"]
    with pytest.raises(UnknownValueError) as err:
        _validate(policy, "aws:efs/fileSystem:FileSystem", {"encrypted": UNKNOWN_BOOLEAN_VALUE})
    assert "encrypted is unknown at preview" in err.value.message


def test_pack_uses_the_stack_and_policy_config(pack_policies: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    policy = pack_policies["CDAO-DATA-008"]
    rds = {"instanceClass": "db.r6g.large", "multiAz": False}
    assert _validate(policy, "aws:rds/instance:Instance", rds) == ["multiAz is not true in stack 'prod'"]
    assert _validate(policy, "aws:rds/instance:Instance", rds, config={"requireRdsMultiAz": {"prod": False}}) == []
    monkeypatch.setenv("PULUMI_STACK", "myorg/cdao/dev")
    assert _validate(policy, "aws:rds/instance:Instance", rds) == []
    monkeypatch.setenv("PULUMI_STACK", "dev-alice")
    with pytest.raises(ConfigError, match="CDAO_POLICY_STACK"):
        _validate(policy, "aws:rds/instance:Instance", rds)
    monkeypatch.setenv("CDAO_POLICY_STACK", "dev")
    assert _validate(policy, "aws:rds/instance:Instance", rds) == []


def test_pack_counts_provider_default_tags(pack_policies: dict[str, Any]) -> None:
    policy = pack_policies["CDAO-COST-005"]
    provider = PolicyProviderResource(
        "pulumi:providers:aws", {"defaultTags": {"tags": TAGS}}, "urn:pulumi:prod::cdao::pulumi:providers:aws::p", "p"
    )
    assert _validate(policy, "aws:efs/fileSystem:FileSystem", {"encrypted": True})
    assert _validate(policy, "aws:efs/fileSystem:FileSystem", {"encrypted": True}, provider=provider) == []


def test_pack_stack_policy_links_by_property_dependencies(pack_policies: dict[str, Any]) -> None:
    policy = pack_policies["CDAO-NET-006"]
    vpc = PolicyResource(
        "aws:ec2/vpc:Vpc",
        unknown_checking_proxy({"cidrBlock": "10.0.0.0/16"}),
        "urn:vpc",
        "vpc",
        _opts(),
        None,
        None,
        [],
        {},
    )
    log = PolicyResource(
        "aws:ec2/flowLog:FlowLog",
        unknown_checking_proxy({"vpcId": UNKNOWN_STRING_VALUE}),
        "urn:log",
        "log",
        _opts(),
        None,
        None,
        [vpc],
        {"vpcId": [vpc]},
    )
    reported: list[tuple[str, str | None]] = []
    policy.validate(StackValidationArgs([vpc, log], {}), lambda m, urn=None: reported.append((m, urn)))
    assert reported == []
    policy.validate(StackValidationArgs([vpc], {}), lambda m, urn=None: reported.append((m, urn)))
    assert reported == [("no flow log for this VPC", "urn:vpc")]


def test_main_builds_the_pack_from_the_same_rule_list(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi_policy  # noqa: PLC0415

    built: dict[str, Any] = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kw: built.update(kw))
    monkeypatch.setattr(sys, "path", list(sys.path))  # __main__ rewrites sys.path for the pack process
    runpy.run_path(str(PACK_DIR / "__main__.py"), run_name="__main__")
    assert built["name"] == "cdao-platform"
    assert [p.name for p in built["policies"]] == [r.id for r in RULES]


def test_pulumi_policy_yaml_uses_the_python_runtime() -> None:
    spec = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert spec["runtime"]["name"] == "python"
    assert spec["runtime"]["options"]["toolchain"] == "uv"


def test_readme_rule_tables_are_current() -> None:
    from policies.docs import render  # noqa: PLC0415

    readme = (PACK_DIR / "README.md").read_text()
    assert render(readme) == readme, "run `uv run python -m policies.docs`"
    for rule in RULES:
        assert f"| {rule.id} | " in readme, rule.id

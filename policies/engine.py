"""Evaluate RULES on a list of resources, the way both the CLI/plan and the Pulumi pack do."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cdao_cost import CostEstimate
from cdao_resources import PolicyResource, ResourceFormatError
from cdao_resources import check as check_resource
from policies.core import Context, Finding, Resource, Rule, UnknownValueFound, normalize
from policies.rules import cost, data_protection, iam, kubernetes, naming, network
from policies.settings import ConfigError, check_config, known_stacks, resolve

try:  # The analyzer's own "unknown during preview" error, raised by its props proxy.
    from pulumi_policy.proxy import UnknownValueError as _EngineUnknown
except ImportError:  # pragma: no cover - pulumi-policy is a hard dependency of the project
    _EngineUnknown = UnknownValueFound  # type: ignore[assignment,misc]

#: Every rule, in the order reports list them. `__main__.py` builds the PolicyPack from this list.
RULES: list[Rule] = [
    *iam.RULES,
    *cost.RULES,
    *data_protection.RULES,
    *network.RULES,
    *kubernetes.RULES,
    *naming.RULES,
]

STACK_RESOURCE_TYPE = "pulumi:pulumi:Stack"
_LEVEL_OVERRIDES = {"mandatory": "mandatory", "advisory": "advisory", "remediate": "mandatory", "disabled": None}


@dataclass(frozen=True)
class Violation:
    rule: str
    resource_type: str
    resource_name: str
    level: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "resource_type": self.resource_type,
            "resource_name": self.resource_name,
            "level": self.level,
            "message": self.message,
        }


def to_resource(raw: Any) -> Resource:
    """A rule-ready Resource from one element of a cdao_resources list. Raises ConfigError naming the field."""
    try:
        checked = check_resource(raw)
    except ResourceFormatError as exc:
        raise ConfigError(str(exc)) from None
    return Resource(
        type=checked["type"],
        name=checked["name"],
        props=normalize(checked["props"]),
        urn=checked.get("urn"),
        id=normalize(checked.get("id"), "id"),
        deps={k: tuple(v) for k, v in checked.get("propertyDependencies", {}).items()},
    )


def rule_level(rule: Rule, config: Mapping[str, Any] | None) -> str | None:
    """The rule's enforcement level after config overrides; None when disabled."""
    override = None
    if config:
        per_rule = config.get(rule.id)
        if isinstance(per_rule, Mapping):
            override = per_rule.get("enforcementLevel")
        elif isinstance(per_rule, str):
            override = per_rule
        if override is None and isinstance(config.get("all"), str):
            override = config["all"]
    if override is None:
        return rule.level
    if override not in _LEVEL_OVERRIDES:
        raise ConfigError(f"rule {rule.id}: enforcementLevel {override!r} is not one of {sorted(_LEVEL_OVERRIDES)}")
    return _LEVEL_OVERRIDES[override]


def context_for(
    rule: Rule,
    stack: str,
    config: Mapping[str, Any] | None,
    estimator: Callable[..., Any] | None = None,
    *,
    profile: str | None = None,
) -> Context:
    """The rule's context on `stack`, its settings resolved for `profile` (default: the stack's name)."""
    settings = resolve(rule.id, rule.settings, profile or stack, config)
    return Context(stack=stack, settings=settings, estimator=estimator)


def unknown_message(rule: Rule, what: str) -> str:
    return f"cannot verify {rule.id} ({rule.name}): {what} is unknown at preview"


def run_resource_rule(rule: Rule, res: Resource, ctx: Context) -> list[Finding]:
    """Findings of one resource rule on one resource; unknowns and crashes become findings too."""
    if rule.types and res.type not in rule.types:
        return []
    out: list[Finding] = []
    try:
        for item in rule.check(res, ctx):
            if isinstance(item, UnknownValueFound):
                out.append(Finding(unknown_message(rule, item.what), res, unknown=True))
            else:
                out.append(Finding(str(item), res))
    except UnknownValueFound as exc:
        out.append(Finding(unknown_message(rule, exc.what), res, unknown=True))
    except _EngineUnknown as exc:
        out.append(Finding(unknown_message(rule, getattr(exc, "message", str(exc))), res, unknown=True))
    except Exception as exc:
        out.append(Finding(f"rule {rule.id} failed to evaluate: {type(exc).__name__}: {exc}", res))
    return out


def run_stack_rule(rule: Rule, resources: list[Resource], ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    try:
        for f in rule.check(resources, ctx):
            if f.unknown:
                what = f.message.removeprefix("cannot verify: ")
                out.append(Finding(unknown_message(rule, what), f.resource, unknown=True))
            else:
                out.append(f)
    except UnknownValueFound as exc:
        out.append(Finding(unknown_message(rule, exc.what), None, unknown=True))
    except _EngineUnknown as exc:
        out.append(Finding(unknown_message(rule, getattr(exc, "message", str(exc))), None, unknown=True))
    except Exception as exc:
        out.append(Finding(f"rule {rule.id} failed to evaluate: {type(exc).__name__}: {exc}", None))
    return out


def evaluate(
    resources: Iterable[PolicyResource],
    stack: str,
    config: Mapping[str, Any] | None = None,
    *,
    rules: Iterable[Rule] | None = None,
    cost_estimator: Callable[[list[PolicyResource]], CostEstimate] | None = None,
    profile: str | None = None,
) -> list[Violation]:
    """Every violation of `rules` (default RULES) on one stack's resources (a cdao_resources list).

    `cost_estimator` prices the stack for the budget rule (default: cdao_cost.estimate_cost); a
    caller that already priced the same list (`cdao plan`) passes its estimate so it is computed once.

    Settings are those of `profile`, the policy profile the stack follows (its `cdao-stack:profile` in
    the stack registry, cdao_stacks); without one, the stack's name is taken as its profile.
    `config` overrides the per-stack defaults (see policies.settings) and enforcement levels
    (`{"<rule id>": {"enforcementLevel": "advisory"|"mandatory"|"disabled"}}`). Findings on values
    unknown at preview are always advisory. Raises ConfigError for an unknown stack, a bad config
    value or a malformed resource.
    """
    rules = list(rules) if rules is not None else RULES
    check_config(config, {r.id: r.settings for r in RULES} | {r.id: r.settings for r in rules})
    if profile is None and stack not in known_stacks(config):
        raise ConfigError(f"unknown stack {stack!r}; configured stacks: {sorted(known_stacks(config))}")
    profile = profile or stack
    if profile not in known_stacks(config):
        raise ConfigError(
            f"stack {stack!r}: unknown policy profile {profile!r}; configured profiles: {sorted(known_stacks(config))}"
        )
    parsed = [to_resource(r) for r in resources]
    violations: list[Violation] = []
    for rule in rules:
        level = rule_level(rule, config)
        if level is None:
            continue
        ctx = context_for(rule, stack, config, cost_estimator, profile=profile)
        if rule.kind == "stack":
            findings = run_stack_rule(rule, parsed, ctx)
        else:
            findings = [f for res in parsed for f in run_resource_rule(rule, res, ctx)]
        for f in findings:
            violations.append(
                Violation(
                    rule=rule.id,
                    resource_type=f.resource.type if f.resource else STACK_RESOURCE_TYPE,
                    resource_name=f.resource.name if f.resource else stack,
                    level="advisory" if f.unknown else level,
                    message=f.message,
                )
            )
    return violations

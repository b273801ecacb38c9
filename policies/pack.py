"""Adapts RULES to pulumi_policy objects. Building Policy objects is side-effect free; only
PolicyPack(...) starts the analyzer server, and that happens in __main__.py alone."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyProviderResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

import cdao_stacks
from policies.core import Finding, Resource, Rule, normalize
from policies.engine import RULES, context_for, run_resource_rule, run_stack_rule
from policies.settings import ConfigError, config_schema_properties, known_stacks

PACK_NAME = "cdao-platform"
_LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}
#: Set to pick the policy profile explicitly, over the stack file's `cdao-stack:profile`.
STACK_ENV = "CDAO_POLICY_STACK"


def current_stack() -> str:
    """The stack being previewed: the engine's PULUMI_STACK (an `org/project/` prefix dropped)."""
    name = os.environ.get("PULUMI_STACK", "")
    if not name:
        import pulumi  # noqa: PLC0415 - only needed when the engine did not export PULUMI_STACK

        name = pulumi.get_stack()
    return name.rsplit("/", 1)[-1]


@functools.cache
def _registered_profile(stack: str) -> str | None:
    """The profile the stack registry gives `stack`, None if it has no file there. Read once per
    analyzer process: the stack files do not change during a preview."""
    try:
        return cdao_stacks.load().get(stack).profile
    except cdao_stacks.UnknownStackError:
        return None
    except cdao_stacks.StackRegistryError as exc:
        raise ConfigError(str(exc)) from None


def _stack_for(config: Mapping[str, Any]) -> tuple[str, str]:
    """(stack, policy profile): CDAO_POLICY_STACK, else the stack's entry in the stack registry."""
    stack = current_stack()
    profile = os.environ.get(STACK_ENV) or _registered_profile(stack) or stack
    if profile not in known_stacks(config):
        raise ConfigError(
            f"stack {stack!r} has no policy profile (known: {sorted(known_stacks(config))}); give it a "
            f"{cdao_stacks.PROFILE_KEY} in environments/Pulumi.{stack}.yaml or set {STACK_ENV} to one of them"
        )
    return stack, profile


def _report(findings: list[Finding], report: ReportViolation, *, with_urn: bool) -> None:
    """Report real findings; then surface unknowns the way the engine expects them: as an
    UnknownValueError, which it records as an advisory 'can't run policy during preview'."""
    unknowns = []
    for f in findings:
        if f.unknown:
            unknowns.append(f.message)
        else:
            report(f.message, f.resource.urn if with_urn and f.resource and f.resource.urn else None)
    if unknowns:
        err = UnknownValueError(UNKNOWN_STRING_VALUE, [])
        err.message = "; ".join(unknowns)
        raise err


def _policy_config(rule: Rule, raw: Mapping[str, Any]) -> dict[str, Any]:
    # Pulumi hands each policy only its own config: re-key it the way settings.resolve expects.
    return {rule.id: {k: v for k, v in dict(raw).items() if k != "enforcementLevel"}}


def _with_default_tags(props: dict[str, Any], provider: PolicyProviderResource | None) -> dict[str, Any]:
    """Fold the provider's defaultTags into tagsAll, which is what AWS will actually apply."""
    if provider is None:
        return props
    provider_props = normalize(provider.props)
    defaults = provider_props.get("defaultTags")
    default_tags = defaults.get("tags") if isinstance(defaults, dict) else None
    if not isinstance(default_tags, dict) or not default_tags:
        return props
    merged = dict(default_tags)
    for key in ("tagsAll", "tags"):
        if isinstance(props.get(key), dict):
            merged.update(props[key])
    return {**props, "tagsAll": merged}


def _policy_fields(rule: Rule) -> dict[str, Any]:
    """What a resource and a stack policy say alike about their rule."""
    return {
        "name": rule.id,
        "description": f"{rule.name}. {rule.description}",
        "enforcement_level": _LEVELS[rule.level],
        "config_schema": PolicyConfigSchema(config_schema_properties(rule.settings)) if rule.settings else None,
        "display_name": rule.name,
        "remediation_steps": rule.remediation,
        "tags": [rule.family],
    }


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        config = _policy_config(rule, args.get_config())
        props = _with_default_tags(normalize(args.props), args.provider)
        res = Resource(type=args.resource_type, name=args.name, props=props, urn=args.urn)
        stack, profile = _stack_for(config)
        ctx = context_for(rule, stack, config, profile=profile)
        _report(run_resource_rule(rule, res, ctx), report, with_urn=False)

    return ResourceValidationPolicy(validate=validate, **_policy_fields(rule))


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        config = _policy_config(rule, args.get_config())
        resources = [
            Resource(
                type=r.resource_type,
                name=r.name,
                props=normalize(r.props),
                urn=r.urn,
                deps={k: tuple(d.urn for d in v) for k, v in r.property_dependencies.items()},
            )
            for r in args.resources
        ]
        stack, profile = _stack_for(config)
        ctx = context_for(rule, stack, config, profile=profile)
        _report(run_stack_rule(rule, resources, ctx), report, with_urn=True)

    return StackValidationPolicy(validate=validate, **_policy_fields(rule))


def build_policies(rules: list[Rule] | None = None) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [_stack_policy(r) if r.kind == "stack" else _resource_policy(r) for r in (rules or RULES)]

"""Per-profile settings: defaults, JSON schemas for the pack's config, and how overrides resolve.

A stack follows one policy profile (its `cdao-stack:profile` in the stack registry, cdao_stacks): a
sandbox stack can follow dev's. A setting's value is always a map from profile to the value for that
profile, so one config file (or Pulumi policy config) describes dev, staging and prod side by side.
Resolution for a rule R, setting S and profile T, first hit wins:

1. config[R.id][S][T]        -- per-rule override, the shape Pulumi's policy config uses
2. config["stacks"][T][S]    -- shared override for every rule that reads S (`--config` files)
3. DEFAULTS[S][T]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdao_stacks import DESTROYABLE_PROFILES, PROFILES

STACKS: tuple[str, ...] = PROFILES

_CPU_TYPES = [
    *(f"{fam}.{size}" for fam in ("m5", "m6i", "m7i") for size in ("large", "xlarge", "2xlarge", "4xlarge")),
    *(f"{fam}.{size}" for fam in ("c5", "c6i") for size in ("xlarge", "2xlarge", "4xlarge")),
    "t3.medium",
    "t3.large",
]
_GPU_TYPES_DEV = ["p4d.24xlarge", "p4de.24xlarge"]
_GPU_TYPES = [*_GPU_TYPES_DEV, "p5.48xlarge"]
_RDS_CLASSES = ["db.t4g.*", "db.r6g.large", "db.r6g.xlarge", "db.r7g.large", "db.r7g.xlarge"]

# Peak USD/month: every pool at its max size, priced with cdao_cost.estimate's table. Sized for the
# GPU caps below (a p4d.24xlarge is ~24k USD/month on demand, a p5.48xlarge ~72k).
DEFAULTS: dict[str, dict[str, Any]] = {
    "allowedInstanceTypes": {
        "dev": [*_CPU_TYPES, *_GPU_TYPES_DEV],
        "staging": [*_CPU_TYPES, *_GPU_TYPES],
        "prod": [*_CPU_TYPES, *_GPU_TYPES],
    },
    "gpuPoolMaxNodes": {"dev": 2, "staging": 4, "prod": 16},
    "gpuPoolMinNodes": {"dev": 0, "staging": 0, "prod": 0},
    # Every pool, CPU included; the stacks' largest pools (environments/) are 6, 6 and 12 nodes.
    "nodePoolMaxNodes": {"dev": 10, "staging": 20, "prod": 50},
    "allowedRdsInstanceClasses": {s: list(_RDS_CLASSES) for s in STACKS},
    "maxNatGateways": {"dev": 1, "staging": None, "prod": None},
    "requiredTags": {s: ["team", "cost-center", "environment"] for s in STACKS},
    "budgetUsdMonth": {"dev": 100_000, "staging": 300_000, "prod": 2_500_000},
    "requireRdsMultiAz": {"dev": False, "staging": False, "prod": True},
    "requireRdsDeletionProtection": {"dev": False, "staging": False, "prod": True},
    "requireRdsFinalSnapshot": {"dev": False, "staging": True, "prod": True},
    "destroyableStack": {s: s in DESTROYABLE_PROFILES for s in STACKS},
    "trustedAccountIds": {s: [] for s in STACKS},
    "publicSecurityGroups": {s: [] for s in STACKS},
}

_STR_LIST = {"type": "array", "items": {"type": "string"}}
VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "allowedInstanceTypes": {**_STR_LIST, "description": "EC2 instance types (glob patterns) allowed."},
    "gpuPoolMaxNodes": {"type": "integer", "minimum": 0, "description": "Largest max size of a GPU pool."},
    "gpuPoolMinNodes": {"type": "integer", "minimum": 0, "description": "Largest min size of a GPU pool."},
    "nodePoolMaxNodes": {"type": "integer", "minimum": 1, "description": "Largest max size of any node pool."},
    "allowedRdsInstanceClasses": {**_STR_LIST, "description": "RDS instance classes (glob patterns)."},
    "maxNatGateways": {
        "type": ["integer", "null"],
        "minimum": 0,
        "description": "Most NAT gateways a stack may declare; null for no limit.",
    },
    "requiredTags": {**_STR_LIST, "description": "Tag keys every taggable AWS resource must carry."},
    "budgetUsdMonth": {"type": "number", "minimum": 0, "description": "Peak monthly cost budget in USD."},
    "requireRdsMultiAz": {"type": "boolean", "description": "Whether RDS instances must be Multi-AZ."},
    "requireRdsDeletionProtection": {"type": "boolean", "description": "Whether RDS needs deletion protection."},
    "requireRdsFinalSnapshot": {"type": "boolean", "description": "Whether deleting RDS must keep a final snapshot."},
    "destroyableStack": {
        "type": "boolean",
        "description": "Whether the stack is disposable: `pulumi destroy` must succeed and may delete its data.",
    },
    "trustedAccountIds": {
        **_STR_LIST,
        "description": "AWS account ids that count as 'own' (trust from them is not cross-account).",
    },
    "publicSecurityGroups": {
        **_STR_LIST,
        "description": (
            "Security groups (Pulumi logical name, group id, group name, or the Name tag the AWS Load Balancer "
            "Controller's security-groups annotation matches) that front an internet-facing load balancer "
            "created outside the stack, e.g. by the AWS Load Balancer Controller."
        ),
    },
}


class ConfigError(ValueError):
    """A config value or stack name the pack cannot use; the message names what is wrong."""


def known_stacks(config: Mapping[str, Any] | None) -> set[str]:
    stacks = set(STACKS)
    if config and isinstance(config.get("stacks"), Mapping):
        stacks |= set(config["stacks"])
    return stacks


def check_config(config: Mapping[str, Any] | None, rules: Mapping[str, tuple[str, ...]]) -> None:
    """Reject config a typo would otherwise make silently ineffective.

    `rules` maps each rule id to the settings it reads.
    """
    if not config:
        return
    for key, value in config.items():
        if key == "all":
            continue
        if key == "stacks":
            if not isinstance(value, Mapping):
                raise ConfigError("'stacks' must map stack names to settings")
            for stack, settings in value.items():
                if not isinstance(settings, Mapping):
                    raise ConfigError(f"stacks.{stack} must be an object of settings")
                unknown = sorted(set(settings) - set(DEFAULTS))
                if unknown:
                    raise ConfigError(f"stacks.{stack}: unknown setting(s) {unknown}; known: {sorted(DEFAULTS)}")
            continue
        if key not in rules:
            raise ConfigError(f"unknown rule id {key!r} in config")
        if isinstance(value, str):
            continue  # a bare enforcement level, as Pulumi allows
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected an enforcement level or an object")
        for setting, per_stack in value.items():
            if setting == "enforcementLevel":
                continue
            if setting not in rules[key]:
                raise ConfigError(f"{key}: unknown setting {setting!r}; it reads {list(rules[key]) or 'none'}")
            if not isinstance(per_stack, Mapping):
                raise ConfigError(f"{key}.{setting}: expected a map from stack name to value, got {per_stack!r}")


def resolve(rule_id: str, keys: tuple[str, ...], stack: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    config = config or {}
    shared = config.get("stacks", {}) if isinstance(config.get("stacks"), Mapping) else {}
    per_rule = config.get(rule_id, {}) if isinstance(config.get(rule_id), Mapping) else {}
    out: dict[str, Any] = {}
    for key in keys:
        rule_value = per_rule.get(key)
        if rule_value is not None and not isinstance(rule_value, Mapping):
            raise ConfigError(f"{rule_id}.{key}: expected a map from stack name to value, got {rule_value!r}")
        if isinstance(rule_value, Mapping) and stack in rule_value:
            value = rule_value[stack]
        elif isinstance(shared.get(stack), Mapping) and key in shared[stack]:
            value = shared[stack][key]
        elif stack in DEFAULTS[key]:
            value = DEFAULTS[key][stack]
        else:
            raise ConfigError(f"stack {stack!r}: setting {key!r} (rule {rule_id}) has no value and no default")
        out[key] = _validated(key, value, stack, rule_id)
    return out


def _validated(key: str, value: Any, stack: str, rule_id: str) -> Any:
    schema = VALUE_SCHEMAS[key]
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    where = f"stack {stack!r}, setting {key!r} (rule {rule_id})"
    if value is None and "null" in types:
        return None
    if "array" in types:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    if "boolean" in types:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if value < schema.get("minimum", float("-inf")):
        raise ConfigError(f"{where}: must be >= {schema['minimum']}, got {value!r}")
    return value


def config_schema_properties(keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The JSON schema of one rule's Pulumi policy config: each setting is a map stack -> value."""
    return {
        key: {
            "type": "object",
            "additionalProperties": VALUE_SCHEMAS[key],
            "default": DEFAULTS[key],
            "description": VALUE_SCHEMAS[key]["description"] + " Keyed by stack name.",
        }
        for key in keys
    }

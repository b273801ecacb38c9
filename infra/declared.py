"""The `declared` stack output: what this deployment promised, recorded by the program that deployed it.

`cdao doctor` judges a deployed stack against this output (with `logGroups`, which carries each
group's declared retention) instead of importing this repository's Python: a stack pinned to an
older commit was built by that commit's code and defaults, which the checkout doctoring it may have
changed since. Every value is plain JSON (no secret, no unresolved Output), so
`pulumi stack output --json` prints it whole.

Shape (DECLARED_OUTPUT, version DECLARED_VERSION):

    {"version": 1,
     "stack": "<stack name>",
     "clusterLabels": {"environment": ..., "profile": ..., "enable_<addon>": "true"|"false", ...},
     "chartVersions": {"<chart key>": "<version>"},       # cdao:gitops.chartVersions
     "repoRevision": "<40-hex commit platform/ is synced at>",
     "serviceAccounts": {"<role key>": {"namespace": ..., "name": ..., "addon": "<addon>"|null}},
     "nodePoolLabel": "cdao.io/node-pool",
     "nodePools": {"<enabled pool>": {"labels": {...}, "taints": [{"key", "value", "effect"}],
                                      "gpuResources": {"<extended resource>": <count per node>}}},
     "backupMaxAgeHours": <hours> | null,                 # null: AWS Backup is off
     "adminRoleArns": ["<role ARN>", ...]}                # deploy roles first, then break-glass and admins

Taint effects are EKS's enum (NO_SCHEDULE, NO_EXECUTE, PREFER_NO_SCHEDULE: botocore's eks model,
Taint.effect), as DescribeNodegroup returns them.

The shape is one typed model, Declared: the program builds the output through it and `cdao doctor`
validates a saved output with it, so the writer and the reader cannot drift.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cdao_pools import EKS_TAINT_EFFECT, NODE_POOL_LABEL
from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from infra.config import StackConfig
from infra.contract import FLYTE_DOMAINS, SERVICE_ACCOUNTS, cluster_labels, flyte_task_account

#: The output's key, and the version of its shape; the doctor refuses other versions.
DECLARED_OUTPUT = "declared"
DECLARED_VERSION = 1


class _Shape(BaseModel):
    # strict: JSON's true is no count and "2" no number; forbid: a key this version does not define
    # means the output is another version's or hand-edited.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=True)


def _eks_effect(effect: str) -> str:
    if effect not in EKS_TAINT_EFFECT.values():
        raise ValueError(f"expected one of EKS's taint effects {sorted(EKS_TAINT_EFFECT.values())}")
    return effect


class DeclaredServiceAccount(_Shape):
    namespace: str
    name: str
    addon: str | None  # the add-on whose Application creates it; None when the platform always does


class DeclaredTaint(_Shape):
    key: str
    value: str
    effect: Annotated[str, AfterValidator(_eks_effect)]


class DeclaredNodePool(_Shape):
    labels: dict[str, str]
    taints: list[DeclaredTaint]
    gpu_resources: dict[str, int]  # extended resource -> count per node


class Declared(_Shape):
    """The `declared` output (module docstring): `model_dump(by_alias=True)` is the JSON the program
    exports; `model_validate` of that JSON raises pydantic's ValidationError naming each bad key path."""

    version: Literal[1]
    stack: str
    cluster_labels: dict[str, str]
    chart_versions: dict[str, str]
    repo_revision: str
    service_accounts: dict[str, DeclaredServiceAccount]
    node_pool_label: str
    node_pools: dict[str, DeclaredNodePool]
    backup_max_age_hours: float | None  # None: AWS Backup is off
    admin_role_arns: list[str]  # deploy roles first (the first created the cluster), then the other admins


def declared(config: StackConfig, *, revision_commit: str) -> dict[str, Any]:
    """The `declared` output of `config`'s stack (module docstring), platform/ at `revision_commit`."""
    # Imported here: the components import Pulumi, and `cdao doctor` (which reads DECLARED_OUTPUT and
    # DECLARED_VERSION from this module) must not load it for `cdao --help`.
    from infra.components.backup import RECOVERY_POINT_MAX_AGE  # noqa: PLC0415
    from infra.components.node_pool import gpu_resources, pool_labels  # noqa: PLC0415

    accounts = list(SERVICE_ACCOUNTS) + [flyte_task_account(p, d) for p in config.flyte.projects for d in FLYTE_DOMAINS]
    return Declared(
        version=DECLARED_VERSION,
        stack=config.stack,
        cluster_labels=cluster_labels(config.stack, config.entry.profile, config.addons),
        chart_versions=dict(config.gitops.chart_versions),
        repo_revision=revision_commit,
        service_accounts={
            a.role: DeclaredServiceAccount(namespace=a.namespace, name=a.name, addon=a.addon) for a in accounts
        },
        node_pool_label=NODE_POOL_LABEL,
        node_pools={
            name: DeclaredNodePool(
                labels=pool_labels(name, pool),
                taints=[
                    DeclaredTaint(key=t.key, value=t.value, effect=EKS_TAINT_EFFECT[t.effect]) for t in pool.taints
                ],
                gpu_resources=gpu_resources(pool),
            )
            for name, pool in sorted(config.enabled_pools.items())
        },
        backup_max_age_hours=RECOVERY_POINT_MAX_AGE.total_seconds() / 3600 if config.backup.enabled else None,
        # The first deploy role is the cluster's creator (EKS makes it admin, so the program declares
        # no access entry for it); the doctor checks every one of these has a cluster-admin entry.
        admin_role_arns=list(
            dict.fromkeys([*config.cluster.deploy_role_arns, *config.cluster.declared_admin_role_arns])
        ),
    ).model_dump(by_alias=True)

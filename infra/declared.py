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
"""

from __future__ import annotations

from typing import Any

from cdao_pools import EKS_TAINT_EFFECT, NODE_POOL_LABEL

from infra.config import StackConfig
from infra.contract import FLYTE_DOMAINS, SERVICE_ACCOUNTS, cluster_labels, flyte_task_account

#: The output's key, and the version of its shape; the doctor refuses other versions.
DECLARED_OUTPUT = "declared"
DECLARED_VERSION = 1


def declared(config: StackConfig, *, revision_commit: str) -> dict[str, Any]:
    """The `declared` output of `config`'s stack (module docstring), platform/ at `revision_commit`."""
    # Imported here: the components import Pulumi, and `cdao doctor` (which reads DECLARED_OUTPUT and
    # DECLARED_VERSION from this module) must not load it for `cdao --help`.
    from infra.components.backup import RECOVERY_POINT_MAX_AGE  # noqa: PLC0415
    from infra.components.node_pool import gpu_resources, pool_labels  # noqa: PLC0415

    accounts = list(SERVICE_ACCOUNTS) + [flyte_task_account(p, d) for p in config.flyte.projects for d in FLYTE_DOMAINS]
    return {
        "version": DECLARED_VERSION,
        "stack": config.stack,
        "clusterLabels": cluster_labels(config.stack, config.entry.profile, config.addons),
        "chartVersions": dict(config.gitops.chart_versions),
        "repoRevision": revision_commit,
        "serviceAccounts": {a.role: {"namespace": a.namespace, "name": a.name, "addon": a.addon} for a in accounts},
        "nodePoolLabel": NODE_POOL_LABEL,
        "nodePools": {
            name: {
                "labels": pool_labels(name, pool),
                "taints": [{"key": t.key, "value": t.value, "effect": EKS_TAINT_EFFECT[t.effect]} for t in pool.taints],
                "gpuResources": gpu_resources(pool),
            }
            for name, pool in sorted(config.enabled_pools.items())
        },
        "backupMaxAgeHours": RECOVERY_POINT_MAX_AGE.total_seconds() / 3600 if config.backup.enabled else None,
        # The first deploy role is the cluster's creator (EKS makes it admin, so the program declares
        # no access entry for it); the doctor checks every one of these has a cluster-admin entry.
        "adminRoleArns": list(
            dict.fromkeys([*config.cluster.deploy_role_arns, *config.cluster.declared_admin_role_arns])
        ),
    }

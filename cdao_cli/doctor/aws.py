"""Checks answered by AWS APIs: IRSA trust, node groups, the Flyte certificate, log groups, backups.

Response shapes are botocore's service models (the installed botocore's `data/<service>/*/service-2.json`):
- EKS DescribeCluster `cluster.identity.oidc.issuer` is the issuer URL with `https://`;
  DescribeNodegroup gives `status`, `labels` and `taints` (effects `NO_SCHEDULE`, `NO_EXECUTE`,
  `PREFER_NO_SCHEDULE`).
- IAM GetRole gives `AssumeRolePolicyDocument` (boto3 returns it decoded to a dict).
- ACM DescribeCertificate gives `Certificate.Status` (`ISSUED` once validated).
- CloudWatch Logs DescribeLogGroups gives `retentionInDays` (absent: kept forever).
- AWS Backup ListRecoveryPointsByBackupVault gives `CreationDate` and `Status` per recovery point.
IRSA condition keys are the issuer without its scheme, `<issuer>:sub` and `<issuer>:aud`
(AWS EKS user guide, "Assign IAM roles to Kubernetes service accounts", trust policy example).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cdao_cli.doctor.context import DoctorContext
from cdao_cli.doctor.report import CheckResult, failed, passed, skipped
from infra.config import NODE_POOL_LABEL
from infra.contract import FLYTE_DOMAINS, SERVICE_ACCOUNTS, flyte_task_account

# Kubernetes taint effects (config) -> the EKS API's enum (EKS API reference, "Taint").
EKS_TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}
# A daily backup plan's newest recovery point is at most a day old, plus the start and completion
# windows the plan allows (infra/components/backup.py: start 60 min, completion 480 min).
RECOVERY_POINT_MAX_AGE = timedelta(hours=24 + 1 + 8)


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
    return str(exc)


def _guard(family: str, name: str, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """Run a family's calls; an AWS error becomes one failed check that says which call and why."""
    try:
        return check()
    except (ClientError, BotoCoreError) as exc:
        return [
            failed(
                family,
                name,
                f"AWS refused or failed: {_aws_error(exc)}",
                "check the credentials (aws sts get-caller-identity) and that they may read this stack's resources",
            )
        ]


def _expected_accounts(ctx: DoctorContext) -> dict[str, tuple[str, str]]:
    accounts = {a.role: (a.namespace, a.name) for a in SERVICE_ACCOUNTS}
    for project in ctx.config.flyte.projects:
        for domain in FLYTE_DOMAINS:
            account = flyte_task_account(project, domain)
            accounts[account.role] = (account.namespace, account.name)
    return accounts


def irsa(ctx: DoctorContext, service_account_exists: Callable[[str, str], bool | None]) -> list[CheckResult]:
    """Each IRSA role trusts the cluster's real OIDC issuer and exactly the service account it serves.

    `service_account_exists(namespace, name)` answers True/False, or None when Kubernetes cannot
    be asked (no kubeconfig): then only the trust is checked.
    """
    roles: dict[str, str] | None = ctx.output("roleArns")
    cluster_name = ctx.output("clusterName")
    if not roles or not cluster_name:
        return [
            skipped(
                "irsa",
                "roles",
                "the outputs have no roleArns/clusterName",
                "pass --outputs with `pulumi stack output --json` of this stack",
            )
        ]

    def check() -> list[CheckResult]:
        issuer_url = ctx.client("eks").describe_cluster(name=cluster_name)["cluster"]["identity"]["oidc"]["issuer"]
        issuer = issuer_url.removeprefix("https://")
        account_id = ctx.client("sts").get_caller_identity()["Account"]
        provider_arn = f"arn:aws:iam::{account_id}:oidc-provider/{issuer}"
        expected = _expected_accounts(ctx)
        results = []
        for key, arn in sorted(roles.items()):
            results.append(
                _check_role(
                    ctx,
                    key,
                    arn,
                    issuer=issuer,
                    provider_arn=provider_arn,
                    account=expected.get(key),
                    service_account_exists=service_account_exists,
                )
            )
        return results

    return _guard("irsa", "roles", check)


def _check_role(
    ctx: DoctorContext,
    key: str,
    arn: str,
    *,
    issuer: str,
    provider_arn: str,
    account: tuple[str, str] | None,
    service_account_exists: Callable[[str, str], bool | None],
) -> CheckResult:
    role_name = arn.rsplit("/", 1)[-1]
    document = ctx.client("iam").get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    statements = document.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    web = [s for s in statements if s.get("Action") == "sts:AssumeRoleWithWebIdentity"]
    if not web:
        return failed("irsa", key, f"{role_name} has no sts:AssumeRoleWithWebIdentity statement", "run pulumi up")
    federated = {s.get("Principal", {}).get("Federated") for s in web}
    conditions: dict[str, Any] = {}
    for s in web:
        conditions.update(s.get("Condition", {}).get("StringEquals", {}))
    if provider_arn not in federated:
        return failed(
            "irsa",
            key,
            f"{role_name} trusts {sorted(filter(None, federated))}, not this cluster's provider {provider_arn}",
            "run pulumi up (the cluster was replaced, or the role belongs to another stack)",
        )
    sub, aud = conditions.get(f"{issuer}:sub"), conditions.get(f"{issuer}:aud")
    if sub is None or aud != "sts.amazonaws.com":
        keys = ", ".join(sorted(conditions)) or "none"
        return failed(
            "irsa",
            key,
            f"{role_name}'s conditions ({keys}) do not pin {issuer}:sub and {issuer}:aud = sts.amazonaws.com",
            "condition keys must be the issuer without https:// (EKS user guide); fix the trust and run pulumi up",
        )
    namespace, _, name = str(sub).removeprefix("system:serviceaccount:").partition(":")
    if account is not None and (namespace, name) != account:
        return failed(
            "irsa",
            key,
            f"{role_name} trusts {namespace}/{name}, the contract says {account[0]}/{account[1]}",
            "run pulumi up from the commit the platform runs",
        )
    exists = service_account_exists(namespace, name)
    if exists is False:
        return failed(
            "irsa",
            key,
            f"service account {namespace}/{name} that {role_name} trusts does not exist",
            "check the Argo CD Application that creates it (cdao doctor's argocd checks) or the add-on switch",
        )
    where = "exists" if exists else "not looked up (no kubeconfig)"
    return passed("irsa", key, f"{role_name} trusts {namespace}/{name} via {issuer}; the account {where}")


def node_groups(ctx: DoctorContext) -> list[CheckResult]:
    """Each enabled pool has an ACTIVE node group with the labels and taints the config declares."""
    from infra.components.node_pool import pool_labels  # noqa: PLC0415 - the program's own label set

    cluster_name = ctx.output("clusterName")
    if not cluster_name:
        return [skipped("node-groups", "pools", "the outputs have no clusterName", "pass --outputs")]

    def check() -> list[CheckResult]:
        eks = ctx.client("eks")
        names = [
            n
            for page in eks.get_paginator("list_nodegroups").paginate(clusterName=cluster_name)
            for n in page["nodegroups"]
        ]
        groups = [eks.describe_nodegroup(clusterName=cluster_name, nodegroupName=n)["nodegroup"] for n in names]
        by_pool = {g.get("labels", {}).get(NODE_POOL_LABEL): g for g in groups}
        results = []
        for pool_name, pool in sorted(ctx.config.node_pools.items()):
            if not pool.enabled:
                continue
            group = by_pool.get(pool_name)
            if group is None:
                results.append(
                    failed(
                        "node-groups",
                        pool_name,
                        f"no node group of {cluster_name} carries {NODE_POOL_LABEL}={pool_name}",
                        "run pulumi up; if it fails, read the node group's health in the EKS console",
                    )
                )
                continue
            results.append(_check_group(pool_name, group, pool_labels(pool_name, pool), pool.taints))
        return results

    return _guard("node-groups", "pools", check)


def _check_group(pool_name: str, group: dict[str, Any], labels: dict[str, str], taints: Iterable[Any]) -> CheckResult:
    name = group["nodegroupName"]
    if group.get("status") != "ACTIVE":
        issues = "; ".join(f"{i.get('code')}: {i.get('message')}" for i in group.get("health", {}).get("issues", []))
        return failed(
            "node-groups",
            pool_name,
            f"{name} is {group.get('status')}" + (f" ({issues})" if issues else ""),
            "read the node group's health issues (aws eks describe-nodegroup) and fix what they name",
        )
    missing = {k: v for k, v in labels.items() if group.get("labels", {}).get(k) != v}
    want = {(t.key, t.value or None, EKS_TAINT_EFFECT[t.effect]) for t in taints}
    have = {(t["key"], t.get("value") or None, t["effect"]) for t in group.get("taints", [])}
    if missing or want != have:
        parts = []
        if missing:
            parts.append(f"labels missing or different: {missing}")
        if want != have:
            parts.append(f"taints {sorted(have, key=str)} instead of {sorted(want, key=str)}")
        return failed("node-groups", pool_name, f"{name}: " + "; ".join(parts), "run pulumi up; look for drift")
    return passed("node-groups", pool_name, f"{name} ACTIVE with its {len(labels)} labels and {len(want)} taints")


def certificate(ctx: DoctorContext) -> list[CheckResult]:
    arn = ctx.output("flyteCertificateArn")
    if not arn:
        return [skipped("certificate", "flyte", "the outputs have no flyteCertificateArn", "pass --outputs")]

    def check() -> list[CheckResult]:
        cert = ctx.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
        if cert["Status"] == "ISSUED":
            return [passed("certificate", "flyte", f"{cert['DomainName']} ISSUED")]
        record = ctx.output("flyteCertificateValidationRecord")
        return [
            failed(
                "certificate",
                "flyte",
                f"{cert['DomainName']} is {cert['Status']}",
                f"create the DNS validation record {record} (stack output flyteCertificateValidationRecord)"
                if record
                else "create the DNS validation record ACM shows for it",
            )
        ]

    return _guard("certificate", "flyte", check)


def log_groups(ctx: DoctorContext) -> list[CheckResult]:
    """Each log group the program declares exists with its declared retention (stack output logGroups)."""
    declared: dict[str, dict[str, Any]] | None = ctx.output("logGroups")
    if not declared:
        return [skipped("logs", "log groups", "the outputs have no logGroups", "pass --outputs of a current stack")]

    def check() -> list[CheckResult]:
        logs = ctx.client("logs")
        results = []
        for purpose, want in sorted(declared.items()):
            name, days = want["name"], want["retentionDays"]
            found = [
                g for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"] if g["logGroupName"] == name
            ]
            if not found:
                results.append(failed("logs", purpose, f"{name} does not exist", "run pulumi up"))
            elif found[0].get("retentionInDays") != days:
                have = found[0].get("retentionInDays", "never expire")
                results.append(
                    failed("logs", purpose, f"{name} keeps {have} days, declared {days}", "run pulumi up (drift)")
                )
            else:
                results.append(passed("logs", purpose, f"{name} keeps {days} days"))
        return results

    return _guard("logs", "log groups", check)


def backups(ctx: DoctorContext, now: datetime | None = None) -> list[CheckResult]:
    backup = ctx.output("backup")
    if not backup:
        return [skipped("backup", "vault", "the stack has no backup output (backups off?)", "enable cdao:backup")]
    now = now or datetime.now(UTC)

    def check() -> list[CheckResult]:
        client = ctx.client("backup")
        points = [
            p
            for page in client.get_paginator("list_recovery_points_by_backup_vault").paginate(
                BackupVaultName=backup["vaultName"]
            )
            for p in page["RecoveryPoints"]
            if p.get("Status") == "COMPLETED"
        ]
        if not points:
            return [
                failed(
                    "backup",
                    backup["vaultName"],
                    "no completed recovery point yet",
                    "wait for the first daily window (05:00 UTC) or start an on-demand backup job and read its status",
                )
            ]
        newest = max(p["CreationDate"] for p in points)
        age = now - newest
        if age > RECOVERY_POINT_MAX_AGE:
            return [
                failed(
                    "backup",
                    backup["vaultName"],
                    f"newest completed recovery point is {age.days} d {age.seconds // 3600} h old",
                    "list the plan's backup jobs (aws backup list-backup-jobs) and fix the failing ones",
                )
            ]
        return [passed("backup", backup["vaultName"], f"{len(points)} recovery points, newest {newest.isoformat()}")]

    return _guard("backup", backup["vaultName"], check)

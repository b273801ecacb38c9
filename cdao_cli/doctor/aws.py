"""Checks answered by AWS APIs: cluster-admin access entries, IRSA trust, node groups, the Flyte
certificate, log groups, backups.

Response shapes are botocore's service models (the installed botocore's `data/<service>/*/service-2.json`):
- EKS ListAccessEntries gives `accessEntries`, the entries' principal ARNs (EKS API reference,
  API_ListAccessEntries);
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
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cdao_pools import EKS_TAINT_EFFECT, NODE_POOL_LABEL

from cdao_cli.doctor.context import DoctorContext
from cdao_cli.doctor.kube import ROLE_ANNOTATION, KubeUnavailable, ServiceAccountLookup
from cdao_cli.doctor.report import CheckResult, failed, passed, skipped
from infra.contract import FLYTE_DOMAINS, SERVICE_ACCOUNTS, ServiceAccount, flyte_task_account


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
    return str(exc)


_CREDENTIALS_REMEDY = (
    "check the credentials (aws sts get-caller-identity) and that they may read this stack's resources"
)


def _guard(family: str, name: str, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """Run a family's calls; an AWS error becomes one failed check that says which call and why."""
    try:
        return check()
    except (ClientError, BotoCoreError) as exc:
        return [failed(family, name, f"AWS refused or failed: {_aws_error(exc)}", _CREDENTIALS_REMEDY)]


def _expected_accounts(ctx: DoctorContext) -> dict[str, ServiceAccount]:
    accounts = {a.role: a for a in SERVICE_ACCOUNTS}
    for project in ctx.config.flyte.projects:
        for domain in FLYTE_DOMAINS:
            account = flyte_task_account(project, domain)
            accounts[account.role] = account
    return accounts


def irsa(ctx: DoctorContext, lookup: ServiceAccountLookup) -> list[CheckResult]:
    """The cluster's IAM OIDC provider exists and lists `sts.amazonaws.com` as a client ID (without it
    STS refuses every web identity: EKS user guide, "Create an IAM OIDC provider for your cluster");
    every role the contract expects is in the `roleArns` output; each IRSA role exists, trusts the
    cluster's real OIDC issuer and exactly the service account it serves; that account exists (unless
    its add-on is off) and carries the role's ARN in the `eks.amazonaws.com/role-arn` annotation,
    without which pods get no AWS credentials (EKS user guide, "Configure Kubernetes service accounts
    to assume an IAM role"). Each role is its own result: one deleted role hides none of the others.
    """
    roles: dict[str, str] = ctx.output("roleArns")
    cluster_name = ctx.output("clusterName")
    expected = _expected_accounts(ctx)
    found: dict[str, str] = {}

    def cluster() -> list[CheckResult]:
        issuer_url = ctx.client("eks").describe_cluster(name=cluster_name)["cluster"]["identity"]["oidc"]["issuer"]
        account_id = ctx.client("sts").get_caller_identity()["Account"]
        found["issuer"] = issuer_url.removeprefix("https://")
        found["provider_arn"] = f"arn:aws:iam::{account_id}:oidc-provider/{found['issuer']}"
        return []

    results = _guard("irsa", "cluster issuer", cluster)
    if results:
        return results
    issuer, provider_arn = found["issuer"], found["provider_arn"]
    results.append(_oidc_provider(ctx, provider_arn))
    for key in sorted(set(expected) - set(roles)):
        results.append(
            failed(
                "irsa",
                key,
                f"the roleArns output has no {key} role, which the contract expects (infra/contract.py)",
                "run pulumi up from the revision this stack runs, then save the outputs again",
            )
        )
    unreachable = None
    for key, arn in sorted(roles.items()):
        account = expected.get(key)
        try:
            result, trusted = _check_trust(ctx, key, arn, issuer=issuer, provider_arn=provider_arn, account=account)
        except ClientError as exc:
            results.append(_role_error(key, arn, exc))
            continue
        except BotoCoreError as exc:
            results.append(failed("irsa", key, f"AWS failed: {exc}", "check the network and re-run"))
            continue
        if result is None:
            result, unreachable = _check_account(
                ctx, key, arn, trusted=trusted, account=account, lookup=lookup, unreachable=unreachable
            )
        results.append(result)
    if unreachable is not None:
        results.append(
            failed("irsa", "service accounts", f"not looked up: {unreachable}", "fix access to the cluster, re-run")
        )
    return results


def _oidc_provider(ctx: DoctorContext, provider_arn: str) -> CheckResult:
    """IAM GetOpenIDConnectProvider (`ClientIDList`; NoSuchEntity when absent), per the botocore model."""
    try:
        provider = ctx.client("iam").get_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return failed(
                "irsa",
                "oidc-provider",
                f"IAM has no OIDC provider {provider_arn}: no pod can assume its role",
                "run pulumi up (the cluster component creates it); `aws iam list-open-id-connect-providers` lists them",
            )
        return failed("irsa", "oidc-provider", f"AWS refused: {_aws_error(exc)}", _CREDENTIALS_REMEDY)
    if "sts.amazonaws.com" not in provider.get("ClientIDList", []):
        return failed(
            "irsa",
            "oidc-provider",
            f"{provider_arn} does not list sts.amazonaws.com as a client ID (the `aud` of IRSA tokens)",
            "run pulumi up",
        )
    return passed("irsa", "oidc-provider", f"{provider_arn} exists for sts.amazonaws.com")


def _role_error(key: str, arn: str, exc: ClientError) -> CheckResult:
    role_name = arn.rsplit("/", 1)[-1]
    if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
        return failed(
            "irsa",
            key,
            f"role {role_name} ({arn}) does not exist",
            "it was deleted outside Pulumi, or the outputs are another stack's: pulumi refresh, then pulumi up",
        )
    return failed("irsa", key, f"cannot read role {role_name}: {_aws_error(exc)}", _CREDENTIALS_REMEDY)


def _check_trust(
    ctx: DoctorContext, key: str, arn: str, *, issuer: str, provider_arn: str, account: ServiceAccount | None
) -> tuple[CheckResult | None, tuple[str, str]]:
    """A failed result, or None and the (namespace, name) the trust pins."""
    role_name = arn.rsplit("/", 1)[-1]
    document = ctx.client("iam").get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    statements = document.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    web = [s for s in statements if s.get("Action") == "sts:AssumeRoleWithWebIdentity"]
    if not web:
        return failed("irsa", key, f"{role_name} has no sts:AssumeRoleWithWebIdentity statement", "run pulumi up"), (
            "",
            "",
        )
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
        ), ("", "")
    sub, aud = conditions.get(f"{issuer}:sub"), conditions.get(f"{issuer}:aud")
    if sub is None or aud != "sts.amazonaws.com":
        keys = ", ".join(sorted(conditions)) or "none"
        return failed(
            "irsa",
            key,
            f"{role_name}'s conditions ({keys}) do not pin {issuer}:sub and {issuer}:aud = sts.amazonaws.com",
            "condition keys must be the issuer without https:// (EKS user guide); fix the trust and run pulumi up",
        ), ("", "")
    namespace, _, name = str(sub).removeprefix("system:serviceaccount:").partition(":")
    if account is not None and (namespace, name) != (account.namespace, account.name):
        return failed(
            "irsa",
            key,
            f"{role_name} trusts {namespace}/{name}, the contract says {account.namespace}/{account.name}",
            "run pulumi up from the commit the platform runs",
        ), (namespace, name)
    return None, (namespace, name)


def _check_account(
    ctx: DoctorContext,
    key: str,
    arn: str,
    *,
    trusted: tuple[str, str],
    account: ServiceAccount | None,
    lookup: ServiceAccountLookup,
    unreachable: KubeUnavailable | None,
) -> tuple[CheckResult, KubeUnavailable | None]:
    namespace, name = trusted
    role_name = arn.rsplit("/", 1)[-1]
    trust = f"{role_name} trusts {namespace}/{name}"
    if account is not None and account.addon and not getattr(ctx.config.addons, account.addon):
        return passed("irsa", key, f"{trust}; add-on {account.addon} is off, so no account is expected"), unreachable
    if not lookup.available or unreachable is not None:
        why = ctx.skipped_kube_reason if unreachable is None else "the cluster did not answer"
        return skipped(
            "irsa", key, f"{trust}; account not looked up: {why}", "pass a working --kubeconfig"
        ), unreachable
    try:
        annotations = lookup(namespace, name)
    except KubeUnavailable as exc:
        return skipped("irsa", key, f"{trust}; account not looked up: {exc}", "fix access to the cluster"), exc
    if annotations is None:
        return failed(
            "irsa",
            key,
            f"service account {namespace}/{name} that {role_name} trusts does not exist",
            "check the Argo CD Application that creates it (the argocd checks) or the add-on switch",
        ), unreachable
    if annotations.get(ROLE_ANNOTATION) != arn:
        return failed(
            "irsa",
            key,
            f"{namespace}/{name} has {ROLE_ANNOTATION}={annotations.get(ROLE_ANNOTATION)!r}, not {arn}",
            "its pods get no (or another role's) AWS credentials: fix the cluster Secret annotation it reads",
        ), unreachable
    return passed("irsa", key, f"{trust}; the account exists and names the role"), unreachable


def node_groups(ctx: DoctorContext) -> list[CheckResult]:
    """Each enabled pool has an ACTIVE node group with the labels and taints the config declares."""
    from infra.components.node_pool import pool_labels  # noqa: PLC0415 - the program's own label set

    cluster_name = ctx.output("clusterName")

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
    """Each log group the program owns exists (its name from the stack output logGroups) and keeps the
    retention the stack file declares (infra/config.py StackConfig.log_retention_days), not the one
    the last `pulumi up` wrote into the outputs: a stack file changed since is drift to apply."""
    deployed: dict[str, dict[str, Any]] = ctx.output("logGroups")
    declared = ctx.config.log_retention_days()

    def check() -> list[CheckResult]:
        logs = ctx.client("logs")
        results = []
        for purpose in sorted(set(declared) - set(deployed)):
            key, _ = declared[purpose]
            results.append(
                failed(
                    "logs",
                    purpose,
                    f"the stack output logGroups has no {purpose} group ({key} declares its retention)",
                    "run pulumi up with this revision, then save the outputs again",
                )
            )
        for purpose, group in sorted(deployed.items()):
            name = group["name"]
            if purpose not in declared:
                results.append(
                    failed(
                        "logs",
                        purpose,
                        f"{name}: no retention for a {purpose} group in this revision's config",
                        "run the doctor from the revision the stack was deployed with",
                    )
                )
                continue
            key, days = declared[purpose]
            # DescribeLogGroups: retentionInDays is absent when the group never expires (botocore's logs model).
            found = [
                g for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"] if g["logGroupName"] == name
            ]
            if not found:
                results.append(failed("logs", purpose, f"{name} does not exist", "run pulumi up"))
            elif found[0].get("retentionInDays") != days:
                have = found[0].get("retentionInDays")
                kept = "never expires" if have is None else f"keeps {have} days"
                results.append(
                    failed(
                        "logs",
                        purpose,
                        f"{name} {kept}; {key} declares {days}",
                        "run pulumi up to apply the stack file's retention (drift), or change "
                        f"{key} if the account is right",
                    )
                )
            else:
                results.append(passed("logs", purpose, f"{name} keeps {days} days ({key})"))
        return results

    return _guard("logs", "log groups", check)


def backups(ctx: DoctorContext, now: datetime | None = None) -> list[CheckResult]:
    """The database and the file system each have a COMPLETED recovery point newer than a day plus
    the plan's windows; a vault younger than that may have none yet (the first daily run)."""
    if not ctx.config.backup.enabled:
        return [skipped("backup", "vault", "cdao:backup is off for this stack", "")]
    # The plan's own schedule and windows decide how old the newest point may be.
    from infra.components.backup import RECOVERY_POINT_MAX_AGE  # noqa: PLC0415

    vault = ctx.output("backup")["vaultName"]
    now = now or datetime.now(UTC)
    region = ctx.output("region")

    def check() -> list[CheckResult]:
        client = ctx.client("backup")
        account = ctx.client("sts").get_caller_identity()["Account"]
        protected = {
            "database": f"arn:aws:rds:{region}:{account}:db:{ctx.output('dbInstanceIdentifier')}",
            "file system": f"arn:aws:elasticfilesystem:{region}:{account}:file-system/{ctx.output('efsFileSystemId')}",
        }
        newest: dict[str, datetime] = {}
        for page in client.get_paginator("list_recovery_points_by_backup_vault").paginate(BackupVaultName=vault):
            for point in page["RecoveryPoints"]:
                if point.get("Status") == "COMPLETED":
                    arn = point["ResourceArn"]
                    newest[arn] = max(newest.get(arn, point["CreationDate"]), point["CreationDate"])
        created = client.describe_backup_vault(BackupVaultName=vault)["CreationDate"]
        results = []
        for what, arn in protected.items():
            name = f"{vault}: {what}"
            if arn not in newest:
                if now - created < RECOVERY_POINT_MAX_AGE:
                    results.append(
                        skipped("backup", name, f"no recovery point yet for {arn}", "the first daily run is due")
                    )
                else:
                    results.append(
                        failed(
                            "backup",
                            name,
                            f"no completed recovery point for {arn}",
                            "list the plan's backup jobs (aws backup list-backup-jobs) and fix the failing ones",
                        )
                    )
                continue
            age = now - newest[arn]
            if age > RECOVERY_POINT_MAX_AGE:
                results.append(
                    failed(
                        "backup",
                        name,
                        f"newest completed recovery point is {age.days} d {age.seconds // 3600} h old",
                        "list the plan's backup jobs (aws backup list-backup-jobs) and fix the failing ones",
                    )
                )
            else:
                results.append(passed("backup", name, f"newest completed recovery point {newest[arn].isoformat()}"))
        return results

    return _guard("backup", vault, check)


# The access policy EKS associates with the creator's entry (bootstrapClusterCreatorAdminPermissions)
# and the program with every other administrator's (infra/components/cluster.py).
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def access_entries(ctx: DoctorContext) -> list[CheckResult]:
    """Every administrator the stack file names (deploy roles, break-glass, further admins) has an
    access entry with AmazonEKSClusterAdminPolicy. The program declares none for deployRoleArns[0],
    which EKS makes admin as the cluster's creator: a cluster created by any other principal leaves
    CI's deploy role without one (EKS ListAccessEntries with associatedPolicyArn: the principal ARNs
    of the entries associated with that policy)."""
    cluster_name = ctx.output("clusterName")
    cluster = ctx.config.cluster
    wanted = list(dict.fromkeys([*cluster.deploy_role_arns, *cluster.declared_admin_role_arns]))

    def check() -> list[CheckResult]:
        paginator = ctx.client("eks").get_paginator("list_access_entries")
        pages = paginator.paginate(clusterName=cluster_name, associatedPolicyArn=CLUSTER_ADMIN_POLICY)
        admins = {arn for page in pages for arn in page["accessEntries"]}
        missing = [arn for arn in wanted if arn not in admins]
        if not missing:
            return [passed("access", "admins", f"{len(wanted)} administrators have cluster-admin entries")]
        creator = cluster.deploy_role_arns[0] if cluster.deploy_role_arns else None
        why = (
            f" ({creator} is deployRoleArns[0], which the program expects to have created the cluster)"
            if creator in missing
            else ""
        )
        fixes = "; ".join(
            f"aws eks create-access-entry --cluster-name {cluster_name} --principal-arn {arn} && aws eks "
            f"associate-access-policy --cluster-name {cluster_name} --principal-arn {arn} --policy-arn "
            f"{CLUSTER_ADMIN_POLICY} --access-scope type=cluster"
            for arn in missing
        )
        return [failed("access", "admins", f"no cluster-admin access entry for {', '.join(missing)}{why}", fixes)]

    return _guard("access", "admins", check)

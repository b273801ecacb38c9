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

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError

from cdao_cli.doctor.context import DoctorContext
from cdao_cli.doctor.kube import ROLE_ANNOTATION, KubeUnavailable, ServiceAccountLookup
from cdao_cli.doctor.report import CheckResult, failed, passed, skipped
from infra.declared import DeclaredServiceAccount


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
    return str(exc)


_CREDENTIALS_REMEDY = (
    "check the credentials (aws sts get-caller-identity) and that they may read this stack's resources"
)
_NETWORK_REMEDY = "check the network, a proxy (HTTPS_PROXY) or VPN on the way, and the stack's region; then re-run"


def _aws_failure(exc: ClientError | BotoCoreError) -> tuple[str, str]:
    """(detail, remedy) of an AWS call that failed. botocore raises a ConnectionError subclass
    (EndpointConnectionError, ConnectTimeoutError, SSLError, ProxyConnectionError) when no connection
    is made and an HTTPClientError (ReadTimeoutError, ConnectionClosedError) when one breaks, each
    with the endpoint URL in its message (botocore 1.40.61 botocore/exceptions.py): the network, not
    the credentials. A ClientError is AWS's answer; NoCredentialsError and the other BotoCoreErrors
    are the local credential chain or configuration."""
    if isinstance(exc, AwsConnectionError | HTTPClientError):
        return f"AWS not reached: {exc}", _NETWORK_REMEDY
    if isinstance(exc, ClientError):
        return f"AWS refused: {_aws_error(exc)}", _CREDENTIALS_REMEDY
    return f"AWS call failed: {exc}", _CREDENTIALS_REMEDY


def _guard(family: str, name: str, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """Run a family's calls; an AWS error becomes one failed check that says which call and why."""
    try:
        return check()
    except (ClientError, BotoCoreError) as exc:
        return [failed(family, name, *_aws_failure(exc))]


def _expected_accounts(ctx: DoctorContext) -> dict[str, DeclaredServiceAccount]:
    """`declared.serviceAccounts` by role key: the service account each IRSA role trusts, as the deployment
    declared it (read_outputs has validated the shape)."""
    return {role: DeclaredServiceAccount.model_validate(a) for role, a in ctx.declared["serviceAccounts"].items()}


def _addon_on(ctx: DoctorContext, addon: str) -> bool:
    return ctx.declared["clusterLabels"].get(f"enable_{addon}") == "true"


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
                f"the roleArns output has no {key} role, which the deployment declares (declared.serviceAccounts)",
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
            results.append(failed("irsa", key, *_aws_failure(exc)))
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
    except BotoCoreError as exc:
        return failed("irsa", "oidc-provider", *_aws_failure(exc))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return failed(
                "irsa",
                "oidc-provider",
                f"IAM has no OIDC provider {provider_arn}: no pod can assume its role",
                "run pulumi up (the cluster component creates it); `aws iam list-open-id-connect-providers` lists them",
            )
        return failed("irsa", "oidc-provider", *_aws_failure(exc))
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
    detail, remedy = _aws_failure(exc)
    return failed("irsa", key, f"cannot read role {role_name}: {detail}", remedy)


def _as_list(value: Any) -> list[Any]:
    """IAM lets Principal's values, Action and each condition's value be a string or an array (IAM user
    guide, "IAM JSON policy elements: Principal / Action / Condition"): both as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


_WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"
#: The condition operators whose values the trust's `sub` and `aud` are compared with (IAM user guide,
#: "Condition operators": StringEquals exact, StringLike with `*` and `?` wildcards).
_STRING_OPERATORS = ("StringEquals", "StringLike")
_FIX_TRUST = "trust only this cluster's OIDC provider for sts:AssumeRoleWithWebIdentity, then run pulumi up"


@dataclass(frozen=True)
class _Grant:
    """One Allow statement of a trust policy, judged on its own: `problem` says how it grants more than
    one service account of this cluster the role (None when it does not); `sub` is the account it pins."""

    where: str  # `Statement[<index>]`, with its Sid when it has one
    problem: str | None
    remedy: str
    sub: str | None


def _grants(document: dict[str, Any], *, issuer: str, provider_arn: str) -> list[_Grant]:
    """The Allow statements of a trust policy, each judged alone: IAM allows a request when any one Allow
    statement allows it and no Deny denies it (IAM user guide, "Policy evaluation logic",
    docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html),
    so values merged across statements would let a safe statement vouch for an open one. Deny
    statements grant nothing and are skipped."""
    grants = []
    for index, statement in enumerate(_as_list(document.get("Statement"))):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        sid = statement.get("Sid")
        where = f"Statement[{index}]" + (f" (Sid {sid})" if sid else "")
        problem, remedy, sub = _judge_statement(statement, issuer=issuer, provider_arn=provider_arn)
        grants.append(_Grant(where, problem, remedy, sub))
    return grants


def _judge_statement(  # noqa: PLR0911 - one return per way a statement grants too much
    statement: dict[str, Any], *, issuer: str, provider_arn: str
) -> tuple[str | None, str, str | None]:
    """(problem or None, remedy, the one `sub` it pins) for one Allow statement."""
    negated = [k for k in ("NotPrincipal", "NotAction") if k in statement]
    if negated:
        return f"uses {', '.join(negated)}, which grants all but what it names", _FIX_TRUST, None
    principal = statement.get("Principal")
    if principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))):
        return 'lets any principal ("*") assume it', _FIX_TRUST, None
    if not isinstance(principal, dict) or set(principal) != {"Federated"}:
        return f"grants {json.dumps(principal)}, not only this cluster's OIDC provider", _FIX_TRUST, None
    federated = _as_list(principal["Federated"])
    if set(federated) != {provider_arn}:
        return (
            f"trusts {sorted(federated)}, not this cluster's provider {provider_arn} alone",
            "run pulumi up (the cluster was replaced, or the role belongs to another stack)",
            None,
        )
    actions = set(_as_list(statement.get("Action")))
    if actions != {_WEB_IDENTITY}:
        return f"allows {sorted(actions)}; an IRSA trust allows only {_WEB_IDENTITY}", _FIX_TRUST, None
    conditions = statement.get("Condition") or {}
    values: dict[str, dict[str, set[str]]] = {
        op: {k: {str(v) for v in _as_list(vs)} for k, vs in (conditions.get(op) or {}).items()}
        for op in _STRING_OPERATORS
    }
    sub_key, aud_key = f"{issuer}:sub", f"{issuer}:aud"
    subs = set().union(*(values[op].get(sub_key, set()) for op in _STRING_OPERATORS))
    auds = set().union(*(values[op].get(aud_key, set()) for op in _STRING_OPERATORS))
    if not subs or auds != {"sts.amazonaws.com"}:
        keys = ", ".join(sorted({k for op in _STRING_OPERATORS for k in values[op]})) or "none"
        found = f"; {aud_key} is {sorted(auds)}" if auds else ""
        return (
            f"has conditions ({keys}) that do not pin {sub_key} and {aud_key} = sts.amazonaws.com{found}",
            "condition keys must be the issuer without https:// (EKS user guide); fix the trust and run pulumi up",
            None,
        )
    # StringLike's `*` and `?` match many accounts, and several values trust each of them (IAM ORs them).
    patterns = [s for s in values["StringLike"].get(sub_key, set()) if "*" in s or "?" in s]
    if len(subs) != 1 or patterns:
        return (
            f"trusts more than one service account: {sorted(subs)}",
            "trust exactly system:serviceaccount:<namespace>:<name> (StringEquals), then run pulumi up",
            None,
        )
    return None, "", next(iter(subs))


def _check_trust(
    ctx: DoctorContext, key: str, arn: str, *, issuer: str, provider_arn: str, account: DeclaredServiceAccount | None
) -> tuple[CheckResult | None, tuple[str, str]]:
    """A failed result, or None and the (namespace, name) the trust pins."""
    role_name = arn.rsplit("/", 1)[-1]
    document = ctx.client("iam").get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    grants = _grants(document, issuer=issuer, provider_arn=provider_arn)
    none = ("", "")
    if not grants:
        return failed("irsa", key, f"{role_name} has no Allow statement for {_WEB_IDENTITY}", _FIX_TRUST), none
    bad = [g for g in grants if g.problem]
    if bad:
        return failed("irsa", key, "; ".join(f"{role_name} {g.where} {g.problem}" for g in bad), bad[0].remedy), none
    subs = {g.sub for g in grants}
    if len(subs) != 1:
        return failed(
            "irsa",
            key,
            f"{role_name} trusts more than one service account across its statements: {sorted(subs)}",
            "trust exactly system:serviceaccount:<namespace>:<name> (StringEquals), then run pulumi up",
        ), none
    namespace, _, name = str(next(iter(subs))).removeprefix("system:serviceaccount:").partition(":")
    if account is not None and (namespace, name) != (account.namespace, account.name):
        return failed(
            "irsa",
            key,
            f"{role_name} trusts {namespace}/{name}, the deployment declares {account.namespace}/{account.name}",
            "run pulumi up from the commit the platform runs",
        ), (namespace, name)
    return None, (namespace, name)


def _check_account(
    ctx: DoctorContext,
    key: str,
    arn: str,
    *,
    trusted: tuple[str, str],
    account: DeclaredServiceAccount | None,
    lookup: ServiceAccountLookup,
    unreachable: KubeUnavailable | None,
) -> tuple[CheckResult, KubeUnavailable | None]:
    namespace, name = trusted
    role_name = arn.rsplit("/", 1)[-1]
    trust = f"{role_name} trusts {namespace}/{name}"
    if account is not None and account.addon and not _addon_on(ctx, account.addon):
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
    """Each pool the deployment enabled has an ACTIVE node group with the labels and taints it declared
    (`declared.nodePools`, found by its `declared.nodePoolLabel` label)."""
    cluster_name = ctx.output("clusterName")
    pool_label = ctx.declared["nodePoolLabel"]

    def check() -> list[CheckResult]:
        eks = ctx.client("eks")
        names = [
            n
            for page in eks.get_paginator("list_nodegroups").paginate(clusterName=cluster_name)
            for n in page["nodegroups"]
        ]
        groups = [eks.describe_nodegroup(clusterName=cluster_name, nodegroupName=n)["nodegroup"] for n in names]
        by_pool = {g.get("labels", {}).get(pool_label): g for g in groups}
        results = []
        for pool_name, pool in sorted(ctx.declared["nodePools"].items()):
            group = by_pool.get(pool_name)
            if group is None:
                results.append(
                    failed(
                        "node-groups",
                        pool_name,
                        f"no node group of {cluster_name} carries {pool_label}={pool_name}",
                        "run pulumi up; if it fails, read the node group's health in the EKS console",
                    )
                )
                continue
            results.append(_check_group(pool_name, group, pool["labels"], pool["taints"]))
        return results

    return _guard("node-groups", "pools", check)


def _check_group(
    pool_name: str, group: dict[str, Any], labels: dict[str, str], taints: Iterable[dict[str, str]]
) -> CheckResult:
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
    want = {(t["key"], t.get("value") or None, t["effect"]) for t in taints}
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
    """Each log group the program owns (the stack output logGroups) exists and keeps the retention the
    deployment declared for it (its `retentionDays`, from the stack file as that program read it). A
    stack file changed since the deploy is not drift of the account: `cdao plan` / `pulumi preview`
    show it."""
    deployed: dict[str, dict[str, Any]] = ctx.output("logGroups")

    def check() -> list[CheckResult]:
        logs = ctx.client("logs")
        results = []
        for purpose, group in sorted(deployed.items()):
            name, days = group["name"], group["retentionDays"]
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
                        f"{name} {kept}; the deployment declared {days}",
                        "changed outside Pulumi (drift): run pulumi up to apply the declared retention",
                    )
                )
            else:
                results.append(passed("logs", purpose, f"{name} keeps {days} days"))
        return results

    return _guard("logs", "log groups", check)


#: The RecoveryPointStatus values of a point a restore can use (botocore 1.40.61
#: data/backup/2018-11-15/service-2.json, RecoveryPointStatus and DescribeRecoveryPointOutput.Status:
#: AVAILABLE "successfully created ... ready for use"; COMPLETED, the status a finished point reports).
#: CREATING, PARTIAL, EXPIRED, STOPPED and DELETING are not a recent usable backup.
USABLE_RECOVERY_POINT = frozenset({"COMPLETED", "AVAILABLE"})


def backups(ctx: DoctorContext, now: datetime | None = None) -> list[CheckResult]:
    """The database and the file system each have a usable (USABLE_RECOVERY_POINT) recovery point newer than a day plus
    the plan's windows; a vault younger than that may have none yet (the first daily run)."""
    hours = ctx.declared["backupMaxAgeHours"]
    if hours is None:
        return [skipped("backup", "vault", "the deployment declares AWS Backup off (cdao:backup)", "")]
    # The deployed plan's own schedule and windows decide how old the newest point may be.
    max_age = timedelta(hours=hours)

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
                if point.get("Status") in USABLE_RECOVERY_POINT:
                    arn = point["ResourceArn"]
                    newest[arn] = max(newest.get(arn, point["CreationDate"]), point["CreationDate"])
        created = client.describe_backup_vault(BackupVaultName=vault)["CreationDate"]
        results = []
        for what, arn in protected.items():
            name = f"{vault}: {what}"
            if arn not in newest:
                if now - created < max_age:
                    results.append(
                        skipped("backup", name, f"no recovery point yet for {arn}", "the first daily run is due")
                    )
                else:
                    results.append(
                        failed(
                            "backup",
                            name,
                            f"no usable (COMPLETED or AVAILABLE) recovery point for {arn}",
                            "list the plan's backup jobs (aws backup list-backup-jobs) and fix the failing ones",
                        )
                    )
                continue
            age = now - newest[arn]
            if age > max_age:
                results.append(
                    failed(
                        "backup",
                        name,
                        f"newest usable recovery point is {age.days} d {age.seconds // 3600} h old",
                        "list the plan's backup jobs (aws backup list-backup-jobs) and fix the failing ones",
                    )
                )
            else:
                results.append(passed("backup", name, f"newest usable recovery point {newest[arn].isoformat()}"))
        return results

    return _guard("backup", vault, check)


# The access policy EKS associates with the creator's entry (bootstrapClusterCreatorAdminPermissions)
# and the program with every other administrator's (infra/components/cluster.py).
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def access_entries(ctx: DoctorContext) -> list[CheckResult]:
    """Every administrator the deployment recorded (`declared.adminRoleArns`: the stack file's deploy
    roles, break-glass role and further admins) has an access entry with AmazonEKSClusterAdminPolicy.
    The program declares none for the first deploy role, which EKS makes admin as the cluster's
    creator: a cluster created by any other principal leaves CI's deploy role without one (EKS
    ListAccessEntries with associatedPolicyArn: the principal ARNs of the entries associated with that
    policy)."""
    cluster_name = ctx.output("clusterName")
    wanted = list(ctx.declared["adminRoleArns"])

    def check() -> list[CheckResult]:
        paginator = ctx.client("eks").get_paginator("list_access_entries")
        pages = paginator.paginate(clusterName=cluster_name, associatedPolicyArn=CLUSTER_ADMIN_POLICY)
        admins = {arn for page in pages for arn in page["accessEntries"]}
        missing = [arn for arn in wanted if arn not in admins]
        if not missing:
            return [passed("access", "admins", f"{len(wanted)} administrators have cluster-admin entries")]
        creator = wanted[0] if wanted else None
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

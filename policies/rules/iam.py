"""IAM: least privilege, trust policies (external ids, IRSA, confused deputies), user attachments.

Only `Allow` statements grant anything, so `Deny` statements are never findings. `NotAction` and
`NotResource` statements are out of scope of the Action/Resource rules below (they are not
"Action: *"); `NotPrincipal` with Allow is reported by CDAO-IAM-007 because it grants to everyone
but the listed principals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from policies.core import (
    Context,
    Finding,
    Resource,
    Rule,
    UnknownValue,
    UnknownValueFound,
    as_list,
    dig,
    resource_rule,
    stack_rule,
)
from policies.rules._common import (
    COVERED,
    UNKNOWN,
    PolicyParseError,
    Statement,
    arn_account,
    coverage,
    glob_match,
    parse_policy,
    principal_account,
    principals,
    statements,
)

RULES: list[Rule] = []

ROLE = "aws:iam/role:Role"
# Identity policies: where a document grants permissions to the principal it is attached to.
_IDENTITY_DOCS: dict[str, str] = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
# Resource policies: where Principal decides who may act on the resource.
_RESOURCE_DOCS: dict[str, str] = {
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:s3/bucket:Bucket": "policy",
    "aws:s3/bucketV2:BucketV2": "policy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
    "aws:kms/key:Key": "policy",
    "aws:sqs/queue:Queue": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:sns/topic:Topic": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:secretsmanager/secretPolicy:SecretPolicy": "policy",
}
IDENTITY_TYPES = frozenset({*_IDENTITY_DOCS, ROLE})
TRUST_TYPES = frozenset({ROLE})
PRINCIPAL_TYPES = frozenset({*_RESOURCE_DOCS, ROLE})

Check = Callable[[Statement], "str | None"]


def _documents(res: Resource, kind: str) -> Iterator[tuple[str, object]]:
    if kind == "identity":
        if res.type in _IDENTITY_DOCS:
            yield _IDENTITY_DOCS[res.type], res.props.get(_IDENTITY_DOCS[res.type])
        elif res.type == ROLE:
            for i, inline in enumerate(as_list(res.get("inlinePolicies"))):
                where = f"inlinePolicies[{i}].policy"
                yield where, inline.get("policy") if isinstance(inline, dict) else inline
    elif kind == "trust":
        if res.type == ROLE:
            yield "assumeRolePolicy", res.props.get("assumeRolePolicy")
    elif kind == "resource":
        if res.type in _RESOURCE_DOCS:
            yield _RESOURCE_DOCS[res.type], res.props.get(_RESOURCE_DOCS[res.type])
        elif res.type == ROLE:
            yield "assumeRolePolicy", res.props.get("assumeRolePolicy")


def _scan(res: Resource, kind: str, check: Check) -> Iterator[str | UnknownValueFound]:
    """Run `check` on every Allow statement of the resource's documents of `kind`.

    An unknown document or statement is reported as such; the others are still checked, so one
    unknown value never hides a finding elsewhere.
    """
    for where, raw in _documents(res, kind):
        if raw is None:
            continue
        try:
            doc = parse_policy(raw, where)
            sts = statements(doc, where)
        except UnknownValueFound as exc:
            yield exc
            continue
        except PolicyParseError as exc:
            yield f"cannot evaluate: {exc}"
            continue
        for st in sts:
            try:
                if not st.is_allow:
                    continue
                message = check(st)
            except UnknownValueFound as exc:
                yield exc
                continue
            if message:
                yield f"{st.label}: {message}"


# ---------------------------------------------------------------------------------------------


@resource_rule(
    RULES,
    id="CDAO-IAM-001",
    name="IAM policy allows every action",
    description="An Allow statement with Action '*' grants every action of every AWS service.",
    remediation="List the actions the workload calls (e.g. 's3:GetObject'), never '*'.",
    level="mandatory",
    types=IDENTITY_TYPES,
)
def iam_001_action_star(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    def check(st: Statement) -> str | None:
        if any(a.strip() in ("*", "*:*") for a in st.strings("Action")):
            return "Allow with Action '*'"
        return None

    yield from _scan(res, "identity", check)


# Actions that have no resource-level permissions in IAM: for them Resource '*' is the only option.
_UNSCOPABLE = (
    "ec2:Describe*",
    "ec2:Get*",
    "autoscaling:Describe*",
    "elasticloadbalancing:Describe*",
    "eks:ListClusters",
    "eks:DescribeAddonVersions",
    "sts:GetCallerIdentity",
    "ecr:GetAuthorizationToken",
    "s3:ListAllMyBuckets",
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:ListMetrics",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSampling*",
    "iam:ListRoles",
    "iam:ListPolicies",
    "iam:GetAccountSummary",
    "iam:ListAccountAliases",
    "kms:ListKeys",
    "kms:ListAliases",
    "kms:CreateKey",
    "secretsmanager:ListSecrets",
    "secretsmanager:GetRandomPassword",
    "ssm:DescribeParameters",
    "sagemaker:List*",
    "sagemaker:Search",
    "batch:Describe*",
    "batch:ListJobs",
    "elasticmapreduce:ListClusters",
    "elasticmapreduce:ListSecurityConfigurations",
    "emr-serverless:ListApplications",
    "emr-containers:ListVirtualClusters",
    "route53:ListHostedZones",
    "route53:ListHostedZonesByName",
    "route53:GetChange",
    "tag:Get*",
    "acm:ListCertificates",
    # No resource types in the Service Authorization Reference (IAM; AWS Shield).
    "iam:ListServerCertificates",
    "shield:GetSubscriptionState",
    "sqs:ListQueues",
    "sns:ListTopics",
    "dynamodb:ListTables",
    "lambda:ListFunctions",
    "rds:DescribeDBEngineVersions",
    "rds:DescribeOrderableDBInstanceOptions",
    "cloudtrail:LookupEvents",
    "pricing:*",
    "ce:*",
    "servicequotas:List*",
    "servicequotas:Get*",
)


def _scoped_by_tags(st: Statement) -> bool:
    """Attribute-based access control: Resource '*' narrowed by resource or request tags, either by
    value or by requiring the tag to exist (`Null: {key: "false"}`, as AWS's add-on policies do)."""
    for c in st.conditions():
        key = c.key.lower()
        if "resourcetag/" not in key and "requesttag/" not in key:
            continue
        if c.enforces(_STRING_OPS) and _meaningful(c.values):
            return True
        if c.base.lower() == "null" and c.values and all(str(v).lower() == "false" for v in c.values):
            return True
    return False


@resource_rule(
    RULES,
    id="CDAO-IAM-002",
    name="IAM policy uses Resource '*' for actions that can be scoped",
    description=(
        "An Allow statement grants, on Resource '*', actions that support resource-level permissions "
        "and no tag condition narrows it."
    ),
    remediation=(
        "Name the ARNs (bucket, table, role...) in Resource, or add an aws:ResourceTag condition; keep "
        "'*' only for actions without resource-level permissions (List*/Describe* and the like)."
    ),
    level="advisory",
    types=IDENTITY_TYPES,
)
def iam_002_resource_star(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    def check(st: Statement) -> str | None:
        if "*" not in [r.strip() for r in st.strings("Resource")]:
            return None
        scopable = [a for a in st.strings("Action") if not any(glob_match(u, a) for u in _UNSCOPABLE)]
        if not scopable or _scoped_by_tags(st):
            return None
        return f"Resource '*' for scopable actions {sorted(set(scopable))}"

    yield from _scan(res, "identity", check)


@resource_rule(
    RULES,
    id="CDAO-IAM-003",
    name="IAM policy allows iam:*",
    description="An Allow statement grants 'iam:*', which lets the holder escalate to administrator.",
    remediation="Grant the few IAM actions needed (e.g. iam:GetRole) on named role ARNs.",
    level="mandatory",
    types=IDENTITY_TYPES,
)
def iam_003_iam_star(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    def check(st: Statement) -> str | None:
        if any(a.strip().lower() == "iam:*" for a in st.strings("Action")):
            return "Allow with Action 'iam:*'"
        return None

    yield from _scan(res, "identity", check)


_ATTACHMENTS: dict[str, str] = {
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "policyArn",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": "policyArn",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment": "policyArn",
    "aws:iam/policyAttachment:PolicyAttachment": "policyArn",
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": "policyArns",
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive": "policyArns",
    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive": "policyArns",
    ROLE: "managedPolicyArns",
}


def _is_broad_managed_policy(arn: str) -> bool:
    name = arn.rsplit("/", 1)[-1].lower()
    # PowerUserAccess is AdministratorAccess minus IAM/Organizations: just as broad for a workload.
    return name.startswith("administratoraccess") or name.endswith("fullaccess") or name == "poweruseraccess"


@resource_rule(
    RULES,
    id="CDAO-IAM-004",
    name="AdministratorAccess or a *FullAccess managed policy is attached",
    description=(
        "A managed policy named AdministratorAccess*, PowerUserAccess or *FullAccess is attached to a role, "
        "user or group, by an attachment resource or through a role's managedPolicyArns."
    ),
    remediation="Write a customer-managed policy with the actions and ARNs the workload needs.",
    level="mandatory",
    types=frozenset(_ATTACHMENTS),
)
def iam_004_broad_managed(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    prop = _ATTACHMENTS[res.type]
    try:
        arns = as_list(res.get(prop))
    except UnknownValueFound as exc:
        yield exc
        return
    for i, arn in enumerate(arns):
        if not isinstance(arn, str):
            if arn is not None:
                yield UnknownValueFound(f"{prop}[{i}]")
            continue
        if _is_broad_managed_policy(arn):
            yield f"{prop} attaches {arn}"


_STRING_OPS = ("StringEquals", "StringLike", "StringEqualsIgnoreCase")
_ARN_OPS = ("ArnEquals", "ArnLike", "StringEquals", "StringLike")


def _meaningful(values: tuple[object, ...]) -> bool:
    """Condition values that actually pin something: non-empty, and not a bare wildcard."""

    def pins(v: object) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, (int, float)):
            return True  # JSON numbers (account ids, external ids) compare as strings in IAM
        return isinstance(v, str) and v.strip() not in ("", "*")

    return bool(values) and all(pins(v) for v in values)


def _could_be_role(resource: str) -> bool:
    if resource.strip() == "*":
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return False
    service, rest = parts[2], parts[5]
    return glob_match(service, "iam") and (
        rest.lower().startswith("role/") or rest.startswith("*") or glob_match(rest, "role/x")
    )


def _any_role(resource: str) -> bool:
    r = resource.strip()
    return r == "*" or r.endswith((":*", ":role/*", ":role*")) or r.split(":", 5)[-1] in ("*", "role/*")


@resource_rule(
    RULES,
    id="CDAO-IAM-005",
    name="iam:PassRole on '*' or without iam:PassedToService",
    description=(
        "An Allow statement grants iam:PassRole (directly or through a wildcard) on every role, or "
        "without an iam:PassedToService condition naming the service the role may be passed to."
    ),
    remediation=(
        "Grant iam:PassRole on the named role ARNs with a StringEquals condition on iam:PassedToService "
        "(e.g. sagemaker.amazonaws.com)."
    ),
    level="mandatory",
    types=IDENTITY_TYPES,
)
def iam_005_passrole(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    def check(st: Statement) -> str | None:
        if not st.allows_action("iam:PassRole"):
            return None
        resources = [r for r in st.strings("Resource") if _could_be_role(r)]
        if not resources:
            return None
        broad = [r for r in resources if _any_role(r)]
        if broad:
            return f"iam:PassRole on {broad}"
        scoped = any(
            c.key.lower() == "iam:passedtoservice" and c.enforces(_STRING_OPS) and _meaningful(c.values)
            for c in st.conditions()
        )
        return None if scoped else f"iam:PassRole on {resources} without an iam:PassedToService condition"

    yield from _scan(res, "identity", check)


def _own_accounts(res: Resource, ctx: Context) -> set[str]:
    own = set(ctx.setting("trustedAccountIds"))
    try:
        account = arn_account(res.get("arn"))
    except UnknownValueFound:
        account = None
    if account:
        own.add(account)
    return own


def _assumes(st: Statement) -> bool:
    return st.allows_action("sts:AssumeRole")


@resource_rule(
    RULES,
    id="CDAO-IAM-006",
    name="Cross-account trust without sts:ExternalId",
    description=(
        "A role's trust policy lets a principal of another AWS account assume it without requiring an "
        "sts:ExternalId, which makes the role a confused deputy for that account's other customers."
    ),
    remediation=(
        "Add Condition StringEquals {'sts:ExternalId': '<secret id agreed with the third party>'}; list "
        "your own accounts in trustedAccountIds so same-account trust is not reported."
    ),
    level="mandatory",
    types=TRUST_TYPES,
    settings=("trustedAccountIds",),
)
def iam_006_external_id(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    own = _own_accounts(res, ctx)

    def check(st: Statement) -> str | None:
        if not _assumes(st):
            return None
        found = principals(st) or {}
        foreign = sorted(
            {p for p in found.get("AWS", []) if (acct := principal_account(p)) is not None and acct not in own}
        )
        if not foreign:
            return None
        has_external_id = any(
            c.key.lower() == "sts:externalid"
            and c.enforces(("StringEquals", "StringLike"))
            and _meaningful(c.values)
            and not any("*" in v or "?" in v for v in c.values if isinstance(v, str))
            for c in st.conditions()
        )
        return None if has_external_id else f"trusts {foreign} without an sts:ExternalId condition"

    yield from _scan(res, "trust", check)


# Condition keys that pin an anonymous principal to an account, organisation, network or caller.
_SCOPING_KEYS = frozenset(
    k.lower()
    for k in (
        "aws:PrincipalOrgID",
        "aws:PrincipalOrgPaths",
        "aws:PrincipalAccount",
        "aws:PrincipalArn",
        "aws:SourceAccount",
        "aws:SourceArn",
        "aws:SourceOrgID",
        "aws:SourceOrgPaths",
        "aws:SourceVpce",
        "aws:SourceVpc",
        "aws:userid",
    )
)


@resource_rule(
    RULES,
    id="CDAO-IAM-007",
    name="Policy allows Principal '*'",
    description=(
        "A trust or resource policy allows Principal '*' (or {'AWS': '*'}, or NotPrincipal) without a "
        "condition pinning the caller to an account, organisation, VPC endpoint or source."
    ),
    remediation=(
        "Name the principals, or add a condition on aws:PrincipalOrgID, aws:PrincipalAccount, "
        "aws:SourceVpce or aws:SourceArn."
    ),
    level="mandatory",
    types=PRINCIPAL_TYPES,
)
def iam_007_principal_star(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    def check(st: Statement) -> str | None:
        if st.raw.get("NotPrincipal") is not None:
            return "Allow with NotPrincipal grants every principal not listed"
        found = principals(st) or {}
        if "*" not in found and "*" not in found.get("AWS", []):
            return None
        pinned = any(
            c.key.lower() in _SCOPING_KEYS
            and c.enforces((*_ARN_OPS, "StringEqualsIgnoreCase"))
            and _meaningful(c.values)
            for c in st.conditions()
        )
        return None if pinned else "Allow to Principal '*' without a condition pinning the caller"

    yield from _scan(res, "resource", check)


_SA_SUBJECT = re.compile(r"system:serviceaccount:[^:*?\s]+:[^:*?\s]+")
# An IAM OIDC provider's ARN ends in its URL without the scheme; one built from an issuer URL that
# still carries "https://" is matched too, so the scheme is reported instead of the statement
# silently not counting as IRSA.
_EKS_PROVIDER = re.compile(r"oidc-provider/(?:https?://)?oidc\.eks\.", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def _eks_issuers(st: Statement) -> list[str] | None:
    """Issuer host/paths of EKS OIDC providers this statement trusts; None if not an IRSA statement."""
    found = principals(st)
    if found is not None:
        federated = found.get("Federated", [])
        issuers = [f.split("oidc-provider/", 1)[1] for f in federated if _EKS_PROVIDER.search(f)]
        # Trust in AWS accounts, services or a non-EKS identity provider is not IRSA.
        return issuers or None
    # No Principal at all (an invalid trust policy): go by the condition keys alone.
    keys = [c.key for c in st.conditions() if "oidc.eks." in c.key.lower()]
    return [] if keys else None


@resource_rule(
    RULES,
    id="CDAO-IAM-008",
    name="IRSA trust not pinned to one service account and the STS audience",
    description=(
        "A role trusted through an EKS OIDC provider (IRSA) must require StringEquals on '<issuer>:sub' "
        "naming exactly one 'system:serviceaccount:<namespace>:<name>' and on '<issuer>:aud' = "
        "'sts.amazonaws.com'; otherwise any pod in the cluster can assume it. The issuer in the keys and "
        "the provider ARN carries no 'https://' (EKS user guide, associate-service-account-role; pulumi-eks's "
        "oidcProviderUrl keeps the scheme, oidcIssuer drops it): with it, no pod can assume the role."
    ),
    remediation=(
        "Condition: {'StringEquals': {'<issuer>:sub': 'system:serviceaccount:<ns>:<sa>', "
        "'<issuer>:aud': 'sts.amazonaws.com'}} -- not StringLike, not IfExists, one subject per role; "
        "build '<issuer>' from pulumi-eks's oidcIssuer, not oidcProviderUrl."
    ),
    level="mandatory",
    types=TRUST_TYPES,
)
def iam_008_irsa(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    def check(st: Statement) -> str | None:
        if not st.allows_action("sts:AssumeRoleWithWebIdentity"):
            return None
        issuers = _eks_issuers(st)
        if issuers is None:
            return None
        # IAM names an OIDC provider, and its condition keys, by the issuer URL without "https://"
        # ("oidc.eks.<region>.amazonaws.com/id/<id>:sub", EKS user guide, associate-service-account-role).
        # pulumi-eks's oidcProviderUrl output keeps the scheme and oidcIssuer drops it (pulumi_eks
        # cluster.py docstrings), so a trust built from the URL names keys no request ever carries.
        schemed = sorted(
            {c.key for c in st.conditions() if _SCHEME.match(c.key)} | {i for i in issuers if _SCHEME.match(i)}
        )
        if schemed:
            return f"{schemed} carry a URL scheme: IAM expects the issuer without 'https://' (the role is unassumable)"
        conds = [c for c in st.conditions() if c.enforces(("StringEquals",))]

        def pinned(suffix: str, ok: Callable[[tuple[object, ...]], bool]) -> bool:
            for c in conds:
                key = c.key.lower()
                if not key.endswith(suffix):
                    continue
                if issuers and key[: -len(suffix)] not in {i.lower() for i in issuers}:
                    continue
                if ok(c.values):
                    return True
            return False

        problems = []
        if not pinned(":sub", lambda v: len(v) == 1 and isinstance(v[0], str) and bool(_SA_SUBJECT.fullmatch(v[0]))):
            problems.append("no StringEquals ':sub' naming exactly one service account")
        if not pinned(":aud", lambda v: bool(v) and all(x == "sts.amazonaws.com" for x in v)):
            problems.append("no StringEquals ':aud' = 'sts.amazonaws.com'")
        return "; ".join(problems) or None

    yield from _scan(res, "trust", check)


CONFUSED_DEPUTY_SERVICES = frozenset(
    {
        "sagemaker.amazonaws.com",
        "ecs-tasks.amazonaws.com",
        "elasticmapreduce.amazonaws.com",
        "emr-serverless.amazonaws.com",
        "batch.amazonaws.com",
    }
)
_SOURCE_KEYS = frozenset({"aws:sourceaccount", "aws:sourcearn", "aws:sourceorgid"})


@resource_rule(
    RULES,
    id="CDAO-IAM-009",
    name="Service-principal trust without aws:SourceAccount/aws:SourceArn",
    description=(
        "A role trusted by sagemaker, ecs-tasks, elasticmapreduce, emr-serverless or batch does not "
        "require aws:SourceAccount or aws:SourceArn, so the service could be made to use it on behalf of "
        "another account (confused deputy)."
    ),
    remediation="Add Condition StringEquals {'aws:SourceAccount': '<account>'} or ArnLike {'aws:SourceArn': ...}.",
    level="mandatory",
    types=TRUST_TYPES,
)
def iam_009_confused_deputy(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    def check(st: Statement) -> str | None:
        if not _assumes(st):
            return None
        services = sorted(
            s for s in (principals(st) or {}).get("Service", []) if s.strip().lower() in CONFUSED_DEPUTY_SERVICES
        )
        if not services:
            return None
        pinned = any(
            c.key.lower() in _SOURCE_KEYS and c.enforces(_ARN_OPS) and _meaningful(c.values) for c in st.conditions()
        )
        return None if pinned else f"trusts {services} without aws:SourceAccount/aws:SourceArn"

    yield from _scan(res, "trust", check)


_USER_ATTACHMENTS = {
    "aws:iam/userPolicy:UserPolicy": None,
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": None,
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive": "policyArns",
    "aws:iam/userPoliciesExclusive:UserPoliciesExclusive": "policyNames",
    "aws:iam/policyAttachment:PolicyAttachment": "users",
}


@resource_rule(
    RULES,
    id="CDAO-IAM-010",
    name="Policy attached to an IAM user",
    description=(
        "A policy is attached to an IAM user (user policy, user attachment, or a policy attachment listing "
        "users). Humans and workloads should get permissions through roles."
    ),
    remediation="Attach the policy to a role assumed through SSO, IRSA or a service principal instead.",
    level="mandatory",
    types=frozenset(_USER_ATTACHMENTS),
)
def iam_010_user_policy(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    prop = _USER_ATTACHMENTS[res.type]
    if prop is None:
        yield f"{res.type.rsplit(':', 1)[-1]} attaches a policy to user {res.props.get('user')!s}"
        return
    try:
        items = as_list(res.get(prop))
    except UnknownValueFound as exc:
        yield exc
        return
    if items:
        yield f"{prop} attaches policies to IAM users ({len(items)} entries)"


@resource_rule(
    RULES,
    id="CDAO-IAM-011",
    name="SageMaker notebook instance with root access",
    description=(
        "rootAccess defaults to 'Enabled': every notebook user is root on the instance and can change "
        "its software, lifecycle configuration and network settings."
    ),
    remediation="Set rootAccess='Disabled'; install packages through lifecycle configurations or images.",
    level="advisory",
    types=("aws:sagemaker/notebookInstance:NotebookInstance",),
)
def iam_011_notebook_root(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    mode = res.get("rootAccess", default="Enabled")
    if str(mode).lower() != "disabled":
        yield f"rootAccess is {mode!r}"


# Services that take a role through their own API and hand it on to another service's principal,
# so the role's trust names that principal, not the service the role is passed to:
# - EKS: a managed node group's node role is trusted by ec2.amazonaws.com (EKS User Guide,
#   create-node-role.html) and a Fargate profile's pod execution role by eks-fargate-pods.amazonaws.com
#   (pod-execution-role.html); both are given to EKS (CreateNodegroup / CreateFargateProfile).
# - AWS Batch: a job definition's job and execution roles are trusted by ecs-tasks.amazonaws.com
#   (Batch User Guide, execution-IAM-role.html), a compute environment's instance role by
#   ec2.amazonaws.com (instance_IAM_role.html) and its Spot Fleet role by spotfleet.amazonaws.com
#   (spot_fleet_IAM_role.html); all are given to Batch (RegisterJobDefinition /
#   CreateComputeEnvironment), and passed with iam:PassedToService batch.amazonaws.com (the Seqera
#   Platform docs' least-privilege AWS Batch policy, statement PassRolesToBatch, passes execution
#   roles exactly so).
_PASS_HANDOFFS: dict[str, frozenset[str]] = {
    "eks.amazonaws.com": frozenset({"ec2.amazonaws.com", "eks-fargate-pods.amazonaws.com"}),
    "batch.amazonaws.com": frozenset({"ecs-tasks.amazonaws.com", "ec2.amazonaws.com", "spotfleet.amazonaws.com"}),
}
_ROLE_ARN = re.compile(r"^arn:[^:]+:iam::[^:]*:role/(?:.*/)?([^/]+)$")


def _role_names(role: Resource) -> set[str]:
    names = {v for v in (role.props.get("name"), role.id) if isinstance(v, str)}
    arn = role.props.get("arn")
    if isinstance(arn, str) and (m := _ROLE_ARN.match(arn)):
        names.add(m.group(1))
    return names or {role.name}


def _trusted_services(role: Resource) -> set[str]:
    """Service principals an Allow statement of the role's trust policy lets assume it; raises on unknowns."""
    doc = parse_policy(role.props.get("assumeRolePolicy"), "assumeRolePolicy")
    return {
        service.strip().lower()
        for st in statements(doc, "assumeRolePolicy")
        if st.is_allow and _assumes(st)
        for service in (principals(st) or {}).get("Service", [])
    }


def _passed_to(st: Statement) -> list[str] | None:
    values = [
        str(v).strip().lower()
        for c in st.conditions()
        if c.key.lower() == "iam:passedtoservice" and c.enforces(_STRING_OPS)
        for v in c.values
    ]
    return values or None


def _service_can_assume(passed_to: list[str], trusted: set[str]) -> bool:
    for pattern in passed_to:
        if any(glob_match(pattern, service) for service in trusted):
            return True
        if any(glob_match(pattern, svc) and assumers & trusted for svc, assumers in _PASS_HANDOFFS.items()):
            return True
    return False


@stack_rule(
    RULES,
    id="CDAO-IAM-012",
    name="iam:PassRole to a service the role does not trust",
    description=(
        "An Allow statement grants iam:PassRole on a role of the stack, named without wildcards, only with "
        "iam:PassedToService values of which none is a service principal the role's trust policy admits "
        "(iam:PassedToService names the service the role is passed to, IAM User Guide "
        "reference_policies_iam-condition-keys#ck_PassedToService). That service cannot assume the role: "
        "e.g. an EMR cluster's EC2 instance-profile role is passed to ec2.amazonaws.com, not "
        "elasticmapreduce.amazonaws.com (AWS managed policy AmazonEMRFullAccessPolicy_v2, statement "
        "PassRoleForEC2), so RunJobFlow is denied. Documented hand-offs are not reported: EKS passes node "
        "(EC2) and Fargate pod execution roles on, AWS Batch its job/execution (ECS tasks), instance (EC2) and "
        "Spot Fleet roles. A role is matched by its full ARN (account and path) when the input has it, by name "
        "when it has not, and cannot be verified while its ARN is unknown."
    ),
    remediation=(
        "Give each role its own PassRole statement whose iam:PassedToService is the service principal in "
        "that role's trust policy (e.g. ec2.amazonaws.com for an instance-profile role)."
    ),
    level="mandatory",
)
def iam_012_passed_to_untrusting_service(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    roles: dict[str, list[Resource]] = {}
    for role in (r for r in resources if r.type == ROLE):
        for name in _role_names(role):
            roles.setdefault(name, []).append(role)
    for res in resources:
        if res.type not in IDENTITY_TYPES:
            continue
        for item in _scan(res, "identity", lambda st: _pass_mismatch(st, roles)):
            if isinstance(item, UnknownValueFound):
                yield Finding(f"cannot verify: {item.what}", res, unknown=True)
            elif not item.startswith("cannot evaluate"):  # an unparsable document is CDAO-IAM-001's finding
                yield Finding(item, res)


def _same_role(role: Resource, arn: str) -> bool:
    """Whether `arn` (same role name) names `role`: by its full ARN, account and path included, when
    the role's `arn` is in the input; by name when it is absent (the offline plan and hand-written
    lists carry inputs only). Raises UnknownValueFound while the ARN is unknown (a preview)."""
    own = role.props.get("arn")
    if isinstance(own, UnknownValue):
        raise UnknownValueFound(f"the ARN of {role.name}, to tell whether {arn} is it")
    return own == arn if isinstance(own, str) and own else True


def _pass_mismatch(st: Statement, roles: dict[str, list[Resource]]) -> str | None:
    if not st.allows_action("iam:PassRole"):
        return None
    passed_to = _passed_to(st)
    if passed_to is None:
        return None  # CDAO-IAM-005's finding
    problems = []
    for arn in st.strings("Resource"):
        m = _ROLE_ARN.match(arn)
        if not m or any(ch in arn for ch in "*?"):
            continue
        for role in roles.get(m.group(1), []):
            if not _same_role(role, arn):
                continue
            try:
                trusted = _trusted_services(role)
            except PolicyParseError:
                continue
            except UnknownValueFound as exc:
                raise UnknownValueFound(f"the trust policy of {role.name} ({exc.what})") from exc
            if not _service_can_assume(passed_to, trusted):
                problems.append(
                    f"passes {role.name} only to {passed_to}, but its trust policy admits the services "
                    f"{sorted(trusted) or 'none'}"
                )
    return "; ".join(problems) or None


# Facts of the vendor's upstream policy, recorded with their source (see the file's "source").
_LBC = json.loads((Path(__file__).parent.parent / "data" / "aws_load_balancer_controller.json").read_text())
_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
_POLICY_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"


def _irsa_subjects(role: Resource) -> list[str]:
    doc = parse_policy(role.props.get("assumeRolePolicy"), "assumeRolePolicy")
    return [
        str(v)
        for st in statements(doc, "assumeRolePolicy")
        if st.is_allow and st.allows_action("sts:AssumeRoleWithWebIdentity")
        for c in st.conditions()
        if c.key.lower().endswith(":sub")
        for v in c.values
    ]


def _role_documents(role: Resource, resources: list[Resource]) -> Iterator[tuple[str, object]]:
    """(where, document) of every identity policy the stack gives `role`; raises for what it cannot see.

    pulumi-aws attaches a policy to a role four ways: the role's inlinePolicies and managedPolicyArns,
    iam.RolePolicy, iam.RolePolicyAttachment, and iam.PolicyAttachment (its `roles` list); all count.
    Documents that are found are yielded before an unknown is raised, so a rule can still pass on them.
    """
    names = _role_names(role) | ({role.urn} if role.urn else set())
    for i, inline in enumerate(as_list(role.get("inlinePolicies"))):
        yield f"{role.name}.inlinePolicies[{i}]", inline.get("policy") if isinstance(inline, dict) else inline
    policies = [r for r in resources if r.type == "aws:iam/policy:Policy"]
    pending: UnknownValueFound | None = None
    managed = role.props.get("managedPolicyArns")
    arns = [managed] if isinstance(managed, UnknownValue) else as_list(managed)
    try:
        yield from _attached(arns, role.deps.get("managedPolicyArns", ()), policies, f"{role.name}.managedPolicyArns")
    except UnknownValueFound as exc:
        pending = exc
    for res in resources:
        if res.type == _POLICY_ATTACHMENT:
            roles = res.props.get("roles")
            targets = set() if isinstance(roles, UnknownValue) else {r for r in as_list(roles) if isinstance(r, str)}
            linked = bool(names & (targets | set(res.deps.get("roles", ()))))
            if not linked and isinstance(roles, UnknownValue):
                pending = pending or UnknownValueFound(f"the roles of {res.name}")
                continue
        else:
            linked = res.props.get("role") in names or bool(names & set(res.deps.get("role", ())))
        if res.type == _ROLE_POLICY and linked:
            yield f"{res.name}.policy", res.props.get("policy")
        elif res.type in (_ATTACHMENT, _POLICY_ATTACHMENT) and linked:
            try:
                yield from _attached([res.props.get("policyArn")], res.deps.get("policyArn", ()), policies, res.name)
            except UnknownValueFound as exc:
                pending = pending or exc
    if pending is not None:
        raise pending


def _attached(
    arns: list[Any], deps: tuple[str, ...] | list[str], policies: list[Resource], holder: str
) -> Iterator[tuple[str, object]]:
    """Documents of the policies `arns` name: matched by the engine's dependencies (which link them
    even while an ARN is unknown at preview) or by ARN/id; AWS managed policies are skipped (their
    documents are AWS's, not the stack's). Raises UnknownValueFound for an ARN it cannot resolve."""
    by_deps = [p for p in policies if set(deps) & _policy_ids(p)]
    unresolved = None
    for arn in arns:
        found = [p for p in policies if isinstance(arn, str) and arn in _policy_ids(p)]
        if found:
            by_deps = [p for p in by_deps if p not in found]
        elif isinstance(arn, UnknownValue):
            if not by_deps:
                unresolved = unresolved or f"a policy ARN of {holder}"
        elif isinstance(arn, str) and ":aws:policy/" not in arn and not by_deps:
            unresolved = unresolved or f"the document of policy {arn} attached by {holder} (outside the stack)"
        for p in found:
            yield f"{p.name}.policy", p.props.get("policy")
    for p in by_deps:
        yield f"{p.name}.policy", p.props.get("policy")
    if unresolved:
        raise UnknownValueFound(unresolved)


def _policy_ids(policy: Resource) -> set[str]:
    ids = {v for v in (policy.id, policy.props.get("arn"), policy.props.get("name")) if isinstance(v, str)}
    return ids | ({policy.urn} if policy.urn else set()) | {policy.name}


def _grants_beyond_ownership(st: Statement, action: str, tag_key: str) -> bool:
    """Whether an Allow statement grants `action` without requiring the controller's ownership tag."""
    if not st.allows_action(action):
        return False
    return not any(tag_key.lower() in c.key.lower() for c in st.conditions())


@stack_rule(
    RULES,
    id="CDAO-IAM-013",
    name="AWS Load Balancer Controller cannot act on security groups it did not create",
    description=(
        "The IRSA role of the AWS Load Balancer Controller (service account 'aws-load-balancer-controller') "
        "grants ec2:AuthorizeSecurityGroupIngress / ec2:RevokeSecurityGroupIngress only on groups carrying "
        "its own elbv2.k8s.aws/cluster tag, or not at all. The upstream policy (kubernetes-sigs/"
        "aws-load-balancer-controller docs/install/iam_policy.json, v2.17.1) grants both on '*' without a "
        "condition because, with target-type ip, the controller opens the node or pod security group, which "
        "it did not create (#2578, #1312): UnauthorizedOperation, unhealthy targets."
    ),
    remediation=(
        "Grant ec2:AuthorizeSecurityGroupIngress and ec2:RevokeSecurityGroupIngress without the ownership-tag "
        "condition (on '*' as upstream, or on the node/pod security group ARNs)."
    ),
    level="mandatory",
)
def iam_013_lbc_foreign_groups(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    sa, tag_key = _LBC["serviceAccountName"], _LBC["ownershipTagKey"]
    for role in (r for r in resources if r.type == ROLE):
        try:
            subjects = _irsa_subjects(role)
        except (UnknownValueFound, PolicyParseError):
            continue  # CDAO-IAM-008 reports an unreadable IRSA trust
        if not any(s.rsplit(":", 1)[-1] == sa for s in subjects if s.startswith("system:serviceaccount:")):
            continue
        missing = set(_LBC["foreignResourceActions"])
        try:
            for where, raw in _role_documents(role, resources):
                if raw is None:
                    continue
                for st in statements(parse_policy(raw, where), where):
                    if st.is_allow:
                        missing -= {a for a in missing if _grants_beyond_ownership(st, a, tag_key)}
        except UnknownValueFound as exc:
            if missing:
                yield Finding(f"cannot verify: {exc.what}", role, unknown=True)
            continue
        except PolicyParseError:
            continue  # CDAO-IAM-001 reports an unparsable document
        if missing:
            yield Finding(
                f"grants {sorted(missing)} only on security groups tagged {tag_key} (or not at all); the "
                "controller needs them on node/pod groups it did not create",
                role,
            )


_EKS_COMPONENT = "eks:index:Cluster"
_AWS_EKS = "aws:eks/cluster:Cluster"
_ACCESS_ENTRY = "aws:eks/accessEntry:AccessEntry"


def _aws_auth_configmap(resources: list[Resource]) -> bool:
    for r in resources:
        if r.type in ("kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:ConfigMapPatch"):
            try:
                if dig(r.props, "metadata", "name") == "aws-auth":
                    return True
            except UnknownValueFound:
                continue  # an auto-named ConfigMap is not aws-auth, which must have that exact name
    return False


@stack_rule(
    RULES,
    id="CDAO-IAM-014",
    name="EKS cluster that only its creator can administer",
    description=(
        "An EKS cluster grants Kubernetes access to no IAM principal: no accessEntries, roleMappings or "
        "userMappings on pulumi-eks's Cluster, no aws.eks.AccessEntry for it in the stack and no aws-auth "
        "ConfigMap. Only the identity that created it then has cluster-admin (EKS grants the creator through "
        "bootstrapClusterCreatorAdminPermissions, default true; EKS user guide, access-entries), so a stack "
        "created from a laptop cannot be updated by the CI role, and the reverse (issue 13 #7). Advisory: a "
        "stack always run by the same deploy role works, and the pack cannot see who runs Pulumi."
    ),
    remediation=(
        "Add access entries (pulumi-eks accessEntries, or aws.eks.AccessEntry + AccessPolicyAssociation) for "
        "every deploy role and a break-glass role."
    ),
    level="advisory",
)
def iam_014_creator_only_cluster(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    clusters = [r for r in resources if r.type in (_EKS_COMPONENT, _AWS_EKS)]
    entries = [r for r in resources if r.type == _ACCESS_ENTRY]
    aws_auth = _aws_auth_configmap(resources)
    for cluster, status, detail in coverage(clusters, entries, "clusterName", ("name",)):
        if status == COVERED or aws_auth:
            continue
        try:
            if cluster.type == _EKS_COMPONENT and any(
                cluster.get(prop) for prop in ("accessEntries", "roleMappings", "userMappings")
            ):
                continue
        except UnknownValueFound as exc:
            yield Finding(f"cannot verify: {exc.what}", cluster, unknown=True)
            continue
        if status == UNKNOWN:
            yield Finding(f"cannot verify: {detail}", cluster, unknown=True)
        else:
            yield Finding("no IAM principal but the cluster's creator gets Kubernetes access", cluster)

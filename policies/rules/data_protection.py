"""Data protection: S3 exposure and encryption, RDS posture, EKS secrets, EBS/EFS, ECR."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cdao_catalog import rds
from policies.core import (
    Context,
    Finding,
    Resource,
    Rule,
    UnknownValue,
    UnknownValueFound,
    as_list,
    dig,
    iter_known,
    resource_rule,
    stack_rule,
    to_bool,
    to_number,
)
from policies.rules import _db_connections
from policies.rules._common import (
    BUCKET_TYPES,
    COVERED,
    EKS_COMPONENT,
    INSTANCE_LIKE,
    LAUNCH_TEMPLATE,
    UNKNOWN,
    bucket_findings,
    coverage,
)

RULES: list[Rule] = []

_PUBLIC_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
_PUBLIC_GRANTEES = ("acs.amazonaws.com/groups/global/AllUsers", "acs.amazonaws.com/groups/global/AuthenticatedUsers")
ACL_TYPES = ("aws:s3/bucketAclV2:BucketAclV2", "aws:s3/bucketAcl:BucketAcl")


def _public_grants(grants: Any, path: str) -> Iterator[str]:
    for i, grant in enumerate(iter_known(as_list(grants))):
        if not isinstance(grant, dict):
            continue
        uri = dig(grant, "grantee", "uri") or dig(grant, "uri")
        if isinstance(uri, str) and any(g in uri for g in _PUBLIC_GRANTEES):
            yield f"{path}[{i}] grants to {uri.rsplit('/', 1)[-1]}"


@resource_rule(
    RULES,
    id="CDAO-DATA-001",
    name="S3 bucket ACL grants public access",
    description=(
        "A bucket or bucket ACL uses a canned ACL public-read, public-read-write or authenticated-read, or "
        "grants to the AllUsers/AuthenticatedUsers groups."
    ),
    remediation="Use the 'private' ACL (or BucketOwnerEnforced ownership) and share through IAM or CloudFront.",
    level="mandatory",
    types=(*BUCKET_TYPES, *ACL_TYPES),
)
def data_001_public_acl(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    acl = res.get("acl")
    if isinstance(acl, str) and acl.lower() in _PUBLIC_ACLS:
        yield f"acl is {acl!r}"
    if res.type in ACL_TYPES:
        yield from _public_grants(res.get("accessControlPolicy", "grants"), "accessControlPolicy.grants")
    else:
        yield from _public_grants(res.get("grants"), "grants")


_ACCOUNT_PAB = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
_PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


@resource_rule(
    RULES,
    id="CDAO-DATA-002",
    name="S3 public access block has a flag off",
    description="All four public-access-block flags must be true; an unset flag defaults to false.",
    remediation="Set blockPublicAcls, blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets to true.",
    level="mandatory",
    types=("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", _ACCOUNT_PAB),
)
def data_002_pab_flags(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    off = []
    pending: UnknownValueFound | None = None
    for flag in _PAB_FLAGS:
        try:
            if to_bool(res.get(flag)) is not True:
                off.append(flag)
        except UnknownValueFound as exc:
            pending = pending or exc
    if off:
        yield f"{', '.join(off)} not true"
    if pending:
        yield pending


@stack_rule(
    RULES,
    id="CDAO-DATA-003",
    name="S3 bucket without a public access block",
    description=(
        "Every bucket has a BucketPublicAccessBlock whose `bucket` names it, unless the stack declares an "
        "AccountPublicAccessBlock with all four flags true (which covers every bucket of the account)."
    ),
    remediation="Declare aws.s3.BucketPublicAccessBlock(bucket=<bucket>.id, all four flags true).",
    level="mandatory",
)
def data_003_pab_missing(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    for account_block in (r for r in resources if r.type == _ACCOUNT_PAB):
        try:
            if all(to_bool(account_block.get(flag)) is True for flag in _PAB_FLAGS):
                return
        except UnknownValueFound:
            continue  # an unknown account block cannot vouch for the buckets; check them one by one
    yield from bucket_findings(
        resources,
        "bucketPublicAccessBlock",
        inline_ok=lambda _b: False,
        child_ok=lambda _c: True,
        missing_message="no public access block",
    )


def _sse_rules_ok(rules: Any) -> bool:
    for rule in iter_known(as_list(rules)):
        if isinstance(rule, dict) and isinstance(dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm"), str):
            return True
    return False


def _inline_sse(bucket: Resource) -> bool:
    if _sse_rules_ok(as_list(bucket.get("serverSideEncryptionConfiguration", "rule"))):
        return True
    return any(
        isinstance(cfg, dict) and _sse_rules_ok(dig(cfg, "rules"))
        for cfg in iter_known(as_list(bucket.get("serverSideEncryptionConfigurations")))
    )


@stack_rule(
    RULES,
    id="CDAO-DATA-004",
    name="S3 bucket without server-side encryption configuration",
    description=(
        "A bucket has no SSE configuration with a default algorithm, inline or through a "
        "BucketServerSideEncryptionConfiguration(V2) whose `bucket` names it."
    ),
    remediation="Declare BucketServerSideEncryptionConfiguration with sseAlgorithm aws:kms (and a CMK) or AES256.",
    level="mandatory",
)
def data_004_sse(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    yield from bucket_findings(
        resources,
        "bucketServerSideEncryptionConfiguration",
        inline_ok=_inline_sse,
        child_ok=lambda c: _sse_rules_ok(c.get("rules")),
        missing_message="no server-side encryption configuration",
    )


RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"


@resource_rule(
    RULES,
    id="CDAO-DATA-005",
    name="RDS storage not encrypted",
    description="An RDS instance or Aurora cluster without storageEncrypted (read replicas inherit the source).",
    remediation="Set storageEncrypted=true with a KMS key (kmsKeyId); existing instances need a snapshot restore.",
    level="mandatory",
    types=(RDS_INSTANCE, RDS_CLUSTER),
)
def data_005_rds_encryption(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if res.get("replicateSourceDb") is not None:
        return
    encrypted = res.get("storageEncrypted")
    # Aurora Serverless v1 clusters are always encrypted; the provider defaults the flag to true there.
    serverless = res.type == RDS_CLUSTER and str(res.get("engineMode", default="")).lower() == "serverless"
    if encrypted is None and serverless:
        return
    if to_bool(encrypted) is not True:
        yield "storageEncrypted is not true"


@resource_rule(
    RULES,
    id="CDAO-DATA-006",
    name="RDS publicly accessible",
    description="An RDS instance or Aurora cluster instance with publiclyAccessible=true gets a public address.",
    remediation="Set publiclyAccessible=false and reach the database from inside the VPC.",
    level="mandatory",
    types=(RDS_INSTANCE, "aws:rds/clusterInstance:ClusterInstance"),
)
def data_006_rds_public(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if to_bool(res.get("publiclyAccessible")) is True:
        yield "publiclyAccessible is true"


@resource_rule(
    RULES,
    id="CDAO-DATA-007",
    name="RDS automated backups disabled",
    description="backupRetentionPeriod 0 turns automated backups and point-in-time recovery off.",
    remediation="Set backupRetentionPeriod >= 1 (7 or more in prod).",
    level="mandatory",
    types=(RDS_INSTANCE, RDS_CLUSTER),
)
def data_007_rds_backups(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if res.get("replicateSourceDb") is not None:
        return
    # Unset means the AWS default of 1 day, so only an explicit 0 disables backups.
    period = to_number(res.get("backupRetentionPeriod", default=1))
    if period is not None and period < 1:
        yield "backupRetentionPeriod is 0: no automated backups"


@resource_rule(
    RULES,
    id="CDAO-DATA-008",
    name="RDS single-AZ where the stack requires Multi-AZ",
    description="In stacks with requireRdsMultiAz (prod), RDS instances must set multiAz=true.",
    remediation="Set multiAz=true (a standby in a second AZ; failover in ~1-2 minutes).",
    level="mandatory",
    types=(RDS_INSTANCE,),
    settings=("requireRdsMultiAz",),
)
def data_008_rds_multi_az(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    required = ctx.setting("requireRdsMultiAz") and res.get("replicateSourceDb") is None
    if required and to_bool(res.get("multiAz")) is not True:
        yield f"multiAz is not true in stack {ctx.stack!r}"


@resource_rule(
    RULES,
    id="CDAO-DATA-009",
    name="RDS without deletion protection where the stack requires it",
    description=(
        "In stacks with requireRdsDeletionProtection (prod), RDS instances and clusters set deletionProtection."
    ),
    remediation="Set deletionProtection=true.",
    level="mandatory",
    types=(RDS_INSTANCE, RDS_CLUSTER),
    settings=("requireRdsDeletionProtection",),
)
def data_009_rds_deletion_protection(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    if ctx.setting("requireRdsDeletionProtection") and to_bool(res.get("deletionProtection")) is not True:
        yield f"deletionProtection is not true in stack {ctx.stack!r}"


@resource_rule(
    RULES,
    id="CDAO-DATA-010",
    name="EKS secrets not envelope-encrypted with KMS",
    description=(
        "An EKS cluster without a KMS key for Kubernetes secrets: aws:eks/cluster needs encryptionConfig "
        "with resources ['secrets'] and a provider keyArn; eks:index:Cluster needs encryptionConfigKeyArn."
    ),
    remediation="Create a KMS key and pass encryptionConfigKeyArn (pulumi-eks) or encryptionConfig (aws.eks).",
    level="mandatory",
    types=("aws:eks/cluster:Cluster", EKS_COMPONENT),
)
def data_010_eks_secrets(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if res.type == EKS_COMPONENT:
        if not res.get("encryptionConfigKeyArn"):
            yield "encryptionConfigKeyArn is not set"
        return
    configs = as_list(res.get("encryptionConfig"))
    for cfg in iter_known(configs):
        if not isinstance(cfg, dict):
            continue
        resources = [r for r in iter_known(as_list(dig(cfg, "resources"))) if isinstance(r, str)]
        if "secrets" in resources and dig(cfg, "provider", "keyArn"):
            return
    yield "encryptionConfig does not encrypt 'secrets' with a KMS key"


EBS_VOLUME = "aws:ebs/volume:Volume"
_EBS_DEFAULT = "aws:ebs/encryptionByDefault:EncryptionByDefault"


@stack_rule(
    RULES,
    id="CDAO-DATA-011",
    name="EBS volume not encrypted",
    description=(
        "EBS volumes, launch-template and instance block devices and the pulumi-eks node root volume must "
        "be encrypted, unless the stack turns on EBS encryption by default (aws.ebs.EncryptionByDefault)."
    ),
    remediation="Set encrypted=true (launch templates: ebs.encrypted='true'), or enable EncryptionByDefault.",
    level="mandatory",
)
def data_011_ebs(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    defaults = [r for r in resources if r.type == _EBS_DEFAULT]
    for d in defaults:
        try:
            if to_bool(d.get("enabled", default=True)) is True:
                return
        except UnknownValueFound as exc:
            yield Finding(f"cannot verify: {exc.what}", d, unknown=True)
            return
    for res in resources:
        try:
            for path, flag in _ebs_devices(res):
                if to_bool(flag) is not True:
                    yield Finding(f"{path} is not true", res)
        except UnknownValueFound as exc:
            yield Finding(f"cannot verify: {exc.what}", res, unknown=True)


def _ebs_devices(res: Resource) -> Iterator[tuple[str, Any]]:
    if res.type == EBS_VOLUME:
        yield "encrypted", res.get("encrypted", default=False)
    elif res.type == LAUNCH_TEMPLATE:
        for i, bdm in enumerate(iter_known(as_list(res.get("blockDeviceMappings")))):
            if isinstance(bdm, dict) and dig(bdm, "ebs") is not None:
                yield f"blockDeviceMappings[{i}].ebs.encrypted", dig(bdm, "ebs", "encrypted", default=False)
    elif res.type in INSTANCE_LIKE:
        yield "rootBlockDevice.encrypted", res.get("rootBlockDevice", "encrypted", default=False)
        for i, dev in enumerate(iter_known(as_list(res.get("ebsBlockDevices")))):
            yield f"ebsBlockDevices[{i}].encrypted", dig(dev, "encrypted", default=False)
    elif res.type == EKS_COMPONENT:
        # pulumi-eks encrypts node root volumes unless told not to; only an explicit false is a finding.
        for path in (
            ("nodeRootVolumeEncrypted",),
            ("nodeGroupOptions", "nodeRootVolumeEncrypted"),
            ("nodeGroupOptions", "encryptRootBlockDevice"),
        ):
            value = res.get(*path)
            if value is not None:
                yield ".".join(path), value


@resource_rule(
    RULES,
    id="CDAO-DATA-012",
    name="EFS file system not encrypted",
    description="An EFS file system without encrypted=true (encryption at rest can only be chosen at creation).",
    remediation="Set encrypted=true (and kmsKeyId for a customer-managed key).",
    level="mandatory",
    types=("aws:efs/fileSystem:FileSystem",),
)
def data_012_efs(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if to_bool(res.get("encrypted")) is not True:
        yield "encrypted is not true"


ECR_REPOSITORY = "aws:ecr/repository:Repository"


@resource_rule(
    RULES,
    id="CDAO-DATA-013",
    name="ECR repository with mutable tags",
    description="imageTagMutability defaults to MUTABLE: a pushed tag can be silently replaced by other content.",
    remediation="Set imageTagMutability='IMMUTABLE' and deploy by tag or digest.",
    level="mandatory",
    types=(ECR_REPOSITORY,),
)
def data_013_ecr_mutable(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    mode = res.get("imageTagMutability", default="MUTABLE")
    if isinstance(mode, str) and not mode.upper().startswith("IMMUTABLE"):
        yield f"imageTagMutability is {mode!r}"


@resource_rule(
    RULES,
    id="CDAO-DATA-014",
    name="ECR repository without scan on push",
    description="imageScanningConfiguration.scanOnPush is not true, so pushed images are not scanned.",
    remediation="Set imageScanningConfiguration={'scanOnPush': True} (or enhanced scanning at registry level).",
    level="mandatory",
    types=(ECR_REPOSITORY,),
)
def data_014_ecr_scan(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if to_bool(res.get("imageScanningConfiguration", "scanOnPush")) is not True:
        yield "imageScanningConfiguration.scanOnPush is not true"


@resource_rule(
    RULES,
    id="CDAO-DATA-015",
    name="EMR cluster without a security configuration",
    description=(
        "An EMR cluster without securityConfiguration has no at-rest (EBS, local disk, EMRFS) or in-transit "
        "encryption settings."
    ),
    remediation="Create an aws.emr.SecurityConfiguration with at-rest and in-transit encryption and reference it.",
    level="mandatory",
    types=("aws:emr/cluster:Cluster",),
)
def data_015_emr_security_configuration(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if not res.get("securityConfiguration"):
        yield "securityConfiguration is not set"


# How many dot-separated parts name a major version, per engine (RDS user guide: PostgreSQL majors
# from 10 on are one number, "16"; MySQL and MariaDB majors are two, "8.0", "10.11"). Engines whose
# versions have another shape (Oracle, SQL Server, Aurora MySQL's "8.0.mysql_aurora.3.10.0") are
# not judged.
_MAJOR_PARTS = {"postgres": 1, "aurora-postgresql": 1, "mysql": 2, "mariadb": 2}


@resource_rule(
    RULES,
    id="CDAO-DATA-016",
    name="RDS engine version pinned below the major while minor upgrades are automatic",
    description=(
        "An RDS instance or cluster (Aurora, Multi-AZ DB cluster) pins engineVersion to a minor (postgres "
        "'16.8', mysql '8.0.36') and keeps autoMinorVersionUpgrade at its default (true; pulumi-aws rds.Cluster "
        "docstring: 'Defaults to true'). After AWS upgrades the minor, the provider keeps "
        "the configured value only when the actual version starts with it plus '.' "
        "(terraform-provider-aws internal/service/rds compareActualEngineVersion; pulumi-aws rds.Instance "
        "engine_version docstring), so every later update plans a downgrade that RDS refuses."
    ),
    remediation=(
        "Pin the major only (engineVersion '16' or '8.0') and let AWS apply minors, or set "
        "autoMinorVersionUpgrade=false and upgrade minors deliberately."
    ),
    level="advisory",
    types=(RDS_INSTANCE, RDS_CLUSTER),
)
def data_016_rds_minor_pin(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if to_bool(res.get("autoMinorVersionUpgrade", default=True)) is False:
        return
    engine, version = res.get("engine"), res.get("engineVersion")
    if not isinstance(engine, str) or not isinstance(version, str):
        return  # a replica inherits the source's version; no version means AWS's default
    parts = _MAJOR_PARTS.get(engine.lower())
    if engine.lower().startswith("postgres") and version.split(".", 1)[0].isdigit() and int(version.split(".")[0]) < 10:
        parts = 2  # PostgreSQL 9.x majors are "9.6"
    if parts is not None and len(version.split(".")) > parts:
        yield (
            f"engineVersion {version!r} pins a minor of {engine} while autoMinorVersionUpgrade is on; "
            f"pin {'.'.join(version.split('.')[:parts])!r}"
        )


_CERTIFICATE = "aws:acm/certificate:Certificate"
_CERT_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"


@stack_rule(
    RULES,
    id="CDAO-DATA-017",
    name="ACM certificate that the stack never validates",
    description=(
        "A DNS- or email-validated aws.acm.Certificate has no aws.acm.CertificateValidation whose "
        "certificateArn names it. Nothing then waits for issuance: the certificate stays PENDING_VALIDATION "
        "until someone creates the record, and ACM gives up after 72 hours (ACM user guide, "
        "dns-validation / troubleshooting: 'the request times out after 72 hours'); a listener using it "
        "cannot serve TLS."
    ),
    remediation=(
        "Create the validation records (Route 53 records from domainValidationOptions) and an "
        "aws.acm.CertificateValidation, or export the records for whoever owns the zone and validate there."
    ),
    level="advisory",
)
def data_017_acm_unvalidated(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    certs = []
    for cert in (r for r in resources if r.type == _CERTIFICATE):
        try:
            # Imported (privateKey) and private-CA (certificateAuthorityArn) certificates need no validation.
            if cert.get("privateKey") is not None or cert.get("certificateAuthorityArn") is not None:
                continue
        except UnknownValueFound:
            pass
        certs.append(cert)
    validations = [r for r in resources if r.type == _CERT_VALIDATION]
    for cert, status, detail in coverage(certs, validations, "certificateArn", ("arn",)):
        if status == UNKNOWN:
            yield Finding(f"cannot verify: {detail}", cert, unknown=True)
        elif status != COVERED:
            yield Finding("no CertificateValidation waits for this certificate to be issued", cert)


@resource_rule(
    RULES,
    id="CDAO-DATA-018",
    name="RDS deletion without a final snapshot",
    description=(
        "In stacks with requireRdsFinalSnapshot (staging, prod), an RDS instance or cluster sets "
        "skipFinalSnapshot=true, so deleting it (a replacement, a teardown after lifting deletion protection) "
        "keeps no snapshot. In every stack, an instance that keeps the default skipFinalSnapshot=false without a "
        "finalSnapshotIdentifier cannot be deleted (pulumi-aws rds.Instance docstring: 'Must be provided if "
        "skip_final_snapshot is set to false'), and neither can a cluster (terraform-provider-aws "
        "internal/service/rds cluster.go delete: 'RDS Cluster FinalSnapshotIdentifier is required when a final "
        "snapshot is required'). Read replicas (replicateSourceDb, replicationSourceIdentifier) are exempt."
    ),
    remediation=(
        "Set skipFinalSnapshot=false with a finalSnapshotIdentifier unique per deletion (e.g. with a random or "
        "dated suffix), and never derive skipFinalSnapshot from deletionProtection."
    ),
    level="mandatory",
    types=(RDS_INSTANCE, RDS_CLUSTER),
    settings=("requireRdsFinalSnapshot",),
)
def data_018_rds_final_snapshot(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    if res.get("replicateSourceDb") is not None or res.get("replicationSourceIdentifier") is not None:
        return
    skip = to_bool(res.get("skipFinalSnapshot", default=False)) is True
    if skip and ctx.setting("requireRdsFinalSnapshot"):
        yield f"skipFinalSnapshot is true in stack {ctx.stack!r}: deleting the database keeps no snapshot"
    elif not skip and not res.get("finalSnapshotIdentifier"):
        kind = "instance" if res.type == RDS_INSTANCE else "cluster"
        yield f"skipFinalSnapshot is false but finalSnapshotIdentifier is unset: the {kind} cannot be deleted"


# Stores whose delete call fails while they hold data, and the provider flag that empties them first
# (pulumi-aws docstrings: s3 Bucket/BucketV2 forceDestroy, ecr Repository forceDelete, backup Vault
# forceDestroy, all default false). AWS refuses the delete otherwise: S3 DeleteBucket needs an empty
# bucket, ECR DeleteRepository a repository without images unless forced, Backup DeleteBackupVault
# an empty vault (the services' API references).
_FORCE_FLAGS = {
    "aws:s3/bucket:Bucket": "forceDestroy",
    "aws:s3/bucketV2:BucketV2": "forceDestroy",
    "aws:ecr/repository:Repository": "forceDelete",
    "aws:backup/vault:Vault": "forceDestroy",
}


@resource_rule(
    RULES,
    id="CDAO-DATA-019",
    name="Store that blocks the teardown of a disposable stack",
    description=(
        "In stacks with destroyableStack (dev), an S3 bucket, ECR repository or Backup vault keeps its "
        "force flag (forceDestroy / forceDelete) at the default false, so `pulumi destroy` stops at the first "
        "one holding objects, images or recovery points and strands the rest (VPC, NAT) running (issue 13 #6)."
    ),
    remediation="Set forceDestroy=True (buckets, Backup vaults) / forceDelete=True (ECR) in disposable stacks.",
    level="advisory",
    types=tuple(_FORCE_FLAGS),
    settings=("destroyableStack",),
)
def data_019_teardown_blocked(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    flag = _FORCE_FLAGS[res.type]
    if ctx.setting("destroyableStack") and to_bool(res.get(flag, default=False)) is not True:
        yield f"{flag} is not true in stack {ctx.stack!r}: destroy fails while it holds data"


@resource_rule(
    RULES,
    id="CDAO-DATA-020",
    name="Store that a replacement or destroy empties where the stack keeps data",
    description=(
        "In stacks without destroyableStack (staging, prod), an S3 bucket, ECR repository or Backup vault sets "
        "forceDestroy / forceDelete, so a replacement or `pulumi destroy` deletes every object, image or "
        "recovery point in it without asking."
    ),
    remediation="Leave forceDestroy / forceDelete unset (false) outside disposable stacks.",
    level="mandatory",
    types=tuple(_FORCE_FLAGS),
    settings=("destroyableStack",),
)
def data_020_force_delete_kept_data(res: Resource, ctx: Context) -> Iterator[str | UnknownValueFound]:
    flag = _FORCE_FLAGS[res.type]
    if not ctx.setting("destroyableStack") and to_bool(res.get(flag, default=False)) is True:
        yield f"{flag} is true in stack {ctx.stack!r}: deleting it deletes its data"


# The Argo CD cluster Secret infra/ writes (infra/contract.py): its `environment` label picks
# platform/'s values-<environment>.yaml and its `enable_<addon>` labels switch the add-ons on.
_K8S_SECRET = "kubernetes:core/v1:Secret"  # noqa: S105 - a resource type, not a secret
_CLUSTER_SECRET_LABEL = ("argocd.argoproj.io/secret-type", "cluster")


def _cluster_secret_labels(resources: list[Resource]) -> dict[str, Any] | None:
    for res in resources:
        if res.type != _K8S_SECRET:
            continue
        labels = res.get("metadata", "labels", default={})
        key, value = _CLUSTER_SECRET_LABEL
        if isinstance(labels, dict) and not isinstance(labels.get(key), UnknownValue) and labels.get(key) == value:
            return labels
    return None


@stack_rule(
    RULES,
    id="CDAO-DATA-021",
    name="RDS PostgreSQL instance that cannot hold the connections platform/'s services may open",
    description=(
        "Flyte (flyteadmin, datacatalog, cluster-resource sync) and MLflow share the stack's RDS PostgreSQL "
        "instance. The connections their pools may hold at the peak of a rolling update (read from the "
        "values files each add-on's ApplicationSet picks by the cluster Secret's labels) must fit the "
        "instance class's default max_connections, LEAST(DBInstanceClassMemory/9531392, 5000) (Amazon RDS "
        "User Guide, CHAP_Limits.html#RDS_Limits.MaxConnections), less PostgreSQL's "
        "superuser_reserved_connections; beyond it new connections fail with 'too many clients already'."
    ),
    remediation=(
        "Lower the pools in platform/addons/<add-on>/<chart>/values-<stack>.yaml (Flyte's "
        "db.<admin|datacatalog>.database.maxOpenConnections; MLflow's MLFLOW_SQLALCHEMYSTORE_POOL_SIZE / "
        "_MAX_OVERFLOW and extraArgs.workers) or replicas, or pick a DB instance class with more memory."
    ),
    level="mandatory",
)
def data_021_db_connection_budget(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    labels = _cluster_secret_labels(resources)
    if labels is None:
        return
    environment = labels.get("environment")
    for db in (r for r in resources if r.type == RDS_INSTANCE):
        engine, cls = db.get("engine"), db.get("instanceClass")
        unknown = [what for what, v in (("engine", engine), ("instanceClass", cls)) if isinstance(v, UnknownValue)]
        unknown += [f"the cluster Secret's label {k}" for k, v in labels.items() if isinstance(v, UnknownValue)]
        if unknown:
            yield Finding(f"cannot verify: {', '.join(unknown)} unknown at preview", db, unknown=True)
            continue
        if not (isinstance(engine, str) and engine.startswith("postgres")) or not isinstance(cls, str):
            continue
        try:
            bound = rds.max_connections_bound(cls)
        except rds.UnknownDbInstanceClassError:
            yield Finding(f"instanceClass {cls!r} has no memory figure in cdao_catalog/rds.py to bound it", db)
            continue
        try:
            consumers = _db_connections.consumers(labels)
        except _db_connections.ConnectionBudgetError as exc:
            yield Finding(str(exc), db)
            continue
        available = bound - rds.SUPERUSER_RESERVED_CONNECTIONS
        total = sum(c.connections for c in consumers)
        if total > available:
            shares = "; ".join(c.describe() for c in consumers)
            yield Finding(
                f"platform/'s services in {environment!r} may open {total} connections ({shares}), more than the "
                f"{available} instanceClass {cls!r} accepts at most ({bound} max_connections less "
                f"{rds.SUPERUSER_RESERVED_CONNECTIONS} reserved)",
                db,
            )

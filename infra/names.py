"""AWS's length limits on the names infra/ derives from config values, and the suffixes added to them.

Config validation (infra/config.py) checks every derived name against these at parse time, for any
value the config accepts; the offline plan's mocks (cdao_cli/plan/mocks.py) refuse a name over its
limit the way the provider would, so a test that plans the longest accepted values proves the two
agree with what the program actually builds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cdao_stacks

# Pulumi's autonaming appends "-" and 7 random characters to the logical name
# (https://www.pulumi.com/docs/iac/concepts/resources/names/#autonaming).
AUTONAME_SUFFIX = 8
# A `*_prefix` argument gets a 26-character unique suffix (terraform-plugin-sdk helper/id
# PrefixedUniqueId: a timestamp and a counter), as pulumi-aws's prefixed names do.
UNIQUE_ID_SUFFIX = 26


@dataclass(frozen=True)
class Limit:
    max_length: int
    source: str


LIMITS = {
    "iam-role": Limit(64, "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html (RoleName)"),
    # pulumi_aws s3.Bucket.bucket_prefix: "less than or equal to 37 characters".
    "s3-bucket-prefix": Limit(37, "pulumi_aws s3.Bucket.bucket_prefix"),
    "rds-identifier": Limit(
        63, "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html (DBInstanceIdentifier)"
    ),
    "eks-nodegroup": Limit(
        63, "https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateNodegroup.html (nodegroupName)"
    ),
    "eks-cluster": Limit(100, "https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateCluster.html (name)"),
    "backup-name": Limit(
        50, "https://docs.aws.amazon.com/aws-backup/latest/devguide/API_CreateBackupVault.html (BackupVaultName)"
    ),
}

# An AWS Backup vault name, as the service model gives it (botocore 1.40.61,
# botocore/data/backup/2018-11-15/service-2.json, shape BackupVaultName; the same rule as
# https://docs.aws.amazon.com/aws-backup/latest/devguide/API_CreateBackupVault.html).
BACKUP_VAULT_NAME = r"[a-zA-Z0-9\-\_]{2,50}"

# Kubernetes labels and taints of an EKS managed node group, each whole key with its prefix.
EKS_API = "https://docs.aws.amazon.com/eks/latest/APIReference"
LIMITS.update(
    {
        "eks-label-key": Limit(63, f"{EKS_API}/API_UpdateLabelsPayload.html (addOrUpdateLabels key)"),
        # A value may not be empty either (minimum length 1).
        "eks-label-value": Limit(63, f"{EKS_API}/API_UpdateLabelsPayload.html (addOrUpdateLabels value, 1-63)"),
        "eks-taint-key": Limit(63, f"{EKS_API}/API_Taint.html (key)"),
        "eks-taint-value": Limit(63, f"{EKS_API}/API_Taint.html (value)"),
    }
)

# Tags the config sets on every taggable resource (cdao:team, cdao:costCenter, the stack name) and
# on node groups and their Auto Scaling groups (pool names, labels, taints).
TAGS_SOURCE = "https://docs.aws.amazon.com/batch/latest/userguide/tag-restrictions.html"
LIMITS.update(
    {
        # EC2 allows 127 (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Tag.html).
        "aws-tag-key": Limit(127, "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Tag.html (Key)"),
        "aws-tag-value": Limit(256, f"{TAGS_SOURCE} (maximum value length)"),
    }
)
# Neither a tag key nor a value may start with aws: in any case: AWS reserves it (TAGS_SOURCE).
RESERVED_TAG_PREFIX = "aws:"

# An AWS region code: area, optional -gov, direction, number (us-east-1, us-gov-west-1, ap-southeast-7),
# https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html
AWS_REGION = r"[a-z]{2}(-gov)?-[a-z]+-\d"

# The characters a stack name may use: it becomes part of S3 bucket names (lowercase letters, digits,
# '.' and '-'), RDS identifiers (letters, digits, single hyphens, no trailing hyphen), ECR repository
# names (lowercase), the EKS cluster name and Backup vault names ([A-Za-z0-9_-]); only lowercase
# letters and digits joined by single hyphens fit all of them.
# The rule is the stack registry's (cdao_stacks.STACK_NAME), which refuses such a file up front.
STACK_NAME = cdao_stacks.STACK_NAME
STACK_NAME_SOURCES = (
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html, "
    "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html (DBInstanceIdentifier), "
    "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html (repositoryName), "
    "https://docs.aws.amazon.com/aws-backup/latest/devguide/API_CreateBackupVault.html (BackupVaultName)"
)

# What the mocks enforce, by resource type: the input holding the name (None: the autonamed
# physical name), the limit, and the characters the provider appends to that input.
RESOURCE_NAMES: dict[str, tuple[str | None, str, int]] = {
    "aws:iam/role:Role": (None, "iam-role", 0),
    "aws:s3/bucket:Bucket": ("bucketPrefix", "s3-bucket-prefix", 0),
    "aws:rds/instance:Instance": ("identifierPrefix", "rds-identifier", UNIQUE_ID_SUFFIX),
    "aws:eks/nodeGroup:NodeGroup": ("nodeGroupNamePrefix", "eks-nodegroup", UNIQUE_ID_SUFFIX),
    "aws:backup/vault:Vault": ("name", "backup-name", 0),
    "aws:backup/plan:Plan": ("name", "backup-name", 0),
    "aws:backup/selection:Selection": ("name", "backup-name", 0),
    "eks:index:Cluster": ("name", "eks-cluster", 0),
}


def too_long(name: str, limit: str, suffix: int = 0) -> str | None:
    """Why `name` (plus `suffix` generated characters) breaks `limit`, or None when it fits."""
    rule = LIMITS[limit]
    if len(name) + suffix <= rule.max_length:
        return None
    extra = f" plus {suffix} generated characters" if suffix else ""
    return f"{name!r}{extra} is longer than {rule.max_length} characters ({rule.source})"

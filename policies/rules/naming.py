"""Naming: physical names a program sets (often derived from config) must fit AWS's length limits.

Pulumi's auto-names respect each resource's limit; a name or prefix the program writes itself is
sent as is, and an over-long one fails `pulumi up` at create time, after the resources before it
were made. The limits below come from the AWS API references and from terraform-provider-aws (the
bridge pulumi-aws runs), where a `*Prefix` is completed by a 26-character unique suffix
(terraform-plugin-sdk helper/id UniqueIDSuffixLength), so a prefix may take the limit minus 26.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.core import Context, Resource, Rule, UnknownValueFound, resource_rule

RULES: list[Rule] = []

_SUFFIX = 26  # terraform-plugin-sdk helper/id.UniqueIDSuffixLength

_LB = (
    ("name", 32, "ELB API reference, CreateLoadBalancer: Name at most 32 characters"),
    (
        "namePrefix",
        32 - _SUFFIX,
        "terraform-provider-aws internal/service/elbv2 load_balancer.go, 32 - UniqueIDSuffixLength",
    ),
)
_TARGET_GROUP = (
    ("name", 32, "terraform-provider-aws internal/service/elbv2 validate.go validTargetGroupName (32)"),
    ("namePrefix", 32 - _SUFFIX, "validate.go validTargetGroupNamePrefix: 32 - id.UniqueIDSuffixLength"),
)

#: type -> ((prop, longest accepted length, source), ...)
NAME_LIMITS: dict[str, tuple[tuple[str, int, str], ...]] = {
    "aws:iam/role:Role": (
        ("name", 64, "terraform-provider-aws internal/service/iam/role.go roleNameMaxLen"),
        ("namePrefix", 64 - _SUFFIX, "role.go roleNamePrefixMaxLen = roleNameMaxLen - UniqueIDSuffixLength"),
    ),
    "aws:s3/bucket:Bucket": (
        ("bucket", 63, "S3 user guide, bucket naming rules; bucket.go StringLenBetween(0, 63)"),
        ("bucketPrefix", 63 - _SUFFIX, "bucket.go StringLenBetween(0, 63-id.UniqueIDSuffixLength)"),
    ),
    "aws:s3/bucketV2:BucketV2": (
        ("bucket", 63, "S3 user guide, bucket naming rules; bucket.go StringLenBetween(0, 63)"),
        ("bucketPrefix", 63 - _SUFFIX, "bucket.go StringLenBetween(0, 63-id.UniqueIDSuffixLength)"),
    ),
    "aws:eks/nodeGroup:NodeGroup": (
        ("nodeGroupName", 63, "terraform-provider-aws internal/service/eks/node_group.go StringLenBetween(0, 63)"),
        ("nodeGroupNamePrefix", 63 - _SUFFIX, "node_group.go StringLenBetween(0, 63-id.UniqueIDSuffixLength)"),
    ),
    "aws:eks/cluster:Cluster": (("name", 100, "EKS API reference, CreateCluster: name 1-100 characters"),),
    "aws:rds/instance:Instance": (
        ("identifier", 63, "RDS API reference, CreateDBInstance: DBInstanceIdentifier 1 to 63 characters"),
        ("identifierPrefix", 63 - _SUFFIX, "the identifier limit minus the 26-character unique suffix"),
        ("finalSnapshotIdentifier", 255, "RDS API reference, CreateDBSnapshot: DBSnapshotIdentifier 1 to 255"),
    ),
    **dict.fromkeys(("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"), _LB),
    **dict.fromkeys(("aws:lb/targetGroup:TargetGroup", "aws:alb/targetGroup:TargetGroup"), _TARGET_GROUP),
    # pulumi-eks components pass these names through to aws.eks.Cluster / aws.eks.NodeGroup
    # (pulumi_eks cluster.py `name`, managed_node_group.py `node_group_name(_prefix)`).
    "eks:index:Cluster": (("name", 100, "EKS API reference, CreateCluster: name 1-100 characters"),),
    "eks:index:ManagedNodeGroup": (
        ("nodeGroupName", 63, "terraform-provider-aws internal/service/eks/node_group.go StringLenBetween(0, 63)"),
        ("nodeGroupNamePrefix", 63 - _SUFFIX, "node_group.go StringLenBetween(0, 63-id.UniqueIDSuffixLength)"),
    ),
}


@resource_rule(
    RULES,
    id="CDAO-NAME-001",
    name="Physical name or name prefix longer than AWS accepts",
    description=(
        "An explicit name or name prefix exceeds the service's limit: IAM role name 64 (prefix 38), S3 bucket "
        "63 (prefix 37), EKS node group 63 (prefix 37), EKS cluster 100, RDS identifier 63 (prefix 37) and "
        "final snapshot identifier 255, load balancer and target group 32 (prefix 6); pulumi-eks's Cluster and "
        "ManagedNodeGroup like the EKS resources they create. A prefix is completed by terraform-provider-aws's "
        "26-character unique suffix. Sources per limit in policies/rules/naming.py (AWS API references, "
        "terraform-provider-aws validators). The create call fails mid-deploy."
    ),
    remediation=(
        "Shorten the parts the name is built from (stack, project, pool names) or drop the explicit name and "
        "let Pulumi auto-name within the limit; validate config-derived names where the config is parsed."
    ),
    level="mandatory",
    types=tuple(NAME_LIMITS),
)
def name_001_length(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    for prop, limit, source in NAME_LIMITS[res.type]:
        try:
            value = res.get(prop)
        except UnknownValueFound as exc:
            yield exc
            continue
        if isinstance(value, str) and len(value) > limit:
            yield f"{prop} {value!r} has {len(value)} characters; at most {limit} ({source})"

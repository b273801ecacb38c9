"""Inputs whose change makes the AWS provider replace a resource instead of updating it.

pulumi-aws bridges hashicorp/terraform-provider-aws, and a Terraform attribute marked
`ForceNew: true` becomes a Pulumi property that forces replacement. `cdao plan --diff` marks a
changed input as a replacement when it falls under one of these paths (Pulumi property-path
syntax) or under the resource's own `replace_on_changes` option.

Only resource types read from the provider's source are listed; for any other type the diff shows
the changed inputs without claiming whether they replace. Extend the table from the same source.
"""

from __future__ import annotations

FORCE_NEW_INPUTS: dict[str, tuple[str, ...]] = {
    # hashicorp/terraform-provider-aws internal/service/eks/node_group.go (commit 012e0a32):
    # ami_type, capacity_type, cluster_name, disk_size, instance_types, launch_template.{id,name},
    # node_group_name(_prefix), node_role_arn, remote_access and subnet_ids are ForceNew.
    "aws:eks/nodeGroup:NodeGroup": (
        "amiType",
        "capacityType",
        "clusterName",
        "diskSize",
        "instanceTypes",
        "launchTemplate.id",
        "launchTemplate.name",
        "nodeGroupName",
        "nodeGroupNamePrefix",
        "nodeRoleArn",
        "remoteAccess",
        "subnetIds",
    ),
    # hashicorp/terraform-provider-aws internal/service/rds/instance.go (commit 00e4b238): the
    # top-level attributes with ForceNew (s3Import's are all ForceNew below it). The program keys
    # the final snapshot's suffix on these (infra/components/data.py).
    "aws:rds/instance:Instance": (
        "availabilityZone",
        "characterSetName",
        "customIamInstanceProfile",
        "dbName",
        "engine",
        "identifier",
        "identifierPrefix",
        "kmsKeyId",
        "ncharCharacterSetName",
        "restoreToPointInTime",
        "s3Import",
        "snapshotIdentifier",
        "storageEncrypted",
        "timezone",
        "username",
    ),
    # hashicorp/terraform-provider-aws internal/service/ec2/vpc_subnet.go (commit 00cda125).
    "aws:ec2/subnet:Subnet": (
        "availabilityZone",
        "availabilityZoneId",
        "cidrBlock",
        "ipv4IpamPoolId",
        "ipv4NetmaskLength",
        "ipv6IpamPoolId",
        "ipv6Native",
        "ipv6NetmaskLength",
        "outpostArn",
        "vpcId",
    ),
}


# Inputs the provider treats as sets (TypeSet in the same sources): their order means nothing, so
# the diff compares them sorted instead of claiming a reordering as a change.
SET_INPUTS: dict[str, tuple[str, ...]] = {
    "aws:eks/nodeGroup:NodeGroup": ("subnetIds", "remoteAccess.sourceSecurityGroupIds", "taints"),
}

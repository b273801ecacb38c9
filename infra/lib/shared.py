"""Building blocks several components declare the same way."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws


def kept_on_teardown(opts: pulumi.ResourceOptions, keep: bool, *, retain: bool = False) -> pulumi.ResourceOptions:
    """`opts` for a resource that holds data: with `keep` (every stack whose profile is not
    disposable, StackConfig.destroyable), `protect` makes the engine refuse to delete it, so
    `pulumi destroy` fails before deleting anything until someone lifts protection on purpose
    (https://www.pulumi.com/docs/iac/concepts/options/protect/); `retain` also leaves it in AWS when
    it is deleted from the stack (https://www.pulumi.com/docs/iac/concepts/options/retainondelete/)."""
    if not keep:
        return opts
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True, retain_on_delete=retain))


def rotating_key(
    name: str,
    description: str,
    alias: str | None,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
    *,
    keep: bool = False,
) -> aws.kms.Key:
    """A customer-managed KMS key with yearly rotation and the longest deletion window: a key
    deleted by mistake takes every object it encrypted with it. With `keep` it is protected and
    retained on teardown: what it encrypts (RDS final snapshots, recovery points) outlives the stack."""
    key = aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        tags=dict(tags),
        opts=kept_on_teardown(opts, keep, retain=True),
    )
    if alias:
        aws.kms.Alias(
            name,
            name=f"alias/{alias}",
            target_key_id=key.key_id,
            opts=pulumi.ResourceOptions(parent=key, provider=opts.provider),
        )
    return key


def reachable_only_from(
    name: str,
    *,
    vpc_id: pulumi.Input[str],
    description: str,
    source_security_group_id: pulumi.Input[str],
    port: int,
    rule_description: str,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> aws.ec2.SecurityGroup:
    """A security group whose only ingress is one TCP port from one other security group."""
    group = aws.ec2.SecurityGroup(
        name, vpc_id=vpc_id, description=description, tags=dict(tags), opts=pulumi.ResourceOptions(parent=parent)
    )
    aws.vpc.SecurityGroupIngressRule(
        f"{name}-from-nodes",
        security_group_id=group.id,
        referenced_security_group_id=source_security_group_id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=rule_description,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=group),
    )
    return group


def https_egress_only(
    name: str, vpc_id: pulumi.Input[str], description: str, tags: Mapping[str, str], parent: pulumi.Resource
) -> aws.ec2.SecurityGroup:
    """A security group for workers that only call out (AWS APIs, ECR, S3) and accept nothing."""
    group = aws.ec2.SecurityGroup(
        name, vpc_id=vpc_id, description=description, tags=dict(tags), opts=pulumi.ResourceOptions(parent=parent)
    )
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-https",
        security_group_id=group.id,
        cidr_ipv4="0.0.0.0/0",
        ip_protocol="tcp",
        from_port=443,
        to_port=443,
        description="HTTPS to AWS APIs, ECR and S3",
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=group),
    )
    return group

"""Building blocks several components declare the same way."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws


def rotating_key(
    name: str, description: str, alias: str | None, tags: Mapping[str, str], opts: pulumi.ResourceOptions
) -> aws.kms.Key:
    """A customer-managed KMS key with yearly rotation and the longest deletion window: a key
    deleted by mistake takes every object it encrypted with it."""
    key = aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        tags=dict(tags),
        opts=opts,
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

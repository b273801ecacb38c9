"""IAM policy documents built as plain JSON.

Written here rather than with aws.iam.get_policy_document: an invoke needs a provider round trip per
document (and a mock per document offline), while these are pure functions of their inputs that
tests can read directly. Every trust policy pins who may assume the role; every permission policy
names the resources it grants.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

Statement = Mapping[str, Any]


def document(statements: Sequence[Statement]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def allow(
    sid: str, actions: Sequence[str], resources: Sequence[str], condition: Mapping[str, Any] | None = None
) -> dict:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": list(resources)}
    if condition:
        statement["Condition"] = dict(condition)
    return statement


def deny(sid: str, actions: Sequence[str], resources: Sequence[str]) -> dict:
    """An explicit Deny: it overrides every Allow of the same principal, from any policy (IAM User
    Guide, "Policy evaluation logic")."""
    return {"Sid": sid, "Effect": "Deny", "Action": list(actions), "Resource": list(resources)}


def use_data_key(key_arn: str) -> dict:
    """Read and write objects encrypted with the stack's data key (S3 SSE-KMS, EFS, secrets)."""
    return allow("UseDataKey", ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], [key_arn])


def irsa_trust(oidc_provider_arn: pulumi.Input[str], oidc_issuer: pulumi.Input[str], namespace: str, name: str):
    """Trust exactly one Kubernetes service account: `:sub` names it, `:aud` is STS.

    `oidc_issuer` is the cluster's OIDC issuer without `https://` (oidc.eks.<region>.amazonaws.com/id/<ID>):
    the condition keys are `<issuer>:sub` and `<issuer>:aud`, per
    https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html
    """

    return pulumi.Output.all(oidc_provider_arn, oidc_issuer).apply(
        lambda args: irsa_trust_document(args[0], args[1], namespace, name)
    )


def irsa_trust_document(provider_arn: str, issuer: str, namespace: str, name: str) -> str:
    """irsa_trust's policy JSON for resolved values (what `cdao doctor`'s tests create roles with).

    Raises ValueError when `issuer` carries a scheme."""
    if "://" in issuer:
        raise ValueError(f"an IRSA trust needs the OIDC issuer without its scheme, got {issuer!r}")
    return document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": f"system:serviceaccount:{namespace}:{name}",
                        f"{issuer}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ]
    )


def service_trust(service: str, account_id: pulumi.Input[str], source_arn: pulumi.Input[str] | None = None):
    """Trust an AWS service, only on behalf of this account (and resource): the confused-deputy guard."""

    def build(args: list[str]) -> str:
        condition: dict[str, Any] = {"StringEquals": {"aws:SourceAccount": args[0]}}
        if len(args) > 1:
            condition["ArnLike"] = {"aws:SourceArn": args[1]}
        return document(
            [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole", "Condition": condition}]
        )

    inputs = [account_id] if source_arn is None else [account_id, source_arn]
    return pulumi.Output.all(*inputs).apply(build)


def pass_role(sid: str, role_arns: Sequence[str], service: str) -> dict:
    """iam:PassRole for named roles, and only to the service that will use them."""
    return allow(sid, ["iam:PassRole"], role_arns, {"StringEquals": {"iam:PassedToService": service}})

"""Permissions of the GPU architecture's MLOps layers: MLflow and LLM serving.

Both keep their data in the stack's `userdata` bucket under a prefix of their own, so each IRSA role
(infra/contract.py: `mlflow`, `inference`) reaches only that prefix. WorkloadIdentity creates the
roles; this module only writes their policies, next to the prefixes platform/ is told about, the
Deny statements (guard_statements) every other role that reaches the bucket carries, and the Flyte
task roles' access to model weights (model_statements).
"""

from __future__ import annotations

import pulumi

from infra.lib import iam

# MLflow serves artifacts through its own server (--serve-artifacts), so only the server's role
# touches this prefix; clients never need S3 credentials for it. Every other role that reaches the
# bucket carries guard_statements' Deny for it.
MLFLOW_ARTIFACTS_PREFIX = "mlflow/"
# Model weights vLLM loads at start-up: production-domain pipelines publish here (their task roles),
# every other domain's task role and the platform's own roles may only read; the serving role reads.
MODELS_PREFIX = "models/"


def guard_statements(bucket_arn: str, *, publishes_models: bool) -> list[dict]:
    """Deny statements for a role whose other statements reach the whole `userdata` bucket: nothing
    of MLflow's artifacts, and no writes of model weights unless `publishes_models`. An explicit Deny
    wins over the role's Allow (IAM User Guide, "Policy evaluation logic")."""
    statements = [
        iam.deny(
            "NoMlflowArtifacts",
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            [f"{bucket_arn}/{MLFLOW_ARTIFACTS_PREFIX}*"],
        )
    ]
    if not publishes_models:
        statements.append(
            iam.deny(
                "NoModelPublishing",
                ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                [f"{bucket_arn}/{MODELS_PREFIX}*"],
            )
        )
    return statements


def model_statements(bucket_arn: str, *, publishes: bool) -> list[dict]:
    """Allow statements for a Flyte task role, which reaches only named prefixes of `userdata`: read the
    published model weights, and write them too when `publishes` (production's pipelines)."""
    actions = ["s3:GetObject", *(["s3:PutObject", "s3:AbortMultipartUpload"] if publishes else [])]
    return [iam.allow("ModelWeights", actions, [f"{bucket_arn}/{MODELS_PREFIX}*"])]


def s3_uri(bucket: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("s3://", bucket, "/", prefix)


def mlflow_policy(bucket_arn: pulumi.Input[str], key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.all(bucket_arn, key_arn).apply(
        lambda a: iam.document(
            [
                iam.allow(
                    "ListArtifacts",
                    ["s3:ListBucket"],
                    [a[0]],
                    {"StringLike": {"s3:prefix": [f"{MLFLOW_ARTIFACTS_PREFIX}*"]}},
                ),
                iam.allow("LocateBucket", ["s3:GetBucketLocation"], [a[0]]),
                iam.allow(
                    "Artifacts",
                    ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                    [f"{a[0]}/{MLFLOW_ARTIFACTS_PREFIX}*"],
                ),
                iam.use_data_key(a[1]),
            ]
        )
    )


def inference_policy(bucket_arn: pulumi.Input[str], key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.all(bucket_arn, key_arn).apply(
        lambda a: iam.document(
            [
                iam.allow(
                    "ListModels", ["s3:ListBucket"], [a[0]], {"StringLike": {"s3:prefix": [f"{MODELS_PREFIX}*"]}}
                ),
                iam.allow("LocateBucket", ["s3:GetBucketLocation"], [a[0]]),
                iam.allow("ReadModels", ["s3:GetObject"], [f"{a[0]}/{MODELS_PREFIX}*"]),
                iam.allow("DecryptModels", ["kms:Decrypt", "kms:DescribeKey"], [a[1]]),
            ]
        )
    )

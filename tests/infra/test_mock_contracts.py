"""The offline plan's mocks answer what the providers document, not what infra/ expects.

Each format below is read from the installed SDK's own docstring (pulumi_eks 4.4.0, pulumi_aws 7.x,
generated from the providers' schemas) or, where the docstring is silent, from the upstream code or
AWS reference cited next to it. If a mock and a docstring disagree, the mock is wrong.
"""

from __future__ import annotations

import json
import re

import pytest

import cdao_stacks
from cdao_cli.plan import mocks
from cdao_cli.plan.mocks import sdk_outputs, sdk_resource_class
from cdao_cli.plan.runner import PlanRun


def _first(run: PlanRun, token: str):
    return next(r for r in run.registrations if r.type == token)


def test_every_mocked_output_is_one_the_provider_declares(plan_of):
    """A mock may not invent outputs: a key the SDK does not declare is a belief, not a contract."""
    invented = set()
    for stack in cdao_stacks.load().names:
        for reg in plan_of(stack).registrations:
            if not reg.custom or reg.type.split(":")[0] not in {"aws", "eks", "random"}:
                continue
            declared = set(sdk_outputs(sdk_resource_class(reg.type))) | {"id", "urn"}
            invented |= {(reg.type, key) for key in set(reg.outputs) - set(reg.inputs) - declared}
    assert not invented


# (resource type, output, phrase the SDK docstring states, what a value in that format looks like)
DOCUMENTED_FORMATS = [
    # pulumi_eks/cluster.py Cluster.oidc_issuer; upstream pulumi/pulumi-eks@7bf0c1b1
    # nodejs/eks/cluster/cluster.ts: `oidcIssuer: oidcIssuerUrl.apply((url) => url.replace("https://", ""))`.
    (
        "eks:index:Cluster",
        "oidcIssuer",
        "OIDC Provider URL without leading `https://`",
        r"oidc\.eks\.[a-z0-9-]+\.amazonaws\.com/id/[0-9A-F]{32}",
    ),
    # pulumi_eks Cluster.oidc_provider_url "Issuer URL"; cluster.ts: `oidcProviderUrl: oidcIssuerUrl`,
    # the EKS cluster's identity.oidc.issuer, which pulumi_aws documents as the issuer URL below.
    (
        "eks:index:Cluster",
        "oidcProviderUrl",
        "Issuer URL for the OpenID Connect identity provider",
        r"https://oidc\.eks\.[a-z0-9-]+\.amazonaws\.com/id/[0-9A-F]{32}",
    ),
    # IAM names an OIDC provider by its URL without the scheme:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns
    (
        "eks:index:Cluster",
        "oidcProviderArn",
        "The ARN of the IAM OpenID Connect Provider",
        r"arn:aws:iam::\d{12}:oidc-provider/oidc\.eks\.[a-z0-9-]+\.amazonaws\.com/id/[0-9A-F]{32}",
    ),
    ("aws:rds/instance:Instance", "endpoint", "`address:port` format", r"[a-z0-9.-]+\.rds\.amazonaws\.com:\d+"),
    (
        "aws:ecr/repository:Repository",
        "repositoryUrl",
        "`aws_account_id.dkr.ecr.region.amazonaws.com/repositoryName`",
        r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9._/-]+",
    ),
]


@pytest.mark.parametrize(("token", "output", "phrase", "pattern"), DOCUMENTED_FORMATS)
def test_mocked_outputs_have_the_format_the_sdk_documents(plan_of, token, output, phrase, pattern):
    declared = sdk_outputs(sdk_resource_class(token))
    # The SDK still states the format this test encodes (a provider upgrade that changes it fails here).
    assert phrase in " ".join((declared[output].__doc__ or "").split())
    value = _first(plan_of("prod"), token).outputs[output]
    assert re.fullmatch(pattern, value), value


def test_oidc_issuer_is_the_provider_url_without_its_scheme(plan_of):
    outputs = _first(plan_of("dev"), "eks:index:Cluster").outputs
    assert outputs["oidcProviderUrl"] == f"https://{outputs['oidcIssuer']}"
    assert outputs["oidcProviderArn"].endswith(f":oidc-provider/{outputs['oidcIssuer']}")


def test_every_arn_output_has_a_sourced_format(plan_of):
    """Each ARN the mocks mint follows the format in mocks.ARN_FORMATS, which cites AWS's Service
    Authorization Reference per service; a type whose SDK declares an `arn` output must be listed."""
    wildcard = {"partition": "aws", "region": r"[a-z]{2}-[a-z]+-\d", "account": r"\d{12}"}
    for stack in cdao_stacks.load().names:
        for reg in plan_of(stack).registrations:
            if not reg.custom or not reg.type.startswith("aws:"):
                continue
            if "arn" not in sdk_outputs(sdk_resource_class(reg.type)):
                continue
            assert reg.type in mocks.ARN_FORMATS, reg.type
            pattern = re.escape(mocks.ARN_FORMATS[reg.type])
            for field, regex in wildcard.items():
                pattern = pattern.replace(re.escape(f"{{{field}}}"), regex)
            pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^:]+", pattern)
            assert re.fullmatch(pattern, reg.outputs["arn"]), (reg.type, reg.outputs["arn"])


def test_kubeconfig_has_the_shape_pulumi_eks_generates(plan_of):
    """pulumi/pulumi-eks@7bf0c1b1 nodejs/eks/cluster/cluster.ts generateKubeconfig: one cluster
    "kubernetes", one user "aws" whose exec runs `aws --region <r> eks get-token --cluster-name <n>
    --output json`."""
    outputs = _first(plan_of("dev"), "eks:index:Cluster").outputs
    kubeconfig = outputs["kubeconfig"]
    assert json.loads(outputs["kubeconfigJson"]) == kubeconfig
    assert [c["name"] for c in kubeconfig["clusters"]] == ["kubernetes"]
    assert kubeconfig["current-context"] == "aws"
    args = kubeconfig["users"][0]["user"]["exec"]["args"]
    assert args[:4] == ["--region", "us-east-1", "eks", "get-token"]
    assert args[4:] == ["--cluster-name", "cdao-dev", "--output", "json"]


def test_irsa_trust_keys_are_the_issuer_without_scheme(plan_of):
    """AWS's IRSA trust policy keys are `<issuer without https://>:sub` and `:aud`
    (https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html)."""
    run = plan_of("dev")
    issuer = _first(run, "eks:index:Cluster").outputs["oidcIssuer"]
    checked = 0
    for role in run.registrations:
        if role.type != "aws:iam/role:Role":
            continue
        trust = json.loads(role.inputs["assumeRolePolicy"])
        for statement in trust["Statement"]:
            if statement["Action"] != "sts:AssumeRoleWithWebIdentity":
                continue
            keys = set(statement["Condition"]["StringEquals"])
            assert keys == {f"{issuer}:sub", f"{issuer}:aud"}, role.name
            assert statement["Principal"]["Federated"].endswith(f"oidc-provider/{issuer}")
            checked += 1
    assert checked >= 5  # vpc-cni, EBS/EFS CSI, Flyte, connectors, ...

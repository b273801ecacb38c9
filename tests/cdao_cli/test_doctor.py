"""`cdao doctor`: each check against what the real systems answer.

- AWS: moto (EKS, IAM, STS, ACM, CloudWatch Logs) in process; AWS Backup's recovery points, which
  moto does not implement ("Not yet implemented"), and a node group that is not ACTIVE, which moto
  never reports, through botocore's Stubber, which validates each canned response against the
  service model.
- Kubernetes: the official client against a local HTTP server answering with the shapes of the
  Kubernetes API (core/v1 ServiceAccount, NodeList, Status) and Argo CD's Application
  (argoproj/argo-cd pkg/apis/application/v1alpha1/types.go: spec.source(s), status.sync.status,
  status.sync.revision(s), status.health.status).
- Connectors: a real `pyflyte serve connector` process on 127.0.0.1, asked ListAgents; a gRPC
  AgentMetadataService on 127.0.0.1 answering as flytekit does but lacking one task type.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from cdao_pools import NODE_POOL_LABEL
from moto import mock_aws

import cdao_stacks
from cdao_cli import doctor
from cdao_cli.doctor import aws, flyte, kube
from cdao_cli.doctor import context as doctor_context
from cdao_cli.doctor.context import DoctorContext
from cdao_cli.doctor.report import failed, passed, skipped
from cdao_cli.main import main
from cdao_cli.plan.runner import read_stack_file
from infra.components.node_pool import gpu_resources, pool_labels
from infra.config import parse_stack_config
from infra.contract import FLYTE_DOMAINS, SERVICE_ACCOUNTS, flyte_task_account
from infra.declared import declared as program_declared
from infra.lib.iam import irsa_trust_document

REGION = "us-east-1"


def _config(stack: str = "dev"):
    raw, _ = read_stack_file(stack)
    return parse_stack_config(stack, raw)[0]


#: The commit a test deployment ran (platform/ is read from the working tree in these tests).
REVISION = "0123456789abcdef" * 2 + "01234567"


def _declared(stack: str = "dev", revision: str = REVISION, config=None) -> dict[str, Any]:
    """The `declared` output the program records for the stack (infra/declared.py), as JSON prints it."""
    return json.loads(json.dumps(program_declared(config or _config(stack), revision_commit=revision)))


def _ctx(outputs: dict[str, Any], declared: dict[str, Any] | None = None, **kw: Any) -> DoctorContext:
    outputs = {"declared": declared or _declared(), **outputs}
    return DoctorContext(stack="dev", outputs=outputs, session=boto3.session.Session(region_name=REGION), **kw)


class _Accounts:
    """A stand-in for kube.ServiceAccountLookup: annotations by (namespace, name); the real lookup
    is tested against the local API server below."""

    available = True

    def __init__(self, accounts: dict[tuple[str, str], dict[str, str]]):
        self.accounts = accounts

    def __call__(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.accounts.get((namespace, name))


def _by_name(results, family: str) -> dict[str, Any]:
    return {r.name: r for r in results if r.family == family}


# -- AWS ----------------------------------------------------------------------------------------


@pytest.fixture
def aws_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def _trust(provider_arn: str, issuer: str, ns: str, name: str) -> str:
    """The trust the program gives an IRSA role (infra/lib/iam.py), so the tests and the program agree."""
    return irsa_trust_document(provider_arn, issuer, ns, name)


def _cluster() -> tuple[str, str, str]:
    """A moto EKS cluster and its IAM OIDC provider: (cluster name, issuer without scheme, provider ARN)."""
    iam, eks = boto3.client("iam"), boto3.client("eks")
    role = iam.create_role(RoleName="eks", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    cluster = eks.create_cluster(name="cdao-dev", roleArn=role, resourcesVpcConfig={"subnetIds": ["subnet-1"]})
    issuer_url = cluster["cluster"]["identity"]["oidc"]["issuer"]
    assert issuer_url.startswith("https://"), "EKS's issuer is a URL (botocore model: Identity.oidc.issuer)"
    issuer = issuer_url.removeprefix("https://")
    provider = iam.create_open_id_connect_provider(Url=issuer_url, ClientIDList=["sts.amazonaws.com"])
    return "cdao-dev", issuer, provider["OpenIDConnectProviderArn"]


def test_irsa_passes_a_role_that_trusts_the_issuer_and_fails_one_keyed_with_the_url(aws_account):
    cluster, issuer, provider_arn = _cluster()
    iam = boto3.client("iam")
    good = iam.create_role(
        RoleName="flyteadmin", AssumeRolePolicyDocument=_trust(provider_arn, issuer, "flyte", "flyteadmin")
    )
    # The fault infra issue #13 names: condition keys built from pulumi-eks's oidcProviderUrl (with https://).
    bad = iam.create_role(
        RoleName="propeller",
        AssumeRolePolicyDocument=_trust(provider_arn, issuer, "flyte", "flytepropeller").replace(
            f'"{issuer}:', f'"https://{issuer}:'
        ),
    )
    wrong_account = iam.create_role(
        RoleName="datacatalog", AssumeRolePolicyDocument=_trust(provider_arn, issuer, "flyte", "someone-else")
    )
    roles = {
        "flyteadmin": good["Role"]["Arn"],
        "flytepropeller": bad["Role"]["Arn"],
        "datacatalog": wrong_account["Role"]["Arn"],
    }
    ctx = _ctx({"clusterName": cluster, "roleArns": roles})
    accounts = _Accounts({("flyte", "flyteadmin"): {kube.ROLE_ANNOTATION: roles["flyteadmin"]}})
    results = _by_name(aws.irsa(ctx, accounts), "irsa")

    assert results["flyteadmin"].status == "pass"
    assert results["flytepropeller"].status == "fail"
    assert "without https://" in results["flytepropeller"].remedy
    assert results["datacatalog"].status == "fail"
    assert "trusts flyte/someone-else, the deployment declares flyte/datacatalog" in results["datacatalog"].detail


def test_irsa_checks_the_account_exists_and_names_the_role_unless_its_addon_is_off(aws_account):
    cluster, issuer, provider_arn = _cluster()
    iam = boto3.client("iam")

    def role(name: str, ns: str, account: str) -> str:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=_trust(provider_arn, issuer, ns, account))[
            "Role"
        ]["Arn"]

    roles = {
        "fluent-bit": role("fb", "observability", "fluent-bit"),
        "flyteadmin": role("admin", "flyte", "flyteadmin"),
        # dev switches inference off (environments/Pulumi.dev.yaml); the role exists all the same.
        "inference": role("vllm", "inference", "vllm"),
    }
    assert _declared()["clusterLabels"]["enable_inference"] == "false"
    accounts = _Accounts({("flyte", "flyteadmin"): {kube.ROLE_ANNOTATION: "arn:aws:iam::111122223333:role/other"}})
    results = _by_name(aws.irsa(_ctx({"clusterName": cluster, "roleArns": roles}), accounts), "irsa")
    assert results["fluent-bit"].status == "fail"
    assert "observability/fluent-bit" in results["fluent-bit"].detail
    assert results["flyteadmin"].status == "fail"
    assert kube.ROLE_ANNOTATION in results["flyteadmin"].detail
    assert results["inference"].status == "pass"
    assert "add-on inference is off" in results["inference"].detail


def test_irsa_fails_without_the_iam_oidc_provider(aws_account):
    """With no provider in IAM, a role whose trust names the computed provider ARN is worthless: STS
    refuses every token (IAM GetOpenIDConnectProvider answers NoSuchEntity, botocore's iam model)."""
    cluster, issuer, provider_arn = _cluster()
    iam = boto3.client("iam")
    arn = iam.create_role(RoleName="a", AssumeRolePolicyDocument=_trust(provider_arn, issuer, "flyte", "flyteadmin"))
    ctx = _ctx({"clusterName": cluster, "roleArns": {"flyteadmin": arn["Role"]["Arn"]}})
    assert _by_name(aws.irsa(ctx, _Accounts({})), "irsa")["oidc-provider"].status == "pass"
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
    result = _by_name(aws.irsa(_ctx(ctx.outputs), _Accounts({})), "irsa")["oidc-provider"]
    assert result.status == "fail"
    assert f"IAM has no OIDC provider {provider_arn}" in result.detail


def _trust_variant(provider_arn: str, issuer: str, change: str) -> str:
    """The program's trust for flyte/flyteadmin with one element rewritten. IAM allows each of
    Principal's values, Action and a condition's value to be a string or an array, Principal to be
    "*", and conditions to use StringLike (IAM user guide, "IAM JSON policy elements: Principal",
    "...: Action", "...: Condition operators", "Multivalued context keys")."""
    doc = json.loads(_trust(provider_arn, issuer, "flyte", "flyteadmin"))
    statement = doc["Statement"][0]
    equals = statement["Condition"]["StringEquals"]
    sub, aud = f"{issuer}:sub", f"{issuer}:aud"
    if change == "another-provider":
        statement["Principal"]["Federated"] = provider_arn.replace(issuer, "oidc.eks.example.com/id/OTHER")
    elif change == "federated-list":
        statement["Principal"]["Federated"] = [provider_arn]
    elif change == "action-list":
        statement["Action"] = ["sts:AssumeRoleWithWebIdentity"]
    elif change == "values-lists":
        equals[sub], equals[aud] = [equals[sub]], [equals[aud]]
    elif change == "string-like-exact":
        statement["Condition"]["StringLike"] = {sub: equals.pop(sub)}
    elif change == "string-like-wildcard":
        equals.pop(sub)
        statement["Condition"]["StringLike"] = {sub: "system:serviceaccount:flyte:*"}
    elif change == "principal-star":
        statement["Principal"] = "*"
    elif change == "deny":
        statement["Effect"] = "Deny"
    elif change == "aud-wrong":
        equals[aud] = "other.example.com"
    elif change == "aud-missing":
        equals.pop(aud)
    elif change == "sub-two-accounts":
        equals[sub] = [equals[sub], "system:serviceaccount:flyte:other"]
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ("federated-list", "pass", "trusts flyte/flyteadmin"),
        ("another-provider", "fail", "not this cluster's provider"),
        ("action-list", "pass", "trusts flyte/flyteadmin"),
        ("values-lists", "pass", "trusts flyte/flyteadmin"),
        ("string-like-exact", "pass", "trusts flyte/flyteadmin"),
        ("string-like-wildcard", "fail", "flyte:*"),
        ("principal-star", "fail", "any principal"),
        ("deny", "fail", "no Allow"),
        ("aud-wrong", "fail", "other.example.com"),
        ("aud-missing", "fail", ":aud"),
        ("sub-two-accounts", "fail", "flyte:other"),
    ],
)
def test_irsa_reads_every_trust_shape_iam_allows(aws_account, change: str, status: str, detail: str):
    cluster, issuer, provider_arn = _cluster()
    arn = boto3.client("iam").create_role(
        RoleName="admin", AssumeRolePolicyDocument=_trust_variant(provider_arn, issuer, change)
    )["Role"]["Arn"]
    ctx = _ctx({"clusterName": cluster, "roleArns": {"flyteadmin": arn}})
    result = _by_name(aws.irsa(ctx, _Accounts({("flyte", "flyteadmin"): {kube.ROLE_ANNOTATION: arn}})), "irsa")
    assert (result["flyteadmin"].status, detail in result["flyteadmin"].detail) == (status, True), result


def _with_statement(provider_arn: str, issuer: str, extra: str) -> str:
    """The program's trust for flyte/flyteadmin plus a second statement. IAM allows a request when any
    one Allow statement allows it and no Deny denies it (IAM user guide, "Policy evaluation logic",
    docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html),
    so each statement must be safe on its own."""
    doc = json.loads(_trust(provider_arn, issuer, "flyte", "flyteadmin"))
    pinned = doc["Statement"][0]
    sub = f"{issuer}:sub"
    other_provider = provider_arn.replace(issuer, "oidc.eks.us-east-1.amazonaws.com/id/OTHERCLUSTER")
    web = {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity"}
    statement = {
        "same-provider-no-condition": {**web, "Sid": "Open", "Principal": {"Federated": provider_arn}},
        "other-provider-no-condition": {**web, "Principal": {"Federated": other_provider}},
        "account-root": {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
            "Action": "sts:AssumeRole",
        },
        "second-account": {
            **pinned,
            "Condition": {
                "StringEquals": {**pinned["Condition"]["StringEquals"], sub: "system:serviceaccount:flyte:other"}
            },
        },
        "string-like-wildcard": {
            **pinned,
            "Condition": {
                "StringLike": {sub: "system:serviceaccount:*"},
                "StringEquals": {f"{issuer}:aud": "sts.amazonaws.com"},
            },
        },
        "assume-role-too": {**pinned, "Action": ["sts:AssumeRoleWithWebIdentity", "sts:AssumeRole"]},
        "deny-other": {"Effect": "Deny", "Principal": "*", "Action": "sts:*"},
        "same-again": {**pinned, "Sid": "Again"},
    }[extra]
    doc["Statement"].append(statement)
    return json.dumps(doc)


#: (second statement, status, what the detail names): each of the second review's shapes.
_SECOND_STATEMENTS = [
    ("same-provider-no-condition", "fail", "Statement[1] (Sid Open)"),
    ("other-provider-no-condition", "fail", "OTHERCLUSTER"),
    ("account-root", "fail", "arn:aws:iam::999999999999:root"),
    ("second-account", "fail", "flyte:other"),
    ("string-like-wildcard", "fail", "system:serviceaccount:*"),
    ("assume-role-too", "fail", "sts:AssumeRole'"),
    # A Deny grants nothing, and a second statement as narrow as the first widens nothing.
    ("deny-other", "pass", "trusts flyte/flyteadmin"),
    ("same-again", "pass", "trusts flyte/flyteadmin"),
]


def test_irsa_judges_each_allow_statement_on_its_own(aws_account):
    # One moto cluster for every shape (a cluster per case would cost the suite seconds).
    cluster, issuer, provider_arn = _cluster()
    iam = boto3.client("iam")
    found = {}
    ctx = _ctx({"clusterName": cluster})  # one context: its boto3 clients are made once
    for extra, _, _ in _SECOND_STATEMENTS:
        arn = iam.create_role(RoleName=extra, AssumeRolePolicyDocument=_with_statement(provider_arn, issuer, extra))[
            "Role"
        ]["Arn"]
        ctx.outputs["roleArns"] = {"flyteadmin": arn}
        result = _by_name(aws.irsa(ctx, _Accounts({("flyte", "flyteadmin"): {kube.ROLE_ANNOTATION: arn}})), "irsa")
        found[extra] = (result["flyteadmin"].status, result["flyteadmin"].detail)
    assert {e: (found[e][0], d in found[e][1]) for e, _, d in _SECOND_STATEMENTS} == {
        e: (status, True) for e, status, _ in _SECOND_STATEMENTS
    }, found


def test_irsa_fails_an_oidc_provider_without_the_sts_client_id(aws_account):
    """IRSA tokens carry aud sts.amazonaws.com; a provider whose ClientIDList lacks it makes STS refuse
    them (EKS user guide, "Create an IAM OIDC provider for your cluster": Audience sts.amazonaws.com)."""
    cluster, issuer, provider_arn = _cluster()
    iam = boto3.client("iam")
    url = f"https://{issuer}"
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
    assert iam.create_open_id_connect_provider(Url=url, ClientIDList=["other"])["OpenIDConnectProviderArn"] == (
        provider_arn
    )
    ctx = _ctx({"clusterName": cluster, "roleArns": {}})
    result = _by_name(aws.irsa(ctx, _Accounts({})), "irsa")["oidc-provider"]
    assert result.status == "fail"
    assert "sts.amazonaws.com" in result.detail


def test_a_check_family_that_crashes_is_reported_by_name_and_exits_2(monkeypatch: pytest.MonkeyPatch):
    """A bug or an unforeseen answer inside one family is that family's error result; the other
    families still run, and the exit code says the doctor could not judge (2), not a failed check (1)."""
    for family in ("access_entries", "irsa", "node_groups", "certificate", "log_groups", "backups"):
        monkeypatch.setattr(aws, family, lambda *_a, **_k: [])
    monkeypatch.setattr(kube, "gpu_nodes", lambda _ctx: [passed("gpu", "pools", "ok")])
    monkeypatch.setattr(kube, "argocd_applications", lambda _ctx: [])
    monkeypatch.setattr(flyte, "flyte_endpoint", lambda _ctx: [])
    monkeypatch.setattr(flyte, "connectors", lambda _ctx: [])

    def crash(_ctx):
        raise AttributeError("'str' object has no attribute 'get'")

    monkeypatch.setattr(aws, "log_groups", crash)
    results = doctor.run_checks(_ctx({}))
    assert [(r.family, r.status) for r in results] == [("gpu", "pass"), ("logs", "error")]
    assert "AttributeError" in results[1].detail
    text, code = doctor.render(argparse.Namespace(stack="dev", format="text"), results)
    assert code == 2
    assert "[ERROR] logs" in text


def test_irsa_reports_each_expected_role_missing_from_the_outputs_and_each_deleted_role(aws_account):
    cluster, issuer, provider_arn = _cluster()
    iam = boto3.client("iam")
    admin = iam.create_role(
        RoleName="admin", AssumeRolePolicyDocument=_trust(provider_arn, issuer, "flyte", "flyteadmin")
    )["Role"]["Arn"]
    gone = admin.replace("role/admin", "role/propeller")  # deleted outside Pulumi
    ctx = _ctx({"clusterName": cluster, "roleArns": {"flyteadmin": admin, "flytepropeller": gone}})
    accounts = _Accounts({("flyte", "flyteadmin"): {kube.ROLE_ANNOTATION: admin}})
    results = _by_name(aws.irsa(ctx, accounts), "irsa")
    assert results["flyteadmin"].status == "pass"  # the deleted role hides no other
    assert results["flytepropeller"].status == "fail"
    assert "does not exist" in results["flytepropeller"].detail
    assert "credentials" not in results["flytepropeller"].remedy
    expected = {a.role for a in SERVICE_ACCOUNTS} | {
        flyte_task_account(p, d).role for p in _config().flyte.projects for d in FLYTE_DOMAINS
    }
    for key in expected - {"flyteadmin", "flytepropeller"}:
        assert results[key].status == "fail", key
        assert f"has no {key} role" in results[key].detail
    empty = _by_name(aws.irsa(_ctx({"clusterName": cluster, "roleArns": {}}), accounts), "irsa")
    assert {k for k, r in empty.items() if r.status == "fail"} == expected


def test_irsa_skips_the_account_check_without_a_kubeconfig(aws_account):
    cluster, issuer, provider_arn = _cluster()
    iam = boto3.client("iam")
    arn = iam.create_role(RoleName="a", AssumeRolePolicyDocument=_trust(provider_arn, issuer, "flyte", "flyteadmin"))
    ctx = _ctx({"clusterName": cluster, "roleArns": {"flyteadmin": arn["Role"]["Arn"]}})
    result = _by_name(aws.irsa(ctx, kube.ServiceAccountLookup(ctx)), "irsa")["flyteadmin"]
    assert result.status == "skip"
    assert "no kubeconfig" in result.detail


def test_an_unreachable_cluster_is_one_failure_after_one_timeout(aws_account, tmp_path: Path):
    cluster, issuer, provider_arn = _cluster()
    iam = boto3.client("iam")
    roles = {
        key: iam.create_role(RoleName=key, AssumeRolePolicyDocument=_trust(provider_arn, issuer, "flyte", key))["Role"][
            "Arn"
        ]
        for key in ("flyteadmin", "flytepropeller", "datacatalog")
    }
    kubeconfig = _kubeconfig(tmp_path, f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    ctx = _ctx({"clusterName": cluster, "roleArns": roles}, kube=kube.load_client(str(kubeconfig), None))
    started = time.monotonic()
    results = aws.irsa(ctx, kube.ServiceAccountLookup(ctx))
    results += kube.argocd_applications(ctx)
    assert time.monotonic() - started < 30
    by_name = _by_name(results, "irsa")
    assert by_name["service accounts"].status == "fail"
    assert "did not answer" in by_name["service accounts"].detail
    assert [r.status for r in results if r.family == "argocd"] == ["fail"]


def _nodegroup(eks, cluster: str, role: str, pool: str, *, labels: dict[str, str], taints: list[dict[str, str]]):
    eks.create_nodegroup(
        clusterName=cluster,
        nodegroupName=f"{pool}-20261130",
        nodeRole=role,
        subnets=["subnet-1"],
        labels=labels,
        taints=taints,
    )


def test_node_groups_match_the_declared_labels_and_taints(aws_account):
    cluster, _, _ = _cluster()
    config = _config()
    eks, iam = boto3.client("eks"), boto3.client("iam")
    role = iam.create_role(RoleName="nodes", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    cpu = config.node_pools["cpu"]
    _nodegroup(eks, cluster, role, "cpu", labels=pool_labels("cpu", cpu), taints=[])
    gpu = config.node_pools["a100-timeslice"]
    # The GPU taint is missing on the deployed group: drift the doctor must name.
    _nodegroup(eks, cluster, role, "a100-timeslice", labels=pool_labels("a100-timeslice", gpu), taints=[])

    results = _by_name(aws.node_groups(_ctx({"clusterName": cluster})), "node-groups")
    assert results["cpu"].status == "pass"
    assert gpu.taints, "the dev stack's A100 pool declares a taint"
    assert results["a100-timeslice"].status == "fail"
    assert "taints" in results["a100-timeslice"].detail
    enabled = {n for n, p in config.node_pools.items() if p.enabled}
    assert set(results) == enabled


def test_a_node_group_missing_a_declared_label_fails_naming_it(aws_account):
    cluster, _, _ = _cluster()
    eks, iam = boto3.client("eks"), boto3.client("iam")
    role = iam.create_role(RoleName="nodes", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    labels = pool_labels("cpu", _config().node_pools["cpu"])
    dropped = next(k for k in sorted(labels) if k != NODE_POOL_LABEL)
    _nodegroup(eks, cluster, role, "cpu", labels={k: v for k, v in labels.items() if k != dropped}, taints=[])

    result = _by_name(aws.node_groups(_ctx({"clusterName": cluster})), "node-groups")["cpu"]
    assert result.status == "fail"
    assert "labels missing or different" in result.detail
    assert dropped in result.detail


def test_a_node_group_that_is_not_active_fails_with_its_health_issues(aws_account):
    cluster, _, _ = _cluster()
    eks, iam = boto3.client("eks"), boto3.client("iam")
    role = iam.create_role(RoleName="nodes", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    _nodegroup(eks, cluster, role, "cpu", labels=pool_labels("cpu", _config().node_pools["cpu"]), taints=[])
    group = eks.describe_nodegroup(clusterName=cluster, nodegroupName="cpu-20261130")["nodegroup"]
    # moto keeps every node group ACTIVE; a degraded one is moto's answer with the status and health
    # DescribeNodegroup gives then (botocore model: Nodegroup.status DEGRADED, health.issues[] of
    # Issue {code (NodegroupIssueCode), message, resourceIds}), which the Stubber validates.
    issue = {
        "code": "AsgInstanceLaunchFailures",
        "message": "Could not launch On-Demand Instances. InsufficientInstanceCapacity",
        "resourceIds": ["eks-cpu-20261130-asg"],
    }
    degraded = {**group, "status": "DEGRADED", "health": {"issues": [issue]}}
    ctx = _ctx({"clusterName": cluster})
    with Stubber(ctx.client("eks")) as stub:
        stub.add_response("list_nodegroups", {"nodegroups": ["cpu-20261130"]}, {"clusterName": cluster})
        stub.add_response(
            "describe_nodegroup", {"nodegroup": degraded}, {"clusterName": cluster, "nodegroupName": "cpu-20261130"}
        )
        result = _by_name(aws.node_groups(ctx), "node-groups")["cpu"]
    assert result.status == "fail"
    assert "cpu-20261130 is DEGRADED" in result.detail
    assert "AsgInstanceLaunchFailures" in result.detail


def test_a_pending_certificate_fails_with_the_record_to_create_and_an_issued_one_passes(
    aws_account, monkeypatch: pytest.MonkeyPatch
):
    acm = boto3.client("acm")
    arn = acm.request_certificate(DomainName="flyte.dev.example.com", ValidationMethod="DNS")["CertificateArn"]
    record = {"name": "_x.flyte.dev.example.com.", "type": "CNAME", "value": "_y.acm-validations.aws."}
    (pending,) = aws.certificate(_ctx({"flyteCertificateArn": arn, "flyteCertificateValidationRecord": record}))
    assert pending.status == "fail"
    assert "PENDING_VALIDATION" in pending.detail
    assert "_x.flyte.dev.example.com." in pending.remedy

    import moto.settings  # noqa: PLC0415

    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", -1)  # moto issues DNS-validated certs after this
    (issued,) = aws.certificate(_ctx({"flyteCertificateArn": arn}))
    assert issued.status == "pass"


def test_log_groups_exist_with_the_declared_retention(aws_account):
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName="/aws/eks/cdao-dev/cluster")
    logs.put_retention_policy(logGroupName="/aws/eks/cdao-dev/cluster", retentionInDays=90)
    logs.create_log_group(logGroupName="/cdao/dev/containers")  # no retention: kept forever
    declared = {
        "controlPlane": {"name": "/aws/eks/cdao-dev/cluster", "retentionDays": 90},
        "containers": {"name": "/cdao/dev/containers", "retentionDays": 90},
        "flowLogs": {"name": "/aws/vpc/vpc-1/flow-logs", "retentionDays": 14},
    }
    results = _by_name(aws.log_groups(_ctx({"logGroups": declared})), "logs")
    assert results["controlPlane"].status == "pass"
    assert results["containers"].status == "fail"
    assert "never expire" in results["containers"].detail
    assert results["flowLogs"].status == "fail"
    assert "does not exist" in results["flowLogs"].detail


def test_log_group_retention_is_judged_against_what_the_deployment_declared(aws_account):
    """The outputs' retentionDays is what the deploying program read from the stack file at its commit;
    the account keeping another retention is drift outside Pulumi."""
    logs = boto3.client("logs")
    name = "/cdao/dev/containers"
    logs.create_log_group(logGroupName=name)
    # CloudWatch Logs PutRetentionPolicy sets retentionInDays, which DescribeLogGroups returns (moto, botocore's model).
    logs.put_retention_policy(logGroupName=name, retentionInDays=30)
    ctx = _ctx({"logGroups": {"containers": {"name": name, "retentionDays": 7}}})
    result = _by_name(aws.log_groups(ctx), "logs")["containers"]
    assert result.status == "fail", result
    assert "keeps 30 days; the deployment declared 7" in result.detail and "pulumi up" in result.remedy
    logs.put_retention_policy(logGroupName=name, retentionInDays=7)
    assert _by_name(aws.log_groups(ctx), "logs")["containers"].status == "pass"


def test_the_plan_exports_what_the_doctor_reads(plan_outputs):
    # The doctor reads these outputs by name: the program must export them.
    assert {"clusterName", "roleArns", "flyteCertificateArn", "logGroups", "region", "flyteEndpoint"} <= set(
        plan_outputs
    )
    assert all({"name", "retentionDays"} == set(v) for v in plan_outputs["logGroups"].values())
    assert plan_outputs["declared"] == _declared(revision=plan_outputs["declared"]["repoRevision"])
    # Every group the program exports is one whose retention the stack config declares, and the same days.
    declared = _config().log_retention_days()
    assert {k: v["retentionDays"] for k, v in plan_outputs["logGroups"].items()} == {
        k: days for k, (_, days) in declared.items()
    }


def _saved(plan_outputs: dict[str, Any]) -> dict[str, Any]:
    """The plan's outputs as `pulumi stack output --json` saves them after a deploy of this checkout's
    HEAD (the offline plan records no real commit)."""
    head = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outputs = {k: v for k, v in plan_outputs.items() if k != "kubeconfig"}
    return {**outputs, "declared": {**outputs["declared"], "repoRevision": head}}


@pytest.fixture(scope="module")
def plan_outputs() -> dict[str, Any]:
    from tests.infra import plans  # noqa: PLC0415

    return plans.planned("dev").outputs


ACCOUNT = "123456789012"  # moto's account


def _backup_ctx() -> DoctorContext:
    return _ctx(
        {
            "backup": {"vaultName": "cdao-dev"},
            "region": REGION,
            "dbInstanceIdentifier": "cdao-dev",
            "efsFileSystemId": "fs-0123456789abcdef0",
        }
    )


def _point(arn: str, created: datetime, status: str = "COMPLETED") -> dict:
    return {
        "RecoveryPointArn": f"arn:aws:backup:{REGION}:{ACCOUNT}:recovery-point:{created.timestamp():.0f}",
        "BackupVaultName": "cdao-dev",
        "ResourceArn": arn,
        "CreationDate": created,
        "Status": status,
    }


DB_ARN = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:cdao-dev"
EFS_ARN = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/fs-0123456789abcdef0"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("points", "vault_age_days", "statuses"),
    [
        ([_point(DB_ARN, NOW - timedelta(hours=5)), _point(EFS_ARN, NOW - timedelta(hours=6))], 30, ["pass", "pass"]),
        # One resource stopped being backed up: the vault's newest point alone would hide it.
        ([_point(DB_ARN, NOW - timedelta(hours=5)), _point(EFS_ARN, NOW - timedelta(days=6))], 30, ["pass", "fail"]),
        # botocore 1.40.61 backup/2018-11-15/service-2.json RecoveryPointStatus: no FAILED; AVAILABLE is
        # "successfully created ... ready for use" (DescribeRecoveryPointOutput.Status), as COMPLETED is.
        (
            [_point(DB_ARN, NOW - timedelta(hours=5), "AVAILABLE"), _point(EFS_ARN, NOW, "COMPLETED")],
            30,
            ["pass", "pass"],
        ),
        ([_point(DB_ARN, NOW - timedelta(hours=2), "CREATING"), _point(EFS_ARN, NOW, "PARTIAL")], 30, ["fail", "fail"]),
        ([_point(DB_ARN, NOW - timedelta(hours=2), "EXPIRED"), _point(EFS_ARN, NOW, "STOPPED")], 30, ["fail", "fail"]),
        ([], 0.5, ["skip", "skip"]),  # right after the first pulumi up: the first daily run is due
        # ListRecoveryPointsByBackupVault documents no order (botocore 1.40.61 backup/2018-11-15/service-2.json):
        # the newest point of a resource counts wherever it is listed, old one first or last.
        (
            [_point(DB_ARN, NOW - timedelta(hours=5)), _point(DB_ARN, NOW - timedelta(days=6)), _point(EFS_ARN, NOW)],
            30,
            ["pass", "pass"],
        ),
        (
            [_point(DB_ARN, NOW - timedelta(days=6)), _point(DB_ARN, NOW - timedelta(hours=5)), _point(EFS_ARN, NOW)],
            30,
            ["pass", "pass"],
        ),
    ],
)
def test_backups_need_a_recent_completed_point_per_protected_resource(aws_account, points, vault_age_days, statuses):
    ctx = _backup_ctx()
    client = ctx.client("backup")
    with Stubber(client) as stub:
        # Responses are validated against botocore's model of AWS Backup (moto lacks these calls).
        stub.add_response(
            "list_recovery_points_by_backup_vault", {"RecoveryPoints": points}, {"BackupVaultName": "cdao-dev"}
        )
        stub.add_response(
            "describe_backup_vault",
            {"BackupVaultName": "cdao-dev", "CreationDate": NOW - timedelta(days=vault_age_days)},
            {"BackupVaultName": "cdao-dev"},
        )
        results = aws.backups(ctx, now=NOW)
    assert [r.status for r in results] == statuses
    assert [r.name for r in results] == ["cdao-dev: database", "cdao-dev: file system"]


@pytest.mark.parametrize("newest_first", [True, False])
def test_the_newest_point_counts_on_whichever_page_it_is_listed(aws_account, newest_first: bool):
    """The check pages the listing (NextToken, botocore's backup paginators-1.json); a resource's old
    point on a later page must not hide its new one on an earlier page, nor the reverse."""
    new, old = _point(DB_ARN, NOW - timedelta(hours=5)), _point(DB_ARN, NOW - timedelta(days=6))
    first, second = (new, old) if newest_first else (old, new)
    ctx = _backup_ctx()
    client = ctx.client("backup")
    with Stubber(client) as stub:
        stub.add_response(
            "list_recovery_points_by_backup_vault",
            {"RecoveryPoints": [first, _point(EFS_ARN, NOW)], "NextToken": "page-2"},
            {"BackupVaultName": "cdao-dev"},
        )
        stub.add_response(
            "list_recovery_points_by_backup_vault",
            {"RecoveryPoints": [second]},
            {"BackupVaultName": "cdao-dev", "NextToken": "page-2"},
        )
        stub.add_response("describe_backup_vault", {"BackupVaultName": "cdao-dev", "CreationDate": NOW})
        results = aws.backups(ctx, now=NOW)
    assert [r.status for r in results] == ["pass", "pass"]
    assert (NOW - timedelta(hours=5)).isoformat() in results[0].detail


def test_the_backup_check_allows_the_age_the_deployed_backup_plan_allows(aws_account):
    """The deploying program records its plan's schedule and windows (infra/components/backup.py
    RECOVERY_POINT_MAX_AGE) as declared.backupMaxAgeHours; a plan with a shorter completion window
    makes a point of the same age stale."""
    from infra.components import backup  # noqa: PLC0415

    points = [_point(DB_ARN, NOW - timedelta(hours=30)), _point(EFS_ARN, NOW - timedelta(hours=2))]

    def statuses(hours: float) -> list[str]:
        ctx = _backup_ctx()
        ctx.declared["backupMaxAgeHours"] = hours
        client = ctx.client("backup")
        with Stubber(client) as stub:
            stub.add_response("list_recovery_points_by_backup_vault", {"RecoveryPoints": points})
            stub.add_response("describe_backup_vault", {"BackupVaultName": "cdao-dev", "CreationDate": NOW})
            return [r.status for r in aws.backups(ctx, now=NOW)]

    hours = _declared()["backupMaxAgeHours"]
    assert hours == backup.RECOVERY_POINT_MAX_AGE / timedelta(hours=1) > 30
    assert statuses(hours) == ["pass", "pass"]
    assert statuses(24 + backup.START_WINDOW_MINUTES / 60) == ["fail", "pass"]


# -- Kubernetes ---------------------------------------------------------------------------------


class _FakeApiServer(ThreadingHTTPServer):
    """Answers the few GETs the doctor makes, in the Kubernetes API's JSON shapes."""

    def __init__(self, service_accounts: dict, nodes: list[dict], applications: list[dict], appsets: list[dict]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.service_accounts, self.nodes, self.applications = service_accounts, nodes, applications
        self.appsets = appsets
        self.seen: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: _FakeApiServer

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.server.seen.append(self.path)
        parts = url.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and parts[4:5] == ["serviceaccounts"]:
            ns, name = parts[3], parts[5]
            if (ns, name) in self.server.service_accounts:
                annotations = self.server.service_accounts[(ns, name)]
                metadata = {"name": name, "namespace": ns, "annotations": annotations}
                self._send(200, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata})
            else:
                self._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": f'serviceaccounts "{name}" not found',
                        "reason": "NotFound",
                        "code": 404,
                    },
                )
        elif url.path == "/api/v1/nodes":
            selector = parse_qs(url.query).get("labelSelector", [""])[0]
            key, _, value = selector.partition("=")
            items = [n for n in self.server.nodes if n["metadata"]["labels"].get(key) == value]
            self._send(200, {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items})
        elif url.path == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applicationsets":
            items = self.server.appsets
            self._send(200, {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSetList", "items": items})
        elif url.path == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications":
            self._send(
                200,
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "ApplicationList",
                    "metadata": {},
                    "items": self.server.applications,
                },
            )
        else:
            self._send(
                404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            )


@pytest.fixture
def api_server(tmp_path: Path):
    servers: list[_FakeApiServer] = []

    def start(**state: Any) -> tuple[_FakeApiServer, Path]:
        server = _FakeApiServer(
            state.get("service_accounts", {}),
            state.get("nodes", []),
            state.get("applications", []),
            state.get("appsets", []),
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, _kubeconfig(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _kubeconfig(folder: Path, server: str) -> Path:
    path = folder / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


def _node(name: str, pool: str, allocatable: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {NODE_POOL_LABEL: pool}},
        "status": {"allocatable": {"cpu": "95", "memory": "1000Gi", **allocatable}},
    }


def _application(
    name: str, chart: str | None, wanted: str, synced: str, *, sync: str = "Synced", health: str = "Healthy"
):
    source = {"repoURL": "https://charts.example.com", "targetRevision": wanted}
    if chart:
        source["chart"] = chart
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"project": "platform", "source": source, "destination": {"name": "in-cluster", "namespace": name}},
        "status": {"sync": {"status": sync, "revision": synced}, "health": {"status": health}},
    }


def test_service_accounts_are_looked_up_in_the_cluster(api_server):
    annotations = {kube.ROLE_ANNOTATION: "arn:aws:iam::111122223333:role/flyteadmin"}
    _, kubeconfig = api_server(service_accounts={("flyte", "flyteadmin"): annotations})
    ctx = _ctx({}, kube=kube.load_client(str(kubeconfig), None))
    lookup = kube.ServiceAccountLookup(ctx)
    assert lookup("flyte", "flyteadmin") == annotations
    assert lookup("flyte", "missing") is None


def test_gpu_nodes_advertise_what_their_sharing_mode_promises(api_server):
    pool = _config().node_pools["a100-timeslice"]
    want = gpu_resources(pool)
    assert want == {"nvidia.com/gpu": 8 * pool.gpu_sharing.replicas}  # p4d: 8 A100s, each time-sliced
    good = _node("ip-10-0-1-1", "a100-timeslice", {k: str(v) for k, v in want.items()})
    unsliced = _node("ip-10-0-1-2", "a100-timeslice", {"nvidia.com/gpu": "8"})  # device plugin config not applied
    _, kubeconfig = api_server(nodes=[good, unsliced])
    results = _by_name(kube.gpu_nodes(_ctx({}, kube=kube.load_client(str(kubeconfig), None))), "gpu")
    assert results["a100-timeslice/ip-10-0-1-1"].status == "pass"
    assert results["a100-timeslice/ip-10-0-1-2"].status == "fail"
    assert "nvidia.com/gpu=8" in results["a100-timeslice/ip-10-0-1-2"].detail


def test_argocd_applications_must_be_synced_healthy_and_at_the_pinned_chart(api_server):
    pins = _config().gitops.chart_versions
    apps = [
        _application("flyte", "flyte-core", pins["flyte-core"], pins["flyte-core"]),
        _application("keda", "keda", pins["keda"], "2.17.0"),  # still on the old chart
        _application("mlflow", "mlflow", pins["mlflow"], pins["mlflow"], health="Degraded"),
        _application("platform", None, "main", "0123abc", sync="OutOfSync"),
    ]
    _, kubeconfig = api_server(applications=apps)
    results = _by_name(kube.argocd_applications(_ctx({}, kube=kube.load_client(str(kubeconfig), None))), "argocd")
    assert results["flyte"].status == "pass"
    assert results["keda"].status == "fail"
    assert "runs 2.17.0" in results["keda"].detail
    assert results["mlflow"].status == "fail"
    assert "health Degraded" in results["mlflow"].detail
    assert results["platform"].status == "fail"
    assert "sync OutOfSync" in results["platform"].detail


def test_multi_source_applications_and_failing_applicationsets(api_server):
    pins = _config().gitops.chart_versions
    chart = "kube-prometheus-stack"

    def multi(synced: str) -> dict:
        # The shape platform/bootstrap/appsets use: the chart plus a `ref: values` Git source, and
        # status.sync.revisions in the same order (SyncStatus.Revisions in argo-cd's types.go).
        chart_source = {
            "repoURL": "https://prometheus-community.github.io/helm-charts",
            "chart": chart,
            "targetRevision": pins[chart],
            "helm": {"valueFiles": ["$values/platform/x.yaml"]},
        }
        values_source = {"repoURL": "https://github.com/o/r.git", "targetRevision": "main", "ref": "values"}
        return {
            "metadata": {"name": f"observability-{synced}", "namespace": "argocd"},
            "spec": {"sources": [chart_source, values_source]},
            "status": {"sync": {"status": "Synced", "revisions": [synced, "0123abc"]}, "health": {"status": "Healthy"}},
        }

    failing = {
        "metadata": {"name": "keda", "namespace": "argocd"},
        "status": {
            "conditions": [
                {
                    "type": "ErrorOccurred",
                    "status": "True",
                    "reason": "ApplicationGenerationFromParamsError",
                    "message": 'map has no entry for key "cdao.io/chart-version-keda"',
                },
                {"type": "ResourcesUpToDate", "status": "False", "reason": "ApplicationGenerationFromParamsError"},
            ]
        },
    }
    _, kubeconfig = api_server(applications=[multi(pins[chart]), multi("70.0.0")], appsets=[failing])
    results = _by_name(kube.argocd_applications(_ctx({}, kube=kube.load_client(str(kubeconfig), None))), "argocd")
    assert results[f"observability-{pins[chart]}"].status == "pass"
    assert results["observability-70.0.0"].status == "fail"
    assert results["applicationset/keda"].status == "fail"
    assert "chart-version-keda" in results["applicationset/keda"].detail


def test_every_application_of_an_enabled_addon_must_exist_at_its_pinned_revision(api_server):
    """The review's case: two Applications, both Synced and Healthy, one of them the training operator
    synced from Git at v1.7.0 while the stack pins another tag; every other enabled add-on's
    Application is missing."""
    config = _config()
    pins = config.gitops.chart_versions
    assert pins["training-operator"] != "v1.7.0"
    operator = _application("training-operator", None, "v1.7.0", "0123abc")
    operator["spec"]["source"]["repoURL"] = "https://github.com/kubeflow/training-operator.git"
    _, kubeconfig = api_server(
        applications=[operator, _application("flyte", "flyte-core", pins["flyte-core"], pins["flyte-core"])]
    )
    results = _by_name(kube.argocd_applications(_ctx({}, kube=kube.load_client(str(kubeconfig), None))), "argocd")
    assert results["training-operator"].status == "fail"
    assert f"wants v1.7.0, stack pins {pins['training-operator']}" in results["training-operator"].detail
    expected = kube.expected_applications(_declared())
    enabled = {f"enable_{name}" for name, on in config.addons.model_dump().items() if on}
    assert {e.label for e in expected.values()} == enabled
    missing = set(expected) - {"training-operator", "flyte"}
    assert {"keda", "cert-manager", "kube-prometheus-stack", "flyte-tasks-ml-experiments-production"} <= missing
    for name in missing:
        assert results[name].status == "fail", name
        assert results[name].detail.startswith(f"missing: ApplicationSet {expected[name].appset}")
        assert f"describe applicationset {expected[name].appset}" in results[name].remedy


@pytest.mark.parametrize("stack", cdao_stacks.load().names)
def test_every_stack_expects_an_application_per_enabled_addon_at_its_pins(stack: str):
    """Every ApplicationSet in platform/ is read (no template this reading does not understand), and
    each enabled add-on has its Applications, each source pinned to a value the stack declares."""
    config = _config(stack)
    expected = kube.expected_applications(_declared(stack))
    enabled = {f"enable_{name}" for name, on in config.addons.model_dump().items() if on}
    assert {e.label for e in expected.values()} == enabled
    declared = {*config.gitops.chart_versions.values(), REVISION}
    for app in expected.values():
        assert set(app.revisions) <= declared, app


def test_the_expected_applications_follow_the_enable_labels():
    declared = _declared()
    assert {"keda", "metrics-server"} <= set(kube.expected_applications(declared))
    declared["clusterLabels"]["enable_keda"] = "false"
    assert {"keda", "metrics-server"} & set(kube.expected_applications(declared)) == set()


def test_kubernetes_checks_skip_without_a_kubeconfig():
    ctx = _ctx({})
    assert [r.status for r in kube.argocd_applications(ctx)] == ["skip"]
    assert not kube.ServiceAccountLookup(ctx).available


# -- connectors and the CLI ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
def test_the_real_connector_service_serves_every_routed_task_type():
    port = _free_port()
    pyflyte = Path(sys.executable).parent / "pyflyte"
    # The image's command (plugins/Dockerfile CMD), on a free local port.
    serve = ["serve", "connector", "--port", str(port), "--prometheus_port", str(_free_port())]
    proc = subprocess.Popen(
        [str(pyflyte), *serve, "--modules", "cdao_connectors.service"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ctx = _ctx({}, connector_endpoint=f"127.0.0.1:{port}")
        deadline = time.monotonic() + 90
        while True:
            (result,) = flyte.connectors(ctx)
            if result.status == "pass" or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(1)
        assert result.status == "pass", (result, proc.poll())
    finally:
        proc.terminate()
        proc.wait(10)
    assert flyte.routed_task_types() >= {"cdao-aws-batch", "cdao-codeweave-gpu", "cdao-emr-spark-step"}


def test_a_connector_service_lacking_a_routed_task_type_fails_naming_it():
    import grpc  # noqa: PLC0415
    from flyteidl.admin.agent_pb2 import Agent, ListAgentsResponse, TaskCategory  # noqa: PLC0415
    from flyteidl.service import agent_pb2_grpc  # noqa: PLC0415

    routed = sorted(flyte.routed_task_types())
    assert len(routed) > 1
    lacking, served = routed[0], routed[1:]

    class Metadata(agent_pb2_grpc.AgentMetadataServiceServicer):
        # ListAgents' answer as flytekit's connector service builds it, each task type in both
        # supported_task_types and supported_task_categories (flytekit 1.16.31
        # flytekit/extend/backend/base_connector.py, ConnectorRegistry.register), one type missing.
        def ListAgents(self, request, context):
            categories = [TaskCategory(name=t, version=0) for t in served]
            agent = Agent(name="cdao", supported_task_types=served, supported_task_categories=categories)
            return ListAgentsResponse(agents=[agent])

    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    agent_pb2_grpc.add_AgentMetadataServiceServicer_to_server(Metadata(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        (result,) = flyte.connectors(_ctx({}, connector_endpoint=f"127.0.0.1:{port}"))
    finally:
        server.stop(None)
    assert result.status == "fail"
    assert lacking in result.detail
    assert not any(t in result.detail for t in served)


def test_an_unreachable_connector_service_fails_with_what_to_check():
    (result,) = flyte.connectors(_ctx({}, connector_endpoint=f"127.0.0.1:{_free_port()}"))
    assert result.status == "fail"
    assert "UNAVAILABLE" in result.detail


def test_outputs_that_lack_or_misshape_a_key_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plan_outputs
):
    good = _saved(plan_outputs)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "logGroups"}))
    assert main(["doctor", "--stack", "dev", "--outputs", str(path)]) == 2
    assert "logGroups is missing" in capsys.readouterr().err
    # `pulumi stack output --json` prints a secret as "[secret]": not what any of these keys holds.
    path.write_text(json.dumps({**good, "backup": "[secret]"}))
    assert main(["doctor", "--stack", "dev", "--outputs", str(path)]) == 2
    assert 'backup is "[secret]"' in capsys.readouterr().err
    # The review's cases: a string output saved as the placeholder, or naming another stack's cluster.
    bad_strings = {
        "region": "[secret]",
        "clusterName": "[secret]",
        "flyteEndpoint": "",
    }
    another = {**good["declared"], "stack": "prod"}
    for key, value in [*bad_strings.items(), ("region", "us-east"), ("declared", another), ("declared", "[secret]")]:
        path.write_text(json.dumps({**good, key: value}))
        assert main(["doctor", "--stack", "dev", "--outputs", str(path)]) == 2, key
        err = capsys.readouterr().err
        assert f"{key} is " in err or "declared.stack is 'prod'" in err, key
    path.write_text(json.dumps(good))
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate")
    assert main(["doctor", "--stack", "dev", "--outputs", str(path), "--flyte-ca-file", str(bad_ca)]) == 2
    assert "--flyte-ca-file" in capsys.readouterr().err
    not_yaml = tmp_path / "kubeconfig"
    not_yaml.write_text("just text")
    assert main(["doctor", "--stack", "dev", "--outputs", str(path), "--kubeconfig", str(not_yaml)]) == 2
    assert "not a usable kubeconfig" in capsys.readouterr().err


def test_bad_input_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["doctor", "--stack", "dev", "--outputs", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["doctor", "--stack", "dev", "--outputs", str(bad)]) == 2
    assert "bad.json: not JSON" in capsys.readouterr().err
    assert main(["doctor", "--stack", "nope", "--outputs", str(bad)]) == 2
    assert "unknown stack 'nope'" in capsys.readouterr().err


def test_exit_code_and_renderings_follow_the_results():
    results = [passed("logs", "a", "ok"), skipped("gpu", "b", "no nodes", "run a GPU task")]
    text, code = doctor.render(argparse.Namespace(stack="dev", format="json"), results)
    assert code == 0
    assert json.loads(text)["checks"][1]["status"] == "skip"
    failing = [*results, failed("argocd", "c", "OutOfSync", "argocd app get c")]
    text, code = doctor.render(argparse.Namespace(stack="dev", format="text"), failing)
    assert code == 1
    assert "[SKIP] gpu b: no nodes" in text
    assert "[FAIL] argocd c: OutOfSync" in text
    assert "-> argocd app get c" in text
    markdown, _ = doctor.render(argparse.Namespace(stack="dev", format="markdown"), failing)
    assert markdown.startswith("## cdao doctor: `dev`")


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (the test's private CA, as --flyte-ca-file takes it)."""
    import ipaddress  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_flyte_grpc_health_is_checked_over_tls_for_the_flyteadmin_service(tls_pair):
    from concurrent import futures  # noqa: PLC0415

    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: PLC0415

    cert, key = tls_pair
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())]))
    server.start()
    try:
        ctx = _ctx({}, flyte_ca_file=cert)
        # flyteadmin registers its health under the service name "flyteadmin" (service.go).
        servicer.set("flyteadmin", health_pb2.HealthCheckResponse.SERVING)
        assert flyte._grpc(ctx, "localhost", port).status == "pass"
        servicer.set("flyteadmin", health_pb2.HealthCheckResponse.NOT_SERVING)
        result = flyte._grpc(ctx, "localhost", port)
        assert result.status == "fail"
        assert "NOT_SERVING" in result.detail
        # Without the CA the handshake fails: the check does not trust what it cannot verify.
        assert flyte._grpc(_ctx({}), "localhost", port).status == "fail"
    finally:
        server.stop(None)


def test_an_unauthenticated_health_answer_passes_only_when_flyteadmin_uses_auth(tls_pair, tmp_path: Path):
    """flyteadmin with useAuth chains its auth interceptor in front of the health service too
    (flyteorg/flyte v1.16.8 flyteadmin/pkg/server/service.go): UNAUTHENTICATED is then its answer.
    Without useAuth (this platform) the same answer came from something in front of it."""
    from concurrent import futures  # noqa: PLC0415

    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health, health_pb2_grpc  # noqa: PLC0415

    class RequireToken(grpc.ServerInterceptor):
        def intercept_service(self, continuation, handler_call_details):
            def refuse(request, context):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "token parse error")

            return grpc.unary_unary_rpc_method_handler(refuse)

    cert, key = tls_pair
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[RequireToken()])
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())]))
    server.start()
    try:
        ctx = _ctx({}, flyte_ca_file=cert)
        assert not flyte.flyteadmin_uses_auth()
        result = flyte._grpc(ctx, "localhost", port)
        assert result.status == "fail"
        assert "UNAUTHENTICATED" in result.detail
        with_auth = tmp_path / flyte.FLYTE_VALUES
        with_auth.parent.mkdir(parents=True)
        with_auth.write_text(
            yaml.safe_dump({"configmap": {"adminServer": {"server": {"security": {"useAuth": True}}}}})
        )
        ctx = _ctx({}, flyte_ca_file=cert, platform=doctor_context.PlatformFiles(tmp_path))
        assert flyte._grpc(ctx, "localhost", port).status == "pass"
    finally:
        server.stop(None)


def test_flyte_http_healthcheck_is_checked_over_tls(tls_pair):
    import ssl  # noqa: PLC0415

    cert, key = tls_pair
    answer = {"/healthcheck": 200}

    class Health(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(answer.get(self.path, 404))
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        assert flyte._http(_ctx({}, flyte_ca_file=cert), "localhost", port).status == "pass"
        result = flyte._http(_ctx({}), "localhost", port)
        assert result.status == "fail", "an untrusted certificate must fail the check"
        answer["/healthcheck"] = 503  # an ALB with no healthy target answers 503
        result = flyte._http(_ctx({}, flyte_ca_file=cert), "localhost", port)
        assert (result.status, "HTTP 503" in result.detail) == ("fail", True)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_first_deploy_checks_with_the_doctor_using_options_it_has():
    """docs/first-deploy.md's post-deploy step is `cdao doctor`, written with options the parser takes."""
    from cdao_cli.main import _parser  # noqa: PLC0415

    text = (Path(__file__).resolve().parents[2] / "docs" / "first-deploy.md").read_text()
    section = text.split("## 5. What to check afterwards", 1)[1]
    (line,) = [line for line in section.splitlines() if line.startswith("uv run cdao doctor")]
    args = _parser().parse_args(line.replace("<stack>", "dev").split()[3:])
    assert (args.command, args.stack, args.kubeconfig) == ("doctor", "dev", "dev.kubeconfig")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def pinned_repo(tmp_path: Path) -> tuple[Path, str]:
    """A real Git repository holding this checkout's ApplicationSets and flyte-core values at a commit
    prod pins, then a newer commit (main) that drops the keda ApplicationSet, routes one more task
    type to the connector and adds infra/declared.py (the first commit recording `declared`)."""
    repo = tmp_path / "repo"
    root = Path(__file__).resolve().parents[2]
    for rel in [kube.APPSETS_DIR, flyte.FLYTE_VALUES]:
        source = root / rel
        target = repo / rel
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            for f in source.iterdir():
                if f.is_file():
                    (target / f.name).write_bytes(f.read_bytes())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    _git(repo, "init", "-q")
    pinned = _commit(repo, "what prod runs")
    (repo / kube.APPSETS_DIR / "keda.yaml").unlink()
    values = yaml.safe_load((repo / flyte.FLYTE_VALUES).read_text())
    routes = values["configmap"]["enabled_plugins"]["tasks"]["task-plugins"]["default-for-task-types"]
    routes["cdao-newer-type"] = "connector-service"
    (repo / flyte.FLYTE_VALUES).write_text(yaml.safe_dump(values))
    (repo / "infra").mkdir()
    (repo / "infra" / "declared.py").write_text("# the program's record\n")
    _commit(repo, "main moved on")
    return repo, pinned


def test_a_pinned_stack_is_judged_by_platform_at_its_revision_from_any_checkout(pinned_repo):
    """prod runs the commit its deployment recorded: the expected Applications and the routed task
    types come from `git show <commit>:<path>`, while the checkout (HEAD, working tree) is main's."""
    repo, pinned = pinned_repo
    files = doctor_context.platform_files("prod", pinned, repo)
    assert (files.repo, files.commit) == (repo, pinned)
    prod = _declared("prod", pinned)
    assert "keda" in kube.expected_applications(prod, files)
    assert "keda" not in kube.expected_applications(prod, doctor_context.PlatformFiles(repo))
    assert "cdao-newer-type" not in flyte.routed_task_types(files)
    assert "cdao-newer-type" in flyte.routed_task_types(doctor_context.PlatformFiles(repo))
    assert not flyte.flyteadmin_uses_auth(files)
    with pytest.raises(doctor.DoctorInputError, match=r"'main'.*not a full commit SHA"):
        doctor_context.platform_files("dev", "main", repo)


def test_a_pinned_commit_missing_locally_exits_2(pinned_repo, tmp_path: Path):
    repo, pinned = pinned_repo
    with pytest.raises(doctor.DoctorInputError, match=rf"at '{REVISION}'.*not in the local repository.*fetch"):
        doctor_context.platform_files("prod", REVISION, repo)
    with pytest.raises(doctor.DoctorInputError, match="not a Git repository"):
        doctor_context.platform_files("prod", pinned, tmp_path / "nowhere")


def test_outputs_of_a_program_older_than_the_declared_record_exit_2_naming_the_first_commit(pinned_repo, tmp_path):
    """staging and prod pin a commit whose program exports no `declared`: the doctor has nothing of
    that deployment's to judge by, and says which commit first records it."""
    repo, _ = pinned_repo
    first = _git(repo, "rev-parse", "HEAD")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"region": REGION, "clusterName": "cdao-prod"}))
    with pytest.raises(doctor.DoctorInputError, match=rf"no `declared` output.*commit {first} first exports"):
        doctor_context.read_outputs(outputs, "prod", repo)


def test_the_checks_judge_by_the_deployments_record_not_this_checkouts_code(aws_account, monkeypatch):
    """The review's case: main changes the contract after prod's commit was deployed. The deployment's
    record, not the checkout's Python, says which account each role trusts and which pools exist."""
    from infra import contract  # noqa: PLC0415

    monkeypatch.setattr(contract, "SERVICE_ACCOUNTS", ())  # this checkout's code says something else
    cluster, issuer, provider_arn = _cluster()
    declared = _declared()
    declared["serviceAccounts"] = {"flyteadmin": {"namespace": "flyte-old", "name": "admin", "addon": None}}
    arn = boto3.client("iam").create_role(
        RoleName="admin", AssumeRolePolicyDocument=_trust(provider_arn, issuer, "flyte-old", "admin")
    )["Role"]["Arn"]
    ctx = _ctx({"clusterName": cluster, "roleArns": {"flyteadmin": arn}}, declared=declared)
    results = _by_name(aws.irsa(ctx, _Accounts({("flyte-old", "admin"): {kube.ROLE_ANNOTATION: arn}})), "irsa")
    assert {k: r.status for k, r in results.items()} == {"oidc-provider": "pass", "flyteadmin": "pass"}


def test_the_doctor_exits_2_telling_to_fetch_a_pinned_commit_it_lacks(tmp_path: Path, capsys, plan_outputs):
    outputs = tmp_path / "outputs.json"
    recorded = {**plan_outputs, "declared": {**plan_outputs["declared"], "repoRevision": REVISION}}
    outputs.write_text(json.dumps({k: v for k, v in recorded.items() if k != "kubeconfig"}))
    code = main(["doctor", "--stack", "dev", "--outputs", str(outputs)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"platform/ at '{REVISION}'" in err and "fetch" in err


@pytest.mark.parametrize(
    "endpoint", ["127.0.0.1:notaport", "::::", "127.0.0.1", "127.0.0.1:0", "h:70000", ":8000", "[::1:8000"]
)
def test_a_connector_endpoint_that_is_not_host_port_exits_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoint: str
):
    outputs = tmp_path / "outputs.json"  # never read: the parser refuses first
    assert main(["doctor", "--stack", "dev", "--outputs", str(outputs), "--connector-endpoint", endpoint]) == 2
    err = capsys.readouterr().err
    assert "--connector-endpoint" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("endpoint", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "cdao-connector.flyte:8000"])
def test_a_host_port_connector_endpoint_is_kept_as_given(endpoint: str):
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    args = parser.parse_args(["--stack", "dev", "--outputs", "o.json", "--connector-endpoint", endpoint])
    assert args.connector_endpoint == endpoint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("flyteEndpoint", "https://flyte.dev.example.com:abc"),
        ("flyteEndpoint", "https://flyte.dev.example.com:70000"),
        ("flyteEndpoint", "http://flyte.dev.example.com"),
        ("flyteEndpoint", "flyte.dev.example.com"),
        # The host[:port] grammar of --connector-endpoint and the SDK (cdao_authority).
        ("flyteEndpoint", "https://flyte dev.example.com"),
        ("flyteEndpoint", "https://flyte_dev.example.com"),
        ("flyteEndpoint", "https://flyte..example.com"),
        ("flyteEndpoint", "https://flyte.dev.example.com:+443"),
        ("flyteEndpoint", "https://user@flyte.dev.example.com"),
        ("flyteEndpoint", "https://flyte.dev.example.com/api"),  # the checks would drop the path
        ("backup", {"vaultName": ""}),
        ("backup", {"vaultName": "a vault"}),
        ("logGroups", {"cluster": {"name": "/aws/eks/cdao-dev/cluster", "retentionDays": "seven"}}),
        ("logGroups", {"cluster": {"name": "/aws/eks/cdao-dev/cluster", "retentionDays": 8}}),
        ("logGroups", {"cluster": {"name": "/aws/eks/cdao-dev/cluster", "retentionDays": True}}),
        ("logGroups", {"cluster": {"name": "", "retentionDays": 7}}),
    ],
)
def test_outputs_a_check_cannot_use_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plan_outputs, key: str, value: Any
):
    good = _saved(plan_outputs)
    assert "backup" in good  # dev enables AWS Backup, so its vault name is read
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**good, key: value}))
    assert main(["doctor", "--stack", "dev", "--outputs", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{key} is " in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("endpoint", "dialed"),
    [
        ("https://flyte.dev.example.com", ("flyte.dev.example.com", 443)),  # https's default port, RFC 9110 4.2.2
        ("HTTPS://flyte.dev.example.com:8443/", ("flyte.dev.example.com", 8443)),
        # The brackets `https://[::1]:8443/healthcheck` and the gRPC target `[::1]:8443` both need.
        ("https://[::1]:8443", ("[::1]", 8443)),
    ],
)
def test_the_flyte_checks_dial_the_endpoint_s_host_and_port(endpoint: str, dialed: tuple[str, int]):
    assert doctor_context.flyte_host_port(endpoint) == dialed


def _misshape(declared: dict[str, Any], change: str) -> dict[str, Any]:
    declared = json.loads(json.dumps(declared))
    pool = next(iter(declared["nodePools"]))
    if change == "service-account-as-string":  # the review's case: crashed the irsa check with a TypeError
        declared["serviceAccounts"]["flyteadmin"] = "flyte/flyteadmin"
    elif change == "taint-without-effect":
        declared["nodePools"][pool]["taints"] = [{"key": "k", "value": ""}]
    elif change == "taint-kubernetes-effect":  # Kubernetes' spelling, not EKS's enum DescribeNodegroup returns
        declared["nodePools"][pool]["taints"] = [{"key": "k", "value": "", "effect": "NoSchedule"}]
    elif change == "gpu-count-as-string":
        declared["nodePools"][pool]["gpuResources"] = {"nvidia.com/gpu": "1"}
    elif change == "label-as-bool":
        declared["clusterLabels"]["enable_flyte"] = True
    elif change == "backup-hours-as-string":
        declared["backupMaxAgeHours"] = "33"
    elif change == "unknown-key":
        declared["nodePoolLabels"] = {}
    return declared


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("service-account-as-string", 'declared.serviceAccounts.flyteadmin is "flyte/flyteadmin"'),
        ("taint-without-effect", ".taints.0.effect is missing"),
        ("taint-kubernetes-effect", '.taints.0.effect is "NoSchedule"'),
        ("gpu-count-as-string", '.gpuResources.nvidia.com/gpu is "1"'),
        ("label-as-bool", "declared.clusterLabels.enable_flyte is true"),
        ("backup-hours-as-string", 'declared.backupMaxAgeHours is "33"'),
        ("unknown-key", "declared.nodePoolLabels is {}"),
    ],
)
def test_a_misshapen_declared_output_exits_2_naming_the_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plan_outputs, change: str, where: str
):
    """Every depth of `declared` is checked at load against the model the program exports it with
    (infra/declared.py Declared), so no check meets a shape it cannot read."""
    good = _saved(plan_outputs)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**good, "declared": _misshape(good["declared"], change)}))
    assert main(["doctor", "--stack", "dev", "--outputs", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"--outputs {path}: " in err and where in err, err
    assert "Traceback" not in err and "crashed" not in err


def test_the_doctor_takes_no_fact_of_a_deployment_from_this_checkouts_code():
    """The review's kind (issue #17 items 1 and 5): a stack pinned to an older commit was built by that
    commit's defaults, contract and pool arithmetic. The doctor may import from infra/ only the output's
    name and version and AWS's own rules (region code, vault name, CloudWatch retentions) and the
    Argo CD namespace of the platform contract, never a module that computes what a stack declares."""
    import ast  # noqa: PLC0415

    allowed = {
        # Declared is the output's shape (the model the program builds it with), not a computation.
        "infra.declared": {"DECLARED_OUTPUT", "DECLARED_VERSION", "Declared", "DeclaredServiceAccount"},
        "infra.config": {"LOG_RETENTION_DAYS"},
        "infra.names": {"AWS_REGION", "BACKUP_VAULT_NAME"},
        "infra.contract": {"ARGOCD_NAMESPACE"},
    }
    found: dict[str, set[str]] = {}
    for path in Path(doctor.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {"infra", "cdao_pools"}:
                found.setdefault(node.module, set()).update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                assert not [a.name for a in node.names if a.name.split(".")[0] in {"infra", "cdao_pools"}], path
    assert {m: names - allowed.get(m, set()) for m, names in found.items() if names - allowed.get(m, set())} == {}


def test_an_unreachable_aws_endpoint_is_reported_as_the_network_not_the_credentials(aws_account):
    """botocore raises EndpointConnectionError (a ConnectionError naming the endpoint URL) when no
    connection is made (botocore 1.40.61 botocore/exceptions.py): the remedy is the network, and the
    message names the endpoint. A real client against a closed port on 127.0.0.1, one attempt."""
    from botocore.config import Config  # noqa: PLC0415

    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    ctx = _ctx({"flyteCertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/x", "clusterName": "c"})
    once = Config(connect_timeout=2, retries={"mode": "standard", "total_max_attempts": 1})  # the first try only
    for service in ("acm", "eks"):
        ctx._clients[service] = boto3.client(service, region_name=REGION, endpoint_url=endpoint, config=once)
    for result in [*aws.certificate(ctx), *aws.irsa(ctx, _Accounts({}))]:
        assert result.status == "fail"
        assert endpoint in result.detail and "network" in result.remedy, result
        assert "credentials" not in result.remedy, result


def test_missing_credentials_are_reported_as_the_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """NoCredentialsError: botocore's chain found nothing (no variables, no files, no instance
    metadata), before any connection."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    (result,) = aws.certificate(_ctx({"flyteCertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/x"}))
    assert result.status == "fail" and "Unable to locate credentials" in result.detail
    assert "credentials" in result.remedy and "network" not in result.remedy


def test_platform_files_not_utf8_at_the_pinned_commit_are_bad_input_naming_them(pinned_repo):
    """platform/ is read with `git show <commit>:<path>`, whose bytes are the file as committed: a file
    in another encoding is named with its commit (exit 2), not a UnicodeDecodeError in a check."""
    repo, _ = pinned_repo
    values = repo / flyte.FLYTE_VALUES
    values.write_bytes(values.read_text(encoding="utf-8").encode("utf-16"))
    commit = _commit(repo, "values saved as UTF-16")
    with pytest.raises(doctor_context.DoctorInputError, match=f"{flyte.FLYTE_VALUES} at {commit}: not UTF-8"):
        doctor_context.PlatformFiles(repo, commit).read(flyte.FLYTE_VALUES)
    with pytest.raises(doctor_context.DoctorInputError, match=f"{flyte.FLYTE_VALUES} in the working tree"):
        doctor_context.PlatformFiles(repo).read(flyte.FLYTE_VALUES)

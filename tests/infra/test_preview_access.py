"""What `pulumi preview` as a preview role (`cdao:cluster.previewRoleArns`) may do inside the cluster.

The preview role runs in CI (and, for dev, with a pull request's code), so in the cluster it must not
hold what lets it change Argo CD, the hand-off that then administers everything else. pulumi-kubernetes
previews in-cluster objects by server-side dry run, which the API server authorizes exactly like the
write itself (tests/infra/data/eks_access_policies.yaml cites the Kubernetes docs), so no access policy
can allow the dry run without allowing the write. The provider does not need it: when the dry run is
refused (Forbidden) it previews the object client-side from its inputs instead (pulumi/pulumi-kubernetes
provider/pkg/provider/provider.go, `Create` and `Update`, `apierrors.IsForbidden` in preview, at commit
94977969 of 2026-07-01, after 4.32.0: the newest stored, the pinned 4.34.2 is not), and a Helm release
is previewed without the cluster at all (provider/pkg/provider/helm_release.go, `Create`/`Update` call
Helm only `if !req.GetPreview()`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from cdao_cli.plan.runner import PlanRun

# Writing these in a namespace lets a client act as the namespace's service accounts (run a pod as
# one, exec into one, mint its token, impersonate it): Kubernetes docs, RBAC, "User-facing roles", edit.
IDENTITY_BORROWING = {"serviceaccounts", "serviceaccounts/token", "pods", "pods/exec"}
ACCESS_POLICIES = yaml.safe_load((Path(__file__).parent / "data" / "eks_access_policies.yaml").read_text())


def _declared_kinds(run: PlanRun) -> set[tuple[str, str]]:
    """(apiGroup, resource) of every object the program writes through the Kubernetes provider.

    Type tokens are `kubernetes:<group or core>/<version>:<Kind>`; a Helm release is kept by Helm 3 in
    Secrets of its namespace (its default storage driver, "secret").
    """
    kinds: set[tuple[str, str]] = set()
    for r in run.registrations:
        if not r.type.startswith("kubernetes:"):
            continue
        group_version, kind = r.type.split(":")[1:]
        if kind == "Release":
            kinds.add(("", "secrets"))
            continue
        group = group_version.split("/")[0]
        kinds.add(("" if group == "core" else group, kind.lower() + "s"))
    return kinds


def _grants(entry: dict) -> set[tuple[str, str, str]]:
    granted: set[tuple[str, str, str]] = set()
    for association in (entry.get("accessPolicies") or {}).values():
        rules = ACCESS_POLICIES["policies"].get(association["policyArn"])
        assert rules is not None, f"{association['policyArn']}: record its rules in eks_access_policies.yaml"
        granted |= {
            (rule["apiGroup"], res, verb) for rule in rules for res in rule["resources"] for verb in rule["verbs"]
        }
    return granted


def test_preview_roles_can_neither_write_the_program_s_objects_nor_borrow_an_identity(stack_run: PlanRun):
    spec = stack_run.config.cluster
    (cluster,) = [r for r in stack_run.registrations if r.type == "eks:index:Cluster"]
    entries = {e["principalArn"]: e for e in cluster.inputs["accessEntries"].values()}
    assert spec.preview_role_arns, "every stack file lists its preview role"
    declared = _declared_kinds(stack_run)
    assert {("", "namespaces"), ("", "secrets"), ("argoproj.io", "applications")} <= declared
    write = set(ACCESS_POLICIES["write_verbs"])
    for arn in spec.preview_role_arns:
        # The entry itself stays: it authenticates the role, and every authenticated user may read
        # discovery and OpenAPI (ClusterRole system:discovery), which the provider checks inputs against.
        assert arn in entries, f"{arn} has no access entry"
        granted = _grants(entries[arn])
        writes = {g for g in granted if g[2] in write and (g[0], g[1]) in declared}
        borrowed = {g for g in granted if g[2] in write and g[1] in IDENTITY_BORROWING}
        assert not writes, f"{arn} may write what the program declares: {sorted(writes)}"
        assert not borrowed, f"{arn} may act as Argo CD's service accounts: {sorted(borrowed)}"

"""What `pulumi up` creates before what, read from the dependencies each resource registers with.

The engine creates a resource only after everything in its dependencies (explicit dependsOn, the
resources its inputs came from, its provider). A dependsOn on a component does not reach the
component's children, so these tests follow the real edges, never the component tree.
"""

from __future__ import annotations

import pytest

from cdao_cli.plan.runner import PlanRun


def _waits_for(run: PlanRun) -> dict[str, set[str]]:
    """Each resource's transitive dependencies, by URN."""
    direct = {r.urn: set(r.dependencies) for r in run.registrations}
    closure: dict[str, set[str]] = {}

    def visit(urn: str) -> set[str]:
        if urn not in closure:
            closure[urn] = set()
            for dep in direct.get(urn, ()):
                closure[urn] |= {dep, *visit(dep)}
        return closure[urn]

    for urn in direct:
        visit(urn)
    return closure


def _one(run: PlanRun, typ: str, name: str):
    found = [r for r in run.registrations if r.type == typ and r.name == name]
    assert len(found) == 1, (typ, name)
    return found[0]


def _addon(run: PlanRun, addon: str):
    return next(r for r in run.registrations if r.type == "aws:eks/addon:Addon" and r.inputs["addonName"] == addon)


def _node_groups(run: PlanRun):
    return [r for r in run.registrations if r.type == "aws:eks/nodeGroup:NodeGroup"]


@pytest.fixture(params=["dev", "prod"])
def run(request, plan_of) -> PlanRun:
    return plan_of(request.param)


def test_node_groups_wait_for_the_control_plane(run):
    waits, cluster = _waits_for(run), _one(run, "eks:index:Cluster", "cluster-eks")
    for group in _node_groups(run):
        assert cluster.urn in waits[group.urn], group.name


def test_vpc_cni_and_its_permissions_exist_before_any_node_group(run):
    """The node role lacks AmazonEKS_CNI_Policy on purpose, so the CNI of the first nodes works only
    if the vpc-cni add-on already runs as its own IRSA role with that policy attached; otherwise the
    node group fails with NodeCreationFailure (EKS user guide, create-node-role and cni-iam-role;
    terraform-aws-eks issue #1910, which added `before_compute` for this)."""
    waits = _waits_for(run)
    cni = _addon(run, "vpc-cni")
    cni_role = next(r for r in run.registrations if r.type == "aws:iam/role:Role" and r.name.endswith("-vpc-cni"))
    cni_policy = next(
        r
        for r in run.registrations
        if r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment" and r.parent_urn == cni_role.urn
    )
    assert cni_policy.inputs["policyArn"] == "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
    assert cni_policy.urn in waits[cni.urn]
    for group in _node_groups(run):
        assert cni.urn in waits[group.urn], group.name
    assert not {g.urn for g in _node_groups(run)} & waits[cni.urn]


def test_add_ons_that_run_deployments_wait_for_the_cpu_pool(run):
    """CoreDNS and the CSI controllers are Deployments: created on a cluster with no node, EKS
    reports them DEGRADED and the create times out."""
    waits = _waits_for(run)
    cpu = next(g for g in _node_groups(run) if g.inputs["labels"]["cdao.io/node-pool"] == "cpu")
    for addon in ("coredns", "aws-ebs-csi-driver", "aws-efs-csi-driver"):
        assert cpu.urn in waits[_addon(run, addon).urn], addon


def test_argocd_installs_only_once_its_node_pool_exists(run):
    """Argo CD's pods tolerate no GPU taint, so only the cpu pool can host them; the Helm release
    (atomic, 15 min timeout) must not start before that pool exists."""
    waits = _waits_for(run)
    cpu = next(g for g in _node_groups(run) if g.inputs["labels"]["cdao.io/node-pool"] == "cpu")
    release = _one(run, "kubernetes:helm.sh/v3:Release", "gitops-argocd")
    assert cpu.urn in waits[release.urn]
    assert _addon(run, "coredns").urn in waits[release.urn]


def test_argocd_installs_only_once_pulumi_can_reach_the_api(run):
    """The ingress rules (and routes) that admit whatever runs Pulumi to the private endpoint must
    exist before the first call to the Kubernetes API, or the namespace create times out."""
    waits = _waits_for(run)
    access = [
        r
        for r in run.registrations
        if r.type in {"aws:ec2/securityGroupRule:SecurityGroupRule", "aws:ec2/route:Route"}
        and r.name.startswith(("cluster-api-from-", "network-api-access-"))
    ]
    if run.config.cluster.private_access_cidrs or run.config.cluster.private_access_security_group_ids:
        assert access
    for kind in ("kubernetes:core/v1:Namespace", "kubernetes:helm.sh/v3:Release"):
        target = _one(run, kind, "gitops-argocd")
        for resource in access:
            assert resource.urn in waits[target.urn], (kind, resource.name)


def test_control_plane_log_group_exists_before_the_control_plane(run):
    """pulumi-eks is a remote component: its dependsOn does not reach the aws.eks.Cluster inside, but
    the dependencies of an input do. The name input carries the log group, so EKS never creates the
    group first (with no retention) and ours never fails as already existing."""
    cluster = _one(run, "eks:index:Cluster", "cluster-eks")
    log_group = _one(run, "aws:cloudwatch/logGroup:LogGroup", "cluster-control-plane")
    assert log_group.urn in cluster.property_dependencies["name"]

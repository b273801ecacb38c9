"""EKS control plane and node pools, as the stacks declare them under the mock runtime."""

from __future__ import annotations

import json

import pytest

import cdao_stacks
from cdao_cli.main import main
from cdao_cli.plan.runner import PlanRun
from infra.components.node_pool import gpu_resources, pool_labels
from infra.contract import pod_host_patterns

TEMPLATE = "k8s.io/cluster-autoscaler/node-template/"


def _of_type(run: PlanRun, typ: str):
    return [r for r in run.registrations if r.type == typ]


def _pools(run: PlanRun) -> dict[str, object]:
    return {g.inputs["labels"]["cdao.io/node-pool"]: g for g in _of_type(run, "aws:eks/nodeGroup:NodeGroup")}


def test_each_stack_declares_exactly_its_enabled_pools(stack_run: PlanRun):
    assert set(_pools(stack_run)) == set(stack_run.config.enabled_pools)


def test_prod_has_all_four_pools(plan_of):
    assert set(_pools(plan_of("prod"))) == {"cpu", "a100-timeslice", "a100-mig", "h100-timeslice"}


def test_gpu_pools_scale_from_zero(stack_run: PlanRun):
    for name, group in _pools(stack_run).items():
        if name != "cpu":
            assert group.inputs["scalingConfig"]["minSize"] == 0, name
            assert group.inputs["scalingConfig"]["desiredSize"] == 0, name


def test_pool_labels_and_taints_come_from_the_config(stack_run: PlanRun):
    for name, group in _pools(stack_run).items():
        pool = stack_run.config.node_pools[name]
        assert group.inputs["labels"] == pool_labels(name, pool)
        taints = [(t["key"], t.get("value", ""), t["effect"]) for t in group.inputs.get("taints") or []]
        effects = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}
        assert taints == [(t.key, t.value, effects[t.effect]) for t in pool.taints]
        assert group.inputs["amiType"] == ("AL2023_x86_64_STANDARD" if name == "cpu" else "AL2023_x86_64_NVIDIA")


def test_autoscaler_can_scale_gpu_pools_up_from_zero(plan_of):
    """The ASG carries node-template tags for every label, taint and GPU resource of the pool."""
    run = plan_of("prod")
    groups = _pools(run)
    tags = _of_type(run, "aws:autoscaling/tag:Tag")
    for name, group in groups.items():
        asg = f"eks-{group.outputs['nodeGroupName']}"
        on_asg = {
            t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in tags if t.inputs["autoscalingGroupName"] == asg
        }
        pool = run.config.node_pools[name]
        for key, value in pool_labels(name, pool).items():
            assert on_asg[f"{TEMPLATE}label/{key}"] == value
        for taint in pool.taints:
            assert on_asg[f"{TEMPLATE}taint/{taint.key}"] == f"{taint.value}:{taint.effect}"
        for resource, count in gpu_resources(pool).items():
            assert on_asg[f"{TEMPLATE}resources/{resource}"] == str(count)
    mig = {
        t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in tags if "a100-mig" in t.inputs["autoscalingGroupName"]
    }
    # p4de: 8 GPUs, each cut into 1g.10gb x2, 2g.20gb, 3g.40gb.
    assert mig[f"{TEMPLATE}resources/nvidia.com/mig-1g.10gb"] == "16"
    assert mig[f"{TEMPLATE}resources/nvidia.com/mig-3g.40gb"] == "8"
    h100 = {
        t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in tags if "h100" in t.inputs["autoscalingGroupName"]
    }
    assert h100[f"{TEMPLATE}resources/nvidia.com/gpu"] == str(8 * 3)


def test_launch_templates_require_imdsv2_and_encrypted_gp3(stack_run: PlanRun):
    templates = _of_type(stack_run, "aws:ec2/launchTemplate:LaunchTemplate")
    assert len(templates) == len(stack_run.config.enabled_pools)
    for lt in templates:
        assert lt.inputs["metadataOptions"]["httpTokens"] == "required"
        assert lt.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
        (mapping,) = lt.inputs["blockDeviceMappings"]
        assert mapping["ebs"]["volumeType"] == "gp3"
        assert mapping["ebs"]["encrypted"] == "true"


def test_control_plane_is_private_encrypted_and_logged(stack_run: PlanRun):
    (cluster,) = _of_type(stack_run, "eks:index:Cluster")
    (key,) = [k for k in _of_type(stack_run, "aws:kms/key:Key") if k.name == "cluster-secrets"]
    assert cluster.inputs["endpointPrivateAccess"] is True
    # Public only where the stack lists who may reach it (tests/infra/test_first_deploy.py).
    spec = stack_run.config.cluster
    assert cluster.inputs["endpointPublicAccess"] is spec.endpoint_public_access
    assert cluster.inputs.get("publicAccessCidrs") == ([str(c) for c in spec.public_access_cidrs] or None)
    assert cluster.inputs["encryptionConfigKeyArn"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    assert set(cluster.inputs["enabledClusterLogTypes"]) == {
        "api",
        "audit",
        "authenticator",
        "controllerManager",
        "scheduler",
    }
    assert cluster.inputs["skipDefaultNodeGroup"] is True
    assert cluster.inputs["createOidcProvider"] is True
    groups = [g.inputs["name"] for g in _of_type(stack_run, "aws:cloudwatch/logGroup:LogGroup")]
    assert f"/aws/eks/cdao-{stack_run.stack}/cluster" in groups


def test_node_role_does_not_carry_the_cni_policy(stack_run: PlanRun):
    attached = {
        a.inputs["policyArn"]
        for a in _of_type(stack_run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.name.startswith("cluster-node-")
    }
    assert "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy" not in attached
    assert "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy" in attached


@pytest.mark.usefixtures("cli_shares_plans")
@pytest.mark.parametrize("stack", cdao_stacks.load().names)
def test_gpu_pools_cost_nothing_at_idle(stack: str, capsys: pytest.CaptureFixture[str]):
    assert main(["plan", "--stack", stack, "--format", "json"]) in (0, 1)
    plan = json.loads(capsys.readouterr().out)
    gpu_lines = [
        line
        for line in plan["cost"]["lines"]
        if line["resource_name"].startswith("pool-") and "cpu" not in line["resource_name"]
    ]
    assert gpu_lines, "GPU pools must be priced"
    assert all(line["idle_usd_month"] == 0 for line in gpu_lines)
    assert all(line["peak_usd_month"] > 10_000 for line in gpu_lines)
    assert plan["cost"]["unpriced"] == []


def test_eks_managed_addons_run_as_their_own_roles(stack_run: PlanRun):
    addons = {a.inputs["addonName"]: a.inputs for a in _of_type(stack_run, "aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "aws-efs-csi-driver"}
    roles = {r.outputs["arn"]: r for r in _of_type(stack_run, "aws:iam/role:Role")}
    for addon, account in {"vpc-cni": "aws-node", "aws-ebs-csi-driver": "ebs-csi-controller-sa"}.items():
        trust = json.loads(roles[addons[addon]["serviceAccountRoleArn"]].inputs["assumeRolePolicy"])
        (sub,) = [v for k, v in trust["Statement"][0]["Condition"]["StringEquals"].items() if k.endswith(":sub")]
        assert sub == f"system:serviceaccount:kube-system:{account}"
    assert "serviceAccountRoleArn" not in addons["coredns"]
    # Without the network-policy agent, platform/'s NetworkPolicies would be accepted and ignored.
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_time_sliced_pools_name_their_device_plugin_config(plan_of):
    labels = {name: g.inputs["labels"] for name, g in _pools(plan_of("prod")).items()}
    assert labels["a100-timeslice"]["nvidia.com/device-plugin.config"] == "a100-timeslice"
    assert labels["h100-timeslice"]["nvidia.com/device-plugin.config"] == "h100-timeslice"
    assert "nvidia.com/device-plugin.config" not in labels["a100-mig"]
    assert labels["a100-mig"]["nvidia.com/mig.config"] == "cdao-a100-mig"


def test_flyte_certificate_reaches_the_cluster_secret(stack_run: PlanRun):
    (cert,) = _of_type(stack_run, "aws:acm/certificate:Certificate")
    assert cert.inputs["domainName"] == stack_run.config.flyte.hostname
    assert cert.inputs["validationMethod"] == "DNS"
    (secret,) = _of_type(stack_run, "kubernetes:core/v1:Secret")
    annotations = secret.inputs["metadata"]["annotations"]
    assert annotations["cdao.io/flyte-certificate-arn"] == cert.outputs["arn"]
    assert annotations["cdao.io/flyte-hostname"] == stack_run.config.flyte.hostname
    assert stack_run.outputs["flyteCertificateValidationRecord"]["type"] == "CNAME"


def test_pod_host_patterns_follow_the_vpc_cidr(stack_run: PlanRun):
    (secret,) = _of_type(stack_run, "kubernetes:core/v1:Secret")
    patterns = secret.inputs["metadata"]["annotations"]["cdao.io/pod-host-patterns"]
    assert patterns == pod_host_patterns(stack_run.config.network.vpc_cidr)


ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"


def test_time_sliced_gpu_pools_say_they_are_gpu_nodes_to_the_autoscaler(plan_of):
    """kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md, "GPU Node Groups": a
    node labelled k8s.amazonaws.com/accelerator counts as not ready until its GPUs are advertised,
    so the autoscaler does not add a second node while the first loads its driver (#1949). The
    label goes on the ASG's node template too, so a pool scaled to zero says it as well."""
    run = plan_of("prod")
    tags = _of_type(run, "aws:autoscaling/tag:Tag")
    for name, group in _pools(run).items():
        mode = run.config.node_pools[name].gpu_sharing.mode
        labels = group.inputs["labels"]
        on_asg = {t.inputs["tag"]["key"] for t in tags if t.inputs["autoscalingGroupName"].startswith(f"eks-{name}-")}
        if mode == "time-slicing":
            assert labels[ACCELERATOR_LABEL].startswith("nvidia-"), name
            assert f"{TEMPLATE}label/{ACCELERATOR_LABEL}" in on_asg, name
        else:
            # MIG (mixed strategy) advertises only nvidia.com/mig-*, never nvidia.com/gpu: with the
            # label the autoscaler would wait forever for the node to look ready.
            assert ACCELERATOR_LABEL not in labels, name

"""A new stack is one new file for platform/ too: Argo CD picks overlays and values files by the
stack's policy profile (the cluster Secret's `profile` label, from the registry), and every fact of
the stack itself reaches the templates through the Secret's annotations. tests/cdao_stacks covers
plan, policy check, promote, doctor and bad registry input for the same new file.

What the cluster generator exposes to a template (`metadata.labels.<key>`, `metadata.annotations.<key>`):
https://argo-cd.readthedocs.io/en/release-2.14/operator-manual/applicationset/Generators-Cluster/
(the repo pins Argo CD chart 7.8.0 = v2.14.1, infra/config.py GitOpsConfig.argocd_chart_version).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from platform_checks import render_for_secret, rendered
from platform_render import REPO_ROOT, RenderedApp, sources
from platform_stack import cluster_secret, stack_config

import cdao_stacks

SANDBOX_VPC = "10.9.0.0/16"


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real environments/ plus `sandbox`: dev's file with its own VPC range and the H100 pool
    dev leaves off, so facts the stack owns (its subnets, its GPU pools) differ from its profile's."""
    folder = tmp_path_factory.mktemp("new-stack") / "environments"
    shutil.copytree(cdao_stacks.ENVIRONMENTS_DIR, folder)
    text = (folder / "Pulumi.dev.yaml").read_text()
    h100_off = "    h100-timeslice:\n      enabled: false\n"
    assert "  cdao:network:\n" in text and h100_off in text
    text = text.replace("  cdao:network:\n", f"  cdao:network:\n    vpcCidr: {SANDBOX_VPC}\n", 1)
    (folder / "Pulumi.sandbox.yaml").write_text(text.replace(h100_off, "    h100-timeslice:\n      maxSize: 1\n", 1))
    return folder


@pytest.fixture(scope="module")
def sandbox(environments: Path) -> tuple[dict, dict[str, RenderedApp]]:
    """The sandbox's cluster Secret and every Application rendered for it (once per module)."""
    secret = cluster_secret("sandbox", environments_dir=environments)
    return secret, render_for_secret(secret, stack_config("sandbox", environments).gitops.repo_url)


def test_a_new_stack_file_renders_every_add_on_from_its_profile(sandbox) -> None:
    secret, sandbox = sandbox
    dev = rendered("dev")  # the real dev file, which the sandbox copies
    assert secret["metadata"]["labels"]["profile"] == "dev"
    assert sandbox.keys() == dev.keys()
    for name, app in sandbox.items():
        for src in sources(app.app):
            # Nothing in platform/ is keyed by the stack's name: a new name has no folder or file there.
            assert "sandbox" not in str(src.get("path", "")), (name, src["path"])
            assert not [f for f in src.get("helm", {}).get("valueFiles", []) if "sandbox" in f], name
            if "path" in src and src["repoURL"] == secret["metadata"]["annotations"]["cdao.io/repo-url"]:
                assert (REPO_ROOT / src["path"] / "kustomization.yaml").is_file(), (name, src["path"])
        # The same values files as the stack whose profile it follows (dev's time-slicing config, ...).
        assert app.value_files == dev[name].value_files, name


def test_a_new_stack_file_gets_its_own_network_ranges(environments: Path, sandbox) -> None:
    """The subnets are the stack's own (its vpcCidr): carried by the Secret, not by an overlay."""
    config = stack_config("sandbox", environments)
    assert str(config.network.vpc_cidr) == SANDBOX_VPC
    _, sandbox = sandbox
    policies = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m["spec"]
        for app in sandbox.values()
        for m in app.manifests
        if m["kind"] == "NetworkPolicy"
    }
    for namespace in ("flyte", "mlflow"):
        egress = policies[namespace, "allow-database-egress"]["egress"][0]["to"]
        assert [p["ipBlock"]["cidr"] for p in egress] == config.subnet_cidrs("database"), namespace
        ingress = policies[namespace, "allow-from-vpc-private-subnets"]["ingress"][0]["from"]
        assert [p["ipBlock"]["cidr"] for p in ingress] == config.subnet_cidrs("private"), namespace


def test_a_new_stack_file_gets_the_device_plugin_configs_of_its_own_gpu_pools(environments: Path, sandbox) -> None:
    """dev has no H100 pool; the sandbox that follows dev's profile does, and its time-slicing config
    (replicas from its own stack file) reaches the GPU operator through the Secret."""
    config = stack_config("sandbox", environments)
    (h100,) = [p for n, p in config.enabled_pools.items() if n == "h100-timeslice"]
    _, sandbox = sandbox
    dev = rendered("dev")
    data = sandbox["gpu-operator"].charts["gpu-operator"][1]["devicePlugin"]["config"]["data"]
    assert "h100-timeslice" not in dev["gpu-operator"].charts["gpu-operator"][1]["devicePlugin"]["config"]["data"]
    sharing = yaml.safe_load(data["h100-timeslice"])["sharing"]["timeSlicing"]
    assert sharing["resources"] == [{"name": "nvidia.com/gpu", "replicas": h100.gpu_sharing.replicas}]

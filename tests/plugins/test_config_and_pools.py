"""The connector environment contract and the node-pool facts other folders import (plugins/cdao_pools)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cdao_pools as pools
import pytest
from cdao_connectors.config import BatchConfig, CodeweaveConfig, ConnectorConfigError, EMRConfig, aws_region


def test_batch_config_reads_and_validates(monkeypatch):
    monkeypatch.setenv("CDAO_STACK", "dev")
    monkeypatch.setenv("CDAO_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("CDAO_BATCH_SPOT_QUEUE", "spot-q")
    monkeypatch.setenv("CDAO_BATCH_ON_DEMAND_QUEUE", "od-q")
    monkeypatch.delenv("CDAO_BATCH_STATUS_REFRESH_SECONDS", raising=False)
    cfg = BatchConfig.from_env()
    assert cfg.stack == "dev"
    assert (cfg.region, cfg.spot_queue, cfg.on_demand_queue, cfg.status_refresh_seconds) == (
        "eu-west-1",
        "spot-q",
        "od-q",
        5.0,
    )
    monkeypatch.setenv("CDAO_BATCH_STATUS_REFRESH_SECONDS", "soon")
    with pytest.raises(ConnectorConfigError, match="CDAO_BATCH_STATUS_REFRESH_SECONDS='soon' is not a number"):
        BatchConfig.from_env()
    monkeypatch.setenv("CDAO_BATCH_STATUS_REFRESH_SECONDS", "0")
    with pytest.raises(ConnectorConfigError, match="greater than 0"):
        BatchConfig.from_env()


def test_missing_region_and_bad_codeweave_endpoint(monkeypatch):
    for name in ("CDAO_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConnectorConfigError, match="CDAO_AWS_REGION"):
        aws_region()
    monkeypatch.setenv("CDAO_CODEWEAVE_ENDPOINT", "api.codeweave.com")
    with pytest.raises(ConnectorConfigError, match="must be an http"):
        CodeweaveConfig.from_env()


def test_emr_config_falls_back_to_flyte_bucket(monkeypatch):
    monkeypatch.setenv("CDAO_STACK", "dev")
    monkeypatch.setenv("CDAO_AWS_REGION", "us-east-1")
    monkeypatch.delenv("CDAO_EMR_ENTRYPOINT_BUCKET", raising=False)
    monkeypatch.setenv("FLYTE_AWS_S3_BUCKET", "s3://flyte-bucket/prefix")
    assert EMRConfig.from_env().require_entrypoint_bucket() == "flyte-bucket"


def test_pool_facts_match_the_platform_contract():
    assert set(pools.NODE_POOLS) == {"cpu", "a100-timeslice", "a100-mig", "h100-timeslice"}
    assert pools.NODE_POOLS["cpu"].taint is None
    assert pools.NODE_POOLS["cpu"].node_labels == {
        "cdao.io/node-pool": "cpu",
        "workload-type.cdao.io/control": "true",
        "workload-type.cdao.io/mlops": "true",
    }
    taints = {name: (p.taint.key, p.taint.value, p.taint.effect) for name, p in pools.NODE_POOLS.items() if p.taint}
    assert taints == {
        "a100-timeslice": ("gpu", "true", "NoSchedule"),
        "a100-mig": ("gpu", "mig", "NoSchedule"),
        "h100-timeslice": ("gpu", "h100", "NoSchedule"),
    }
    assert pools.NODE_POOLS["a100-mig"].workload_types == ("production-inference", "critical-agents")
    assert [pools.mig_resource(p) for p in pools.MIG_PROFILES] == [
        "nvidia.com/mig-1g.10gb",
        "nvidia.com/mig-2g.20gb",
        "nvidia.com/mig-3g.40gb",
    ]
    assert pools.workload_label("fine-tuning") == "workload-type.cdao.io/fine-tuning"


# Where the node-pool facts must not be written again: the program, the SDK, the connectors, the CLI and
# the pack import them from cdao_pools.
_POOL_FACT_READERS = ("infra", "plugins/cdao_sdk", "plugins/cdao_connectors", "cdao_cli", "policies")


def _string_literals(path: Path) -> Iterator[tuple[int, str]]:
    """String constants of a module, f-string parts included, docstrings and comments left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_the_node_pool_facts_have_one_owner():
    root = Path(__file__).resolve().parents[2]
    keys = (pools.NODE_POOL_LABEL, pools.WORKLOAD_TYPE_LABEL_PREFIX, pools.GPU_SHARING_LABEL, pools.GPU_RESOURCE)
    found = []
    for folder in _POOL_FACT_READERS:
        for path in sorted((root / folder).rglob("*.py")):
            for line, text in _string_literals(path):
                if text in keys or text.startswith(pools.MIG_RESOURCE_PREFIX):
                    found.append(f"{path.relative_to(root)}:{line}: {text!r}")
                elif path.name in {"config.py", "node_pool.py"} and text in pools.WORKLOAD_TYPES:
                    found.append(f"{path.relative_to(root)}:{line}: {text!r} (a pool's workload type)")
    assert not found, "node-pool facts written outside plugins/cdao_pools:\n" + "\n".join(found)


def test_the_owner_imports_neither_pulumi_nor_flytekit():
    code = (
        "import sys, cdao_pools; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'pulumi', 'flytekit', 'infra', 'cdao_sdk'}); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_eks_taint_effect_map_covers_both_enums():
    """Kubernetes' taint effects (core/v1 TaintEffect, what infra/config.py's Taint accepts) map onto
    the EKS API's TaintEffect enum, read from botocore's service model (data/eks/2017-11-01)."""
    import typing  # noqa: PLC0415

    import botocore.session  # noqa: PLC0415

    from infra.config import Taint  # noqa: PLC0415

    eks = botocore.session.get_session().get_service_model("eks")
    assert sorted(pools.EKS_TAINT_EFFECT.values()) == sorted(eks.shape_for("TaintEffect").enum)
    assert sorted(pools.EKS_TAINT_EFFECT) == sorted(typing.get_args(Taint.model_fields["effect"].annotation))


def test_the_eks_taint_effect_map_has_one_owner():
    root = Path(__file__).resolve().parents[2]
    owners = [
        path.relative_to(root).as_posix()
        for folder in ("infra", "cdao_cli", "plugins", "policies", "cdao_stacks")
        for path in (root / folder).rglob("*.py")
        if '"PREFER_NO_SCHEDULE"' in path.read_text()
    ]
    assert owners == ["plugins/cdao_pools/__init__.py"]

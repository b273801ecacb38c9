"""The connector environment contract and the node-pool facts other folders import."""

from __future__ import annotations

import pytest
from cdao_connectors.config import BatchConfig, CodeweaveConfig, ConnectorConfigError, EMRConfig, aws_region
from cdao_sdk import pools


def test_batch_config_reads_and_validates(monkeypatch):
    monkeypatch.setenv("CDAO_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("CDAO_BATCH_SPOT_QUEUE", "spot-q")
    monkeypatch.setenv("CDAO_BATCH_ON_DEMAND_QUEUE", "od-q")
    monkeypatch.delenv("CDAO_BATCH_STATUS_REFRESH_SECONDS", raising=False)
    cfg = BatchConfig.from_env()
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

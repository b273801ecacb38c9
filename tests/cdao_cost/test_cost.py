"""The cost estimate: priced from a dated table, never silently zero, idle vs peak."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cdao_catalog.instances import INSTANCE_TYPES
from cdao_cli.main import main
from cdao_cost.estimate import ALB_GROUPS, estimate_cost, price_table


def _node_group(capacity: str = "ON_DEMAND", itype: str = "m5.large", low: object = 1, high: object = 3) -> dict:
    return {
        "type": "aws:eks/nodeGroup:NodeGroup",
        "name": "pool",
        "props": {
            "instanceTypes": [itype],
            "capacityType": capacity,
            "scalingConfig": {"minSize": low, "maxSize": high},
        },
    }


def test_every_instance_type_the_config_accepts_has_a_dated_price():
    table = price_table()
    assert set(INSTANCE_TYPES) <= set(table["ec2_hourly"])
    for section in ("ec2_hourly", "rds_hourly", "fixed"):
        for name, entry in table[section].items():
            assert entry["usd"] > 0, name
            assert entry["source"]["url"].startswith("https://"), name
            assert entry["source"]["as_of"], name


def test_idle_is_the_minimum_and_peak_the_maximum():
    estimate = estimate_cost([_node_group(low=1, high=3)])
    hourly = price_table()["ec2_hourly"]["m5.large"]["usd"] * 730
    assert estimate.idle_usd_month == pytest.approx(hourly, abs=0.01)
    assert estimate.peak_usd_month == pytest.approx(3 * hourly, abs=0.01)


def test_spot_capacity_uses_the_documented_factor():
    on_demand = estimate_cost([_node_group()]).idle_usd_month
    spot = estimate_cost([_node_group(capacity="SPOT")]).idle_usd_month
    assert spot == pytest.approx(on_demand * price_table()["spot_factor"], abs=0.01)


def test_multi_az_database_costs_twice_the_single_az_one():
    def rds(multi_az: bool) -> float:
        props = {"instanceClass": "db.r6g.large", "multiAz": multi_az, "allocatedStorage": 100}
        return estimate_cost([{"type": "aws:rds/instance:Instance", "name": "db", "props": props}]).idle_usd_month

    assert rds(True) == pytest.approx(2 * rds(False), abs=0.01)


def test_unknown_values_and_prices_are_reported_not_zeroed():
    estimate = estimate_cost([_node_group(high="<unknown>"), _node_group(itype="x9.mega")])
    assert estimate.lines == []
    assert len(estimate.unpriced) == 2
    assert "unknown at preview" in estimate.unpriced[0]
    assert "x9.mega" in estimate.unpriced[1]


def test_usage_billed_services_are_named_not_priced():
    estimate = estimate_cost([{"type": "aws:s3/bucket:Bucket", "name": "b", "props": {}}])
    assert estimate.idle_usd_month == 0
    assert estimate.usage_based == ["S3 storage and requests"]


# ---------------------------------------------------------------- load balancers platform/ creates
PLATFORM = Path(__file__).resolve().parents[2] / "platform"


def _cluster_secret(**enabled: bool) -> dict:
    labels = {"argocd.argoproj.io/secret-type": "cluster", "environment": "dev"}
    labels.update({f"enable_{addon}": str(on).lower() for addon, on in enabled.items()})
    return {"type": "kubernetes:core/v1:Secret", "name": "gitops-cluster", "props": {"metadata": {"labels": labels}}}


def test_alb_groups_match_the_ingresses_platform_declares():
    """Each ALB the load-balancer controller makes is one Ingress group
    (https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/ingress/annotations/#group.name):
    the table the estimate prices must name every add-on whose values put an Ingress in a group."""
    declared: dict[str, set[str]] = {}
    for values in PLATFORM.glob("addons/*/**/values.yaml"):
        text = values.read_text()
        assert "type: LoadBalancer" not in text, f"{values}: a Service load balancer the estimate does not price"
        for group in re.findall(r"alb\.ingress\.kubernetes\.io/group\.name:\s*(\S+)", text):
            addon = values.relative_to(PLATFORM / "addons").parts[0].replace("-", "_")
            declared.setdefault(group, set()).add(addon)
    assert declared
    assert {group: set(addons) for group, addons in ALB_GROUPS.items()} == declared


def test_the_flyte_alb_is_priced_by_the_hour_whenever_an_addon_of_its_group_is_on():
    hourly = price_table()["fixed"]["alb_hourly"]["usd"] * 730
    both = estimate_cost([_cluster_secret(aws_load_balancer_controller=True, flyte=True, mlflow=True)])
    (line,) = both.lines
    assert (line.idle_usd_month, line.peak_usd_month) == (pytest.approx(hourly, abs=0.01),) * 2
    assert "flyte" in line.description
    assert any("LCU" in u for u in both.usage_based)
    # One group, one ALB, however many of its add-ons are on; none without the controller or the add-ons.
    assert estimate_cost([_cluster_secret(aws_load_balancer_controller=True, mlflow=True)]).idle_usd_month == (
        pytest.approx(hourly, abs=0.01)
    )
    assert estimate_cost([_cluster_secret(aws_load_balancer_controller=True, flyte=False)]).lines == []
    assert estimate_cost([_cluster_secret(aws_load_balancer_controller=False, flyte=True)]).lines == []


def test_dev_plan_counts_the_flyte_alb(capsys: pytest.CaptureFixture[str]):
    assert main(["plan", "--stack", "dev", "--format", "json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    (alb,) = [line for line in cost["lines"] if line["resource_type"] == "kubernetes:core/v1:Secret"]
    assert alb["idle_usd_month"] > 0


# ---------------------------------------------------------------- volumes platform/'s add-ons claim
def _profiled_secret(profile: str, **enabled: bool) -> dict:
    secret = _cluster_secret(**enabled)
    secret["props"]["metadata"]["labels"]["profile"] = profile
    return secret


def test_volumes_the_addons_claim_are_priced_from_the_values_of_the_stack_s_profile():
    """Review of issue 13 #3: kube-prometheus-stack's values give Prometheus a gp3 claim per replica
    (platform/addons/observability/kube-prometheus-stack/values.yaml, values-<profile>.yaml; the
    ApplicationSet picks the profile's file by the cluster Secret's `profile` label), which no Pulumi
    resource declares. A profile without its own file gets the base claim (50 Gi, 1 replica: the
    chart's default prometheusSpec.replicas, kube-prometheus-stack 79.12.0 values.yaml)."""
    gb_month = price_table()["fixed"]["ebs_gp3_gb_month"]["usd"]
    base = estimate_cost([_profiled_secret("no-such-profile", observability=True)])
    (line,) = base.lines
    assert line.idle_usd_month == line.peak_usd_month == pytest.approx(50 * gb_month)
    assert "Prometheus" in line.description and "gp3" in line.description
    (prod,) = estimate_cost([_profiled_secret("prod", observability=True)]).lines
    assert prod.idle_usd_month == pytest.approx(2 * 200 * gb_month)
    assert estimate_cost([_profiled_secret("prod", observability=False)]).lines == []

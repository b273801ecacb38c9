"""The cost estimate: priced from a dated table, never silently zero, idle vs peak."""

from __future__ import annotations

import pytest

from cdao_catalog.instances import INSTANCE_TYPES
from cdao_cost.estimate import estimate_cost, price_table


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

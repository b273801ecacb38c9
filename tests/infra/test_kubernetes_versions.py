"""EKS's Kubernetes support calendar (cdao_catalog/eks_versions.yaml, from AWS's release calendar) decides
what the plan says about the cluster's version and what its control plane costs."""

from __future__ import annotations

import datetime as dt

import pytest

from cdao_catalog import eks_versions
from cdao_cli.plan.report import build_plan, render_text
from cdao_cli.plan.runner import read_stack_file
from cdao_cost.estimate import estimate_cost
from infra.config import ClusterConfig, ConfigError, parse_stack_config

CLUSTER = [{"type": "eks:index:Cluster", "name": "cluster-eks", "props": {"version": "1.34"}}]


def test_1_34_leaves_standard_support_on_2026_12_02():
    """The fact the issue was filed on; AWS's calendar, https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html"""
    assert eks_versions.support_status("1.34", dt.date(2026, 12, 2)).phase == "standard"
    assert eks_versions.support_status("1.34", dt.date(2026, 12, 3)).phase == "extended"
    assert eks_versions.support_status("1.34", dt.date(2027, 12, 3)).phase == "ended"
    assert eks_versions.support_status("1.99") is None


def test_control_plane_costs_the_extended_rate_after_standard_support():
    standard = estimate_cost(CLUSTER, today=dt.date(2026, 11, 1)).lines[0]
    extended = estimate_cost(CLUSTER, today=dt.date(2027, 1, 1)).lines[0]
    # https://aws.amazon.com/eks/pricing/: $0.10 per cluster hour, $0.60 in extended support.
    assert standard.idle_usd_month == pytest.approx(0.10 * 730)
    assert extended.idle_usd_month == pytest.approx(0.60 * 730)
    assert "standard support until 2026-12-02" in standard.description
    assert "extended support" in extended.description


def test_the_default_is_the_newest_version_and_in_standard_support_today():
    default = ClusterConfig().kubernetes_version
    assert default == eks_versions.newest_version()
    assert eks_versions.support_status(default).phase == "standard"


def test_plan_reports_the_support_status_of_today(plan_of):
    plan = build_plan(plan_of("dev"))
    status = eks_versions.support_status(plan["kubernetes"]["version"])
    assert plan["kubernetes"]["support"] == status.phase
    assert plan["kubernetes"]["until"] == status.until.isoformat()
    assert plan["kubernetes"]["source"].startswith("https://docs.aws.amazon.com/eks/")
    assert status.describe() in render_text([plan])


def test_a_version_eks_no_longer_supports_is_refused():
    raw, _ = read_stack_file("staging")
    raw = {**raw, "cdao:cluster": {**raw["cdao:cluster"], "kubernetesVersion": "1.29"}}
    with pytest.raises(ConfigError) as err:
        parse_stack_config("staging", raw)
    assert err.value.keys == ["cdao:cluster.kubernetesVersion"]
    assert "1.35" in str(err.value)


def test_a_released_version_without_its_dates_is_refused_saying_what_to_add():
    """EKS has 1.36 (its user guide's current copies use it as the example minor), but no stored
    source gives its dates: the calendar records it as known and unlisted, with the sources checked,
    and a stack asking for it is told to add the row, not that EKS no longer supports it."""
    assert "1.36" in eks_versions.unlisted()
    assert "1.36" not in eks_versions.calendar()
    raw, _ = read_stack_file("staging")
    raw = {**raw, "cdao:cluster": {**raw["cdao:cluster"], "kubernetesVersion": "1.36"}}
    with pytest.raises(ConfigError) as err:
        parse_stack_config("staging", raw)
    (problem,) = err.value.problems
    assert problem[0] == "cdao:cluster.kubernetesVersion"
    assert "eks_versions.yaml" in problem[2] and "no longer" not in problem[2]
    assert eks_versions.source() in problem[2]


def test_control_plane_is_prorated_over_the_next_30_days_by_the_calendar():
    """Review of issue 13 #5: on 2026-12-01, 1.34 has two days of standard support left (until
    2026-12-02 inclusive); the 30 days the estimate prices (2026-12-01..2026-12-30) bill 2 days at the
    standard rate and 28 at the extended one (https://aws.amazon.com/eks/pricing/: $0.10 and $0.60 per
    cluster hour), not 30 at the standard rate."""
    (line,) = estimate_cost(CLUSTER, today=dt.date(2026, 12, 1)).lines
    assert line.idle_usd_month == pytest.approx(730 * (0.10 * 2 + 0.60 * 28) / 30, abs=0.01)
    assert "28 of the next 30 days at the extended-support rate" in line.description
    # Wholly inside one phase, nothing changes.
    assert estimate_cost(CLUSTER, today=dt.date(2026, 11, 2)).lines[0].idle_usd_month == pytest.approx(73.0)


def test_plan_warns_when_standard_support_ends_within_the_priced_window(plan_of):
    run = plan_of("dev")
    version = run.config.cluster.kubernetes_version
    end = eks_versions.calendar()[version]["end_of_standard_support"]
    soon = build_plan(run, today=end - dt.timedelta(days=3))
    later = build_plan(run, today=end - dt.timedelta(days=60))
    assert f"leaves EKS standard support after {end.isoformat()}" in soon["kubernetes"]["warning"]
    assert soon["kubernetes"]["warning"] in render_text([soon])
    assert "warning" not in later["kubernetes"]
    assert soon["cost"]["idle_usd_month"] > later["cost"]["idle_usd_month"]

"""The offline plan: the real program under mocks, reported as text, Markdown and JSON."""

from __future__ import annotations

import importlib
import inspect
import json
from collections import Counter

import pytest

import cdao_stacks
from cdao_cli.main import main
from cdao_cli.plan.report import build_plan
from cdao_cli.plan.runner import PlanRun, run_stack

REQUIRED_TAGS = {"environment", "team", "cost-center", "managed-by"}


def _json_plan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = main(["plan", *argv, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.usefixtures("cli_shares_plans")
def test_json_plan_has_the_documented_shape(capsys: pytest.CaptureFixture[str]):
    code, plan = _json_plan(capsys, "--stack", "dev")
    assert code == 0
    assert plan["stack"] == "dev"
    assert plan["resources"], "a plan with no resources planned nothing"
    assert all(
        set(r) == {"type", "name", "component", "urn", "parent", "inputs", "replace_on_changes", "ignore_changes"}
        for r in plan["resources"]
    )
    assert isinstance(plan["policy"]["violations"], list)
    assert {"idle_usd_month", "peak_usd_month", "lines"} <= set(plan["cost"])
    assert plan["cost"]["idle_usd_month"] == pytest.approx(
        sum(line["idle_usd_month"] for line in plan["cost"]["lines"]), abs=0.05
    )


@pytest.mark.usefixtures("cli_shares_plans")
def test_plan_all_covers_every_stack_in_promotion_order(capsys: pytest.CaptureFixture[str]):
    code, plans = _json_plan(capsys, "--all")
    assert code == 0
    assert [p["stack"] for p in plans] == cdao_stacks.load().names


@pytest.mark.usefixtures("cli_shares_plans")
def test_text_and_markdown_name_every_stack(capsys: pytest.CaptureFixture[str]):
    assert main(["plan", "--all"]) == 0
    text = capsys.readouterr().out
    assert [line.split()[1] for line in text.splitlines() if line.startswith("Stack ")] == cdao_stacks.load().names
    assert "Estimated monthly cost: idle $" in text
    assert main(["plan", "--all", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("## Offline plan")
    assert all(f"| {s} |" in markdown for s in cdao_stacks.load().names)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]):
    assert main(["plan"]) == 2
    assert main(["plan", "--stack", "dev", "--format", "yaml"]) == 2
    assert main(["frobnicate"]) == 2


def test_plans_are_deterministic(plan_of):
    # Key order too: the JSON is printed as built, and outputs resolve in no fixed order.
    first = json.dumps(build_plan(plan_of("prod")))

    again = json.dumps(build_plan(run_stack("prod")))
    assert first == again


def _of_type(run: PlanRun, typ: str):
    return [r for r in run.registrations if r.type == typ]


def test_every_taggable_aws_resource_carries_the_cost_tags(stack_run: PlanRun):
    for reg in stack_run.registrations:
        if not reg.type.startswith("aws:"):
            continue
        module, cls = reg.type.split(":")[1].split("/")[0], reg.type.split(":")[2]
        args_cls = getattr(importlib.import_module(f"pulumi_aws.{module}"), f"{cls}Args")
        if "tags" not in inspect.signature(args_cls.__init__).parameters:
            continue
        tags = reg.inputs.get("tags") or {}
        assert set(tags) >= REQUIRED_TAGS, f"{reg.type} {reg.name} lacks {REQUIRED_TAGS - set(tags)}"
        assert tags["environment"] == stack_run.stack


def test_three_tiers_in_every_configured_az(stack_run: PlanRun):
    subnets = _of_type(stack_run, "aws:ec2/subnet:Subnet")
    tiers = Counter((s.inputs["tags"]["tier"], s.inputs["availabilityZone"]) for s in subnets)
    azs = stack_run.config.azs
    assert tiers == Counter({(tier, az): 1 for tier in ("public", "private", "database") for az in azs})
    assert not any(s.inputs.get("mapPublicIpOnLaunch") for s in subnets)


def test_nat_layout_follows_the_stack(plan_of):
    assert len(_of_type(plan_of("dev"), "aws:ec2/natGateway:NatGateway")) == 1
    prod = plan_of("prod")
    assert len(_of_type(prod, "aws:ec2/natGateway:NatGateway")) == len(prod.config.azs) == 3


def test_database_subnets_have_no_route_out(stack_run: PlanRun):
    subnets = {r.outputs["id"]: r for r in _of_type(stack_run, "aws:ec2/subnet:Subnet")}
    routes = _of_type(stack_run, "aws:ec2/route:Route")
    for assoc in _of_type(stack_run, "aws:ec2/routeTableAssociation:RouteTableAssociation"):
        tier = subnets[assoc.inputs["subnetId"]].inputs["tags"]["tier"]
        defaults = [r for r in routes if r.inputs["routeTableId"] == assoc.inputs["routeTableId"]]
        targets = {
            k
            for r in defaults
            if r.inputs["destinationCidrBlock"] == "0.0.0.0/0"
            for k in ("gatewayId", "natGatewayId", "transitGatewayId")
            if r.inputs.get(k)
        }
        assert targets == {"public": {"gatewayId"}, "private": {"natGatewayId"}, "database": set()}[tier]


def test_every_route_is_a_standalone_resource(stack_run: PlanRun):
    """pulumi-aws: a route table's inline `routes` cannot be combined with aws.ec2.Route resources on
    the same table (installed pulumi_aws/ec2/route_table.py, "NOTE on Route Tables and Routes"):
    terraform-provider-aws internal/service/ec2/vpc_route_table.go reads every route of the table into
    state and its Update deletes each one missing from the inline config, so prod's transit-gateway
    routes (standalone) would show as drift every refresh and be deleted by the next table update.
    The policy pack's CDAO-NET-011 refuses the combination in any program; here no table manages
    routes inline at all, so adding a standalone route can never meet an inline one."""
    tables = _of_type(stack_run, "aws:ec2/routeTable:RouteTable")
    assert tables and all("routes" not in t.inputs for t in tables), [t.name for t in tables]


def test_s3_gateway_endpoint_serves_private_and_database_tiers(stack_run: PlanRun):
    (s3,) = [
        e for e in _of_type(stack_run, "aws:ec2/vpcEndpoint:VpcEndpoint") if e.inputs["vpcEndpointType"] == "Gateway"
    ]
    assert s3.inputs["serviceName"] == f"com.amazonaws.{stack_run.config.region}.s3"
    assert len(s3.inputs["routeTableIds"]) == len(stack_run.config.azs) + 1


def test_interface_endpoints_only_where_enabled(plan_of):
    def interfaces(stack):
        return sorted(
            e.inputs["serviceName"].rsplit(".", 1)[-1]
            if "ecr" not in e.inputs["serviceName"]
            else e.inputs["serviceName"].split(".", 3)[3]
            for e in _of_type(plan_of(stack), "aws:ec2/vpcEndpoint:VpcEndpoint")
            if e.inputs["vpcEndpointType"] == "Interface"
        )

    assert interfaces("dev") == []
    assert interfaces("prod") == ["ecr.api", "ecr.dkr", "logs", "sts"]


def test_vpc_flow_logs_go_to_a_retained_log_group(stack_run: PlanRun):
    (flow,) = _of_type(stack_run, "aws:ec2/flowLog:FlowLog")
    (vpc,) = _of_type(stack_run, "aws:ec2/vpc:Vpc")
    assert flow.inputs["vpcId"] == vpc.outputs["id"]
    assert flow.inputs["trafficType"] == "ALL"
    (group,) = [g for g in _of_type(stack_run, "aws:cloudwatch/logGroup:LogGroup") if g.name == "network-flow-logs"]
    assert group.inputs["retentionInDays"] == stack_run.config.network.flow_log_retention_days


def test_default_security_group_allows_nothing(stack_run: PlanRun):
    (sg,) = _of_type(stack_run, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not sg.inputs.get("ingress") and not sg.inputs.get("egress")


def test_a_plan_runs_after_asyncio_run_left_the_thread_without_a_loop():
    import asyncio  # noqa: PLC0415

    async def nothing() -> None:
        return None

    asyncio.run(nothing())  # as any library may have done before: it leaves no current loop
    assert build_plan(run_stack("dev"))["resources"]


def test_a_plan_prices_its_stack_once_and_the_budget_rule_reads_that_estimate(plan_of, monkeypatch):
    """The report's cost and the pack's budget rule (CDAO-COST-009) are one estimate, computed once."""
    from cdao_cost import estimate  # noqa: PLC0415

    priced: list[int] = []
    real_pricer = estimate._Pricer  # one per estimate_cost() call

    def counting(table):
        priced.append(1)
        return real_pricer(table)

    monkeypatch.setattr(estimate, "_Pricer", counting)
    plan = build_plan(plan_of("prod"))
    assert len(priced) == 1
    assert plan["policy"]["installed"] and plan["cost"]["peak_usd_month"] > 0


def test_a_plan_parses_its_stack_config_once_and_reports_what_the_program_parsed(monkeypatch):
    import infra.config  # noqa: PLC0415
    from cdao_cli.plan import runner  # noqa: PLC0415

    parsed: list[str] = []
    real_parse = infra.config.parse_stack_config

    def counting(stack, raw):
        parsed.append(stack)
        return real_parse(stack, raw)

    monkeypatch.setattr(infra.config, "parse_stack_config", counting)  # the program's parse
    monkeypatch.setattr(runner, "parse_stack_config", counting, raising=False)  # any of the runner's own
    run = run_stack("staging")
    assert parsed == ["staging"]
    raw, _ = runner.read_stack_file("staging")
    assert run.config == real_parse("staging", raw)[0]


@pytest.mark.usefixtures("cli_shares_plans")
def test_plan_writes_the_resource_list_policy_check_reads(capsys: pytest.CaptureFixture[str], tmp_path, plan_of):
    """cdao_resources promises one list format for `plan` and `policy check`: the list `plan --format
    resources` writes gets the same verdicts from `policy check` as the plan's own evaluation."""
    assert main(["plan", "--stack", "dev", "--format", "resources"]) == 0
    resources = tmp_path / "dev.json"
    resources.write_text(capsys.readouterr().out)
    planned = build_plan(plan_of("dev"))["policy"]["violations"]
    assert main(["policy", "check", str(resources), "--stack", "dev", "--format", "json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    key = lambda v: (v["rule"], v.get("resource"), v["message"])  # noqa: E731
    assert sorted(map(key, checked)) == sorted(map(key, planned))
    assert main(["plan", "--all", "--format", "resources"]) == 2
    assert "use --stack" in capsys.readouterr().err

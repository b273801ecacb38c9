"""Turn a mocked run into the plan report: resources by component, policy results, cost.

One dict is the source of truth (`build_plan`); text, Markdown and JSON are renderings of it, so
the PR comment, the terminal and machines never disagree.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cdao_catalog import eks_versions
from cdao_cli.plan.mocks import Registration
from cdao_cli.plan.runner import PlanRun
from cdao_cost import CostEstimate, estimate_cost
from cdao_resources import PolicyResource, resource

COMPONENT_PREFIX = "cdao:"


def policy_resources(registrations: Sequence[Registration]) -> list[PolicyResource]:
    """The cdao_resources list the policy pack and the cost estimate both read.

    props are the inputs, as a preview shows them; the (mocked) physical id rides alongside so
    stack rules can relate resources (a flow log to its VPC) the way they would after an update.
    """
    return [resource(r.type, r.name, r.inputs, urn=r.urn, id=r.outputs.get("id")) for r in registrations]


def _component_of(reg: Registration, by_urn: Mapping[str, Registration]) -> str:
    parent = by_urn.get(reg.parent_urn)
    while parent is not None:
        if parent.type.startswith(COMPONENT_PREFIX):
            return parent.name
        parent = by_urn.get(parent.parent_urn)
    return "stack"


def _evaluate_policies(resources: list[PolicyResource], stack: str, profile: str, cost: CostEstimate) -> dict[str, Any]:
    import policies  # noqa: PLC0415 - keeps `cdao --help` fast

    evaluate: Callable[..., list[Any]] | None = getattr(policies, "evaluate", None)
    rules = getattr(policies, "RULES", [])
    if evaluate is None or not rules:
        return {"installed": False, "rules": 0, "violations": []}
    # The budget rule prices the same list: hand it the plan's estimate rather than pricing twice.
    violations = [
        v.to_dict() for v in evaluate(resources, stack, profile=profile, cost_estimator=lambda _resources: cost)
    ]
    return {"installed": True, "rules": len(rules), "violations": violations}


def build_plan(run: PlanRun, today: dt.date | None = None) -> dict[str, Any]:
    """The plan of one stack run; `today` (UTC date, default now) dates the EKS support status and
    starts the 30 days the cost estimate prices."""
    # Registration order depends on when outputs resolve; sort so equal programs give equal plans.
    registrations = sorted(run.registrations, key=lambda r: (r.type, r.name))
    by_urn = {r.urn: r for r in registrations}
    listed = [r for r in registrations if not r.type.startswith(COMPONENT_PREFIX)]
    resources = sorted(
        (
            {
                "type": r.type,
                "name": r.name,
                "component": _component_of(r, by_urn),
                "urn": r.urn,
                # The parent's URN, as `pulumi stack export` writes a resource's "parent".
                "parent": r.parent_urn or None,
                # Inputs as the engine receives them, secrets masked: what `cdao plan --diff` compares.
                "inputs": _sorted_keys(r.masked_inputs),
                "replace_on_changes": sorted(r.replace_on_changes),
                "ignore_changes": sorted(r.ignore_changes),
            }
            for r in listed
        ),
        key=lambda r: (r["component"], r["type"], r["name"]),
    )
    shared = policy_resources(registrations)
    cost = estimate_cost(shared, today=today)
    return {
        "stack": run.stack,
        "profile": run.config.entry.profile,
        "region": run.config.region,
        "resources": resources,
        "policy": _evaluate_policies(shared, run.stack, run.config.entry.profile, cost),
        "cost": cost.to_dict(),
        "kubernetes": _kubernetes(run.config.cluster.kubernetes_version, today),
        "outputs": dict(sorted(run.outputs.items())),
        "offline_secrets": run.substituted_secrets,
        "secret_config": dict(sorted(run.secret_ciphertexts.items())),
        "offline_revision_commit": run.revision_commit_stand_in,
        "dns_records": dns_records_to_create(run),
    }


def _sorted_keys(value: Any) -> Any:
    """Inputs arrive in the order outputs resolved; sort mapping keys so equal programs print equal JSON."""
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def dns_records_to_create(run: PlanRun) -> list[dict[str, str]]:
    """DNS records someone outside this stack must create for it to come up: `[{purpose, name, type,
    value, source}]`. ACM issues the validation record's tokens only when `pulumi up` requests the
    certificate, so the name and value are given in ACM's documented form, and `source` says where
    the real ones appear (https://docs.aws.amazon.com/acm/latest/userguide/dns-validation.html)."""
    flyte = run.config.flyte
    if flyte.certificate_validation != "external":
        return []
    return [
        {
            "purpose": f"ACM DNS validation of the Flyte certificate for {flyte.hostname}",
            "name": f"_<token>.{flyte.hostname}.",
            "type": "CNAME",
            "value": "_<token>.acm-validations.aws.",
            # Not the stack output flyteCertificateValidationRecord: the SDK registers stack outputs
            # only once all of them resolved (pulumi sdk/python/lib/pulumi/runtime/stack.py,
            # Stack._finish), the certificate's ARN among them, which waits for this very record.
            "source": "ACM, while `pulumi up` waits (at most 75 minutes) for the certificate: `aws acm "
            "describe-certificate --certificate-arn <arn> --query "
            "'Certificate.DomainValidationOptions[0].ResourceRecord'` (the ARN from `aws acm list-certificates "
            "--includes keyTypes=EC_prime256v1`; docs/first-deploy.md, step 5); the stack output "
            "flyteCertificateValidationRecord exists only after the run",
        }
    ]


def _kubernetes(version: str, today: dt.date | None = None) -> dict[str, Any]:
    """The cluster's Kubernetes version and where it stands in EKS's support calendar `today` (UTC;
    default now), with a `warning` when standard support ends within the days the cost estimate
    prices (the control plane then bills at the extended-support rate)."""
    today = today or dt.datetime.now(dt.UTC).date()
    status = eks_versions.support_status(version, today)
    if status is None:  # config validation refuses this; kept total for plans of hand-made runs
        return {"version": version, "support": "unknown", "until": None, "source": eks_versions.source()}
    out = {
        "version": version,
        "support": status.phase,
        "until": status.until.isoformat(),
        "summary": status.describe(),
        "source": status.source,
    }
    ending = eks_versions.standard_support_ending(version, today)
    if ending is not None:
        out["warning"] = (
            f"Kubernetes {version} leaves EKS standard support after {ending.isoformat()}, within the "
            f"{eks_versions.BILLING_WINDOW_DAYS} days the estimate prices: the control plane bills at the "
            "extended-support rate from the next day; set cdao:cluster.kubernetesVersion to "
            f"{eks_versions.newest_version()} (and upgrade) before then."
        )
    return out


def mandatory_violations(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [v for v in plan["policy"]["violations"] if v["level"] == "mandatory"]


def _by_component(plan: Mapping[str, Any]) -> dict[str, Counter[str]]:
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for res in plan["resources"]:
        groups[res["component"]][res["type"]] += 1
    return dict(sorted(groups.items()))


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def render_text(plans: Sequence[Mapping[str, Any]]) -> str:
    out: list[str] = []
    for plan in plans:
        out.append(f"Stack {plan['stack']} ({plan['region']}): {len(plan['resources'])} resources")
        out.append("")
        out.append("Resources by component")
        for component, counts in _by_component(plan).items():
            out.append(f"  {component} ({sum(counts.values())})")
            width = max(len(t) for t in counts)
            for typ, count in sorted(counts.items()):
                out.append(f"    {typ:<{width}}  {count:>3}")
        out.append("")
        out.extend(_policy_text(plan["policy"]))
        out.append("")
        out.append(plan["kubernetes"].get("summary") or f"Kubernetes {plan['kubernetes']['version']}: unknown to EKS")
        if plan["kubernetes"].get("warning"):
            out.append(f"WARNING: {plan['kubernetes']['warning']}")
        out.append("")
        out.extend(_cost_text(plan["cost"]))
        for record in plan.get("dns_records", []):
            out.append("")
            out.append(f"DNS record to create ({record['purpose']}):")
            out.append(f"  {record['type']} {record['name']} -> {record['value']}")
            out.append(f"  real name and value: {record['source']}")
        if plan["offline_secrets"]:
            out.append("")
            out.append("Offline stand-ins for secrets (not decryptable here): " + ", ".join(plan["offline_secrets"]))
        if plan.get("offline_revision_commit"):
            out.append("")
            out.append(
                f"Offline CDAO_REVISION_COMMIT stand-in {plan['offline_revision_commit']} (no commit): the revision "
                "is a branch, and only a deploy knows the commit whose images the connector runs"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _policy_text(policy: Mapping[str, Any]) -> list[str]:
    if not policy["installed"]:
        return ["Policy results", "  no policy pack rules are installed (policies/)"]
    violations = policy["violations"]
    lines = [f"Policy results ({policy['rules']} rules): {len(violations)} violation(s)"]
    for v in violations:
        lines.append(f"  [{v['level']}] {v['rule']} {v['resource_type']} {v['resource_name']}: {v['message']}")
    return lines


def _cost_text(cost: Mapping[str, Any]) -> list[str]:
    lines = [f"Estimated monthly cost: idle {_usd(cost['idle_usd_month'])}, peak {_usd(cost['peak_usd_month'])}"]
    rows = [
        (
            line["resource_name"],
            line["description"],
            _usd(line["idle_usd_month"]),
            _usd(line["peak_usd_month"]),
        )
        for line in cost["lines"]
    ]
    if rows:
        widths = [max(len(r[i]) for r in [*rows, ("resource", "what", "idle", "peak")]) for i in range(4)]
        header = ("resource", "what", "idle", "peak")
        lines.append(
            f"  {header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:>{widths[2]}}  {header[3]:>{widths[3]}}"
        )
        for r in rows:
            lines.append(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}")
    if cost["usage_based"]:
        lines.append("  usage-based, not in the estimate: " + "; ".join(cost["usage_based"]))
    for item in cost["unpriced"]:
        lines.append(f"  UNPRICED {item}")
    return lines


def render_markdown(plans: Sequence[Mapping[str, Any]]) -> str:
    out = ["## Offline plan", ""]
    out.append("| stack | resources | mandatory | advisory | idle $/month | peak $/month |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for plan in plans:
        violations = plan["policy"]["violations"]
        mandatory = len(mandatory_violations(plan))
        out.append(
            f"| {plan['stack']} | {len(plan['resources'])} | {mandatory} | {len(violations) - mandatory} "
            f"| {_usd(plan['cost']['idle_usd_month'])} | {_usd(plan['cost']['peak_usd_month'])} |"
        )
    for plan in plans:
        out += ["", f"<details><summary><b>{plan['stack']}</b></summary>", ""]
        out += ["| component | type | count |", "|---|---|---:|"]
        for component, counts in _by_component(plan).items():
            for typ, count in sorted(counts.items()):
                out.append(f"| {component} | `{typ}` | {count} |")
        out.append("")
        policy = plan["policy"]
        if not policy["installed"]:
            out.append("Policy: no policy pack rules are installed.")
        elif not policy["violations"]:
            out.append(f"Policy: {policy['rules']} rules, no violations.")
        else:
            out += ["| level | rule | resource | message |", "|---|---|---|---|"]
            for v in policy["violations"]:
                message = v["message"].replace("|", "\\|")
                out.append(f"| {v['level']} | {v['rule']} | `{v['resource_name']}` | {message} |")
        out += ["", "| resource | what | idle $/month | peak $/month |", "|---|---|---:|---:|"]
        for line in plan["cost"]["lines"]:
            idle, peak = _usd(line["idle_usd_month"]), _usd(line["peak_usd_month"])
            out.append(f"| `{line['resource_name']}` | {line['description']} | {idle} | {peak} |")
        for item in plan["cost"]["unpriced"]:
            out.append(f"| UNPRICED | {item} | | |")
        for record in plan.get("dns_records", []):
            out += [
                "",
                f"DNS record to create ({record['purpose']}): `{record['type']} {record['name']} -> "
                f"{record['value']}`; real name and value: {record['source']}.",
            ]
        if plan.get("offline_revision_commit"):
            out += ["", f"Connector image tag: offline stand-in `{plan['offline_revision_commit']}` (no commit)."]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def render_json(plans: Sequence[Mapping[str, Any]], single: bool) -> str:
    return json.dumps(plans[0] if single else list(plans), indent=2, sort_keys=False) + "\n"

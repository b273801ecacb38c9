"""Doctor results and their three renderings (text for people, Markdown for an issue or PR, JSON).

A check is one fact about the deployed platform; each ends "pass", "fail" or "skip" (it could not
run from here, e.g. no kubeconfig given) with a detail line and, when it fails or is skipped, what
to do; "error" when the check itself crashed (the doctor could not judge). Exit codes follow
`cdao plan`: 0 nothing failed, 1 a check failed, 2 bad input or a check that crashed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from cdao_cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

Status = Literal["pass", "fail", "skip", "error"]


@dataclass(frozen=True)
class CheckResult:
    family: (
        str  # "access", "irsa", "node-groups", "gpu", "argocd", "flyte", "certificate", "connectors", "logs", "backup"
    )
    name: str  # what was checked, e.g. the role key or node-group name
    status: Status
    detail: str
    remedy: str = ""


def passed(family: str, name: str, detail: str) -> CheckResult:
    return CheckResult(family, name, "pass", detail)


def failed(family: str, name: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(family, name, "fail", detail, remedy)


def skipped(family: str, name: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(family, name, "skip", detail, remedy)


def errored(family: str, detail: str) -> CheckResult:
    return CheckResult(family, "check", "error", detail, "a bug in cdao doctor or an unexpected answer: report it")


def exit_code(results: Sequence[CheckResult]) -> int:
    if any(r.status == "error" for r in results):
        return EXIT_USAGE
    return EXIT_FAILED if any(r.status == "fail" for r in results) else EXIT_OK


def _counts(results: Sequence[CheckResult]) -> str:
    return ", ".join(
        f"{sum(1 for r in results if r.status == s)} {s}"
        for s in ("pass", "fail", "skip", "error")
        if s != "error" or any(r.status == s for r in results)
    )


def render_text(stack: str, results: Sequence[CheckResult]) -> str:
    out = [f"cdao doctor: stack {stack}: {_counts(results)}"]
    for r in results:
        out.append(f"  [{r.status.upper():4}] {r.family} {r.name}: {r.detail}")
        if r.remedy:
            out.append(f"         -> {r.remedy}")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(stack: str, results: Sequence[CheckResult]) -> str:
    out = [f"## cdao doctor: `{stack}`", "", _counts(results), "", "| | check | name | detail | what to do |"]
    out.append("|---|---|---|---|---|")
    icon = {"pass": "pass", "fail": "**FAIL**", "skip": "skip", "error": "**ERROR**"}
    for r in results:
        out.append(f"| {icon[r.status]} | {r.family} | `{_md(r.name)}` | {_md(r.detail)} | {_md(r.remedy)} |")
    return "\n".join(out) + "\n"


def render_json(stack: str, results: Sequence[CheckResult]) -> str:
    body = {"stack": stack, "exit_code": exit_code(results), "checks": [asdict(r) for r in results]}
    return json.dumps(body, indent=2) + "\n"

"""The README's rule tables, generated from RULES so the documentation cannot drift from the code.

Regenerate after changing a rule: `uv run python -m policies.docs` (rewrites policies/README.md
between the rules markers); a test fails while the README is stale.
"""

from __future__ import annotations

from pathlib import Path

from policies.engine import RULES

README = Path(__file__).with_name("README.md")
START, END = "<!-- rules:start -->", "<!-- rules:end -->"
_FAMILIES = {
    "iam": "IAM",
    "cost": "Cost",
    "data_protection": "Data protection",
    "network": "Network",
    "kubernetes": "Kubernetes",
    "naming": "Naming",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rule_tables() -> str:
    lines: list[str] = []
    family = None
    for rule in RULES:
        if rule.family != family:
            family = rule.family
            lines += ["", f"### {_FAMILIES[family]}", ""]
            lines += [
                "| id | name | level | kind | what it checks | remediation | settings |",
                "|---|---|---|---|---|---|---|",
            ]
        settings = ", ".join(f"`{s}`" for s in rule.settings) or "-"
        lines.append(
            f"| {rule.id} | {_cell(rule.name)} | {rule.level} | {rule.kind} | {_cell(rule.description)} "
            f"| {_cell(rule.remediation)} | {settings} |"
        )
    return "\n".join([START, *lines, "", END])


def render(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return head + rule_tables() + tail


if __name__ == "__main__":
    README.write_text(render(README.read_text()))

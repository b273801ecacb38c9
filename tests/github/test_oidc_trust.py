"""Which AWS role each job's OIDC token can assume: the `sub` GitHub gives the job, against the
subject the role trusts (.github/environments.yml, `aws_role`; docs/github-setup.md, "The roles").

GitHub's subject formats (docs.github.com/en/actions/reference/security/oidc, "Example subject
claims"): `repo:ORG/REPO:environment:<name>` when the job references an environment,
`repo:ORG/REPO:pull_request` for a pull_request event, and `repo:ORG/REPO:ref:<ref>` otherwise, which
every job on `main` without an environment shares. A role that trusted that last subject could be
assumed by any such job, including the ones running main's newest, never promoted code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ENVIRONMENTS = ROOT / ".github" / "environments.yml"
STACKS = ("dev", "staging", "prod")
VARIABLE = re.compile(r"^\$\{\{ vars\.([A-Z0-9_]+) \}\}$")


def _load(path: Path) -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(path.read_text())


def _environments() -> dict[str, dict[str, Any]]:
    return _load(ENVIRONMENTS)["environments"]


def _expand(text: str, matrix: dict[str, Any]) -> str:
    for key, value in matrix.items():
        text = text.replace(f"${{{{ matrix.{key} }}}}", str(value))
    return text


def token_jobs() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(workflow, job, matrix entry, job) for every job (and matrix entry) that can request an OIDC token."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        workflow = _load(path)
        for name, job in workflow["jobs"].items():
            if (job.get("permissions") or {}).get("id-token") != "write":
                continue
            entries = (job.get("strategy") or {}).get("matrix", {}).get("include") or [{}]
            found += [(path.name, name, entry, job) for entry in entries]
    return found


def subject(workflow: str, job: dict[str, Any], matrix: dict[str, Any]) -> str:
    """The `sub` claim GitHub puts in the job's token (the formats of the module docstring)."""
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    if environment:
        return f"environment:{_expand(str(environment), matrix)}"
    triggers = _load(WORKFLOWS / workflow)["on"]
    if set(triggers) == {"pull_request"}:
        return "pull_request"
    return "ref:refs/heads/main"


def role_variable(job: dict[str, Any], matrix: dict[str, Any]) -> str:
    (creds,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")]
    expression = creds["with"]["role-to-assume"]
    if expression == "${{ matrix.role }}":
        expression = matrix["role"]
    match = VARIABLE.match(expression)
    assert match, f"role-to-assume {expression!r} must be one variable"
    return match.group(1)


def documented_trust() -> dict[str, str]:
    """role name -> trusted subject (without `repo:ORG/REPO:`), from docs/github-setup.md's role table,
    `<stack>` expanded."""
    text = (ROOT / "docs" / "github-setup.md").read_text()
    row = r"^\| `(cdao-github-[a-z-]+(?:<stack>)?)`[^|]*\|[^|]*\| exactly `repo:ORG/REPO:([^`]+)`"
    rows = re.findall(row, text, re.M)
    trust = {}
    for role, sub in rows:
        for stack in STACKS if "<stack>" in role else ("",):
            trust[role.replace("<stack>", stack)] = sub.replace("<stack>", stack)
    return trust


def test_the_role_table_is_read():
    trust = documented_trust()
    assert {f"cdao-github-{kind}-{stack}" for kind in ("deploy", "preview", "ecr-push") for stack in STACKS} <= set(
        trust
    )
    assert trust["cdao-github-pr-preview-dev"] == "pull_request"


def test_no_role_trusts_a_branch():
    """Every workflow job on main without an environment shares `ref:refs/heads/main` (dev's plan and
    images run main's newest code), so no role may trust it."""
    assert {role: sub for role, sub in documented_trust().items() if sub.startswith("ref:")} == {}


def test_each_role_trusts_exactly_the_environment_that_names_it():
    trust = documented_trust()
    for name, rules in _environments().items():
        if "aws_role" in rules:
            assert trust[rules["aws_role"]] == f"environment:{name}", name
            assert rules["deployment_branches"] == ["main"], name


@pytest.mark.parametrize(
    ("workflow", "job_name", "matrix", "job"),
    [pytest.param(*entry, id=f"{entry[0]}:{entry[1]}:{entry[2].get('stack', '')}") for entry in token_jobs()],
)
def test_every_token_job_can_assume_only_the_role_its_subject_is_trusted_by(workflow, job_name, matrix, job):
    variable = role_variable(job, matrix)
    sub = subject(workflow, job, matrix)
    environments = _environments()
    declared = {name: rules for name, rules in environments.items() if rules.get("aws_role_variable") == variable}
    if sub == "pull_request":
        assert not declared, f"{job_name}: {variable} is an environment's role, not the pull request's"
        assert documented_trust()["cdao-github-pr-preview-dev"] == "pull_request"
        assert variable == "AWS_PR_PREVIEW_ROLE_ARN_DEV"
        return
    assert sub.startswith("environment:"), f"{workflow}:{job_name} requests a token outside any environment ({sub})"
    environment = sub.removeprefix("environment:")
    assert environment in environments, f"{workflow}:{job_name}: environment {environment} is not declared"
    assert environments[environment].get("aws_role_variable") == variable, (job_name, environment, variable)
    assert documented_trust()[environments[environment]["aws_role"]] == sub


def test_a_stack_job_gets_its_own_stacks_role_only():
    """dev's plan and images run main's newest code: their subject must not be one staging's or prod's
    roles trust."""
    environments = _environments()
    for workflow, job_name, matrix, job in token_jobs():
        stack = matrix.get("stack") or job_name.rsplit("-", 1)[-1]
        if stack not in STACKS:
            continue
        sub = subject(workflow, job, matrix)
        if sub == "pull_request":
            continue  # its own role (cdao-github-pr-preview-dev), checked above
        environment = sub.removeprefix("environment:")
        assert environment.split("-")[0] == stack, (workflow, job_name, environment)
        assert environments[environment]["aws_role"].endswith(f"-{stack}")


def test_configure_environments_prints_the_trust_policy_of_an_environments_role():
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / ".github" / "scripts" / "configure_environments.py"),
            "--repo",
            "example-org/platform",
            "--trust-policy",
            "prod-preview",
            "--account",
            "210987654321",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n")
    assert head == "# cdao-github-preview-prod: its ARN goes into variable AWS_PREVIEW_ROLE_ARN_PROD"
    (statement,) = json.loads(body)["Statement"]
    assert statement["Condition"]["StringEquals"] == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": "repo:example-org/platform:environment:prod-preview",
    }
    assert statement["Principal"]["Federated"].startswith("arn:aws:iam::210987654321:oidc-provider/")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--trust-policy", "prod-workflows", "--account", "210987654321"], "no aws_role there"),
        (["--trust-policy", "prod"], "--account"),
    ],
)
def test_trust_policy_refuses_what_it_cannot_print(args, error):
    result = subprocess.run(
        [sys.executable, str(ROOT / ".github" / "scripts" / "configure_environments.py"), "--repo", "o/r", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert error in result.stderr

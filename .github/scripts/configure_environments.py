"""Create or update the GitHub environments of .github/environments.yml through the GitHub API.

    uv run python .github/scripts/configure_environments.py --repo OWNER/REPO --reviewer team:platform-leads
    uv run python .github/scripts/configure_environments.py --repo OWNER/REPO --reviewer user:alice --dry-run

Uses the `gh` CLI (authenticated as a repository administrator). With --dry-run it prints the API
calls and changes nothing; reviewer IDs are then shown as the names they would be looked up from.
Each environment is limited to the branches it lists, so the roles, each trusting only its
environment's `environment:<name>` subject, can only ever be assumed by a run from those branches.
With --trust-policy ENVIRONMENT --account ID it prints the trust policy of the role the environment
names (`aws_role`) and changes nothing.

Before changing anything it also checks the runner split of docs/github-setup.md: pull request
previews run on the label of the repository variable PULUMI_PR_RUNNER, deploys on PULUMI_RUNNER
(either unset: GitHub-hosted), and no self-hosted runner of the repository may carry both labels,
because a self-hosted runner can be persistently compromised by the code it runs
(docs.github.com/en/actions/hosting-your-own-runners/managing-self-hosted-runners/
about-self-hosted-runners#self-hosted-runner-security). Runners of organization runner groups are
not listed by the repository endpoint; keep those groups separate too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cdao_stacks

CONFIG = Path(__file__).resolve().parents[1] / "environments.yml"
ALLOWED_KEYS = {
    "required_reviewers",
    "prevent_self_review",
    "wait_timer_minutes",
    "deployment_branches",
    # Not environment rules: the IAM role that trusts this environment's OIDC subject, and the
    # variable the workflows read its ARN from (see the file's header; --trust-policy prints it).
    "aws_role",
    "aws_role_variable",
}


class SetupError(Exception):
    pass


def load_environments(path: Path = CONFIG) -> dict[str, dict[str, Any]]:
    document = cdao_stacks.load_yaml(path.read_text()) or {}
    environments = document.get("environments")
    if not isinstance(environments, dict) or not environments:
        raise SetupError(f"{path}: expected a non-empty 'environments:' mapping")
    for name, rules in environments.items():
        if not isinstance(rules, dict):
            raise SetupError(f"{path}: environments.{name}: expected a mapping of rules")
        unknown = set(rules) - ALLOWED_KEYS
        if unknown:
            raise SetupError(
                f"{path}: environments.{name}: unknown keys {sorted(unknown)}; known: {sorted(ALLOWED_KEYS)}"
            )
        branches = rules.get("deployment_branches")
        if not isinstance(branches, list) or not branches or not all(isinstance(b, str) for b in branches):
            raise SetupError(f"{path}: environments.{name}.deployment_branches: expected a list of branch names")
    roles = [rules["aws_role"] for rules in environments.values() if "aws_role" in rules]
    if duplicated := sorted({role for role in roles if roles.count(role) > 1}):
        raise SetupError(f"{path}: aws_role {duplicated} named by more than one environment; a role trusts one")
    return environments


def trust_policy(repo: str, account: str, environment: str) -> dict[str, Any]:
    """The trust policy of the role an environment names: GitHub's OIDC provider, audience
    `sts.amazonaws.com`, subject exactly `repo:<repo>:environment:<environment>`, the subject of a
    job that references the environment (docs.github.com/en/actions/reference/security/oidc;
    audience: aws-actions/configure-aws-credentials' default)."""
    provider = "token.actions.githubusercontent.com"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{account}:oidc-provider/{provider}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{provider}:aud": "sts.amazonaws.com",
                        f"{provider}:sub": f"repo:{repo}:environment:{environment}",
                    }
                },
            }
        ],
    }


def parse_reviewer(text: str) -> tuple[str, str]:
    kind, _, name = text.partition(":")
    if kind not in ("team", "user") or not name:
        raise SetupError(f"--reviewer {text!r}: expected team:<slug> or user:<login>")
    return ("Team" if kind == "team" else "User"), name


def api_calls(
    repo: str, environments: dict[str, dict[str, Any]], reviewers: list[dict[str, Any]]
) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, body) for every call that makes the environments match the file."""
    calls: list[tuple[str, str, dict[str, Any] | None]] = []
    for name, rules in environments.items():
        body: dict[str, Any] = {
            "wait_timer": int(rules.get("wait_timer_minutes", 0)),
            "prevent_self_review": bool(rules.get("prevent_self_review", False)),
            # Administrators may otherwise bypass the reviewers and start a waiting deploy alone
            # (REST "Create or update an environment": can_admins_bypass, default true).
            "can_admins_bypass": False,
            "reviewers": reviewers if rules.get("required_reviewers") else [],
            "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": True},
        }
        calls.append(("PUT", f"repos/{repo}/environments/{name}", body))
        for branch in rules["deployment_branches"]:
            calls.append(
                (
                    "POST",
                    f"repos/{repo}/environments/{name}/deployment-branch-policies",
                    {"name": branch, "type": "branch"},
                )
            )
    return calls


PR_RUNNER_VARIABLE, DEPLOY_RUNNER_VARIABLE = "PULUMI_PR_RUNNER", "PULUMI_RUNNER"


def runner_conflicts(pr_label: str, deploy_label: str, runners: list[dict[str, Any]]) -> list[str]:
    """Why pull request code could run on a deploy runner, if it could. `runners` is the `runners`
    array of REST "List self-hosted runners for a repository" (docs.github.com/en/rest/actions/
    self-hosted-runners): objects with `name` and `labels`, each label an object with `name`."""
    if not pr_label or not deploy_label:
        return []  # one of them is GitHub-hosted: a fresh machine per job
    if pr_label == deploy_label:
        return [f"variables {PR_RUNNER_VARIABLE} and {DEPLOY_RUNNER_VARIABLE} name the same label {pr_label!r}"]
    return [
        f"self-hosted runner {runner.get('name')} carries both labels {pr_label!r} ({PR_RUNNER_VARIABLE}) and "
        f"{deploy_label!r} ({DEPLOY_RUNNER_VARIABLE})"
        for runner in runners
        if {pr_label, deploy_label} <= {label.get("name") for label in runner.get("labels", [])}
    ]


def _variable(repo: str, name: str) -> str:
    """A repository variable's value (REST "Get a repository variable"), "" when it is not set."""
    try:
        return str(_gh("GET", f"repos/{repo}/actions/variables/{name}").get("value", ""))
    except SetupError as exc:
        if "404" in str(exc) or "Not Found" in str(exc):
            return ""
        raise


def check_runners(repo: str) -> None:
    pr_label, deploy_label = _variable(repo, PR_RUNNER_VARIABLE), _variable(repo, DEPLOY_RUNNER_VARIABLE)
    runners = _gh("GET", f"repos/{repo}/actions/runners?per_page=100").get("runners", []) if pr_label else []
    if problems := runner_conflicts(pr_label, deploy_label, runners):
        raise SetupError(
            "pull request code must not run on the deploy runners: " + "; ".join(problems) + " (docs/github-setup.md)"
        )


def _gh(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    command = ["gh", "api", "--method", method, path]
    if body is not None:
        command += ["--input", "-"]
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        command, input=json.dumps(body) if body is not None else None, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        # A branch policy that already exists answers 303/422: the environment already has it.
        if method == "POST" and "deployment-branch-policies" in path and "already exists" in result.stderr:
            return {}
        raise SetupError(f"gh api {method} {path} failed: {result.stderr.strip() or result.stdout.strip()}")
    return json.loads(result.stdout or "{}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="OWNER/REPO")
    parser.add_argument("--reviewer", action="append", default=[], help="team:<slug> or user:<login>, repeatable")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--dry-run", action="store_true", help="print the API calls; change nothing")
    parser.add_argument(
        "--trust-policy",
        metavar="ENVIRONMENT",
        help="print the trust policy of the IAM role ENVIRONMENT names (aws_role) and change nothing",
    )
    parser.add_argument("--account", help="with --trust-policy: the AWS account ID of the role")
    args = parser.parse_args(argv)
    try:
        if "/" not in args.repo:
            raise SetupError(f"--repo {args.repo!r}: expected OWNER/REPO")
        environments = load_environments(args.config)
        if args.trust_policy is not None:
            rules = environments.get(args.trust_policy)
            if rules is None or "aws_role" not in rules:
                named = sorted(n for n, r in environments.items() if "aws_role" in r)
                raise SetupError(
                    f"--trust-policy {args.trust_policy!r}: no aws_role there; environments with one: {named}"
                )
            if not args.account or not args.account.isdigit() or len(args.account) != 12:
                raise SetupError(f"--account {args.account!r}: expected the 12-digit AWS account ID of the role")
            print(f"# {rules['aws_role']}: its ARN goes into variable {rules['aws_role_variable']}")
            print(json.dumps(trust_policy(args.repo, args.account, args.trust_policy), indent=2))
            return 0
        wanted = [parse_reviewer(r) for r in args.reviewer]
        if any(rules.get("required_reviewers") for rules in environments.values()) and not wanted:
            raise SetupError("environments require reviewers: pass at least one --reviewer team:<slug> or user:<login>")
        if not args.dry_run and shutil.which("gh") is None:
            raise SetupError("the gh CLI is not on PATH (https://cli.github.com)")
        if args.dry_run:
            variables = f"{{{PR_RUNNER_VARIABLE},{DEPLOY_RUNNER_VARIABLE}}}"
            print(f"GET repos/{args.repo}/actions/variables/{variables} and runners: refuse a shared runner")
        else:
            check_runners(args.repo)
        owner = args.repo.split("/")[0]
        reviewers = []
        for kind, name in wanted:
            if args.dry_run:
                reviewers.append({"type": kind, "id": f"<id of {kind.lower()} {name}>"})
            else:
                path = f"orgs/{owner}/teams/{name}" if kind == "Team" else f"users/{name}"
                reviewers.append({"type": kind, "id": _gh("GET", path)["id"]})
        for method, path, body in api_calls(args.repo, environments, reviewers):
            if args.dry_run:
                print(f"{method} {path} {json.dumps(body, sort_keys=True)}")
            else:
                _gh(method, path, body)
                print(f"{method} {path}: done")
    except SetupError as exc:
        print(f"configure_environments: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

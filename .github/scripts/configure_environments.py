"""Create or update the GitHub environments of .github/environments.yml through the GitHub API.

    uv run python .github/scripts/configure_environments.py --repo OWNER/REPO --reviewer team:platform-leads
    uv run python .github/scripts/configure_environments.py --repo OWNER/REPO --reviewer user:alice --dry-run

Uses the `gh` CLI (authenticated as a repository administrator). With --dry-run it prints the API
calls and changes nothing; reviewer IDs are then shown as the names they would be looked up from.
Each environment is limited to the branches it lists, so the deploy roles, which trust only
`environment:<name>`, can only ever be assumed by a run from those branches.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parents[1] / "environments.yml"
ALLOWED_KEYS = {"required_reviewers", "prevent_self_review", "wait_timer_minutes", "deployment_branches"}


class SetupError(Exception):
    pass


def load_environments(path: Path = CONFIG) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(path.read_text()) or {}
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
    return environments


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
    args = parser.parse_args(argv)
    try:
        if "/" not in args.repo:
            raise SetupError(f"--repo {args.repo!r}: expected OWNER/REPO")
        environments = load_environments(args.config)
        wanted = [parse_reviewer(r) for r in args.reviewer]
        if any(rules.get("required_reviewers") for rules in environments.values()) and not wanted:
            raise SetupError("environments require reviewers: pass at least one --reviewer team:<slug> or user:<login>")
        if not args.dry_run and shutil.which("gh") is None:
            raise SetupError("the gh CLI is not on PATH (https://cli.github.com)")
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

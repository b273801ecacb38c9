"""A staging or prod deployment needs the approval of someone who neither opened, merged nor
requested the change it deploys, also in a Deploy run a guard dispatched, which GitHub's "prevent
self-review" does not cover (it excludes only whoever initiated the run: github-actions[bot] there;
docs.github.com/actions/managing-workflow-runs/reviewing-deployments).

deploy.yml's step `second-person` runs here with git on a real repository and a `gh api` stand-in
serving GitHub's REST shapes: "List pull requests associated with a commit"
(docs.github.com/en/rest/commits/commits: pull-request-simple `number`, `user.login`, `merged_at`,
`base.ref`), "Get a pull request" (docs.github.com/en/rest/pulls/pulls: `user.login`,
`merged_by.login`) and "Get the review history for a workflow run"
(docs.github.com/en/rest/actions/workflow-runs; github/rest-api-description
components/schemas/environment-approvals: `environments[].name`, `state`, `user.login`). Like gh, the
stand-in applies --jq to the response (with jq). Each test runs the step itself (bash, git, jq:
about twenty processes, up to a second on a busy 2-core machine): nothing faster executes the
step's own shell.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / ".github" / "workflows" / "deploy.yml"
REPO = "example-org/platform"
RUN_ID = "4242"
AUTHOR, MERGER, REVIEWER = "requester", "lead-who-merged", "second-reviewer"


@functools.cache
def _jobs() -> dict:
    return YAML(typ="safe", pure=True).load(DEPLOY.read_text())["jobs"]


def _step(job: str) -> dict:
    return next(s for s in _jobs()[job]["steps"] if s.get("id") == "second-person")


# A fixed author and no system git config (the git_identity fixture's settings, for a repository
# built once per module).
_GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "cdao tests",
    "GIT_COMMITTER_NAME": "cdao tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=_GIT_ENV
    ).stdout.strip()


EDITOR, EDIT_MERGER = "editor", "edit-merger"


@pytest.fixture(scope="module")
def promotion(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """main: prod's file, then a merged promotion of prod (promote.yml's commit message), then a
    per-stack edit of prod's file by other people, then a code merge. Returns the commits by name.
    Built once: the step only reads it."""
    repo = tmp_path_factory.mktemp("approval") / "repo"
    (repo / "environments").mkdir(parents=True)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    prod = repo / "environments" / "Pulumi.prod.yaml"
    prod.write_text("config:\n  cdao:gitops:\n    revision: " + "a" * 40 + "\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "prod stack file")
    commits = {"deployed": _git(repo, "rev-parse", "HEAD")}
    prod.write_text(prod.read_text().replace("a" * 40, "b" * 40))
    message = f"Promote staging -> prod\n\nRequested by @{AUTHOR} in https://github.com/{REPO}/actions/runs/1."
    _git(repo, "commit", "--quiet", "-am", message)
    commits["promotion"] = _git(repo, "rev-parse", "HEAD")
    prod.write_text(prod.read_text() + "  cdao:team: ml-platform\n")
    _git(repo, "commit", "--quiet", "-am", "prod: a per-stack edit")
    commits["edit"] = _git(repo, "rev-parse", "HEAD")
    (repo / "code.txt").write_text("a later merge\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "a later merge")
    commits["head"] = _git(repo, "rev-parse", "HEAD")
    commits["repo"] = str(repo)
    return commits


def _run(
    tmp_path: Path,
    commits: dict[str, str],
    approvals: list[dict],
    *,
    deployed: str = "",
    pulls_fail: bool = False,
    attempt: str = "1",
):
    responses = {
        f"repos/{REPO}/commits/{commits['promotion']}/pulls": [
            {"number": 7, "user": {"login": AUTHOR}, "merged_at": "2026-11-30T10:00:00Z", "base": {"ref": "main"}}
        ],
        f"repos/{REPO}/pulls/7": {"number": 7, "user": {"login": AUTHOR}, "merged_by": {"login": MERGER}},
        f"repos/{REPO}/commits/{commits['edit']}/pulls": [
            {"number": 8, "user": {"login": EDITOR}, "merged_at": "2026-11-30T11:00:00Z", "base": {"ref": "main"}}
        ],
        f"repos/{REPO}/pulls/8": {"number": 8, "user": {"login": EDITOR}, "merged_by": {"login": EDIT_MERGER}},
        f"repos/{REPO}/actions/runs/{RUN_ID}/approvals": approvals,
    }
    if pulls_fail:
        del responses[f"repos/{REPO}/pulls/7"]
    data = tmp_path / "responses.json"
    data.write_text(json.dumps(responses))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    # `gh api PATH --jq EXPR`: the response for PATH through `jq -r EXPR`; an unknown path fails
    # like gh does on HTTP 404 (exit 1).
    gh.write_text(
        "#!/usr/bin/env bash\n"
        '[ "$1" = api ] && [ "$3" = --jq ] || { echo "unexpected gh call: $*" >&2; exit 2; }\n'
        f'jq -e --arg p "$2" \'has($p)\' {data} > /dev/null || {{ echo "gh: Not Found (HTTP 404)" >&2; exit 1; }}\n'
        f'jq -c --arg p "$2" \'.[$p]\' {data} | jq -r "$4"\n'
    )
    gh.chmod(0o755)
    summary = tmp_path / "summary"
    step = _step("apply-prod")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "GITHUB_SHA": commits["head"],
        "GITHUB_RUN_ATTEMPT": attempt,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_STEP_SUMMARY": str(summary),
        "STACK": "prod",
        "RUN_ID": RUN_ID,
        "DEPLOYED": deployed,
        "GH_TOKEN": "t",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=commits["repo"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result, summary.read_text() if summary.exists() else ""


def _approval(login: str, environment: str = "prod", state: str = "approved") -> dict:
    return {
        "environments": [{"id": 1, "name": environment}],
        "state": state,
        "user": {"login": login},
        "comment": "",
    }


@pytest.mark.parametrize("login", [MERGER, AUTHOR.upper()])
def test_an_approval_by_whoever_opened_merged_or_requested_the_change_is_refused(tmp_path, promotion, login):
    """A first deploy: the last change to the file and the one that set its revision count."""
    result, _ = _run(tmp_path, promotion, [_approval(login)])
    assert result.returncode == 1, result.stderr
    assert "::error::prod was approved only by people of" in result.stdout
    assert MERGER in result.stdout and AUTHOR in result.stdout


@pytest.mark.parametrize("login", [MERGER, EDITOR])
def test_a_later_edit_does_not_hide_the_promotion_s_people(tmp_path, promotion, login):
    """Since the last deployment, prod's file changed twice (the promotion, then an edit by others):
    the people of both are excluded, whichever change was last."""
    result, _ = _run(tmp_path, promotion, [_approval(login)], deployed=promotion["deployed"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "#7" in result.stdout and "#8" in result.stdout


def test_an_approval_by_a_second_person_lets_the_apply_go_on(tmp_path, promotion):
    result, summary = _run(
        tmp_path, promotion, [_approval(MERGER), _approval(REVIEWER)], deployed=promotion["deployed"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"prod approved by {REVIEWER}" in summary


@pytest.mark.parametrize(
    "approval", [_approval(REVIEWER, environment="staging"), _approval(REVIEWER, state="rejected")]
)
def test_only_an_approval_of_this_environment_counts(tmp_path, promotion, approval):
    result, _ = _run(tmp_path, promotion, [_approval(MERGER), approval])
    assert result.returncode == 1


def test_an_approval_of_an_earlier_attempt_does_not_vouch_for_a_re_run(tmp_path, promotion):
    """Attempt 1 was approved by a second person and failed; "Re-run all jobs" plans afresh and attempt 2
    is approved only by the merger. The review history is the whole run's (environment-approvals has
    no attempt nor time), so the reviewer's approval of attempt 1 is in the list but vouches for a plan
    they never saw: a re-run is refused, naming what works instead."""
    history = [_approval(REVIEWER), _approval(MERGER)]
    (tmp_path / "attempt-2").mkdir()
    result, summary = _run(tmp_path / "attempt-2", promotion, history, deployed=promotion["deployed"], attempt="2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "approved by" not in summary
    assert "::error::" in result.stdout and "attempt 2" in result.stdout
    assert "run Deploy with stack prod" in result.stdout
    # The same history in a first attempt is a second person's approval.
    (tmp_path / "attempt-1").mkdir()
    result, summary = _run(tmp_path / "attempt-1", promotion, history, deployed=promotion["deployed"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_error_of_a_plan_or_apply_sends_the_user_to_a_re_run():
    """A re-run cannot deploy staging or prod (the check above refuses attempt > 1), and "Re-run failed
    jobs" keeps the earlier attempt's plan, which every apply refuses (step `guard`): an error that
    recommends either sends the user into a certain failure. Registration jobs may still say "Re-run
    failed jobs": they hold no approval and plan nothing."""
    rerun = re.compile(r"re-run (failed|all) jobs", re.IGNORECASE)
    jobs = _jobs()
    checked = [job for job in jobs if job.startswith(("plan-", "apply-"))]
    assert {"plan-dev", "apply-dev", "plan-prod", "apply-prod"} <= set(checked)
    for job in checked:
        for step in jobs[job]["steps"]:
            errors = [line for line in str(step.get("run", "")).splitlines() if "::error::" in line]
            assert not [line for line in errors if rerun.search(line)], (job, step.get("name"))
    assert "run Deploy with stack ${STACK}" in _step("apply-prod")["run"]


def test_a_failed_lookup_fails_closed(tmp_path, promotion):
    """Without the pull request's people nobody can be told apart from them: no deploy."""
    result, _ = _run(tmp_path, promotion, [_approval(REVIEWER)], pulls_fail=True)
    assert result.returncode != 0
    assert "approved by" not in result.stdout


def test_every_reviewed_apply_runs_the_second_person_check_that_is_executed_here():
    """The tests above execute apply-prod's step; every other reviewed apply (apply-staging) must run
    that very step (same script, inputs and condition) for its own stack, or a check edited in one job
    alone (say `if true; then`) would pass unexecuted."""
    jobs = _jobs()
    executed = _step("apply-prod")
    reviewed = [job for job in jobs if job.startswith("apply-") and job != "apply-dev"]
    assert sorted(reviewed) == ["apply-prod", "apply-staging"]
    for job in reviewed:
        assert _step(job) == executed, job
        assert jobs[job]["env"]["STACK"] == job.removeprefix("apply-")


def test_every_reviewed_apply_checks_before_any_credential_and_may_read_what_it_needs():
    jobs = _jobs()
    for job in ("apply-staging", "apply-prod"):
        steps = jobs[job]["steps"]
        check = steps.index(_step(job))
        credentials = next(i for i, s in enumerate(steps) if "configure-aws-credentials" in str(s.get("uses", "")))
        assert check < credentials, job
        permissions = jobs[job]["permissions"]
        assert permissions["actions"] == "read" and permissions["pull-requests"] == "read"
        guard = next(s for s in steps if s.get("id") == "guard")
        assert 'echo "deployed=${deployed}" >> "$GITHUB_OUTPUT"' in guard["run"]
        assert _step(job)["env"]["DEPLOYED"] == "${{ steps.guard.outputs.deployed }}"
    # dev has no reviewers: nothing to check, nothing more to read.
    assert "pull-requests" not in jobs["apply-dev"]["permissions"]

"""What the workflows promise, read from the files: promotion order and gates, one concurrency
group per stack, OIDC only, least permissions; and the shell of the steps that decide things,
executed here on real inputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from infra.plan.runner import available_stacks

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
STACKS = ("dev", "staging", "prod")
PREVIEW_ROLE_VARS = {s: f"vars.AWS_PREVIEW_ROLE_ARN_{s.upper()}" for s in STACKS}


def load(name: str) -> dict[str, Any]:
    # YAML 1.2, as GitHub reads it: `on:` stays the string "on" (PyYAML would make it True).
    return YAML(typ="safe", pure=True).load((WORKFLOWS / name).read_text())


def all_workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith(action + "@")]


def ancestors(jobs: dict[str, Any], name: str) -> set[str]:
    needs = jobs[name].get("needs", [])
    needs = [needs] if isinstance(needs, str) else needs
    found = set(needs)
    for parent in needs:
        found |= ancestors(jobs, parent)
    return found


@pytest.fixture(scope="module")
def deploy() -> dict[str, Any]:
    return load("deploy.yml")


def test_the_stacks_are_the_environments_of_the_repository():
    assert tuple(available_stacks()) == STACKS


# --- deploy: order, gates, plans -------------------------------------------------------------


def test_deploy_runs_on_merge_to_main_only(deploy):
    assert deploy["on"] == {"push": {"branches": ["main"]}}


def test_promotion_order_dev_then_staging_then_prod(deploy):
    jobs = deploy["jobs"]
    assert "apply-dev" in ancestors(jobs, "plan-staging")
    assert "apply-dev" in ancestors(jobs, "apply-staging")
    assert {"apply-dev", "apply-staging"} <= ancestors(jobs, "plan-prod")
    assert {"apply-dev", "apply-staging", "plan-prod"} <= ancestors(jobs, "apply-prod")
    assert not ancestors(jobs, "apply-dev") & {"apply-staging", "apply-prod", "plan-staging", "plan-prod"}


def test_each_apply_runs_in_its_github_environment_and_plans_do_not(deploy):
    jobs = deploy["jobs"]
    for stack in STACKS:
        assert jobs[f"apply-{stack}"]["environment"] == stack
        assert "environment" not in jobs[f"plan-{stack}"]
    with_environment = {name for name, job in jobs.items() if "environment" in job}
    assert with_environment == {f"apply-{s}" for s in STACKS}


def test_staging_and_prod_deploy_only_when_their_pins_changed(deploy):
    jobs = deploy["jobs"]
    assert "if" not in jobs["plan-dev"]  # dev: every merge
    assert "needs.changes.outputs.staging == 'true'" in jobs["plan-staging"]["if"]
    assert "needs.changes.outputs.prod == 'true'" in jobs["plan-prod"]["if"]
    # A prod-only promotion still waits for dev, and never runs after a failure upstream.
    assert "!failure()" in jobs["plan-prod"]["if"]
    assert "needs.plan-prod.result == 'success'" in jobs["apply-prod"]["if"]


def test_reviewers_required_on_staging_and_prod_and_only_main_deploys():
    config = YAML(typ="safe", pure=True).load((ROOT / ".github" / "environments.yml").read_text())
    environments = config["environments"]
    assert set(environments) == set(STACKS)
    assert environments["dev"]["required_reviewers"] is False
    for stack in ("staging", "prod"):
        assert environments[stack]["required_reviewers"] is True
        assert environments[stack]["prevent_self_review"] is True
    for stack in STACKS:
        assert environments[stack]["deployment_branches"] == ["main"]


def test_configure_environments_dry_run_sets_those_rules(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / ".github" / "scripts" / "configure_environments.py"),
            "--repo",
            "example-org/platform",
            "--reviewer",
            "team:platform-leads",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    calls = result.stdout.splitlines()
    assert len(calls) == 6
    for stack in STACKS:
        put = next(c for c in calls if c.startswith(f"PUT repos/example-org/platform/environments/{stack} "))
        reviewers = '"reviewers": []' not in put
        assert reviewers == (stack != "dev"), put
        assert '"custom_branch_policies": true' in put
        branch_policy = '{"name": "main", "type": "branch"}'
        assert (
            f"POST repos/example-org/platform/environments/{stack}/deployment-branch-policies {branch_policy}" in calls
        )

    refused = subprocess.run(
        [sys.executable, str(ROOT / ".github" / "scripts" / "configure_environments.py"), "--repo", "o/r", "--dry-run"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert "--reviewer" in refused.stderr


def test_one_concurrency_group_per_stack_shared_by_plan_apply_and_drift(deploy):
    jobs = deploy["jobs"]
    groups = {}
    for stack in STACKS:
        for kind in ("plan", "apply"):
            concurrency = jobs[f"{kind}-{stack}"]["concurrency"]
            assert concurrency["group"] == f"pulumi-{stack}"
            # Never cancel an update half-way: a cancelled `pulumi up` leaves pending operations.
            assert concurrency["cancel-in-progress"] is False
        groups[stack] = jobs[f"apply-{stack}"]["concurrency"]["group"]
    assert len(set(groups.values())) == len(STACKS)

    drift = load("drift.yml")["jobs"]["refresh"]
    assert drift["concurrency"]["group"] == "pulumi-${{ matrix.stack }}"
    assert drift["concurrency"]["cancel-in-progress"] is False


def test_the_plan_saved_at_preview_is_the_plan_applied(deploy):
    jobs = deploy["jobs"]
    assert deploy["env"]["PULUMI_EXPERIMENTAL"] == "true"  # update plans are experimental in Pulumi
    for stack in STACKS:
        (preview,) = steps_using(jobs[f"plan-{stack}"], "pulumi/actions")
        (up,) = steps_using(jobs[f"apply-{stack}"], "pulumi/actions")
        assert preview["with"]["command"] == "preview"
        assert up["with"]["command"] == "up"
        assert preview["with"]["stack-name"] == up["with"]["stack-name"] == stack
        assert preview["with"]["plan"] == up["with"]["plan"] == f"${{{{ runner.temp }}}}/plan-{stack}.json"
        assert preview["with"]["policyPacks"] == up["with"]["policyPacks"] == "policies"
        (upload,) = steps_using(jobs[f"plan-{stack}"], "actions/upload-artifact")
        (download,) = steps_using(jobs[f"apply-{stack}"], "actions/download-artifact")
        assert upload["with"]["name"] == download["with"]["name"] == f"plan-{stack}"
        assert upload["with"]["path"] == preview["with"]["plan"]
        assert download["with"]["path"] == "${{ runner.temp }}"
        assert f"plan-{stack}" in ancestors(jobs, f"apply-{stack}")
        # Nothing between plan and apply may change the code: both run the pushed commit.
        for job in (jobs[f"plan-{stack}"], jobs[f"apply-{stack}"]):
            (checkout,) = steps_using(job, "actions/checkout")
            assert "ref" not in checkout.get("with", {})


def test_apply_uses_the_environment_role_and_plan_the_read_only_role(deploy):
    jobs = deploy["jobs"]
    for stack in STACKS:
        (plan_creds,) = steps_using(jobs[f"plan-{stack}"], "aws-actions/configure-aws-credentials")
        (apply_creds,) = steps_using(jobs[f"apply-{stack}"], "aws-actions/configure-aws-credentials")
        assert plan_creds["with"]["role-to-assume"] == f"${{{{ {PREVIEW_ROLE_VARS[stack]} }}}}"
        # An environment variable: only a job in that environment can even read the ARN, and the
        # role's trust policy accepts only `repo:<repo>:environment:<stack>`.
        assert apply_creds["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"


def test_artifacts_image_pushed_and_workflows_registered_per_domain(deploy):
    jobs = deploy["jobs"]
    builds = {b["with"]["file"]: b["with"] for b in steps_using(jobs["image"], "docker/build-push-action")}
    assert set(builds) == {"plugins/Dockerfile", "workflows/Dockerfile"}
    assert all(b["push"] is True for b in builds.values())
    assert builds["plugins/Dockerfile"]["tags"] == "${{ steps.ref.outputs.image }}"
    assert builds["workflows/Dockerfile"]["tags"] == "${{ steps.ref.outputs.tasks-image }}"
    assert steps_using(jobs["image"], "aws-actions/amazon-ecr-login")
    domains = {"dev": "development", "staging": "staging", "prod": "production"}
    for stack, domain in domains.items():
        job = jobs[f"apply-{stack}"]
        assert "image" in job["needs"]
        (register,) = [s for s in job["steps"] if "register-workflows.sh" in str(s.get("run", ""))]
        assert register["env"]["STACK"] == stack
        assert register["env"]["FLYTE_DOMAIN"] == domain
        # Tasks run in the task image; the stack's own outputs give the AWS values they need.
        assert register["env"]["IMAGE"] == "${{ needs.image.outputs.tasks-image }}"
        assert register["env"]["CDAO_SAGEMAKER_ROLE_ARN"].startswith("${{ fromJSON(steps.up.outputs.")
        # Registration comes after the stack is up.
        names = [s.get("uses", s.get("run")) for s in job["steps"]]
        up_at = next(i for i, n in enumerate(names) if str(n).startswith("pulumi/actions@"))
        assert names.index(register["run"]) > up_at


# --- OIDC only, least privilege ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_no_aws_key_secrets_anywhere(name):
    text = (WORKFLOWS / name).read_text()
    assert not re.search(r"aws-access-key-id|aws-secret-access-key|aws-session-token", text)
    assert not re.search(r"AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN", text)
    assert not re.search(r"secrets\.AWS", text, re.IGNORECASE)
    workflow = load(name)
    for job_name, job in workflow["jobs"].items():
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            assert set(step["with"]) == {"role-to-assume", "role-session-name", "aws-region"}, (name, job_name)
            assert job["permissions"].get("id-token") == "write", (name, job_name)


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_least_permissions_per_job(name):
    workflow = load(name)
    assert workflow["permissions"] == {}, f"{name}: the workflow default must grant nothing"
    for job_name, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{name}: job {job_name} must declare its permissions"
        assert "write-all" not in str(permissions)
        # id-token only where a role is assumed.
        if permissions.get("id-token") == "write":
            assert steps_using(job, "aws-actions/configure-aws-credentials"), (name, job_name)


def test_write_permissions_are_where_they_are_needed_and_nowhere_else():
    writes = {
        (name, job_name, scope)
        for name, workflow in all_workflows().items()
        for job_name, job in workflow["jobs"].items()
        for scope, level in job["permissions"].items()
        if level == "write" and scope != "id-token"
    }
    assert writes == {
        ("pull-request-comment.yml", "comment", "pull-requests"),
        ("promote.yml", "promote", "contents"),
        ("promote.yml", "promote", "pull-requests"),
        ("promote.yml", "promote", "actions"),
        ("drift.yml", "report", "issues"),
    }


# --- pull request checks ------------------------------------------------------------------------


def test_pull_request_checks_plan_and_preview_every_stack():
    workflow = load("pull-request.yml")
    jobs = workflow["jobs"]
    assert "bash .ci/run" in [s.get("run") for s in jobs["checks"]["steps"]]
    plan_runs = " ".join(str(s.get("run", "")) for s in jobs["plan"]["steps"])
    # The comment shows what the change does against the PR's base; the summary keeps the head plan.
    assert 'uv run cdao plan --all --diff "$BASE_SHA" --format markdown' in plan_runs
    assert "uv run cdao plan --all --format markdown" in plan_runs
    (find_pr,) = [s for s in jobs["plan"]["steps"] if s.get("id") == "pr"]
    # On pull_request the checkout is the merge commit refs/pull/N/merge, made on main's current
    # tip: its first parent is the base. The event's base.sha goes stale when main moves (GitHub
    # docs, "Events that trigger workflows": pull_request's GITHUB_SHA is the merge commit).
    assert "BASE_SHA=$(git rev-parse HEAD^1)" in find_pr["run"]
    assert "pull_request.base.sha" not in str(find_pr)
    (checkout,) = steps_using(jobs["plan"], "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0, "the base commit must be in the clone to plan it"
    # The offline plan needs no cloud: no credentials, no environment, so it runs for forks too.
    assert "id-token" not in jobs["plan"]["permissions"]
    assert not steps_using(jobs["plan"], "aws-actions/configure-aws-credentials")
    assert "secrets." not in str(jobs["plan"])

    preview = jobs["preview"]
    matrix = preview["strategy"]["matrix"]["include"]
    assert [m["stack"] for m in matrix] == list(STACKS)
    for entry in matrix:
        assert entry["role"] == f"${{{{ {PREVIEW_ROLE_VARS[entry['stack']]} }}}}"
    (pulumi,) = steps_using(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    # Every cloud step waits for the credentials check.
    for step in preview["steps"][1:]:
        assert step["if"] == "steps.creds.outputs.available == 'true'", step


def test_the_comment_is_posted_by_a_workflow_that_runs_no_pull_request_code():
    workflow = load("pull-request-comment.yml")
    assert workflow["on"]["workflow_run"]["workflows"] == [load("pull-request.yml")["name"]]
    (job,) = workflow["jobs"].values()
    assert not steps_using(job, "actions/checkout")
    assert "uv run" not in str(job)


# --- drift and promotion ------------------------------------------------------------------------


def test_drift_refreshes_every_stack_without_writing_state():
    workflow = load("drift.yml")
    assert workflow["on"]["schedule"]
    refresh = workflow["jobs"]["refresh"]
    assert [m["stack"] for m in refresh["strategy"]["matrix"]["include"]] == list(STACKS)
    command = next(s["run"] for s in refresh["steps"] if "pulumi refresh" in str(s.get("run", "")))
    assert "--preview-only" in command
    assert "--expect-no-changes" in command
    report = workflow["jobs"]["report"]
    assert "id-token" not in report["permissions"]
    assert "gh issue create" in str(report) and "gh issue comment" in str(report)


def test_promotion_workflow_runs_cdao_promote_and_opens_a_pull_request():
    workflow = load("promote.yml")
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["from"]["options"] == ["dev", "staging"]
    assert inputs["to"]["options"] == ["staging", "prod"]
    text = "\n".join(str(s.get("run", "")) for s in workflow["jobs"]["promote"]["steps"])
    assert 'uv run cdao promote "${args[@]}"' in text
    assert "gh pr create --base main" in text
    # The PR is the only way in: the workflow never pushes to main.
    pushes = [line.strip() for line in text.splitlines() if line.strip().startswith("git push")]
    assert pushes == ['git push origin "$branch"']
    assert 'branch="promote/${FROM}-to-${TO}-${digest}"' in text


@pytest.mark.parametrize(("ref", "allowed"), [("refs/heads/main", True), ("refs/heads/feature/x", False)])
def test_promotion_runs_from_main_only(tmp_path, ref, allowed):
    (guard,) = [s for s in load("promote.yml")["jobs"]["promote"]["steps"] if s.get("name") == "Promote from main only"]
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", guard["run"]],
        env={"PATH": os.environ["PATH"], "GITHUB_REF": ref},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) is allowed
    if not allowed:
        assert f"run Promote from main (it was dispatched on {ref})" in result.stdout


# --- the shell that decides, executed --------------------------------------------------------------


def step_script(workflow: str, job: str, step_id: str) -> str:
    for step in load(workflow)["jobs"][job]["steps"]:
        if step.get("id") == step_id:
            return step["run"]
    raise AssertionError(f"{workflow}: no step {step_id!r} in job {job!r}")


def run_step(script: str, env: dict[str, str], cwd: Path, tmp_path: Path) -> dict[str, str]:
    output = tmp_path / "output"
    output.write_text("")
    full_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        **env,
    }
    subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env=full_env, check=True, capture_output=True)
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A repository with one commit per kind of change: code, staging pins, prod pins."""
    repo = tmp_path / "repo"
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
    }

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout

    repo.mkdir()
    git("init", "--quiet", "--initial-branch=main")
    shas = {}
    for name, path in [
        ("base", "environments/Pulumi.dev.yaml"),
        ("code", "infra/x.py"),
        ("staging", "environments/Pulumi.staging.yaml"),
        ("prod", "environments/Pulumi.prod.yaml"),
    ]:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(f"{name}\n")
        git("add", "-A")
        git("commit", "--quiet", "-m", name)
        shas[name] = git("rev-parse", "HEAD").strip()
    return repo, shas


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("base", "code", {"staging": "false", "prod": "false"}),  # dev only
        ("code", "staging", {"staging": "true", "prod": "false"}),  # a staging promotion merged
        ("staging", "prod", {"staging": "false", "prod": "true"}),  # a prod promotion merged
        ("base", "prod", {"staging": "true", "prod": "true"}),  # a push with both
        ("0" * 40, "prod", {"staging": "true", "prod": "true"}),  # no usable "before": deploy all
    ],
)
def test_deploy_change_detection(history, tmp_path, before, after, expected):
    repo, shas = history
    script = step_script("deploy.yml", "changes", "diff")
    outputs = run_step(script, {"BEFORE": shas.get(before, before), "GITHUB_SHA": shas[after]}, repo, tmp_path)
    assert outputs == expected


@pytest.mark.parametrize(
    ("env", "available", "reason"),
    [
        ({"GITHUB_EVENT_NAME": "pull_request", "HEAD_REPO": "someone/fork"}, "false", "forks get no OIDC token"),
        ({"GITHUB_ACTOR": "dependabot[bot]"}, "false", "Dependabot"),
        ({"ROLE": ""}, "false", "AWS_PREVIEW_ROLE_ARN_STAGING is not set"),
        ({"BACKEND": ""}, "false", "PULUMI_BACKEND_URL and AWS_REGION"),
        ({}, "true", None),
        ({"GITHUB_EVENT_NAME": "workflow_dispatch", "HEAD_REPO": ""}, "true", None),
    ],
)
def test_preview_credentials_check(tmp_path, env, available, reason):
    base = {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REPOSITORY": "org/platform",
        "GITHUB_ACTOR": "alice",
        "HEAD_REPO": "org/platform",
        "ROLE": "arn:aws:iam::123456789012:role/cdao-github-preview-staging",
        "BACKEND": "s3://state/cdao",
        "REGION": "us-east-1",
        "STACK": "staging",
    }
    script = step_script("pull-request.yml", "preview", "creds")
    outputs = run_step(script, {**base, **env}, tmp_path, tmp_path)
    assert outputs == {"available": available}
    summary = (tmp_path / "summary").read_text() if (tmp_path / "summary").exists() else ""
    if reason:
        assert reason in summary
        assert "pulumi preview of staging skipped" in summary
    else:
        assert summary == ""


def test_runners_fetch_the_torch_build_the_lock_pins():
    """uv.lock takes torch's CPU build from /opt/wheels; every job that syncs puts that exact wheel there first."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = [r for r in pyproject["dependency-groups"]["training"] if r.startswith("torch==") and "+cpu" in r]
    version = pin.split(";")[0].removeprefix("torch==").strip()
    for name, workflow in all_workflows().items():
        for job_name, job in workflow["jobs"].items():
            steps = job.get("steps", [])
            names = [s.get("name", "") for s in steps]
            if "Install the locked environment" not in names:
                continue
            fetch = names.index("Provide PyTorch's CPU wheel where uv.lock expects it")
            assert fetch < names.index("Install the locked environment"), f"{name}:{job_name}"
            assert steps[fetch]["env"]["TORCH_VERSION"] == version, f"{name}:{job_name}"

"""What the workflows promise, read from the files: promotion order and gates, one concurrency
group per stack, OIDC only, least permissions; and the shell of the steps that decide things,
executed here on real inputs."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import cdao_stacks
from cdao_cli import stack_revision
from cdao_cli.plan.runner import available_stacks
from infra.components.compute import IMAGE_PURPOSES

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
STACKS = cdao_stacks.load().promotion_order  # the registry's chain, not a list of the tests' own
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


def test_deploy_runs_on_merge_to_main_and_on_demand_for_one_stack(deploy):
    # A stack can be redeployed at its pin without a push (fault: deploys ran on push only).
    assert deploy["on"]["push"] == {"branches": ["main"]}
    stack = deploy["on"]["workflow_dispatch"]["inputs"]["stack"]
    # `all` forces nothing: it reconciles every stack that is behind (what a stale job dispatches).
    assert stack["type"] == "choice" and stack["options"] == ["all", *STACKS]


def test_every_stack_is_reconciled_by_every_run_not_by_the_push_diff(deploy):
    """Whether a stack deploys is decided from its last successful deployment, never from the
    push's own diff, so a cancelled run's promotion is deployed by the next run."""
    jobs = deploy["jobs"]
    assert "changes" not in jobs
    assert "github.event.before" not in str(deploy)
    for stack in STACKS:
        for kind in ("image", "plan"):
            assert f"needs.resolve.outputs.{stack}-deploy == 'true'" in jobs[f"{kind}-{stack}"]["if"]
        assert jobs["resolve"]["outputs"][f"{stack}-deploy"] == f"${{{{ steps.resolve.outputs.{stack}-deploy }}}}"


def test_each_job_of_a_stack_runs_in_its_github_environment(deploy):
    jobs = deploy["jobs"]
    for stack in STACKS:
        assert jobs[f"apply-{stack}"]["environment"] == stack
        assert jobs[f"register-{stack}"]["environment"] == f"{stack}-workflows"
        # No reviewers there; the environment only gives the token the subject the stack's role
        # trusts (tests/github/test_oidc_trust.py).
        assert jobs[f"plan-{stack}"]["environment"] == f"{stack}-preview"
        assert jobs[f"image-{stack}"]["environment"] == f"{stack}-images"
    with_environment = {name for name, job in jobs.items() if "environment" in job}
    kinds = ("apply", "register", "plan", "image")
    assert with_environment == {f"{k}-{s}" for s in STACKS for k in kinds}


def test_an_apply_needs_its_own_plan_and_images_only(deploy):
    jobs = deploy["jobs"]
    for stack in STACKS:
        assert set(jobs[f"apply-{stack}"]["needs"]) == {"resolve", f"plan-{stack}", f"image-{stack}"}
        condition = jobs[f"apply-{stack}"]["if"]
        assert f"needs.plan-{stack}.result == 'success'" in condition
        assert f"needs.image-{stack}.result == 'success'" in condition
        assert set(jobs[f"register-{stack}"]["needs"]) == {"resolve", f"apply-{stack}"}


def test_reviewers_required_on_staging_and_prod_and_only_main_deploys():
    config = YAML(typ="safe", pure=True).load((ROOT / ".github" / "environments.yml").read_text())
    environments = config["environments"]
    unreviewed = ("workflows", "preview", "images")
    assert set(environments) == set(STACKS) | {f"{s}-{kind}" for s in STACKS for kind in unreviewed}
    assert environments["dev"]["required_reviewers"] is False
    for stack in STACKS:
        # Registration follows an approved apply in the same run: no second approval, main only.
        # Plans, drift and images read or copy only; their environment gives the OIDC subject.
        for kind in unreviewed:
            assert environments[f"{stack}-{kind}"]["required_reviewers"] is False
            assert environments[f"{stack}-{kind}"]["deployment_branches"] == ["main"]
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
    checks, *calls = result.stdout.splitlines()
    assert checks.startswith("GET repos/example-org/platform/actions/variables/{PULUMI_PR_RUNNER,PULUMI_RUNNER}")
    assert len(calls) == 2 * 12
    for stack in [*STACKS, *(f"{s}-{kind}" for s in STACKS for kind in ("workflows", "preview", "images"))]:
        put = next(c for c in calls if c.startswith(f"PUT repos/example-org/platform/environments/{stack} "))
        reviewers = '"reviewers": []' not in put
        assert reviewers == (stack in ("staging", "prod")), put
        assert '"custom_branch_policies": true' in put
        # No administrator bypasses the reviewers (GitHub's default lets them).
        assert '"can_admins_bypass": false' in put
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


def test_one_concurrency_group_per_stack_and_drift_never_in_it(deploy):
    jobs = deploy["jobs"]
    groups = set()
    for stack in STACKS:
        for kind in ("plan", "apply", "register"):
            concurrency = jobs[f"{kind}-{stack}"]["concurrency"]
            assert concurrency["group"] == f"deploy-{stack}"
            # Never cancel an update half-way: a cancelled `pulumi up` leaves pending operations.
            assert concurrency["cancel-in-progress"] is False
        groups.add(jobs[f"apply-{stack}"]["concurrency"]["group"])
    assert len(groups) == len(STACKS)

    # A queued job cancels the pending one of its group (GitHub docs, "Using concurrency"): a
    # drift check must not share a group with a deploy, or it could cancel a pending apply.
    drift = load("drift.yml")["jobs"]["refresh"]
    assert drift["concurrency"]["group"] == "drift-${{ matrix.stack }}"
    assert drift["concurrency"]["cancel-in-progress"] is False


def test_a_stale_job_compares_with_main_and_dispatches_a_reconcile(deploy):
    """GitHub cancels a group's pending job when another is queued, whichever run it belongs to
    (docs.github.com/actions/how-tos/write-workflows/choose-when-workflows-run/control-workflow-concurrency),
    so an older run's job can replace a newer one's. Each apply and registration compares its stack
    with main's tip as its checkout sees it (fetch-depth: 0 fetches +refs/heads/*:refs/remotes/origin/*,
    actions/checkout src/ref-helper.ts getRefSpecForAllHistory) and, when main is ahead of what the
    stack deployed, a Deploy run is dispatched (a workflow_dispatch made with GITHUB_TOKEN does start
    a run: docs.github.com/actions/concepts/security/github_token). The model is
    test_promotion_model.py::test_an_older_runs_job_queued_last_cannot_strand_the_newer_pin."""
    jobs = deploy["jobs"]
    stack_input = deploy["on"]["workflow_dispatch"]["inputs"]["stack"]
    assert "all" in stack_input["options"]
    for stack in STACKS:
        for kind in ("apply", "register"):
            job = jobs[f"{kind}-{stack}"]
            checkout = steps_using(job, "actions/checkout")[0]
            assert checkout["with"]["fetch-depth"] == 0 and "ref" not in checkout["with"]
            guard = next(s for s in job["steps"] if s.get("id") == "guard")
            assert '--main "$(git rev-parse refs/remotes/origin/main)"' in guard["run"]
        assert jobs[f"apply-{stack}"]["outputs"]["reconcile"] == "${{ steps.guard.outputs.reconcile }}"
        reconcile = jobs[f"reconcile-{stack}"]
        assert reconcile["needs"] == [f"apply-{stack}"]
        assert reconcile["if"] == f"${{{{ !cancelled() && needs.apply-{stack}.outputs.reconcile == 'true' }}}}"
        assert reconcile["permissions"] == {"actions": "write"}
        assert "gh workflow run deploy.yml --ref main -f stack=all" in reconcile["steps"][-1]["run"]
        # A registration superseded by main fails (its success would be a false record), so it
        # dispatches itself before failing.
        register_guard = next(s for s in jobs[f"register-{stack}"]["steps"] if s.get("id") == "guard")["run"]
        dispatch = register_guard.index("gh workflow run deploy.yml --ref main -f stack=all")
        assert dispatch < register_guard.index("exit 1", register_guard.index("superseded by a newer deployment"))


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
        assert preview["with"]["policyPacks"] == up["with"]["policyPacks"] == "stack/policies"
        (upload,) = steps_using(jobs[f"plan-{stack}"], "actions/upload-artifact")
        (download,) = steps_using(jobs[f"apply-{stack}"], "actions/download-artifact")
        # One plan per attempt: a re-run never applies a plan made before a failure.
        assert upload["with"]["name"] == download["with"]["name"] == f"plan-{stack}-${{{{ github.run_attempt }}}}"
        assert upload["with"]["path"] == preview["with"]["plan"]
        assert download["with"]["path"] == "${{ runner.temp }}"
        # A job may wait 30 days for approval (GitHub docs, "Reviewing deployments"): the plan outlives it.
        assert upload["with"]["retention-days"] > 30
        assert f"plan-{stack}" in ancestors(jobs, f"apply-{stack}")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_a_retried_apply_refuses_a_plan_from_an_earlier_attempt(deploy, tmp_path, stack):
    """Executed for every stack's apply: each job carries its own copy of the step."""
    step = deploy["jobs"][f"apply-{stack}"]["steps"][0]
    assert step["env"]["PLAN_ATTEMPT"] == f"${{{{ needs.plan-{stack}.outputs.attempt }}}}"
    assert deploy["jobs"][f"plan-{stack}"]["outputs"]["attempt"] == "${{ steps.attempt.outputs.attempt }}"
    for attempt, ok in (("1", True), ("2", False)):
        env = {"PATH": os.environ["PATH"], "PLAN_ATTEMPT": "1", "GITHUB_RUN_ATTEMPT": attempt}
        result = subprocess.run(["bash", "-c", step["run"]], env=env, capture_output=True, text=True, check=False)
        assert (result.returncode == 0) is ok
        if not ok:
            assert f"run Deploy with stack {stack}" in result.stdout


# Each stack name, and its upstream's, where a job of staging names them (`vars.ECR_REGISTRY_DEV`,
# `cdao-staging-tasks`); prod's job names prod and staging there. Not after "/" (/dev/null) nor
# inside a word.
_STAGING_NAMES = re.compile(r"(?<![/A-Za-z0-9])(dev|staging|DEV|STAGING)(?![A-Za-z0-9])")
_AS_PROD = {"dev": "staging", "staging": "prod", "DEV": "STAGING", "STAGING": "PROD"}


_PER_STACK_JOBS = ("image", "plan", "apply", "register", "reconcile")


@pytest.mark.parametrize("kind", _PER_STACK_JOBS)
def test_staging_and_prod_run_the_same_jobs_but_for_their_stack_names(deploy, kind):
    """GitHub computes no job ids, so each stack has its own copy of each job (README, "stack
    registry"): a guard fixed in apply-staging alone would leave prod without it. staging's job, with
    its stack and upstream names swapped for prod's (staging -> prod, dev -> staging), must be prod's
    job; the one per-stack fact allowed to differ is the Flyte domain a stack registers into."""
    jobs = deploy["jobs"]
    assert {job.removesuffix("-prod") for job in jobs if job.endswith("-prod")} == set(_PER_STACK_JOBS)

    def text(job: dict[str, Any]) -> str:
        out = json.dumps(job, indent=1, sort_keys=True)
        for domain in {str(step.get("env", {}).get("FLYTE_DOMAIN")) for step in job["steps"]} - {"None"}:
            out = out.replace(f'"FLYTE_DOMAIN": "{domain}"', '"FLYTE_DOMAIN": "<domain>"')
            out = out.replace(f"domain {domain})", "domain <domain>)")
        return out

    staging_as_prod = _STAGING_NAMES.sub(lambda m: _AS_PROD[m.group(0)], text(jobs[f"{kind}-staging"]))
    assert staging_as_prod == text(jobs[f"{kind}-prod"])


def test_apply_uses_the_environment_role_and_plan_the_read_only_role(deploy):
    jobs = deploy["jobs"]
    for stack in STACKS:
        (plan_creds,) = steps_using(jobs[f"plan-{stack}"], "aws-actions/configure-aws-credentials")
        (apply_creds,) = steps_using(jobs[f"apply-{stack}"], "aws-actions/configure-aws-credentials")
        assert plan_creds["with"]["role-to-assume"] == f"${{{{ {PREVIEW_ROLE_VARS[stack]} }}}}"
        # An environment variable: only a job in that environment can even read the ARN, and the
        # role's trust policy accepts only `repo:<repo>:environment:<stack>`.
        assert apply_creds["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"


def test_images_built_once_in_dev_and_promoted_by_tag(deploy):
    jobs = deploy["jobs"]
    builds = {b["with"]["target"]: b["with"] for b in steps_using(jobs["image-dev"], "docker/build-push-action")}
    # plugins/Dockerfile's targets, one base stage; one ECR repository each (infra's Registry).
    assert set(builds) == set(IMAGE_PURPOSES) == {"connector", "tasks", "emr-serverless"}
    (ref,) = [s for s in jobs["image-dev"]["steps"] if s.get("id") == "ref"]
    assert set(re.search(r"for purpose in ([^;]+); do", ref["run"])[1].split()) == set(IMAGE_PURPOSES)
    for target, build in builds.items():
        assert build["tags"] == f"${{{{ steps.ref.outputs.{target} }}}}"
    assert {b["file"] for b in builds.values()} == {"stack/plugins/Dockerfile"}
    assert all(b["push"] is True and b["context"] == "stack" for b in builds.values())
    for stack in ("staging", "prod"):
        job = jobs[f"image-{stack}"]
        assert not steps_using(job, "docker/build-push-action")  # never rebuilt
        (copy,) = [s for s in job["steps"] if "imagetools create" in str(s.get("run", ""))]
        assert set(re.search(r"for purpose in ([^;]+); do", copy["run"])[1].split()) == set(IMAGE_PURPOSES)
        # What is copied from where: test_an_image_is_copied_from_the_upstream_and_its_digest_checked.
        # The stack's own registry and push role: one account per stack.
        (creds,) = steps_using(job, "aws-actions/configure-aws-credentials")
        assert creds["with"]["role-to-assume"] == f"${{{{ vars.AWS_ECR_PUSH_ROLE_ARN_{stack.upper()} }}}}"
    domains = {"dev": "development", "staging": "staging", "prod": "production"}
    for stack, domain in domains.items():
        steps = jobs[f"register-{stack}"]["steps"]
        (register,) = [s for s in steps if "register-workflows.sh" in str(s.get("run", ""))]
        assert jobs[f"register-{stack}"]["env"]["STACK"] == stack
        assert register["env"]["FLYTE_DOMAIN"] == domain
        role = f"${{{{ needs.apply-{stack}.outputs.sagemaker-role-arn }}}}"
        assert register["env"]["CDAO_SAGEMAKER_ROLE_ARN"] == role


def test_every_program_run_gets_the_commit_it_runs_as_the_connector_image_tag(deploy):
    """dev's revision is the branch `main`; the program tags the connector image with the commit the
    deploy resolved (infra/images.py, CDAO_REVISION_COMMIT), which must be the commit checked out in
    stack/ and whose images image-<stack> built or copied, identically at preview and at `up --plan`.
    A step's `env` reaches the action's process and the programs it starts (docs.github.com/actions/
    reference/workflows-and-actions/workflow-syntax, jobs.<job_id>.steps[*].env)."""
    jobs = deploy["jobs"]
    for stack in STACKS:
        revision = f"${{{{ needs.resolve.outputs.{stack}-revision }}}}"
        for job in (f"plan-{stack}", f"apply-{stack}"):
            (pulumi,) = steps_using(jobs[job], "pulumi/actions")
            assert pulumi["env"]["CDAO_REVISION_COMMIT"] == revision, job
            (checkout,) = [c for c in steps_using(jobs[job], "actions/checkout") if c["with"].get("path") == "stack"]
            assert checkout["with"]["ref"] == revision
        image = "\n".join(str(s.get("run", "")) for s in jobs[f"image-{stack}"]["steps"])
        tagged = f"cdao-{stack}-${{purpose}}:${{REVISION}}" in image
        by_env = "cdao-${STACK}-${purpose}:${REVISION}" in image and jobs[f"image-{stack}"]["env"]["STACK"] == stack
        assert tagged or by_env
        assert any(s.get("env", {}).get("REVISION") == revision for s in jobs[f"image-{stack}"]["steps"])
    preview = load("pull-request.yml")["jobs"]["preview"]
    (pulumi,) = steps_using(preview, "pulumi/actions")
    # The merge commit GitHub checks out for pull_request (GITHUB_SHA), i.e. the code previewed.
    assert pulumi["env"]["CDAO_REVISION_COMMIT"] == "${{ github.sha }}"
    assert "ref" not in steps_using(preview, "actions/checkout")[0]["with"]


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
        # Pushes the promotion branch only: no workflow opens or approves a pull request.
        ("promote.yml", "promote", "contents"),
        ("drift.yml", "report", "issues"),
        # Dispatch Deploy when an older run's job found main ahead of it (test_a_stale_job_...).
        *(("deploy.yml", f"{kind}-{stack}", "actions") for kind in ("reconcile", "register") for stack in STACKS),
    }


# --- pull request checks ------------------------------------------------------------------------


def test_pull_request_checks_plan_every_stack_and_preview_only_dev():
    workflow = load("pull-request.yml")
    jobs = workflow["jobs"]
    assert "bash .ci/run" in [s.get("run") for s in jobs["checks"]["steps"]]
    # The pins of staging and prod are checked against the history (test_promotion_model.py).
    assert steps_using(jobs["checks"], "actions/checkout")[0]["with"]["fetch-depth"] == 0
    plan_runs = " ".join(str(s.get("run", "")) for s in jobs["plan"]["steps"])
    # The comment shows what the change does against the PR's base; the summary keeps the head plan.
    assert 'uv run cdao plan --all --diff "$BASE_SHA" --format markdown' in plan_runs
    assert "uv run cdao plan --all --format markdown" in plan_runs
    (find_pr,) = [s for s in jobs["plan"]["steps"] if s.get("id") == "pr"]
    # On pull_request the checkout is the merge commit refs/pull/N/merge, made on main's current
    # tip: its first parent is the base. The event's base.sha goes stale when main moves (GitHub
    # docs, "Events that trigger workflows": pull_request's GITHUB_SHA is the merge commit).
    assert "base-sha=$(git rev-parse HEAD^1)" in find_pr["run"]
    assert "pull_request.base.sha" not in str(find_pr)
    (checkout,) = steps_using(jobs["plan"], "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0, "the base commit must be in the clone to plan it"
    # The offline plan needs no cloud: no credentials, no environment, so it runs for forks too.
    assert "id-token" not in jobs["plan"]["permissions"]
    assert not steps_using(jobs["plan"], "aws-actions/configure-aws-credentials")
    assert "secrets." not in str(jobs["plan"])

    preview = jobs["preview"]
    matrix = preview["strategy"]["matrix"]["include"]
    # Pull request code reaches dev only; staging and prod preview roles are never handed to it.
    assert [m["stack"] for m in matrix] == ["dev"]
    assert "AWS_PREVIEW_ROLE_ARN_STAGING" not in str(workflow) and "AWS_PREVIEW_ROLE_ARN_PROD" not in str(workflow)
    assert "workflow_dispatch" not in workflow["on"]
    # A role of its own, trusted only for `pull_request`; the main-trusted preview roles stay out.
    assert matrix[0]["role"] == "${{ vars.AWS_PR_PREVIEW_ROLE_ARN_DEV }}"
    assert "AWS_PREVIEW_ROLE_ARN_DEV" not in str(workflow)
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


def test_promotion_workflow_pushes_what_the_source_deployed_and_opens_no_pull_request():
    workflow = load("promote.yml")
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"from", "to"}  # no free revision: only what the source deployed is promoted
    assert inputs["from"]["options"] == ["dev", "staging"]
    assert inputs["to"]["options"] == ["staging", "prod"]
    text = "\n".join(str(s.get("run", "")) for s in workflow["jobs"]["promote"]["steps"])
    assert 'uv run cdao promote "$FROM" "$TO" --source-deployed "$DEPLOYED"' in text
    # A person opens the pull request (so a second person must approve it); no workflow can.
    assert "gh pr create" not in text and "gh pr review" not in text and "gh workflow run" not in text
    assert "/compare/main...${branch}?" in text
    # The only push: push-promotion.sh, which refuses to reuse a branch holding anything else
    # (test_scripts.py::test_push_promotion_refuses_a_branch_with_other_content).
    assert "git push" not in text
    assert text.count('bash .github/scripts/push-promotion.sh "$branch"') == 1
    # The requester is told to open the pull request, so GitHub keeps them from approving it.
    assert "Open this pull request as @%s, and have someone else approve it" in text
    assert 'branch="promote/${FROM}-to-${TO}-${digest}"' in text


@pytest.mark.parametrize(("ref", "allowed"), [("refs/heads/main", True), ("refs/heads/feature/x", False)])
def test_deploy_runs_from_main_only(ref, allowed):
    guard = next(s for s in load("deploy.yml")["jobs"]["resolve"]["steps"] if s.get("name") == "Deploy from main only")
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", guard["run"]],
        env={"PATH": os.environ["PATH"], "GITHUB_REF": ref},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) is allowed


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


def test_the_resolve_step_reports_each_stack_in_the_format_it_writes(tmp_path):
    """`cdao stack-revision` prints the `key=value` lines the resolve step prefixes with the stack."""
    script = step_script("deploy.yml", "resolve", "resolve")
    assert 'echo "${stack}-${line}"' in script
    result = subprocess.run(
        [sys.executable, "-m", "cdao_cli", "stack-revision", "prod", "--commit", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    # HEAD is not a SHA the script accepts as a record; the stack file at HEAD pins a commit.
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(lines) == {"revision", "deploy", "reason"}
    assert re.fullmatch(r"[0-9a-f]{40}", lines["revision"])
    assert lines["deploy"] == "true"


def stand_in_tools(tmp_path: Path, registry: str) -> tuple[dict[str, str], Path]:
    """Stand-ins for what the resolve step calls: `uv run cdao stacks` prints `registry` (the format
    cdao_cli/main.py's `_stacks` writes), `uv run cdao stack-revision` and last-deployed.sh record
    their arguments, one call a line, in the returned log; stack-revision writes `stack file of
    <stack>` to its --stack-file path, as cdao_cli/stack_revision.py run() does with the composed file."""
    bin_dir, scripts, log = tmp_path / "bin", tmp_path / ".github" / "scripts", tmp_path / "calls"
    bin_dir.mkdir()
    scripts.mkdir(parents=True)
    (tmp_path / "registry").write_text(registry)
    (tmp_path / "registry-rc").write_text("0")
    (bin_dir / "uv").write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$3" = stacks ]; then cat {tmp_path}/registry; exit "$(cat {tmp_path}/registry-rc)"; fi\n'
        f'echo "$*" >> {log}\n'
        'args=("$@")\n'
        'for i in "${!args[@]}"; do\n'
        '  if [ "${args[$i]}" = --stack-file ]; then echo "stack file of $4" > "${args[$((i + 1))]}"; fi\n'
        "done\n"
        'printf "revision=%040d\\ndeploy=true\\nreason=stand-in\\n" 0\n'
    )
    (bin_dir / "uv").chmod(0o755)
    (scripts / "last-deployed.sh").write_text(f'echo "last-deployed $*" >> {log}\necho "ran-by-$1"\n')
    (tmp_path / "runner-temp").mkdir()
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_TEMP": str(tmp_path / "runner-temp")}, log


def test_a_broken_stack_file_holds_back_no_other_stack_and_fails_the_step(tmp_path):
    """`cdao stacks` prints the usable stacks and exits 2 when a file is broken (cdao_cli/main.py):
    the step decides those stacks, then fails."""
    script = step_script("deploy.yml", "resolve", "resolve")
    env, log = stand_in_tools(tmp_path, "dev dev -\n")
    (tmp_path / "registry-rc").write_text("2")
    role = "arn:aws:iam::123456789012:role/p"
    env |= {"CONFIGURED_DEV": role, "CONFIGURED_STAGING": role, "CONFIGURED_PROD": role, "FORCE_STACK": ""}
    env |= {"BACKEND": "s3://b", "REGION": "us-east-1", "RUNNER": "cdao-deploy", "GITHUB_SHA": "0" * 40}
    output = tmp_path / "output"
    output.write_text("")
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(tmp_path / "s"), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "::error::no revision for: (the stack registry" in result.stdout
    assert "dev-deploy=true" in output.read_text()
    assert [line.split()[3] for line in log.read_text().splitlines() if "stack-revision" in line] == ["dev"]


def test_deploy_in_an_unconfigured_repository_deploys_nothing(tmp_path):
    script = step_script("deploy.yml", "resolve", "resolve")
    env, _ = stand_in_tools(tmp_path, "dev dev -\nstaging staging dev\nprod prod staging\n")
    env |= {"CONFIGURED_DEV": "", "CONFIGURED_STAGING": "", "CONFIGURED_PROD": "", "FORCE_STACK": ""}
    outputs = run_step(script, env, tmp_path, tmp_path)
    assert outputs == {"dev-deploy": "false", "staging-deploy": "false", "prod-deploy": "false"}


def test_the_resolve_step_takes_the_stacks_and_their_upstreams_from_the_registry(tmp_path):
    """The order and each stack's upstream are the registry's (`cdao stacks`), not the workflow's:
    a registry where prod is promoted from dev makes prod's revision checked against dev's."""
    script = step_script("deploy.yml", "resolve", "resolve")
    env, log = stand_in_tools(tmp_path, "dev dev -\nprod prod dev\nstaging staging -\n")
    role = "arn:aws:iam::123456789012:role/p"
    env |= {"CONFIGURED_DEV": role, "CONFIGURED_STAGING": role, "CONFIGURED_PROD": role, "FORCE_STACK": ""}
    env |= {"BACKEND": "s3://b", "REGION": "us-east-1", "RUNNER": "cdao-deploy", "GITHUB_SHA": "0" * 40}
    outputs = run_step(script, env, tmp_path, tmp_path)
    assert {k: v for k, v in outputs.items() if k.endswith("-deploy")} == {
        "dev-deploy": "true",
        "prod-deploy": "true",
        "staging-deploy": "true",
    }
    # The decisions (the candidate lookups of promoted stacks aside), in the registry's order.
    decisions = [
        line
        for line in log.read_text().splitlines()
        if "stack-revision" in line and "--upstream-candidates" not in line
    ]
    assert [line.split()[3] for line in decisions] == ["dev", "prod", "staging"]
    assert "last-deployed dev --at" in log.read_text() and "last-deployed staging --at" not in log.read_text()
    calls = {line.split()[3]: line for line in decisions}
    assert "--upstream-deployed ran-by-dev --stack-file" in calls["prod"]
    # Each stack's jobs get the file stack-revision wrote for it (base64: one output line).
    for stack in ("dev", "prod", "staging"):
        assert base64.b64decode(outputs[f"{stack}-stack-file"]).decode() == f"stack file of {stack}\n"
    assert "--upstream-deployed" not in calls["staging"]
    assert "--upstream-deployed" not in calls["dev"]


def test_drift_in_an_unconfigured_repository_skips_with_a_notice(tmp_path):
    script = step_script("drift.yml", "refresh", "configured")
    env = {"STACK": "prod", "RUNNER_TEMP": str(tmp_path), "ROLE": "", "BACKEND": "", "REGION": ""}
    outputs = run_step(script, env, tmp_path, tmp_path)
    assert outputs == {"ready": "false"}
    assert (tmp_path / "drift-prod" / "status").read_text().strip() == "unconfigured"
    refresh = load("drift.yml")["jobs"]["refresh"]["steps"]
    cloud = [
        s
        for s in refresh
        if "aws-actions" in str(s.get("uses", "")) or str(s.get("name", "")).startswith("pulumi refresh")
    ]
    assert cloud and all(s["if"] == "steps.configured.outputs.ready == 'true'" for s in cloud)
    configured = {"ROLE": "arn:aws:iam::123456789012:role/p", "BACKEND": "s3://b", "REGION": "us-east-1"}
    assert run_step(script, {**env, **configured}, tmp_path, tmp_path) == {"ready": "true"}


@pytest.mark.parametrize(
    ("env", "available", "reason"),
    [
        ({"GITHUB_EVENT_NAME": "pull_request", "HEAD_REPO": "someone/fork"}, "false", "forks get no OIDC token"),
        ({"GITHUB_ACTOR": "dependabot[bot]"}, "false", "Dependabot"),
        ({"ROLE": ""}, "false", "AWS_PR_PREVIEW_ROLE_ARN_STAGING is not set"),
        ({"BACKEND": ""}, "false", "PULUMI_BACKEND_URL and AWS_REGION"),
        ({}, "true", None),
        ({"GITHUB_EVENT_NAME": "pull_request", "HEAD_REPO": "org/platform"}, "true", None),
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


@pytest.mark.parametrize("missing", ["BACKEND", "REGION", "RUNNER"])
def test_deploy_refuses_a_configured_stack_without_backend_region_or_runner(tmp_path, missing):
    """pulumi/actions logs in to Pulumi Cloud when `cloud-url` is empty (pulumi/actions README,
    input `cloud-url`): a configured stack without PULUMI_BACKEND_URL must stop before any job. So must
    one without PULUMI_RUNNER: the jobs' GitHub-hosted fallback reaches no stack's Kubernetes API."""
    script = step_script("deploy.yml", "resolve", "resolve")
    env = {
        "CONFIGURED_DEV": "arn:aws:iam::123456789012:role/p",
        "CONFIGURED_STAGING": "",
        "CONFIGURED_PROD": "",
        "FORCE_STACK": "",
        "BACKEND": "s3://cdao-pulumi-state/cdao",
        "REGION": "us-east-1",
        "RUNNER": "cdao-deploy",
        missing: "",
    }
    output = tmp_path / "output"
    output.write_text("")
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GITHUB_OUTPUT": str(output), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "::error::repository variables PULUMI_BACKEND_URL, AWS_REGION and PULUMI_RUNNER must be set" in result.stdout
    assert "deploy=true" not in output.read_text()


def test_pull_request_code_never_runs_on_the_deploy_runners():
    """A self-hosted runner can be persistently compromised by untrusted code in a workflow
    (docs.github.com/en/actions/hosting-your-own-runners/managing-self-hosted-runners/
    about-self-hosted-runners#self-hosted-runner-security):
    pull request code (untrusted) runs on its own label, never on the runners that later deploy."""
    runs_on: dict[tuple[str, str], str] = {
        (name, job_name): str(job["runs-on"])
        for name, workflow in all_workflows().items()
        for job_name, job in workflow["jobs"].items()
    }
    pr_label = "${{ vars.PULUMI_PR_RUNNER || 'ubuntu-24.04' }}"
    deploy_label = "${{ vars.PULUMI_RUNNER || 'ubuntu-24.04' }}"
    for (name, job_name), label in runs_on.items():
        if name in ("pull-request.yml", "pull-request-comment.yml"):
            assert "PULUMI_RUNNER" not in label, (name, job_name)
        else:
            assert "PULUMI_PR_RUNNER" not in label, (name, job_name)
    assert runs_on[("pull-request.yml", "preview")] == pr_label
    assert {label for label in runs_on.values() if "vars." in label} == {pr_label, deploy_label}


def test_the_preview_refuses_to_share_a_label_with_the_deploy_runners(tmp_path):
    """Checked in the preview's first step, before any pull request code is checked out."""
    steps = load("pull-request.yml")["jobs"]["preview"]["steps"]
    assert steps[0].get("id") == "creds"
    env = {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REPOSITORY": "org/platform",
        "HEAD_REPO": "org/platform",
        "GITHUB_ACTOR": "alice",
        "ROLE": "arn:aws:iam::123456789012:role/cdao-github-pr-preview-dev",
        "BACKEND": "s3://cdao-pulumi-state/cdao",
        "REGION": "us-east-1",
        "STACK": "dev",
        "PR_RUNNER": "cdao-deploy",
        "DEPLOY_RUNNER": "cdao-deploy",
    }
    output = tmp_path / "output"
    output.write_text("")
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step_script("pull-request.yml", "preview", "creds")],
        cwd=tmp_path,
        env={
            "PATH": os.environ["PATH"],
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "s"),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "::error::variables PULUMI_PR_RUNNER and PULUMI_RUNNER name the same runner label" in result.stdout
    assert "available=true" not in output.read_text()
    distinct = run_step(
        step_script("pull-request.yml", "preview", "creds"), {**env, "PR_RUNNER": "cdao-pr"}, tmp_path, tmp_path
    )
    assert distinct == {"available": "true"}


def _configure_with_gh(tmp_path: Path, variables: dict[str, str], runners: list[dict[str, Any]]):
    """configure_environments.py (not a dry run) against a `gh api` stand-in: "Get a repository
    variable" answers {"name", "value", ...} or 404 (docs.github.com/en/rest/actions/variables),
    "List self-hosted runners for a repository" answers {"total_count", "runners": [{"id", "name",
    "labels": [{"id", "name", "type"}]}]} (docs.github.com/en/rest/actions/self-hosted-runners);
    every other call succeeds with {}."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    data = tmp_path / "gh.json"
    data.write_text(json.dumps({"variables": variables, "runners": {"total_count": len(runners), "runners": runners}}))
    gh = bin_dir / "gh"
    gh.write_text(
        "#!/usr/bin/env bash\n"
        'path=""; for a in "$@"; do case "$a" in repos/*|orgs/*) path="$a" ;; esac; done\n'
        'case "$path" in\n'
        '  */actions/variables/*) name="${path##*/}"\n'
        f'    v=$(jq -r --arg n "$name" \'.variables[$n] // empty\' "{data}")\n'
        '    if [ -z "$v" ]; then\n'
        '      echo \'{"message":"Not Found","status":"404"}\'; echo "gh: Not Found (HTTP 404)" >&2; exit 1\n'
        "    fi\n"
        '    jq -n --arg n "$name" --arg v "$v" \'{name: $n, value: $v}\' ;;\n'
        f'  */actions/runners[?]*|*/actions/runners) jq .runners "{data}" ;;\n'
        "  orgs/*) echo '{\"id\": 7}' ;;\n"
        "  *) cat > /dev/null; echo '{}' ;;\n"
        "esac\n"
    )
    gh.chmod(0o755)
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / ".github" / "scripts" / "configure_environments.py"),
            "--repo",
            "example-org/platform",
            "--reviewer",
            "team:platform-leads",
        ],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )


def _runner(name: str, *labels: str) -> dict[str, Any]:
    return {
        "id": len(name),
        "name": name,
        "os": "linux",
        "status": "online",
        "busy": False,
        "labels": [{"id": n, "name": label, "type": "custom"} for n, label in enumerate(["self-hosted", *labels])],
    }


@pytest.mark.parametrize(
    ("variables", "runners", "error"),
    [
        ({"PULUMI_RUNNER": "cdao-deploy", "PULUMI_PR_RUNNER": "cdao-deploy"}, [], "name the same label"),
        (
            {"PULUMI_RUNNER": "cdao-deploy", "PULUMI_PR_RUNNER": "cdao-pr"},
            [_runner("ops-1", "cdao-deploy"), _runner("ops-2", "cdao-pr", "cdao-deploy")],
            "runner ops-2 carries both",
        ),
        ({"PULUMI_RUNNER": "cdao-deploy", "PULUMI_PR_RUNNER": "cdao-pr"}, [_runner("ops-1", "cdao-deploy")], None),
        ({}, [], None),  # GitHub-hosted runners for both
    ],
)
def test_configure_environments_refuses_a_runner_shared_by_pull_requests_and_deploys(
    tmp_path, variables, runners, error
):
    result = _configure_with_gh(tmp_path, variables, runners)
    if error:
        assert result.returncode == 2
        assert error in result.stderr
        assert "PUT" not in result.stdout  # checked before any environment is changed
    else:
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("workflow", ["deploy.yml", "drift.yml"])
def test_jobs_holding_an_aws_token_run_only_the_code_of_the_revision(workflow):
    """A job with `id-token: write` can mint its AWS role's credentials from any step (every step
    gets ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN: docs.github.com/en/actions/deployment/
    security-hardening-your-deployments/configuring-openid-connect-in-cloud-providers), so it runs no
    code of main: only
    the workflow file itself (which GitHub takes from main for a push or dispatch run) and the code of
    the revision it deploys, checked out in stack/ before anything runs. main's checkout is data
    there: the stack file and the git history the guard compares."""
    scripts = re.compile(r"(\S*)\.github/scripts/")
    for job_name, job in load(workflow)["jobs"].items():
        # Same for a job holding a stack's secret (register-<stack>: the Flyte client of the stack's
        # domain): code of main run in an earlier step of the job can change what a later one runs.
        if job["permissions"].get("id-token") != "write" and "secrets." not in str(job):
            continue
        steps = job["steps"]
        pinned = [i for i, s in enumerate(steps) if s.get("with", {}).get("path") == "stack"]
        for index, step in enumerate(steps):
            run = str(step.get("run", ""))
            if re.search(r"\buv (sync|run)\b", run) or "pulumi/actions@" in str(step.get("uses", "")):
                assert pinned and index > pinned[0], (job_name, step.get("name"))
            if re.search(r"\buv sync\b", run):
                assert step.get("working-directory") == "stack", (job_name, step.get("name"))
            in_pin = step.get("working-directory") == "stack"
            for match in re.finditer(r"\buv run\b[^\n]*", run):
                assert in_pin or "--project stack" in match.group(0), (job_name, match.group(0))
            for prefix in scripts.findall(run):
                assert prefix == ("" if in_pin else "stack/"), (job_name, step.get("name"), prefix)
            if "pulumi/actions@" in str(step.get("uses", "")):
                assert step["with"]["pulumi-version-file"] == "stack/.github/pulumi-version", job_name
            # The program, Pulumi.yaml and plugins of the pin, not of main.
            for match in re.finditer(r"^\s*pulumi (?:refresh|preview|up)\b[^\n]*", run, re.M):
                assert "--cwd stack" in match.group(0), (job_name, match.group(0))
        for checkout in pinned:
            assert "needs." in steps[checkout]["with"]["ref"], (job_name, steps[checkout]["with"]["ref"])


def test_a_promotion_pull_request_is_checked_with_mains_rule():
    """The check runs the base's code (a promote/ branch is pushed by a workflow, but anyone with
    push access can push one): the head commit is only read. The rule itself is tested on a real
    history: test_promotion_model.py::test_a_promotion_pull_request_*."""
    job = load("pull-request.yml")["jobs"]["promotion"]
    # Every pull request: a skipped job reports Success and blocks no merge even when required
    # (docs.github.com/en/actions/how-tos/write-workflows/choose-when-workflows-run/control-jobs-with-conditions).
    assert "if" not in job
    assert job["steps"][-1]["env"]["HEAD_REF"] == "${{ github.head_ref }}"
    checkout = steps_using(job, "actions/checkout")[0]
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert checkout["with"]["fetch-depth"] == 0
    run = job["steps"][-1]["run"]
    assert 'bash .github/scripts/last-deployed.sh "$from" --at "${candidates[@]}"' in run
    assert '--head "$HEAD_SHA"' in run and '--author "$AUTHOR"' in run
    assert job["steps"][-1]["env"]["AUTHOR"] == "${{ github.event.pull_request.user.login }}"
    assert job["permissions"] == {"actions": "read", "contents": "read", "deployments": "read"}


def test_the_promotion_check_gets_the_records_of_every_upstream_in_the_registry(tmp_path):
    """The step passes `--deployed <upstream> <records>...` for every promoted stack `cdao stacks`
    lists (its `<name> <profile> <promotesFrom or ->` lines, cdao_cli/main.py `_stacks`), so a stack
    promoted from prod gets prod's records; the records are last-deployed.sh's lines for the
    candidates `cdao stack-revision --upstream-candidates` prints (`upstream=`, `candidates=`)."""
    run = load("pull-request.yml")["jobs"]["promotion"]["steps"][-1]["run"]
    bin_dir, scripts, log = tmp_path / "bin", tmp_path / ".github" / "scripts", tmp_path / "calls"
    bin_dir.mkdir()
    scripts.mkdir(parents=True)
    registry = "dev dev -\nstaging staging dev\nprod prod staging\ndr prod prod\n"
    (tmp_path / "registry").write_text(registry)
    (bin_dir / "uv").write_text(
        "#!/usr/bin/env bash\n"
        f'case "$3" in stacks) cat {tmp_path}/registry ;;\n'
        '  stack-revision) awk -v s="$4" '
        f'\'$1 == s {{print "upstream=" $3; print "candidates=c1-" s " c2-" s}}\' {tmp_path}/registry ;;\n'
        f'  *) echo "$*" >> {log} ;;\n'
        "esac\n"
    )
    (bin_dir / "uv").chmod(0o755)
    # Prints the first candidate it finds a record for, as the real script does (test_scripts.py).
    (scripts / "last-deployed.sh").write_text('echo "$3"\n')
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "GH_TOKEN": "t"}
    env |= {"BASE_SHA": "b" * 40, "HEAD_SHA": "h" * 40, "AUTHOR": "alice"}
    for head_ref in ("promote/dev-to-staging-0123", "feature/bigger-pool"):
        log.unlink(missing_ok=True)
        result = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", run],
            cwd=tmp_path,
            env=env | {"HEAD_REF": head_ref},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        (call,) = log.read_text().splitlines()
        if head_ref.startswith("promote/"):
            assert call.split() == [
                *["run", "cdao", "check-promotion", "--base", "b" * 40, "--head", "h" * 40, "--author", "alice"],
                *["--deployed", "dev", "c1-staging", "--deployed", "staging", "c1-prod", "--deployed", "prod", "c1-dr"],
            ]
        else:
            # Any other pull request may not touch what only a promotion moves (test_promotion_model.py::
            # test_a_pull_request_not_from_promote_*).
            assert call.split() == [
                *["run", "cdao", "check-promotion", "--non-promotion", "--base", "b" * 40, "--head", "h" * 40]
            ]


# --- images: promoted from the upstream stack's registry, by digest -----------------------------

# A stand-in for `docker buildx imagetools`: images live in $REGISTRY_DIR/<ref with / and : as _>,
# each file the raw manifest bytes `inspect --raw` prints (docker/buildx util/imagetools/printer.go:
# `--raw` writes the bytes unchanged, "avoid newline to keep digest", so their sha256 is the digest);
# without it, a summary; `create --tag T S` copies S's manifest as it is; `inspect` of a missing image fails.
_FAKE_DOCKER = r"""#!/usr/bin/env bash
set -eu
[ "$1 $2" = "buildx imagetools" ] || { echo "unexpected docker $*" >&2; exit 64; }
shift 2
file() { printf '%s/%s' "$REGISTRY_DIR" "$(printf '%s' "$1" | tr '/:' '__')"; }
case "$1" in
  inspect)
    if [ "$2" = --raw ]; then
      [ -f "$(file "$3")" ] || { echo "ERROR: $3: not found" >&2; exit 1; }
      cat "$(file "$3")"
    else
      [ -f "$(file "$2")" ] || { echo "ERROR: $2: not found" >&2; exit 1; }
      echo "Name: $2"
    fi ;;
  create)
    [ "$2" = --tag ] || exit 64
    [ -f "$(file "$4")" ] || { echo "ERROR: $4: not found" >&2; exit 1; }
    echo "$3" >> "$REGISTRY_DIR/created"
    cp "$(file "$4")" "$(file "$3")" ;;
  *) exit 64 ;;
esac
"""


def _copy_images(tmp_path: Path, deploy: dict[str, Any], stack: str, images: dict[str, str]):
    job = deploy["jobs"][f"image-{stack}"]
    (step,) = [s for s in job["steps"] if "imagetools create" in str(s.get("run", ""))]
    registry = tmp_path / "registry"
    registry.mkdir()
    for ref, manifest in images.items():
        (registry / ref.replace("/", "_").replace(":", "_")).write_text(manifest)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(_FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    summary = tmp_path / "summary"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "REGISTRY_DIR": str(registry),
        "GITHUB_STEP_SUMMARY": str(summary),
        **{k: str(v) for k, v in job.get("env", {}).items()},
        "REVISION": "a" * 40,
        "SOURCE": "src.example",
        "TARGET": "dst.example",
    }
    # The shell GitHub runs a `shell: bash` step with (workflow syntax, jobs.<job_id>.steps[*].shell:
    # `bash --noprofile --norc -eo pipefail {0}`).
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    created = (registry / "created").read_text().split() if (registry / "created").exists() else []
    return result, created


def test_each_stack_copies_its_images_from_the_stack_it_is_promoted_from(deploy):
    """prod's images come from staging's registry (what staging ran), not dev's, whose lifecycle
    rule expires old images (infra/components/compute.py): the upstream is the stack file's
    `cdao-stack:promotesFrom` (cdao_stacks), the registry variable that stack's."""
    registry = cdao_stacks.load()
    for stack in ("staging", "prod"):
        upstream = registry.get(stack).promotes_from
        job = deploy["jobs"][f"image-{stack}"]
        assert job["env"] == {"STACK": stack, "UPSTREAM": upstream}
        (step,) = [s for s in job["steps"] if "imagetools create" in str(s.get("run", ""))]
        assert step["env"]["SOURCE"] == f"${{{{ vars.ECR_REGISTRY_{upstream.upper()} }}}}"
        assert step["env"]["TARGET"] == f"${{{{ vars.ECR_REGISTRY_{stack.upper()} }}}}"
        (login,) = steps_using(job, "aws-actions/amazon-ecr-login")
        accounts = f"${{{{ vars.ECR_ACCOUNT_ID_{upstream.upper()} }}}},${{{{ vars.ECR_ACCOUNT_ID_{stack.upper()} }}}}"
        assert login["with"]["registries"] == accounts


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_an_image_is_copied_from_the_upstream_and_its_digest_checked(tmp_path, deploy, stack):
    upstream = {"staging": "dev", "prod": "staging"}[stack]
    sha = "a" * 40
    images = {f"src.example/cdao-{upstream}-{p}:{sha}": f'{{"index":"{p}"}}' for p in IMAGE_PURPOSES}
    result, created = _copy_images(tmp_path, deploy, stack, images)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(created) == sorted(f"dst.example/cdao-{stack}-{p}:{sha}" for p in IMAGE_PURPOSES)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_an_existing_tag_with_another_digest_fails_instead_of_being_skipped(tmp_path, deploy, stack):
    """Tags are immutable: a tag pushed by anyone else first (a planted image) is never run."""
    upstream = {"staging": "dev", "prod": "staging"}[stack]
    sha = "a" * 40
    images = {f"src.example/cdao-{upstream}-{p}:{sha}": f'{{"index":"{p}"}}' for p in IMAGE_PURPOSES}
    images[f"dst.example/cdao-{stack}-connector:{sha}"] = '{"index":"planted"}'
    result, created = _copy_images(tmp_path, deploy, stack, images)
    assert result.returncode != 0
    assert f"dst.example/cdao-{stack}-connector:{sha} exists with digest sha256:" in result.stdout
    assert created == []


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_an_existing_tag_with_the_same_digest_is_kept(tmp_path, deploy, stack):
    upstream = {"staging": "dev", "prod": "staging"}[stack]
    sha = "a" * 40
    images = {f"src.example/cdao-{upstream}-{p}:{sha}": f'{{"index":"{p}"}}' for p in IMAGE_PURPOSES}
    images[f"dst.example/cdao-{stack}-connector:{sha}"] = '{"index":"connector"}'
    result, created = _copy_images(tmp_path, deploy, stack, images)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(created) == sorted(f"dst.example/cdao-{stack}-{p}:{sha}" for p in IMAGE_PURPOSES if p != "connector")


def test_a_revision_the_upstream_never_ran_fails_with_its_name(tmp_path, deploy):
    result, created = _copy_images(tmp_path, deploy, "prod", {})
    assert result.returncode != 0
    assert f"src.example/cdao-staging-connector:{'a' * 40}" in result.stdout
    assert "staging never ran" in result.stdout
    assert created == []


# --- drift: the issue's advice ------------------------------------------------------------------


def test_a_drift_issue_tells_how_to_reapply_the_stack_at_its_pin(tmp_path):
    """Re-running a deploy run does nothing here: its resolve sees its own commit already deployed
    (cdao stack-revision: deploy=false when nothing changed). Only Deploy dispatched with
    `stack: <stack>` forces the stack (deploy.yml's workflow_dispatch input)."""
    (step,) = [s for s in load("drift.yml")["jobs"]["report"]["steps"] if "gh issue" in str(s.get("run", ""))]
    drift = tmp_path / "drift" / "drift-prod"
    drift.mkdir(parents=True)
    (drift / "status").write_text("drift\n")
    (drift / "output.txt").write_text("~ aws:s3/bucketV2:BucketV2 changed\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # gh stand-in: `issue list` finds no open issue; `issue create` keeps the body it was given.
    (bin_dir / "gh").write_text(
        '#!/usr/bin/env bash\ncase "$1 $2" in\n'
        '  "issue create") while [ $# -gt 0 ]; do [ "$1" = --body-file ] && cp "$2" "$OUT/body"; shift; done;'
        " echo https://example.invalid/1 ;;\n"
        "  *) ;;\nesac\n"
    )
    (bin_dir / "gh").chmod(0o755)
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "RUNNER_TEMP": str(tmp_path),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
            "RUN_URL": "https://example.invalid/run",
            "OUT": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body = (tmp_path / "body").read_text()
    assert "**Actions -> Deploy -> Run workflow** with `stack: prod`" in body
    assert "re-run" not in body.lower()
    dispatch = load("deploy.yml")["on"]["workflow_dispatch"]["inputs"]["stack"]
    assert "prod" in dispatch["options"]


# --- resolve: the upstream check is applied (executed with stand-ins) ----------------------------


def _resolve_with_records(tmp_path: Path, records: dict[str, list[str]]) -> tuple[int, dict[str, str], str]:
    """deploy.yml's resolve step, run at this repository's HEAD: `uv run` runs this environment's
    cdao; `bash .github/scripts/last-deployed.sh` is replaced by a stand-in answering from `records`
    (stack -> commits with a trusted successful record): the script itself is tested on GitHub's REST
    shapes in test_scripts.py. Returns (exit code, outputs, stderr+stdout)."""
    script = step_script("deploy.yml", "resolve", "resolve")
    assert script.count("bash .github/scripts/last-deployed.sh") >= 2
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    data = tmp_path / "records.json"
    data.write_text(json.dumps(records))
    stand_in = tmp_path / "last-deployed.py"
    stand_in.write_text(
        "import json, sys\n"
        f"records = json.load(open({str(data)!r}))\n"
        "stack, *rest = sys.argv[1:]\n"
        "ran = records.get(stack, [])\n"
        # Like the script: the commit, or no output at all.
        "found = (ran[-1:] if not rest else [c for c in rest[1:] if c in ran][:1])\n"
        "assert not rest or rest[0] == '--at', rest\n"
        "sys.stdout.write(''.join(f'{c}\\n' for c in found))\n"
    )
    script = script.replace("bash .github/scripts/last-deployed.sh", f"{sys.executable} {stand_in}")
    # `uv run cdao ARGS`: this environment's cdao.
    uv = f'#!/usr/bin/env bash\n[ "$1" = run ] && shift\nshift\nexec {sys.executable} -m cdao_cli "$@"\n'
    (bin_dir / "uv").write_text(uv)
    (bin_dir / "uv").chmod(0o755)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    output = tmp_path / "output"
    output.write_text("")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=ROOT,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
            "GITHUB_SHA": head.stdout.strip(),
            "RUNNER_TEMP": str(tmp_path),
            "FORCE_STACK": "",
            "CONFIGURED_DEV": "arn:dev",
            "CONFIGURED_STAGING": "arn:staging",
            "CONFIGURED_PROD": "arn:prod",
            "BACKEND": "s3://b",
            "REGION": "us-east-1",
            "RUNNER": "cdao-deploy",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return result.returncode, outputs, result.stdout + result.stderr


def _pin(stack: str) -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    return stack_revision.revision_at(ROOT, stack, head.stdout.strip())


def test_resolve_refuses_pins_the_upstream_never_ran(tmp_path):
    """Replacing the upstream check in deploy.yml (say `upstream=()`) makes this fail: staging and prod
    would be deployed at pins no upstream record vouches for."""
    code, outputs, log = _resolve_with_records(tmp_path, {})
    assert code == 1
    assert outputs["dev-deploy"] == "true"
    assert outputs["staging-deploy"] == outputs["prod-deploy"] == "false"
    # dev's file held staging's revision with other chart versions: the refusal names those keys.
    assert "dev never ran" in log and "staging never ran it" in log


def test_resolve_deploys_pins_the_upstream_ran(tmp_path):
    """With a record of staging at one of the commits whose staging file holds prod's pins (the
    candidates cdao stack-revision names), prod deploys. The stand-in answers that same record as
    staging's own last deployment: staging ran its pin with the stack file a deploy now gives it (its
    own at the pin, unchanged since), so it is left alone and its upstream is not asked."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    upstream, staging_at = stack_revision.upstream_candidates(ROOT, "prod", head.stdout.strip())
    assert upstream == "staging" and staging_at
    code, outputs, log = _resolve_with_records(tmp_path, {"staging": staging_at[:1]})
    assert code == 0, log
    assert outputs["prod-revision"] == _pin("prod")
    assert outputs["prod-deploy"] == "true"
    assert outputs["staging-deploy"] == "false"
    assert outputs["staging-reason"] == f"staging already runs {_pin('staging')} with this stack file"
    # prod's jobs get the file its pin's code can read (cdao stack-revision --stack-file).
    deployed = stack_revision.deployed_stack_file(ROOT, "prod", head.stdout.strip())
    assert base64.b64decode(outputs["prod-stack-file"]).decode() == deployed

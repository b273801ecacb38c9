"""The workflows that spell out one job or choice per stack agree with the stack registry
(cdao_stacks: the `cdao-stack:` keys of each environments/Pulumi.<name>.yaml).

GitHub Actions cannot compute `workflow_dispatch` choices or job ids at run time (a choice input's
`options` and a job id are static YAML: https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax,
`on.workflow_dispatch.inputs.<input_id>.options`, `jobs.<job_id>`), so these are the places a new stack
in the promotion chain needs a hand edit; this test names each one that is missing. A stack outside the
chain (a sandbox) is planned and checked by `cdao` alone and deployed by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import cdao_stacks
from cdao_cli import stack_revision

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
CHAIN = cdao_stacks.load().promotion_order


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _dispatch_options(name: str, input_id: str) -> list[str]:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as the string "on".
    on = _workflow(name)[True]
    return on["workflow_dispatch"]["inputs"][input_id]["options"]


def test_the_registry_has_a_promotion_chain():
    assert len(CHAIN) >= 2, "no two stacks are linked by cdao-stack:promotesFrom in environments/"


def test_deploy_offers_and_runs_every_stack_of_the_chain():
    # `all` first: every stack that is behind, nothing forced (docs/github-setup.md).
    assert _dispatch_options("deploy.yml", "stack") == ["all", *CHAIN], (
        "deploy.yml: on.workflow_dispatch.inputs.stack.options must list `all` and the promotion chain "
        f"{list(CHAIN)} (environments/*: cdao-stack:promotesFrom)"
    )
    jobs = set(_workflow("deploy.yml")["jobs"])
    missing = sorted(f"{job}-{stack}" for stack in CHAIN for job in ("image", "plan", "apply", "register"))
    missing = [job for job in missing if job not in jobs]
    assert not missing, f"deploy.yml: no job(s) {missing} for the registry's promotion chain {list(CHAIN)}"


def test_deploy_resolves_every_stack_of_the_chain_with_its_configuration_and_outputs():
    """resolve reads the stacks from the registry, but a stack whose `CONFIGURED_<STACK>` it is not
    given is reported "not configured" and never deployed, and a job reads only outputs declared by
    name (docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax, `jobs.<job_id>.outputs`)."""
    resolve = _workflow("deploy.yml")["jobs"]["resolve"]
    step = next(s for s in resolve["steps"] if s.get("id") == "resolve")
    problems = []
    for stack in CHAIN:
        variable = f"CONFIGURED_{stack.upper().replace('-', '_')}"
        if step["env"].get(variable) != f"${{{{ vars.AWS_PREVIEW_ROLE_ARN_{stack.upper()} }}}}":
            problems.append(f"jobs.resolve.steps[resolve].env.{variable}")
        for output in ("revision", "deploy", "stack-file"):
            if f"{stack}-{output}" not in resolve["outputs"]:
                problems.append(f"jobs.resolve.outputs.{stack}-{output}")
        if f"reconcile-{stack}" not in _workflow("deploy.yml")["jobs"]:
            problems.append(f"jobs.reconcile-{stack}")
    assert not problems, f"deploy.yml: missing for the registry's promotion chain {list(CHAIN)}: {problems}"


def test_drift_takes_the_stacks_from_the_registry_and_outputs_each():
    revisions = _workflow("drift.yml")["jobs"]["revisions"]
    step = next(s for s in revisions["steps"] if s.get("id") == "revisions")
    assert "uv run cdao stacks" in step["run"], "drift.yml: the revisions step must read the stack registry"
    assert not [stack for stack in CHAIN if f" {stack} " in step["run"].replace("\n", " ")], step["run"]
    missing = [f"{stack}{suffix}" for stack in CHAIN for suffix in ("", "-stack-file")]
    missing = [output for output in missing if output not in revisions["outputs"]]
    assert not missing, f"drift.yml: jobs.revisions.outputs lacks {missing}"


def test_promote_offers_each_step_of_the_chain():
    assert _dispatch_options("promote.yml", "from") == list(CHAIN[:-1])
    assert _dispatch_options("promote.yml", "to") == list(CHAIN[1:])


@pytest.mark.parametrize("workflow", ["drift.yml"])
def test_drift_checks_every_stack_of_the_chain(workflow):
    matrix = [entry["stack"] for entry in _workflow(workflow)["jobs"]["refresh"]["strategy"]["matrix"]["include"]]
    assert matrix == list(CHAIN), f"{workflow}: jobs.refresh.strategy.matrix.include must list {list(CHAIN)}"


def test_every_stack_of_the_chain_has_its_github_environments():
    # deploy.yml's apply-<stack> and register-<stack> jobs run in these environments
    # (docs/github-setup.md); configure_environments.py creates them from this file.
    environments = yaml.safe_load((WORKFLOWS.parent / "environments.yml").read_text())["environments"]
    missing = [name for stack in CHAIN for name in (stack, f"{stack}-workflows") if name not in environments]
    assert not missing, f".github/environments.yml: no environment(s) {missing} for the promotion chain {list(CHAIN)}"


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_CONFIG_NOSYSTEM": "1"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", "PATH": os.environ["PATH"]}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, env=env).stdout


def test_deployments_recorded_before_the_registry_still_vouch_for_what_they_ran(tmp_path):
    """`cdao stack-revision` reads each stack file at the commits a stack was deployed at; those from
    before the `cdao-stack:` keys existed take the stack's entry from the registry at the run's commit."""
    repo = tmp_path / "repo"
    shutil.copytree(cdao_stacks.ENVIRONMENTS_DIR, repo / "environments")
    _git(tmp_path, "init", "--quiet", "--initial-branch=main", str(repo))
    for path in (repo / "environments").glob("Pulumi.*.yaml"):
        lines = path.read_text().splitlines()
        path.write_text("\n".join(line for line in lines if not line.startswith("  cdao-stack:")) + "\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "before the registry")
    before = _git(repo, "rev-parse", "HEAD").strip()
    shutil.rmtree(repo / "environments")
    shutil.copytree(cdao_stacks.ENVIRONMENTS_DIR, repo / "environments")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "the registry")

    assert stack_revision.revision_at(repo, "dev", before) == before  # dev follows main
    ran = stack_revision.raw_pins_at(repo, "dev", before)
    assert ran.revision == before
    stack_revision.check_upstream_ran(repo, "staging", "dev", ran, [before])

"""The promotion invariant, on the real pieces: for a sequence of merges, promotions and deploy runs
(some cancelled, failed or re-run late), which commits each stack runs; prod only ever runs what
staging ran, staging only what dev ran.

The model executes what the workflows execute: `cdao stack-revision` (deploy.yml's `resolve` job and the
guard of every apply and registration) on a real git history, and `cdao promote` with the commit
promote.yml reads from GitHub's deployment record. What GitHub itself does is modelled from its
documentation: a job referencing an environment creates a deployment for the run's commit whose
status is the job's result (docs.github.com/actions/concepts/workflows-and-actions/deployment-environments);
a job queued in a concurrency group cancels the pending one, whichever run either belongs to
(docs.github.com/actions/how-tos/write-workflows/choose-when-workflows-run/control-workflow-concurrency);
a re-run uses the original run's commit (docs.github.com/actions/managing-workflow-runs/re-running-workflows-and-jobs).
The first tests pin the wiring in the workflow files that makes the model the workflows' behaviour.
"""

from __future__ import annotations

import copy
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML

import cdao_stacks
from cdao_cli import check_promotion, pins, stack_revision
from cdao_cli.main import main
from cdao_cli.plan.runner import read_stack_file
from infra.config import ConfigError, parse_stack_config

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"
STACKS = cdao_stacks.load().promotion_order  # the registry's chain, not a list of the tests' own


def load(name: str) -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load((WORKFLOWS / name).read_text())


# --- the wiring the model relies on ------------------------------------------------------------


def test_every_job_of_a_stack_runs_the_code_of_the_stack_revision():
    jobs = load("deploy.yml")["jobs"]
    for stack in STACKS:
        revision = f"${{{{ needs.resolve.outputs.{stack}-revision }}}}"
        for kind in ("plan", "apply", "register"):
            job = jobs[f"{kind}-{stack}"]
            checkouts = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")]
            pinned = [s for s in checkouts if s.get("with", {}).get("path") == "stack"]
            assert [s["with"]["ref"] for s in pinned] == [revision], (kind, stack)
            # The stack file resolve composed for the pin (cdao stack-revision --stack-file), never
            # this commit's own: the pin's config code refuses keys main added since.
            copy = next(s for s in job["steps"] if "STACK_FILE" in s.get("env", {}))
            assert copy["env"]["STACK_FILE"] == f"${{{{ needs.resolve.outputs.{stack}-stack-file }}}}"
            assert 'base64 --decode <<< "$STACK_FILE" > "stack/environments/Pulumi.${STACK}.yaml"' in copy["run"]
            assert not any("cp " in str(step.get("run", "")) for step in job["steps"]), (kind, stack)
            assert job["env"]["STACK"] == stack
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("pulumi/actions@") and "command" in step["with"]:
                    assert step["with"]["work-dir"] == "stack"
                    assert step["with"]["policyPacks"] == "stack/policies"
        steps = jobs[f"register-{stack}"]["steps"]
        register = next(s for s in steps if s.get("name") == "Register workflows/ at the revision")
        assert register["working-directory"] == "stack"
        assert register["env"]["REVISION"] == revision
        assert register["env"]["IMAGE"].endswith(f"/cdao-{stack}-tasks:{revision}")
        assert f"vars.ECR_REGISTRY_{stack.upper()}" in register["env"]["IMAGE"]
        image = "\n".join(str(s) for s in jobs[f"image-{stack}"]["steps"])
        assert revision in image


def test_resolve_hands_each_stack_the_file_cdao_stack_revision_composed():
    resolve = load("deploy.yml")["jobs"]["resolve"]
    run = next(s for s in resolve["steps"] if s.get("id") == "resolve")["run"]
    assert '--stack-file "${RUNNER_TEMP}/Pulumi.${stack}.yaml"' in run
    assert 'stack_file=$(base64 --wrap=0 "${RUNNER_TEMP}/Pulumi.${stack}.yaml")' in run
    assert 'echo "${stack}-stack-file=${stack_file}"' in run
    for stack in STACKS:
        assert resolve["outputs"][f"{stack}-stack-file"] == f"${{{{ steps.resolve.outputs.{stack}-stack-file }}}}"
    drift = load("drift.yml")["jobs"]
    revisions = next(s for s in drift["revisions"]["steps"] if s.get("id") == "revisions")["run"]
    assert "--stack-file" in revisions and "-stack-file=$(base64 --wrap=0" in revisions
    refresh = next(s for s in drift["refresh"]["steps"] if "STACK_FILE" in s.get("env", {}))
    assert refresh["env"]["STACK_FILE"] == "${{ needs.revisions.outputs[format('{0}-stack-file', matrix.stack)] }}"
    assert 'base64 --decode <<< "$STACK_FILE" > "stack/environments/Pulumi.${STACK}.yaml"' in refresh["run"]
    for stack in STACKS:
        assert drift["revisions"]["outputs"][f"{stack}-stack-file"] == (
            f"${{{{ steps.revisions.outputs.{stack}-stack-file }}}}"
        )


def test_registration_versions_workflows_by_the_revision_not_the_run_commit():
    script = (SCRIPTS / "register-workflows.sh").read_text()
    assert '--version "${REVISION}"' in script
    assert "GITHUB_SHA" not in script


def test_what_decides_a_deploy_is_the_script_the_model_runs():
    jobs = load("deploy.yml")["jobs"]
    resolve = next(s for s in jobs["resolve"]["steps"] if s.get("id") == "resolve")["run"]
    assert "uv run cdao stack-revision" in resolve
    assert ".github/scripts/last-deployed.sh" in resolve
    for stack in STACKS:
        assert jobs[f"apply-{stack}"]["environment"] == stack
        assert jobs[f"register-{stack}"]["environment"] == f"{stack}-workflows"
        for kind in ("apply", "register"):
            guard = next(s for s in jobs[f"{kind}-{stack}"]["steps"] if s.get("id") == "guard")
            assert "cdao stack-revision" in guard["run"] and "last-deployed.sh" in guard["run"]
            later = jobs[f"{kind}-{stack}"]["steps"][jobs[f"{kind}-{stack}"]["steps"].index(guard) + 1 :]
            assert all(s.get("if") == "steps.guard.outputs.deploy == 'true'" for s in later), (kind, stack)
        # The registration's success is the record: it runs only after an apply that ran, and a
        # superseded registration fails rather than record an older commit.
        assert f"needs.apply-{stack}.outputs.applied == 'true'" in jobs[f"register-{stack}"]["if"]
        assert jobs[f"apply-{stack}"]["outputs"]["applied"] == "${{ steps.guard.outputs.deploy }}"
        register_guard = next(s for s in jobs[f"register-{stack}"]["steps"] if s.get("id") == "guard")["run"]
        assert "^reason=superseded" in register_guard and "exit 1" in register_guard
    # The record read is the registration environment's: the last job of a stack's deploy.
    assert '"${stack}-workflows"' in (SCRIPTS / "last-deployed.sh").read_text()
    promote_steps = load("promote.yml")["jobs"]["promote"]["steps"]
    deployed = next(s for s in promote_steps if s.get("id") == "deployed")
    assert 'last-deployed.sh "$FROM"' in deployed["run"]
    run = next(s for s in promote_steps if s.get("id") == "promote")
    assert '--source-deployed "$DEPLOYED"' in run["run"]
    assert run["env"]["DEPLOYED"] == "${{ steps.deployed.outputs.sha }}"


def test_the_stacks_deploy_independently_so_one_cannot_strand_another():
    jobs = load("deploy.yml")["jobs"]
    for stack in STACKS:
        others = {f"{k}-{o}" for k in ("image", "plan", "apply", "register") for o in STACKS if o != stack}
        for kind in ("image", "plan", "apply", "register"):
            needs = jobs[f"{kind}-{stack}"].get("needs", [])
            assert not set(needs) & others, (kind, stack)
            assert "!cancelled()" in jobs[f"{kind}-{stack}"]["if"]


# --- the model ---------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Run:
    """One deploy run: the commit it is for, and per stack whether its apply fails (a failed
    `pulumi up`) or its registration fails."""

    commit: str
    fail: set[str] = field(default_factory=set)
    fail_registration: set[str] = field(default_factory=set)


@dataclass
class Platform:
    """A repository with main, GitHub's deployment record per stack, and what each stack runs."""

    repo: Path
    deployed: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(STACKS))
    running: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(STACKS))
    base: str = ""
    # GitHub's successful `<stack>-workflows` deployments, oldest first (what last-deployed.sh lists).
    records: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in STACKS})
    refused: list[tuple[str, str]] = field(default_factory=list)
    # Deploy runs the guards dispatched (workflow_dispatch at main's tip), oldest first.
    dispatched: list[str] = field(default_factory=list)
    # Every (stack, revision) a stack ran after a complete deploy (apply and registration).
    ran: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in STACKS})
    # Per stack, the revisions whose infra/ was applied (even where the registration then failed).
    applied: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in STACKS})
    # The same for the code-bearing values of the stack file each apply ran (pins.code_values).
    ran_code: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {s: [] for s in STACKS})
    applied_code: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {s: [] for s in STACKS})

    @property
    def environments(self) -> Path:
        return self.repo / "environments"

    def head(self) -> str:
        return _git(self.repo, "rev-parse", "HEAD")

    def merge(self, name: str) -> str:
        """A reviewed code change merged to main (infra/, workflows/, platform/...)."""
        code = self.repo / "infra.txt"
        code.write_text(code.read_text() + f"{name}\n")
        _git(self.repo, "commit", "--quiet", "-am", f"merge {name}")
        return self.head()

    def promote(self, source: str, target: str) -> tuple[int, str]:
        """promote.yml: cdao promote with what the source last deployed, then its PR merged."""
        deployed = self.deployed[source]
        if deployed is None:
            return 2, f"{source} has no successful deployment"  # promote.yml stops before cdao promote
        code = main(
            ["promote", source, target, "--source-deployed", deployed, "--environments", str(self.environments)]
        )
        if code == 0 and _git(self.repo, "status", "--porcelain"):
            _git(self.repo, "commit", "--quiet", "-am", f"promote {source} -> {target}")
        return code, self.head()

    def _job(self, stack: str, run: Run, force: bool = False) -> Any:
        """The `Still needed?` guard of an apply or registration: main's tip is what the job's
        checkout (fetch-depth: 0) sees when it starts. A `reconcile` is a dispatched Deploy run."""
        guard = stack_revision.resolve(
            self.repo, stack, run.commit, self.deployed[stack], force=force, main=self.head()
        )
        if guard.reconcile:
            self.dispatched.append(self.head())
        return guard

    def lookup(self, stack: str, commit: str) -> list[str] | None:
        """What the resolve step passes as --upstream-deployed: the candidates `cdao stack-revision
        --upstream-candidates` names, given to `last-deployed.sh <upstream> --at`, which prints the
        first one (in the order given) with a successful record of the upstream (test_scripts.py runs
        the script itself on GitHub's REST shapes). None for a stack promoted from none."""
        upstream, candidates = stack_revision.upstream_candidates(self.repo, stack, commit)
        if upstream is None:
            return None
        return [c for c in candidates if c in self.records[upstream]][:1]

    def _resolve(self, stack: str, run: Run, force: bool) -> Any:
        """The resolve job: with the upstream's record the lookup finds (lookup())."""
        try:
            return stack_revision.resolve(
                self.repo,
                stack,
                run.commit,
                self.deployed[stack],
                force=force,
                upstream_deployed=self.lookup(stack, run.commit),
            )
        except stack_revision.RevisionError as error:
            self.refused.append((stack, str(error)))
            return None

    def deploy(self, run: Run, force: str | None = None, only: set[str] | None = None) -> None:
        """deploy.yml for one run, with every job of a stack in order: resolve, then the guarded
        apply and registration (each re-resolving against the record at that moment). `only`: the
        stacks whose jobs get to run now (the others' are still queued, or cancelled)."""
        decisions = {s: self._resolve(s, run, force == s) for s in STACKS}
        for stack in only or STACKS:
            if decisions[stack] is None or not decisions[stack].deploy:
                continue
            guard = self._job(stack, run, force == stack)
            if not guard.deploy:
                continue
            if stack in run.fail:
                continue  # pulumi up failed: no registration, no deployment record
            self.applied[stack].append(guard.revision)
            # What the apply runs: the composed file resolve handed it (its guard compares the pin's).
            code = pins.code_values(yaml.safe_load(stack_revision.deployed_stack_file(self.repo, stack, run.commit)))
            self.applied_code[stack].append(code)
            if stack in run.fail_registration:
                continue
            guard = self._job(stack, run, force == stack)
            if not guard.deploy:
                continue
            self.running[stack] = guard.revision
            self.ran[stack].append(guard.revision)
            self.ran_code[stack].append(code)
            self.deployed[stack] = run.commit
            self.records[stack].append(run.commit)

    def pin(self, stack: str) -> str:
        raw, _ = read_stack_file(stack, self.environments)
        return parse_stack_config(stack, raw)[0].gitops.revision


@pytest.fixture(scope="module")
def first_deploys(tmp_path_factory: pytest.TempPathFactory, module_git_identity: None) -> Platform:
    """main with the repository's real stack files, dev deployed, and staging and prod promoted to
    what dev first ran (`base`). Built once per module (a dozen `cdao stack-revision` resolutions:
    seconds); the tests mutate only their copy (platform)."""
    repo = tmp_path_factory.mktemp("first-deploys") / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "infra.txt").write_text("base\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    shutil.copytree(ROOT / "environments", repo / "environments")
    for stack in ("staging", "prod"):
        path = repo / "environments" / f"Pulumi.{stack}.yaml"
        text = path.read_text()
        current = parse_stack_config(stack, read_stack_file(stack, ROOT / "environments")[0])[0].gitops.revision
        path.write_text(text.replace(f"revision: {current}", f"revision: {base}"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "stack files")
    world = Platform(repo)
    # The first deploys (docs/github-setup.md, "First deploy"): dev first; staging and prod refuse
    # the pins committed before any stack ran, until promotions pin what dev and staging ran.
    world.deploy(Run(world.head()))
    assert {stack for stack, _ in world.refused} == {"staging", "prod"}
    world.refused.clear()
    world.base = world.head()
    assert world.promote("dev", "staging")[0] == 0
    world.deploy(Run(world.head()))
    assert world.promote("staging", "prod")[0] == 0
    world.deploy(Run(world.head()))
    assert world.running["staging"] == world.running["prod"] == world.base, world.refused
    return world


@pytest.fixture
def platform(first_deploys: Platform, tmp_path: Path, git_identity: None) -> Platform:
    """A copy of first_deploys for one test: its own repository (git keeps no absolute path in a
    plain repository's .git, so a copied tree is the same repository) and its own records."""
    world = copy.deepcopy(first_deploys)
    world.repo = tmp_path / "repo"
    shutil.copytree(first_deploys.repo, world.repo, symlinks=True)
    return world


def assert_invariant(world: Platform) -> None:
    """Every revision staging or prod applied was run completely (applied and registered) by the
    stack before it, and so were the code-bearing values of the stack file it applied (the promoted
    keys and the keys that are code, cdao_cli/pins.py code_values)."""
    for earlier, later in (("dev", "staging"), ("staging", "prod")):
        for revision in world.applied[later]:
            assert revision in world.ran[earlier], (later, revision, world.ran[earlier])
        for values in world.applied_code[later]:
            assert values in world.ran_code[earlier], (later, values, world.ran_code[earlier])


def test_dev_follows_main_and_staging_and_prod_run_their_pins(platform):
    base = platform.base
    assert platform.running == {"dev": platform.head(), "staging": base, "prod": base}
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.running == {"dev": a, "staging": base, "prod": base}  # a merge reaches dev only


def test_a_pin_edited_by_hand_to_a_commit_staging_never_ran_is_not_deployed(platform):
    a = platform.merge("A")
    platform.deploy(Run(a))  # dev runs A; staging still runs the base
    prod = platform.environments / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace(f"revision: {platform.base}", f"revision: {a}"))
    _git(platform.repo, "commit", "--quiet", "-am", "prod pin edited by hand")
    platform.deploy(Run(platform.head()))
    assert platform.running["prod"] == platform.base
    assert a not in platform.applied["prod"]
    assert any(stack == "prod" and "staging never ran it" in message for stack, message in platform.refused)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_chart_version_edited_by_hand_is_not_deployed(platform, stack):
    """The chart pins are promoted with the revision (cdao_cli/pins.py, PROMOTED_KEYS): a stack may run
    only the revision *and* chart versions its upstream stack ran together in one deployment."""
    path = platform.environments / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    assert text.count("      flyte-core: v1.16.8\n") == 1
    path.write_text(text.replace("      flyte-core: v1.16.8\n", "      flyte-core: v1.16.9\n"))
    _git(platform.repo, "commit", "--quiet", "-am", f"{stack}: flyte-core bumped by hand")
    before = platform.deployed[stack]
    platform.refused.clear()
    platform.deploy(Run(platform.head()))
    assert platform.deployed[stack] == before
    upstream = cdao_stacks.load().get(stack).promotes_from
    refusal = [message for name, message in platform.refused if name == stack]
    assert refusal and "chartVersions.flyte-core = v1.16.9" in refusal[0], refusal
    assert f"{upstream} never ran" in refusal[0]


def test_promotion_writes_only_the_promoted_keys(platform):
    """Everything else in a stack file is per stack (cdao_cli/pins.py): a promotion leaves it as it is."""
    a = platform.merge("A")
    platform.deploy(Run(a))
    yaml_ = YAML(typ="safe")
    before = yaml_.load((platform.environments / "Pulumi.staging.yaml").read_text())["config"]
    dev = platform.environments / "Pulumi.dev.yaml"
    dev.write_text(dev.read_text().replace("      flyte-core: v1.16.8\n", "      flyte-core: v1.16.9\n"))
    _git(platform.repo, "commit", "--quiet", "-am", "dev: flyte-core v1.16.9")
    charts = platform.head()
    platform.deploy(Run(charts))
    assert platform.promote("dev", "staging")[0] == 0
    after = yaml_.load((platform.environments / "Pulumi.staging.yaml").read_text())["config"]

    def flat(config: dict[str, Any]) -> dict[str, Any]:
        return {
            f"{key}.{sub}": value
            for key, body in config.items()
            if isinstance(body, dict)
            for sub, value in body.items()
        } | {key: body for key, body in config.items() if not isinstance(body, dict)}

    changed = {key for key in flat(before).keys() | flat(after).keys() if flat(before).get(key) != flat(after).get(key)}
    assert changed == set(pins.PROMOTED_KEYS)
    platform.deploy(Run(platform.head()))
    assert platform.running["staging"] == charts
    assert not [m for name, m in platform.refused if name == "staging"]


def test_a_stack_file_read_at_a_branch_is_read_again_when_the_branch_moves(platform):
    """stack_revision keeps what it read at a commit SHA (immutable); a branch name is no commit: each
    read follows the branch to its current tip."""
    before = stack_revision.raw_pins_at(platform.repo, "prod", "main")
    prod = platform.environments / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace("      flyte-core: v1.16.8\n", "      flyte-core: v1.16.9\n"))
    _git(platform.repo, "commit", "--quiet", "-am", "prod: flyte-core bumped")
    assert before.chart_versions["flyte-core"] == "v1.16.8"
    assert stack_revision.raw_pins_at(platform.repo, "prod", "main").chart_versions["flyte-core"] == "v1.16.9"


def test_a_branch_in_staging_or_prod_is_refused(platform):
    raw, _ = read_stack_file("prod", platform.environments)
    raw["cdao:gitops"] = {**raw["cdao:gitops"], "revision": "main"}
    with pytest.raises(ConfigError) as error:
        parse_stack_config("prod", raw)
    assert error.value.keys == ["cdao:gitops.revision"]
    assert "full 40-digit commit SHA" in str(error.value)
    raw["cdao:gitops"]["revision"] = "main"
    dev = {k: v for k, v in raw.items() if not k.startswith("cdao-stack:")} | {"cdao-stack:profile": "dev"}
    parse_stack_config("dev", {**dev, "cdao:gitops": raw["cdao:gitops"]})  # dev may follow main


def test_the_repository_pins_staging_and_prod_to_a_commit_of_its_history():
    for stack in ("staging", "prod"):
        raw, _ = read_stack_file(stack, ROOT / "environments")
        revision = parse_stack_config(stack, raw)[0].gitops.revision
        assert _git(ROOT, "merge-base", "--is-ancestor", revision, "HEAD") == ""


def test_an_infra_change_merged_after_a_promotion_does_not_reach_prod(platform):
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.running["staging"] == a
    b = platform.merge("B: an infra change")
    platform.deploy(Run(b))
    assert platform.promote("staging", "prod")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.running["prod"] == a  # not B, which staging never ran
    assert b not in platform.applied["prod"]
    assert_invariant(platform)


def test_a_cancelled_promotion_run_is_done_by_the_next_run(platform):
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    promotion_run = Run(platform.head())
    c = platform.merge("C")
    # Three merges inside one image build: the promotion run's pending jobs are cancelled by the
    # newer run's (one pending job per group); the newer run only pushed C.
    del promotion_run
    platform.deploy(Run(c))
    assert platform.running["staging"] == a
    assert_invariant(platform)


def test_a_failed_staging_apply_cannot_be_promoted_and_is_redeployed_by_dispatch(platform):
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head(), fail={"staging"}))
    assert platform.running["staging"] != a
    code, _ = platform.promote("staging", "prod")
    assert code == 2  # staging's file pins A, which staging never deployed
    assert a not in platform.applied["prod"]
    platform.deploy(Run(platform.head()), force="staging")  # "Run workflow", stack staging
    assert platform.running["staging"] == a
    assert platform.promote("staging", "prod")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.running["prod"] == a
    assert_invariant(platform)


def test_a_failed_registration_leaves_the_stack_unpromotable_until_it_succeeds(platform):
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head(), fail_registration={"staging"}))
    assert platform.applied["staging"][-1] == a and platform.running["staging"] != a
    assert platform.promote("staging", "prod")[0] == 2
    platform.deploy(Run(platform.merge("D")))  # any later run reconciles staging
    assert platform.running["staging"] == a
    assert_invariant(platform)


def test_a_late_rerun_of_an_old_run_does_not_roll_a_stack_back(platform):
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    old = Run(platform.head(), fail={"staging"})
    platform.deploy(old)
    b = platform.merge("B")
    platform.deploy(Run(b))
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.running["staging"] == b
    platform.deploy(Run(old.commit))  # "Re-run failed jobs" of the old run, weeks later
    assert platform.running["staging"] == b
    assert platform.running["dev"] != old.commit


def test_two_promotions_racing_pin_only_what_the_source_ran(platform):
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head()))
    # staging -> prod is computed while a dev -> staging promotion of B is merged and deployed.
    b = platform.merge("B")
    platform.deploy(Run(b))
    staging_ran = platform.deployed["staging"]
    assert platform.promote("dev", "staging")[0] == 0
    promotion_b = platform.head()
    # prod's promotion reads the record as it was before B's deploy finished.
    platform.deployed["staging"], record = staging_ran, platform.deployed["staging"]
    assert platform.promote("staging", "prod")[0] == 2  # staging's file pins B, which it has not deployed
    platform.deployed["staging"] = record
    platform.deploy(Run(promotion_b))
    assert platform.promote("staging", "prod")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.running["prod"] == b
    assert_invariant(platform)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences_keep_the_invariant(platform, seed):
    rng = random.Random(seed)  # noqa: S311 - a reproducible event sequence, not a secret
    pending: list[Run] = []
    for step in range(14):
        event = rng.choice(["merge", "promote-staging", "promote-prod", "deploy", "cancel", "rerun"])
        if event == "merge":
            pending.append(Run(platform.merge(f"{seed}-{step}")))
        elif event.startswith("promote"):
            source, target = ("dev", "staging") if event.endswith("staging") else ("staging", "prod")
            if platform.promote(source, target)[0] == 0:
                pending.append(Run(platform.head()))
        elif event == "cancel" and pending:
            pending.pop(0)  # a newer run's pending job cancelled this one
        elif pending:
            run = pending.pop(0)
            run.fail = {s for s in STACKS if rng.random() < 0.2}
            run.fail_registration = {s for s in STACKS if rng.random() < 0.1}
            platform.deploy(run)
            if event == "rerun":
                platform.deploy(Run(run.commit))
        assert_invariant(platform)
    # Whatever was lost on the way, the next run brings every stack to its pin.
    platform.deploy(Run(platform.merge("final")))
    assert platform.running["dev"] == platform.head()
    assert platform.running["staging"] == platform.pin("staging")
    assert platform.running["prod"] == platform.pin("prod")
    assert_invariant(platform)


def test_a_per_stack_edit_on_main_reaches_a_pinned_stack_with_the_first_pin_that_contains_it(platform):
    """prod runs its own stack file as of its pin (cdao stack-revision's deployed_stack_file): the pin's
    config code parses it, so an edit on main that the pin may not know waits for a promotion. The
    edit is not deployed on its own (nothing prod runs changed), and prod gets it, with the code
    staging ran, once staging->prod pins a commit that contains it."""
    prod = platform.environments / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace("maxSize: 12", "maxSize: 13"))
    _git(platform.repo, "commit", "--quiet", "-am", "prod: bigger cpu pool")
    edit = platform.head()
    decision = stack_revision.resolve(platform.repo, "prod", edit, platform.deployed["prod"])
    assert not decision.deploy, decision.reason
    assert "maxSize: 12" in stack_revision.deployed_stack_file(platform.repo, "prod", edit)

    platform.deploy(Run(edit))
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.promote("staging", "prod")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.running["prod"] == edit
    deployed = stack_revision.deployed_stack_file(platform.repo, "prod", platform.head())
    assert "maxSize: 13" in deployed
    # The pin's own text, comments included, but for the promoted keys.
    assert "\n# prod: every node pool, a NAT gateway per AZ" in deployed


def test_a_secret_rotated_on_main_redeploys_the_pinned_stack_and_names_the_stack_file(platform):
    """The stack's secrets (Pulumi's encryptedkey and `secure:` values) follow its key, not its code: a
    rotation on main reaches prod at its current pin, and the run summary says why, never `X -> X`."""
    prod = platform.environments / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text() + "encryptedkey: AQICAHh0ZXN0\n")
    ciphertext = "config:\n  cdao:codeweaveExternalId:\n    secure: v1:abc\n"
    prod.write_text(prod.read_text().replace("config:\n", ciphertext, 1))
    _git(platform.repo, "commit", "--quiet", "-am", "prod: secrets provider key and external ID")
    decision = stack_revision.resolve(platform.repo, "prod", platform.head(), platform.deployed["prod"])
    assert decision.deploy
    assert f"{platform.base} -> {platform.base}" not in decision.reason
    assert decision.reason == (
        f"prod: the stack file it runs (environments/Pulumi.prod.yaml) changed, revision {platform.base} unchanged"
    )
    deployed = yaml.safe_load(stack_revision.deployed_stack_file(platform.repo, "prod", platform.head()))
    assert deployed["encryptedkey"] == "AQICAHh0ZXN0"
    assert deployed["config"]["cdao:codeweaveExternalId"] == {"secure": "v1:abc"}
    assert deployed["config"]["cdao:gitops"]["revision"] == platform.base


def test_a_secure_value_on_a_key_not_declared_secret_is_refused_naming_key_and_file(platform, capsys):
    """Only declared secrets (infra/config.py SECRET_KEYS) follow the stack's key from main: a `secure:`
    value on any other key (a provider setting, a plain `cdao:` key) would otherwise reach the pinned
    stack at its next deploy with no promotion. Refused, exit 2, naming the key and the file, whether
    main's file or the pin's holds it. One platform for every case (its set-up is the slow part)."""
    prod = platform.environments / "Pulumi.prod.yaml"
    original = prod.read_text()
    for where, key in (
        ("main", "aws:endpoints"),
        ("main", "cdao:team"),
        ("main", "cdao:network"),
        ("pin", "cdao:team"),
    ):
        document = yaml.safe_load(original)
        document["config"][key] = {"secure": "v1:abc"}
        prod.write_text(yaml.safe_dump(document))
        _git(platform.repo, "commit", "--quiet", "-am", f"prod: {key} as a secret")
        if where == "pin":
            # The secret in the pin's file itself; main's file (the pin moved past it) carries it too.
            document["config"]["cdao:gitops"]["revision"] = platform.head()
            prod.write_text(yaml.safe_dump(document))
            _git(platform.repo, "commit", "--quiet", "-am", "prod: pinned")
        with pytest.raises(stack_revision.RevisionError) as error:
            stack_revision.deployed_stack_file(platform.repo, "prod", platform.head())
        assert key in str(error.value) and "secret" in str(error.value)
        assert "environments/Pulumi.prod.yaml" in str(error.value)
        stack_file = str(platform.repo.parent / "deployed.yaml")
        args = ["stack-revision", "prod", "--commit", platform.head(), "--repo", str(platform.repo)]
        assert main([*args, "--stack-file", stack_file]) == 2
        assert key in capsys.readouterr().err
        prod.write_text(original)
        _git(platform.repo, "commit", "--quiet", "-am", f"prod: {key} back")


class ConcurrencyGroup:
    """GitHub's rule for one concurrency group with `cancel-in-progress: false`: one running job,
    at most one pending; a job queued while another is pending cancels that one and takes its place,
    whichever run either belongs to (docs.github.com/actions/how-tos/write-workflows/
    choose-when-workflows-run/control-workflow-concurrency)."""

    def __init__(self) -> None:
        self.pending: Run | None = None
        self.cancelled: list[Run] = []

    def queue(self, run: Run) -> None:
        if self.pending is not None:
            self.cancelled.append(self.pending)
        self.pending = run

    def start(self) -> Run:
        run, self.pending = self.pending, None
        assert run is not None
        return run


def test_an_older_runs_job_queued_last_cannot_strand_the_newer_pin(platform):
    """Promotions of A then B to prod; B's run's apply-prod is queued first (its plan was faster), A's
    second: GitHub cancels B's. A's job must not deploy A, and B must still reach prod."""
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.promote("staging", "prod")[0] == 0
    promotion_a = Run(platform.head())  # its prod jobs are in flight
    platform.deploy(promotion_a, only={"dev", "staging"})
    b = platform.merge("B")
    platform.deploy(Run(b), only={"dev"})
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head()), only={"dev", "staging"})
    assert platform.running["staging"] == b
    assert platform.promote("staging", "prod")[0] == 0
    promotion_b = Run(platform.head())
    platform.deploy(promotion_b, only={"dev", "staging"})

    group = ConcurrencyGroup()  # deploy-prod, while an earlier job of the group runs
    group.queue(promotion_b)
    group.queue(promotion_a)
    assert group.cancelled == [promotion_b]
    platform.deploy(group.start(), only={"prod"})
    assert a not in platform.applied["prod"]  # A's job saw main pin B and did nothing
    assert platform.dispatched == [promotion_b.commit]
    platform.deploy(Run(platform.dispatched.pop()), only={"prod"})  # Deploy dispatched at main's tip
    assert platform.running["prod"] == b
    assert_invariant(platform)


def test_a_job_at_mains_state_needs_no_reconcile(platform):
    """An infra merge after a promotion leaves prod's state as it was: the promotion's job deploys."""
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    promotion = Run(platform.head())
    platform.deploy(promotion, only={"dev"})
    platform.merge("B")  # main moves on; staging's file stays as the promotion wrote it
    platform.deploy(promotion, only={"staging"})
    assert platform.running["staging"] == a
    assert platform.dispatched == []


# --- the promotion pull request's check (pull-request.yml, job `promotion`) ----------------------


def _promotion_pr(platform: Platform, requester: str = "alice", edit=None) -> tuple[str, str]:
    """promote.yml's commit on a branch: cdao promote dev -> staging, committed with the message
    promote.yml writes (title, body, `Requested by @<actor> in <run URL>.`); (base, head)."""
    base = platform.head()
    _git(platform.repo, "switch", "--quiet", "--create", "promote/dev-to-staging-0123")
    code = main(
        [
            "promote",
            "dev",
            "staging",
            "--source-deployed",
            platform.deployed["dev"],
            "--environments",
            str(platform.environments),
        ]
    )
    assert code == 0
    if edit:
        edit(platform.repo)
    _git(platform.repo, "add", "-A")
    message = f"Promote dev -> staging\n\nRequested by @{requester} in https://github.com/o/r/actions/runs/1.\n"
    _git(platform.repo, "commit", "--quiet", "-m", message)
    head = platform.head()
    _git(platform.repo, "switch", "--quiet", "main")
    return base, head


def _check(platform: Platform, base: str, head: str, author: str = "alice") -> str:
    """pull-request.yml's promotion step: the record vouching for staging's and prod's pins at the head."""

    def vouching(stack: str) -> list[str]:
        try:
            return platform.lookup(stack, head) or []
        except stack_revision.RevisionError:
            return []  # the step's lookup yields nothing; check-promotion names what is wrong

    return check_promotion.check(platform.repo, base, head, author, _deployed(platform, head, vouching))


def _deployed(platform: Platform, head: str, vouching) -> dict[str, list[str]]:
    """The step's loop over the base's registry (`cdao stacks`): per promoted stack, its upstream's
    records vouching for its pins at the head, merged by upstream (`--deployed UPSTREAM COMMIT...`)."""
    deployed: dict[str, list[str]] = {}
    for stack in cdao_stacks.load(platform.environments).stacks:
        if stack.promotes_from:
            deployed.setdefault(stack.promotes_from, []).extend(vouching(stack.name))
    return deployed


def test_a_promotion_pull_request_opened_by_its_requester_passes(platform):
    platform.deploy(Run(platform.merge("A")))
    base, head = _promotion_pr(platform)
    assert _check(platform, base, head) == "staging"


def test_a_promotion_pull_request_opened_by_someone_else_is_refused(platform):
    """The requester must be the author, whom GitHub never lets approve; otherwise the requester
    could approve a promotion a colleague opened for them."""
    platform.deploy(Run(platform.merge("A")))
    base, head = _promotion_pr(platform, requester="alice")
    with pytest.raises(
        check_promotion.PromotionCheckError, match="requested by @alice but this pull request was opened by @bob"
    ):
        _check(platform, base, head, author="bob")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda repo: (repo / "infra.txt").write_text("unreviewed\n"), "this pull request changes: environments/"),
        (
            lambda repo: (repo / "environments" / "Pulumi.staging.yaml").write_text(
                (repo / "environments" / "Pulumi.staging.yaml").read_text().replace("maxSize: 6", "maxSize: 60")
            ),
            "cdao:nodePools.cpu changed; a promotion changes only cdao:gitops.revision, cdao:gitops.chartVersions",
        ),
        (
            lambda repo: (repo / "environments" / "Pulumi.staging.yaml").write_text(
                (repo / "environments" / "Pulumi.staging.yaml")
                .read_text()
                .replace("flyte-core: v1.16.8", "flyte-core: v1.17.0")
            ),
            "chartVersions.flyte-core = v1.17.0: dev never ran these chart versions",
        ),
    ],
)
def test_a_promotion_pull_request_that_carries_more_than_the_promotion_is_refused(platform, edit, message):
    platform.deploy(Run(platform.merge("A")))
    base, head = _promotion_pr(platform, edit=edit)
    with pytest.raises(check_promotion.PromotionCheckError, match=re.escape(message)):
        _check(platform, base, head)


def _feature_pr(platform: Platform, branch: str, stack: str, old: str, new: str) -> tuple[str, str]:
    """A pull request from the ordinary branch `branch` editing `stack`'s file (old -> new) on main's
    tip; (base, head)."""
    base = platform.head()
    _git(platform.repo, "switch", "--quiet", "--create", branch)
    path = platform.environments / f"Pulumi.{stack}.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    _git(platform.repo, "commit", "--quiet", "-am", f"{stack}: an edit")
    head = platform.head()
    _git(platform.repo, "switch", "--quiet", "main")
    return base, head


def test_a_pull_request_not_from_promote_that_changes_a_promoted_or_code_key_is_refused(platform, capsys):
    """A skipped job reports Success and does not block a merge even when required (docs.github.com/en/
    actions/how-tos/write-workflows/choose-when-workflows-run/control-jobs-with-conditions): so the
    promotion check runs on every pull request, and on one not from a promote/ branch it refuses a
    change to a promoted or code key of a promoted-to stack, which `resolve` would refuse after merge.
    Per-stack keys stay free. One platform for every case (its set-up is the slow part)."""
    refused = [
        ("prod", ("revision: ", "revision: " + "0" * 40 + "\n    # was: "), "cdao:gitops.revision"),
        ("staging", ("flyte-core: v1.16.8", "flyte-core: v1.17.0"), "cdao:gitops.chartVersions"),
        ("prod", ("  cdao:gitops:\n", "  cdao:gitops:\n    path: platform-next\n"), "cdao:gitops.path"),
    ]
    for number, (stack, edit, key) in enumerate(refused):
        base, head = _feature_pr(platform, f"feature/{number}", stack, *edit)
        args = ["check-promotion", "--non-promotion", "--base", base, "--head", head, "--repo", str(platform.repo)]
        assert main(args) == 1, key
        out = capsys.readouterr().out
        assert f"environments/Pulumi.{stack}.yaml: {key}" in out
        assert "Promote" in out
    base, head = _feature_pr(platform, "feature/sizes", "prod", "maxSize: 12", "maxSize: 13")
    args = ["check-promotion", "--non-promotion", "--base", base, "--head", head, "--repo", str(platform.repo)]
    assert main(args) == 0, capsys.readouterr().out


def test_a_record_whose_old_stack_file_todays_config_refuses_still_counts(platform):
    """dev ran commit R with a stack file that today's config code refuses (a key since removed, or a
    check tightened since): the record still proves dev ran R's promoted values, which are compared as
    the file wrote them (stack_revision.raw_pins_at), never parsed with today's code."""
    dev = platform.environments / "Pulumi.dev.yaml"
    dev.write_text(dev.read_text().replace("config:\n", "config:\n  cdao:keyRemovedSince: true\n", 1))
    _git(platform.repo, "commit", "--quiet", "-am", "dev's file as an older config knew it")
    ran = platform.head()
    with pytest.raises(stack_revision.RevisionError, match="keyRemovedSince"):
        stack_revision.config_at(platform.repo, "dev", ran)
    staging = platform.environments / "Pulumi.staging.yaml"
    staging.write_text(staging.read_text().replace(platform.pin("staging"), ran))
    _git(platform.repo, "commit", "--quiet", "-am", "staging pins what dev ran")
    head = platform.head()
    pins_now = stack_revision.pins_at(platform.repo, "staging", head)
    assert stack_revision.upstream_candidates(platform.repo, "staging", head) == ("dev", [ran])
    stack_revision.check_upstream_ran(platform.repo, "staging", "dev", pins_now, [ran], at=head)


def test_a_promotion_from_prod_to_a_stack_the_registry_adds_passes_through_the_cli(platform, capsys):
    """A stack promoted from prod (a disaster-recovery copy, say) gets prod's records: the step keys
    --deployed by the registry, never by a list of stack names of its own."""
    root = _git(platform.repo, "rev-list", "--max-parents=0", "HEAD")
    prod = (platform.environments / "Pulumi.prod.yaml").read_text()
    dr = prod.replace("cdao-stack:promotesFrom: staging", "cdao-stack:promotesFrom: prod")
    (platform.environments / "Pulumi.dr.yaml").write_text(dr.replace(platform.pin("prod"), root))
    _git(platform.repo, "add", "-A")
    _git(platform.repo, "commit", "--quiet", "-m", "dr, promoted from prod")
    base = platform.head()
    _git(platform.repo, "switch", "--quiet", "--create", "promote/prod-to-dr-0123")
    code = main(
        [
            "promote",
            "prod",
            "dr",
            "--source-deployed",
            platform.deployed["prod"],
            "--environments",
            str(platform.environments),
        ]
    )
    assert code == 0
    message = "Promote prod -> dr\n\nRequested by @alice in https://github.com/o/r/actions/runs/1.\n"
    _git(platform.repo, "commit", "--quiet", "-am", message)
    head = platform.head()
    _git(platform.repo, "switch", "--quiet", "main")

    def vouching(stack: str) -> list[str]:
        upstream, candidates = stack_revision.upstream_candidates(platform.repo, stack, head)
        return [c for c in candidates if c in platform.records[upstream]][:1]

    deployed = _deployed(platform, head, vouching)
    assert deployed["prod"], "prod's record vouches for dr's pins"
    argv = ["check-promotion", "--base", base, "--head", head, "--author", "alice", "--repo", str(platform.repo)]
    for upstream, commits in deployed.items():
        argv += ["--deployed", upstream, *commits]
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr()
    assert "promotion of dr checked" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--base", "nope", "--head", "HEAD", "--author", "x"], "--base nope"),
        (["--base", "HEAD", "--head", "nope2", "--author", "x"], "--head nope2"),
        (["--base", "HEAD", "--head", "HEAD", "--author", "x", "--deployed", "qa", "0" * 40], "--deployed qa"),
    ],
)
def test_check_promotion_exits_2_on_a_bad_ref_or_an_unknown_stack(platform, capsys, args, named):
    assert main(["check-promotion", *args, "--repo", str(platform.repo)]) == 2
    out, err = capsys.readouterr()
    assert named in out + err
    assert "this pull request changes" not in out + err


# --- the guards run the pin's code on main's newer stack file ------------------------------------


def _add_to_prod_on_main(platform: Platform, old: str, new: str, message: str) -> str:
    prod = platform.environments / "Pulumi.prod.yaml"
    text = prod.read_text()
    assert old in text
    prod.write_text(text.replace(old, new, 1))
    _git(platform.repo, "commit", "--quiet", "-am", message)
    return platform.head()


def test_the_pins_guard_redeploys_when_mains_stack_file_uses_a_key_newer_than_the_pin(platform, tmp_path, capsys):
    """The apply's and registration's guards run the *pin's* `cdao stack-revision` (this checkout's
    code, whose config refuses `cdao:newFeature`, plays a pin older than main): main's file may carry
    keys written for main's code, which the pin's config refuses. The guard compares raw promoted values
    and the composed file, so "Run workflow stack: prod" and a secret rotation still deploy prod at
    its pin, with its file as of the pin."""
    head = _add_to_prod_on_main(
        platform, "config:\n", "config:\n  cdao:newFeature:\n    enabled: true\n", "prod: a key of main's code"
    )
    with pytest.raises(ConfigError, match="cdao:newFeature"):
        parse_stack_config("prod", read_stack_file("prod", platform.environments)[0])
    composed = tmp_path / "Pulumi.prod.yaml"
    code = main(
        ["stack-revision", "prod", "--repo", str(platform.repo), "--commit", head, "--deployed",
         str(platform.deployed["prod"]), "--force", "--main", head, "--stack-file", str(composed)]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "deploy=true" in out.out.splitlines()
    assert f"revision={platform.base}" in out.out.splitlines()
    assert "newFeature" not in composed.read_text()  # the pin's own file: its code never sees the key


def test_a_top_level_key_edited_on_main_waits_for_a_pin_that_contains_it(platform):
    """Only Pulumi's secrets settings (secretsprovider, encryptedkey, encryptionsalt) follow main; any
    other top-level key of a stack file (an ESC `environment:` import, pulumi.com/docs/esc/guides/
    pulumi-iac/, which feeds config to the program) is per-stack code input, taken from the pin."""
    head = _add_to_prod_on_main(platform, "config:\n", "environment:\n  - prod-overrides\nconfig:\n", "prod: ESC")
    decision = stack_revision.resolve(platform.repo, "prod", head, platform.deployed["prod"])
    assert not decision.deploy, decision.reason
    assert "environment" not in yaml.safe_load(stack_revision.deployed_stack_file(platform.repo, "prod", head))


def _guards() -> dict[str, str]:
    """The `Still needed?` step of every apply and registration job, by job."""
    jobs = load("deploy.yml")["jobs"]
    return {
        job: next(s for s in spec["steps"] if s.get("id") == "guard")["run"]
        for job, spec in jobs.items()
        if job.startswith(("apply-", "register-"))
    }


def _run_guard(platform: Platform, tmp_path: Path, job: str, stack_file: str) -> tuple[int, str]:
    """deploy.yml's guard of `job`, executed in the model's repository (main's tip as origin/main),
    with `stack_file` where resolve's output put it; the pin's `uv run --project stack --locked cdao`
    is this checkout's cdao, its last-deployed.sh a stand-in printing the record."""
    repo = platform.repo
    _git(repo, "update-ref", "refs/remotes/origin/main", platform.head())
    scripts = tmp_path / "pin" / ".github" / "scripts"
    scripts.mkdir(parents=True)
    (scripts / "last-deployed.sh").write_text(f"echo {platform.deployed['prod']}\n")
    (tmp_path / "pin" / "environments").mkdir()
    (tmp_path / "pin" / "environments" / "Pulumi.prod.yaml").write_text(stack_file)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    uv = (
        '#!/usr/bin/env bash\n[ "$1 $2 $3 $4 $5" = "run --project stack --locked cdao" ] || exit 9\n'
        f'shift 5\nexec {sys.executable} -m cdao_cli "$@"\n'
    )
    (bin_dir / "uv").write_text(uv)
    (bin_dir / "uv").chmod(0o755)
    script = _guards()[job].replace("stack/", f"{tmp_path / 'pin'}/")
    output = tmp_path / "output"
    output.write_text("")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=repo,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_SHA": platform.head(),
            "GITHUB_REPOSITORY": "example-org/platform",
            "RUNNER_TEMP": str(tmp_path),
            "STACK": "prod",
            "FORCE": "true",
            "GH_TOKEN": "t",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr + output.read_text()


def test_the_apply_recomputes_the_stack_file_with_the_pins_code_and_refuses_another(platform, tmp_path):
    """resolve composes the file with main's code and hands it over as an output; the apply, before any
    credential, composes it again with the pin's code and refuses a file that differs (one resolve
    wrote with a top-level key the pin's composition leaves out, say). One guard is executed (a
    subprocess running cdao, about a second); every apply and registration guard must carry the same
    comparison."""
    head = platform.head()
    composed = stack_revision.deployed_stack_file(platform.repo, "prod", head)
    code, log = _run_guard(platform, tmp_path / "same", "apply-prod", composed)
    assert code == 0, log
    assert "deploy=true" in log.splitlines()
    code, log = _run_guard(platform, tmp_path / "other", "apply-prod", "environment:\n  - prod-overrides\n" + composed)
    assert code == 1, log
    assert "::error::the stack file resolve composed for prod is not the one its pin's code composes" in log
    compare = _guards()["apply-prod"]
    compare = compare[compare.index('--stack-file "${RUNNER_TEMP}/composed-${STACK}.yaml"') :]
    compare = compare[: compare.index("\nfi\n")]
    for job, guard in _guards().items():
        assert compare in guard, job


def test_argo_cds_chart_and_the_synced_folder_cannot_differ_from_what_staging_ran(platform):
    """`cdao:gitops.argocdChartVersion` (the Argo CD chart infra/ installs) and `cdao:gitops.path` (the
    folder the root Application syncs) are code: set in prod's file alone, they would give prod an
    Argo CD and manifests staging never ran. cdao_cli/pins.py classifies them as code (infra/config.py's
    default at the stack's revision, the same for every stack): a stack file setting one is refused
    with the key named, and prod keeps running what staging ran."""
    _add_to_prod_on_main(
        platform,
        "    repoUrl:",
        "    argocdChartVersion: 9.9.9\n    path: platform-prod-only\n    repoUrl:",
        "prod: its own Argo CD and folder",
    )
    a = platform.merge("A")
    platform.deploy(Run(a))
    assert platform.promote("dev", "staging")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.promote("staging", "prod")[0] == 0
    platform.deploy(Run(platform.head()))
    assert platform.running["staging"] == a
    assert platform.running["prod"] == platform.base
    refusals = [message for stack, message in platform.refused if stack == "prod"]
    assert refusals and "cdao:gitops.argocdChartVersion" in refusals[-1] and "cdao:gitops.path" in refusals[-1]
    assert_invariant(platform)

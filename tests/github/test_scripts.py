"""The scripts the deploy workflow calls: which Flyte projects get registered, and when
registration is skipped or refused instead of failing half-way."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cdao_cli import stack_revision

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / ".github" / "scripts"


def test_flyte_projects_are_the_stack_config_projects(tmp_path):
    environments = tmp_path / "environments"
    shutil.copytree(ROOT / "environments", environments)
    staging = environments / "Pulumi.staging.yaml"
    text = staging.read_text()
    assert text.count("  cdao:flyte:\n") == 1
    staging.write_text(text.replace("  cdao:flyte:\n", "  cdao:flyte:\n    projects: [ml-experiments, fraud-models]\n"))

    result = subprocess.run(
        [sys.executable, "-m", "cdao_cli", "flyte-projects", "--stack", "staging", "--environments", str(environments)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ml-experiments", "fraud-models"]

    default = subprocess.run(
        [sys.executable, "-m", "cdao_cli", "flyte-projects", "--stack", "dev", "--environments", str(environments)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert default.stdout.split() == ["ml-experiments"]  # FlyteConfig's default


def test_flyte_projects_names_a_bad_stack(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cdao_cli", "flyte-projects", "--stack", "qa"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "unknown stack 'qa'" in result.stderr


def _register(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "STACK": "dev",
        "FLYTE_DOMAIN": "development",
        "REVISION": "0" * 40,
        "IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/cdao-dev-tasks:" + "0" * 40,
        "CDAO_AWS_REGION": "us-east-1",
        "CDAO_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/service-roles-sagemaker-execution",
        "CDAO_DEFAULT_BUCKET": "cdao-dev-userdata-0123",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    return subprocess.run(
        ["bash", str(SCRIPTS / "register-workflows.sh")],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_registration_fails_clearly_without_flyte_endpoint(tmp_path):
    """The registration job's success is the record of what the stack runs (last-deployed.sh): a
    skipped registration must not count as a deployment that staging or prod could be promoted from."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "__init__.py").write_text("")
    result = _register(tmp_path, FLYTE_PLATFORM_URL="")
    assert result.returncode == 2
    assert "::error title=Flyte registration impossible::" in result.stdout
    assert "variable FLYTE_ENDPOINT is not set on the dev-workflows environment" in result.stdout
    assert "FLYTE_ENDPOINT" in (tmp_path / "summary").read_text()


def test_registration_refuses_a_workflows_folder_that_is_not_a_package(tmp_path):
    (tmp_path / "workflows").mkdir()
    result = _register(tmp_path, FLYTE_PLATFORM_URL="dns:///flyte.example.invalid")
    assert result.returncode == 1
    assert "workflows/__init__.py" in result.stdout


def test_registration_needs_the_client_secret_with_a_client_id(tmp_path):
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "__init__.py").write_text("")
    result = _register(
        tmp_path, FLYTE_PLATFORM_URL="dns:///flyte.example.invalid", FLYTE_CREDENTIALS_CLIENT_ID="cdao-ci"
    )
    assert result.returncode != 0
    assert "FLYTE_CLIENT_SECRET is required" in result.stderr


def test_registration_requires_its_inputs(tmp_path):
    result = _register(tmp_path, IMAGE="")
    assert result.returncode != 0
    assert "IMAGE is required" in result.stderr


def test_registration_needs_the_stacks_aws_values(tmp_path):
    """Without them workflows/ would register SageMaker jobs pointing at no real account."""
    result = _register(tmp_path, FLYTE_PLATFORM_URL="dns:///flyte.example.invalid", CDAO_SAGEMAKER_ROLE_ARN="")
    assert result.returncode != 0
    assert "CDAO_SAGEMAKER_ROLE_ARN is required" in result.stderr


def test_registration_sets_each_raw_output_location_before_registering(tmp_path):
    """The task role may write only s3://<userdata>/data/<project>/<domain> (infra/components/identity.py):
    flyteadmin must hold that location before pyflyte registers (and production activates) anything.
    `uv` records its calls; what `cdao flyte-projects --set-raw-data-prefix` sends to flyteadmin is
    tested in tests/cdao_cli/test_flyte_projects.py."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "__init__.py").write_text("")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    _stub(bin_dir, "uv", f'echo "$*" >> {log}\ncase "$*" in *flyte-projects*) echo ml-experiments;; esac\n')
    result = _register(
        tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}", FLYTE_PLATFORM_URL="dns:///flyte.example.invalid"
    )
    assert result.returncode == 0, result.stderr
    set_prefix, register = log.read_text().splitlines()
    assert set_prefix.endswith(
        "cdao flyte-projects --stack dev --domain development --set-raw-data-prefix cdao-dev-userdata-0123"
    )
    assert register.startswith("run pyflyte register workflows --project ml-experiments --domain development")


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def _origin(tmp_path: Path, main: str) -> dict[str, str]:
    """Git settings (GIT_CONFIG_COUNT/KEY/VALUE, git-config(1) "ENVIRONMENT") naming as `origin` a bare
    repository whose `main` is `main`: it borrows this checkout's objects (objects/info/alternates,
    gitrepository-layout(5)), so nothing is copied and this checkout's refs are never written."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    common = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (bare / "objects" / "info" / "alternates").write_text(f"{common}/objects\n")
    subprocess.run(["git", "-C", str(bare), "update-ref", "refs/heads/main", main], check=True)
    settings = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "remote.origin.url", "GIT_CONFIG_VALUE_0": str(bare)}
    # A clone already names its own origin, and git reads the repository's value of a multi-valued key
    # before the environment's (git-config(1), "FILES" order, then GIT_CONFIG_COUNT): rewrite that URL
    # to the bare repository too (`url.<base>.insteadOf`, git-config(1)), or the script would ask it.
    existing = subprocess.run(
        ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if existing:
        settings |= {
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_1": f"url.{bare}.insteadOf",
            "GIT_CONFIG_VALUE_1": existing,
        }
    return settings


def _first_deploy(
    tmp_path: Path, stack: str, upstream_records: list[str], *args: str, origin_main: str | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """first-deploy.sh with stand-ins for the tools that need an account: `pulumi` answers
    `stack output ecrRepositories --json` with the shape the program exports (purpose -> repository
    URL, pulumi-aws ecr.Repository.repositoryUrl: <account>.dkr.ecr.<region>.amazonaws.com/<name>);
    `gh api` serves the upstream stack's successful deployments (`upstream_records`, commits of this
    repository) in the REST shapes of docs.github.com/en/rest/deployments/deployments and /statuses.
    `origin`'s main is this checkout's HEAD unless `origin_main` says otherwise."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    url = "210987654321.dkr.ecr.us-east-1.amazonaws.com"
    _stub(
        bin_dir,
        "pulumi",
        f'echo "pulumi $* (in $(basename "$PWD"): $(grep -c revision: environments/Pulumi.prod.yaml))'
        f' commit=${{CDAO_REVISION_COMMIT:-unset}} images-pushed=${{CDAO_IMAGES_PUSHED:-unset}}" >> "{log}"\n'
        f'if [ "$1" = up ]; then cp "environments/Pulumi.{stack}.yaml" "{tmp_path}/stack-file-seen.yaml"; fi\n'
        'if [ "$1 $2" = "stack output" ]; then\n'
        f'  echo \'{{"connector": "{url}/cdao-{stack}-connector", "tasks": "{url}/cdao-{stack}-tasks", '
        f'"emr-serverless": "{url}/cdao-{stack}-emr-serverless"}}\'\n'
        "fi\n",
    )
    upstream = {"staging": "dev", "prod": "staging"}.get(stack, "none")
    _gh_with_deployments(
        bin_dir,
        [
            {
                "id": n + 1,
                "sha": sha,
                "environment": f"{upstream}-workflows",
                "created_at": f"2026-11-0{n + 1}T10:00:00Z",
            }
            for n, sha in enumerate(upstream_records)
        ],
        {
            n + 1: [{"id": 10 * (n + 1), "state": "success", "created_at": f"2026-11-0{n + 1}T10:09:00Z"}]
            for n in range(len(upstream_records))
        },
    )
    gh_api = bin_dir / "gh-api"
    (bin_dir / "gh").rename(gh_api)
    _stub(bin_dir, "gh", f'if [ "$1" = api ]; then shift; exec "{gh_api}" "$@"; fi\necho "gh $*" >> "{log}"\n')
    # uv: `run --project P cdao ...` runs this environment's cdao; `sync` has nothing to install here.
    _stub(
        bin_dir,
        "uv",
        'if [ "$1" = run ]; then shift 3; shift; exec "' + sys.executable + '" -m cdao_cli "$@"; fi\n'
        f'echo "uv $* in $(basename "$PWD")" >> "{log}"\n',
    )
    result = subprocess.run(
        ["bash", str(SCRIPTS / "first-deploy.sh"), stack, *args],
        cwd=SCRIPTS,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "GH_REPO": "example-org/platform",
            **_origin(tmp_path, origin_main or _head()),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return result, log.read_text().splitlines() if log.exists() else []


def _head() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_first_deploy_applies_the_pin_records_the_registry_and_dispatches_deploy(tmp_path):
    # staging deployed at this checkout's commit, whose staging file pins what prod's file pins.
    result, calls = _first_deploy(tmp_path, "prod", [_head()])
    url = "210987654321.dkr.ecr.us-east-1.amazonaws.com"
    assert result.returncode == 0, result.stderr
    pin = re.search(r"^prod runs ([0-9a-f]{40})$", result.stdout, re.M)
    assert pin, result.stdout
    assert f"revision: {pin.group(1)}" in (SCRIPTS.parents[1] / "environments" / "Pulumi.prod.yaml").read_text()
    up = next(c for c in calls if c.startswith("pulumi up"))
    assert up.startswith("pulumi up --stack prod --policy-pack policies")
    # The program tags the connector image with the commit it runs, as deploy.yml passes it; the
    # registry this `up` creates holds no image yet, so the Spark application starts on AWS's
    # (infra/images.py, CDAO_IMAGES_PUSHED) until the dispatched deploy pushed the stack's own.
    assert up.endswith(f" commit={pin.group(1)} images-pushed=false")
    assert calls.index(next(c for c in calls if c.startswith("uv sync --locked"))) < calls.index(up)
    # The stack file the pin's code reads is the one deploy.yml's resolve composes, not main's own.
    seen = (tmp_path / "stack-file-seen.yaml").read_text()
    assert seen == stack_revision.deployed_stack_file(ROOT, "prod", _head())
    assert f"gh variable set ECR_REGISTRY_PROD --body {url}" in calls
    assert "gh variable set ECR_ACCOUNT_ID_PROD --body 210987654321" in calls
    assert calls[-1] == "gh workflow run deploy.yml --ref main -f stack=prod"


def test_first_deploy_of_prod_refuses_what_staging_never_ran(tmp_path):
    """The same rule as deploy.yml's resolve job: prod only runs what staging deployed."""
    result, calls = _first_deploy(tmp_path, "prod", [])
    assert result.returncode == 2
    assert "staging never ran it" in result.stderr
    assert "--without-upstream" in result.stderr
    assert not any(c.startswith(("pulumi", "gh ")) for c in calls)


def test_first_deploy_without_upstream_is_explicit_and_warned(tmp_path):
    """Rebuilding prod when staging is gone (docs/disaster-recovery.md) is allowed only when asked."""
    result, calls = _first_deploy(tmp_path, "prod", [], "--without-upstream")
    assert result.returncode == 0, result.stderr
    assert "WARNING: prod's revision is not checked against what staging deployed" in result.stderr
    assert any(c.startswith("pulumi up --stack prod") for c in calls)


def test_first_deploy_refuses_a_checkout_that_is_not_mains_tip_on_origin(tmp_path):
    """dev follows main: its first deploy runs HEAD itself, so an unmerged or stale checkout would reach
    the stack. The script asks origin for main's tip and refuses anything else, before any tool runs."""
    parent = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD~1"], check=True, capture_output=True, text=True
    ).stdout.strip()
    result, calls = _first_deploy(tmp_path, "dev", [], origin_main=parent)
    assert result.returncode == 2
    assert f"HEAD {_head()} is not main's tip on origin ({parent})" in result.stderr
    assert calls == []


def test_first_deploy_refuses_an_unknown_option(tmp_path):
    result, calls = _first_deploy(tmp_path, "prod", [_head()], "--force")
    assert result.returncode == 2
    assert "unknown option '--force'" in result.stderr
    assert calls == []


BOT = {"login": "github-actions[bot]", "type": "Bot"}
SERVER = "https://github.com/example-org/platform"


def _gh_with_deployments(
    bin_dir: Path,
    deployments: list[dict],
    statuses: dict[int, list[dict]],
    runs: dict[int, dict] | None = None,
    jobs: dict[int, list[dict]] | None = None,
) -> None:
    """A `gh api` stand-in serving the REST shapes of "List deployments" and "List deployment
    statuses" (docs.github.com/en/rest/deployments/deployments, /rest/deployments/statuses): arrays
    of objects with `id`, `sha`, `environment`, `creator`, `created_at`; and `id`, `state`, `creator`,
    `log_url`, `created_at`; "Get a workflow run" (docs.github.com/en/rest/actions/workflow-runs:
    `path`, `head_branch`, `head_sha`) and "List jobs for a workflow run" (docs.github.com/en/rest/
    actions/workflow-jobs: `{"jobs": [{"name", "conclusion"}]}`). What a test leaves out is what
    GitHub Actions itself writes for deploy.yml's registration job: creator github-actions[bot], a
    `success` status whose log_url is run 1000+<deployment id>, that run of deploy.yml on main at the
    deployment's sha, and its successful `Register workflows/ to Flyte (<stack>, ...)` job. Like gh,
    it applies --jq to the page; the order is deliberately not newest-first."""
    runs = dict(runs or {})
    jobs = dict(jobs or {})
    for deployment in deployments:
        deployment.setdefault("creator", BOT)
        run_id = 1000 + deployment["id"]
        for status in statuses.get(deployment["id"], []):
            status.setdefault("creator", BOT)
            status.setdefault("log_url", f"{SERVER}/actions/runs/{run_id}/job/{run_id * 10}")
        runs.setdefault(
            run_id, {"path": ".github/workflows/deploy.yml", "head_branch": "main", "head_sha": deployment["sha"]}
        )
        stack = deployment["environment"].removesuffix("-workflows")
        jobs.setdefault(
            run_id, [{"name": f"Register workflows/ to Flyte ({stack}, domain d)", "conclusion": "success"}]
        )
    data = bin_dir / "data.json"
    data.write_text(
        json.dumps(
            {
                "deployments": deployments,
                "statuses": {str(k): v for k, v in statuses.items()},
                "runs": {str(k): v for k, v in runs.items()},
                "jobs": {str(k): {"total_count": len(v), "jobs": v} for k, v in jobs.items()},
            }
        )
    )
    _stub(
        bin_dir,
        "gh",
        f'echo "$*" >> "{bin_dir}/api-calls"\n'
        'path=""; jq_filter="."; env=""; sha=""\n'
        "while [ $# -gt 0 ]; do\n"
        '  case "$1" in\n'
        '    --jq) jq_filter="$2"; shift 2 ;;\n'
        '    -f) case "$2" in environment=*) env="${2#environment=}" ;; sha=*) sha="${2#sha=}" ;; esac; shift 2 ;;\n'
        '    repos/*) path="$1"; shift ;;\n'
        "    *) shift ;;\n"
        "  esac\n"
        "done\n"
        'path="${path%%\\?*}"\n'
        'case "$path" in\n'
        f'  */statuses) id=$(basename "$(dirname "$path")"); jq ".statuses[\\"$id\\"]" "{data}" ;;\n'
        f'  */deployments) jq --arg env "$env" --arg sha "$sha" \'[.deployments[] | select(.environment == $env)'
        f' | select($sha == "" or .sha == $sha)]\' "{data}" ;;\n'
        f'  */jobs) id=$(basename "$(dirname "$path")"); jq ".jobs[\\"$id\\"]" "{data}" ;;\n'
        f'  */actions/runs/*) jq ".runs[\\"$(basename "$path")\\"]" "{data}" ;;\n'
        'esac | jq -r "$jq_filter"\n',
    )


def test_last_deployed_reads_the_newest_successful_deployment_of_the_registration_environment(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    _gh_with_deployments(
        bin_dir,
        [
            {"id": 2, "sha": b, "environment": "staging-workflows", "created_at": "2026-11-02T10:00:00Z"},
            {"id": 1, "sha": a, "environment": "staging-workflows", "created_at": "2026-11-01T10:00:00Z"},
            {"id": 3, "sha": c, "environment": "staging-workflows", "created_at": "2026-11-03T10:00:00Z"},
            {"id": 4, "sha": c, "environment": "staging", "created_at": "2026-11-04T10:00:00Z"},
            {"id": 5, "sha": "e" * 40, "environment": "staging-workflows", "created_at": "2026-10-30T10:00:00Z"},
        ],
        {
            1: [{"state": "success", "created_at": "2026-11-01T10:05:00Z"}],
            # in progress, then success: the newest status counts
            2: [
                {"state": "in_progress", "created_at": "2026-11-02T10:01:00Z"},
                {"state": "success", "created_at": "2026-11-02T10:09:00Z"},
            ],
            3: [{"state": "failure", "created_at": "2026-11-03T10:09:00Z"}],
            # succeeded, then marked inactive when a newer deployment got a status (auto_inactive)
            5: [
                {"state": "success", "created_at": "2026-10-30T10:05:00Z"},
                {"state": "inactive", "created_at": "2026-11-01T10:05:00Z"},
            ],
            4: [{"state": "success", "created_at": "2026-11-04T10:09:00Z"}],
        },
    )
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_REPOSITORY": "example-org/platform"}

    def run(*args: str) -> list[str]:
        result = subprocess.run(
            ["bash", str(SCRIPTS / "last-deployed.sh"), *args], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    # c failed, and the `staging` environment (the apply) is not the record: b is the newest success.
    assert run("staging") == [b]
    # --at: the first candidate with a successful (or since inactive) record, in the order given.
    assert run("staging", "--at", c, a, b) == [a]
    assert run("staging", "--at", "e" * 40, b) == ["e" * 40]
    assert run("staging", "--at", c) == []
    assert run("prod") == []


def test_last_deployed_orders_statuses_of_the_same_second_by_id(tmp_path):
    """Statuses created in the same second: the later one has the higher `id` (the REST shape of
    "List deployment statuses", docs.github.com/en/rest/deployments/statuses), and it decides. Same
    for deployments of the same second, whose ids must compare as numbers (10 after 9)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    a, b = "a" * 40, "b" * 40
    second = "2026-11-02T10:00:00Z"
    _gh_with_deployments(
        bin_dir,
        [
            {"id": 9, "sha": a, "environment": "prod-workflows", "created_at": second},
            {"id": 10, "sha": b, "environment": "prod-workflows", "created_at": second},
        ],
        {
            9: [{"id": 90, "state": "success", "created_at": "2026-11-02T10:05:00Z"}],
            10: [
                {"id": 100, "state": "success", "created_at": "2026-11-02T10:09:00Z"},
                {"id": 101, "state": "failure", "created_at": "2026-11-02T10:09:00Z"},
            ],
        },
    )
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_REPOSITORY": "example-org/platform"}
    result = subprocess.run(
        ["bash", str(SCRIPTS / "last-deployed.sh"), "prod"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [a]


def _git_in(cwd: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    return subprocess.run(
        ["git", "-C", str(cwd), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def _promotion_clone(tmp_path: Path, name: str, pin: str) -> Path:
    """A clone of the shared bare `origin` with main plus one promotion commit (what promote.yml has
    when it pushes)."""
    origin = tmp_path / "origin.git"
    if not origin.exists():
        seed = tmp_path / "seed"
        seed.mkdir()
        _git_in(seed, "init", "--quiet", "--initial-branch=main")
        (seed / "environments").mkdir()
        (seed / "environments" / "Pulumi.prod.yaml").write_text("revision: " + "a" * 40 + "\n")
        _git_in(seed, "add", "-A")
        _git_in(seed, "commit", "--quiet", "-m", "main")
        _git_in(tmp_path, "clone", "--quiet", "--bare", str(seed), str(origin))
    clone = tmp_path / name
    _git_in(tmp_path, "clone", "--quiet", str(origin), str(clone))
    (clone / "environments" / "Pulumi.prod.yaml").write_text(f"revision: {pin}\n")
    _git_in(clone, "commit", "--quiet", "-am", f"Promote staging -> prod (run {name})")
    return clone


def _push_promotion(clone: Path, branch: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / "push-promotion.sh"), branch],
        cwd=clone,
        env={"PATH": os.environ["PATH"], "HOME": str(clone), "GIT_CONFIG_NOSYSTEM": "1"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_push_promotion_pushes_then_reuses_only_an_identical_branch(tmp_path):
    branch = "promote/staging-to-prod-0123456789ab"
    first = _promotion_clone(tmp_path, "run-1", "b" * 40)
    assert _push_promotion(first, branch).returncode == 0
    again = _promotion_clone(tmp_path, "run-2", "b" * 40)  # the same pins, a new commit
    result = _push_promotion(again, branch)
    assert result.returncode == 0, result.stderr
    assert "exists with exactly this promotion" in result.stdout


def test_push_promotion_refuses_a_branch_with_other_content(tmp_path):
    """Someone created the branch under the promotion's name first, with more than the promotion."""
    branch = "promote/staging-to-prod-0123456789ab"
    squatter = _promotion_clone(tmp_path, "squatter", "b" * 40)
    (squatter / "infra.py").write_text("print('not reviewed')\n")
    _git_in(squatter, "add", "-A")
    _git_in(squatter, "commit", "--quiet", "-m", "extra")
    _git_in(squatter, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
    before = _git_in(tmp_path / "origin.git", "rev-parse", f"refs/heads/{branch}")

    result = _push_promotion(_promotion_clone(tmp_path, "run", "b" * 40), branch)
    assert result.returncode == 1
    assert f"::error::branch {branch} exists with other content than this promotion" in result.stdout
    assert _git_in(tmp_path / "origin.git", "rev-parse", f"refs/heads/{branch}") == before


ALICE = {"login": "alice", "type": "User"}


@pytest.mark.parametrize(
    ("forged", "reason"),
    [
        ({"deployment": {"creator": ALICE}}, "deployment 2 was created by alice"),
        ({"status": {"creator": ALICE}}, "the success status of deployment 2 was created by alice"),
        (
            {"status": {"log_url": "https://github.com/someone/fork/actions/runs/1002"}},
            "not a run of example-org/platform",
        ),
        ({"status": {"log_url": ""}}, "points to ''"),
        ({"run": {"path": ".github/workflows/pull-request.yml"}}, "not deploy.yml on main"),
        ({"run": {"head_branch": "promote/dev-to-staging-0123"}}, "not deploy.yml on main"),
        ({"run": {"head_sha": "a" * 40}}, "not deploy.yml on main"),
        (
            {"jobs": [{"name": "Register workflows/ to Flyte (prod, domain production)", "conclusion": "failure"}]},
            "no successful registration job of prod",
        ),
    ],
)
def test_last_deployed_ignores_a_record_github_actions_did_not_write(tmp_path, forged, reason):
    """Anyone with push access can create a deployment and a `success` status through the REST API
    (docs.github.com/en/rest/deployments); only a record of deploy.yml's own registration job counts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    a, b = "a" * 40, "b" * 40
    deployments = [
        {"id": 1, "sha": a, "environment": "prod-workflows", "created_at": "2026-11-01T10:00:00Z"},
        {
            "id": 2,
            "sha": b,
            "environment": "prod-workflows",
            "created_at": "2026-11-02T10:00:00Z",
            **forged.get("deployment", {}),
        },
    ]
    statuses = {
        1: [{"id": 10, "state": "success", "created_at": "2026-11-01T10:05:00Z"}],
        2: [{"id": 20, "state": "success", "created_at": "2026-11-02T10:05:00Z", **forged.get("status", {})}],
    }
    run = {"path": ".github/workflows/deploy.yml", "head_branch": "main", "head_sha": b, **forged.get("run", {})}
    jobs = {1002: forged["jobs"]} if "jobs" in forged else None
    _gh_with_deployments(bin_dir, deployments, statuses, runs={1002: run}, jobs=jobs)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_REPOSITORY": "example-org/platform"}
    result = subprocess.run(
        ["bash", str(SCRIPTS / "last-deployed.sh"), "prod"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [a]  # b's record is not trusted; the one before it is
    assert "::warning title=Deployment record of prod not trusted::" in result.stderr
    assert reason in result.stderr


def test_last_deployed_finds_a_commits_record_however_many_deployments_came_since(tmp_path):
    """The record proving dev ran a pin, behind 250 newer dev deployments: looked up by commit (REST
    "List deployments", `sha` and `environment` filters, docs.github.com/en/rest/deployments/
    deployments), not in a window of the newest, and in a handful of calls (GITHUB_TOKEN: 1,000 an
    hour per repository, docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pin = "a" * 40
    newer = [f"{n:040x}" for n in range(1, 251)]
    deployments = [{"id": 1, "sha": pin, "environment": "dev-workflows", "created_at": "2026-10-01T10:00:00Z"}]
    deployments += [
        {
            "id": n + 2,
            "sha": sha,
            "environment": "dev-workflows",
            "created_at": f"2026-11-01T1{n // 60}:{n % 60:02d}:00Z",
        }
        for n, sha in enumerate(newer)
    ]
    statuses = {d["id"]: [{"id": 10 * d["id"], "state": "success", "created_at": d["created_at"]}] for d in deployments}
    _gh_with_deployments(bin_dir, deployments, statuses)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_REPOSITORY": "example-org/platform"}
    result = subprocess.run(
        ["bash", str(SCRIPTS / "last-deployed.sh"), "dev", "--at", pin],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [pin]
    calls = (bin_dir / "api-calls").read_text().splitlines()
    # The lookup by commit, the record's statuses, its run and the run's jobs.
    assert len(calls) == 4, calls
    assert f"sha={pin}" in calls[0]


@pytest.mark.parametrize("args", [["dev", "all"], ["dev", "--at", "main"]])
def test_last_deployed_refuses_what_it_cannot_look_up(tmp_path, args):
    result = subprocess.run(
        ["bash", str(SCRIPTS / "last-deployed.sh"), *args],
        env={"PATH": os.environ["PATH"], "GITHUB_REPOSITORY": "example-org/platform"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "usage: last-deployed.sh STACK [--at COMMIT...]" in result.stderr


def test_the_runbook_says_what_without_upstream_does():
    """first-deploy.sh's refusal and docs/github-setup.md send `--without-upstream` users to the
    disaster-recovery runbook: the section must exist and say what the option skips and what still holds."""
    setup = (ROOT / "docs" / "github-setup.md").read_text()
    anchor = "disaster-recovery.md#6-rebuilding-a-stack-whose-upstream-is-gone-first-deploysh---without-upstream"
    assert anchor in setup
    runbook = (ROOT / "docs" / "disaster-recovery.md").read_text()
    section = runbook.split("## 6. Rebuilding a stack whose upstream is gone (`first-deploy.sh --without-upstream`)")[1]
    section = section.split("\n## ")[0]
    script = (SCRIPTS / "first-deploy.sh").read_text()
    # The warning the script prints is the one the runbook quotes.
    assert "is not checked against what ${previous} deployed (--without-upstream)" in script
    assert "is not checked against what staging deployed\n   (--without-upstream)" in section
    assert "first-deploy.sh prod --without-upstream" in section
    assert "still holds prod to the rule" in section

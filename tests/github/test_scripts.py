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


def test_registration_is_skipped_with_a_notice_until_flyte_has_an_endpoint(tmp_path):
    result = _register(tmp_path, FLYTE_PLATFORM_URL="")
    assert result.returncode == 0
    assert "::notice title=Flyte registration skipped::" in result.stdout
    assert "FLYTE_ENDPOINT is not set on the dev environment" in (tmp_path / "summary").read_text()


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


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def test_first_deploy_applies_the_pin_records_the_registry_and_dispatches_deploy(tmp_path):
    """first-deploy.sh with stand-ins for the tools that need an account: `pulumi` answers
    `stack output ecrRepositories --json` with the shape the program exports (purpose -> repository
    URL, pulumi-aws ecr.Repository.repositoryUrl: <account>.dkr.ecr.<region>.amazonaws.com/<name>)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    url = "210987654321.dkr.ecr.us-east-1.amazonaws.com"
    _stub(
        bin_dir,
        "pulumi",
        f'echo "pulumi $* (in $(basename "$PWD"): $(grep -c revision: environments/Pulumi.prod.yaml))'
        f' commit=${{CDAO_REVISION_COMMIT:-unset}}" >> "{log}"\n'
        'if [ "$1 $2" = "stack output" ]; then\n'
        f'  echo \'{{"connector": "{url}/cdao-prod-connector", "tasks": "{url}/cdao-prod-tasks"}}\'\n'
        "fi\n",
    )
    _stub(bin_dir, "gh", f'echo "gh $*" >> "{log}"\n')
    # uv: `run --project P cdao ...` runs this environment's cdao; `sync` has nothing to install here.
    _stub(
        bin_dir,
        "uv",
        'if [ "$1" = run ]; then shift 3; shift; exec "' + sys.executable + '" -m cdao_cli "$@"; fi\n'
        f'echo "uv $* in $(basename "$PWD")" >> "{log}"\n',
    )
    result = subprocess.run(
        ["bash", str(SCRIPTS / "first-deploy.sh"), "prod"],
        cwd=SCRIPTS,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "GH_REPO": "example-org/platform"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    pin = re.search(r"^prod runs ([0-9a-f]{40})$", result.stdout, re.M)
    assert pin, result.stdout
    assert f"revision: {pin.group(1)}" in (SCRIPTS.parents[1] / "environments" / "Pulumi.prod.yaml").read_text()
    up = next(c for c in calls if c.startswith("pulumi up"))
    assert up.startswith("pulumi up --stack prod --policy-pack policies")
    # The program tags the connector image with the commit it runs, as deploy.yml passes it.
    assert up.endswith(f" commit={pin.group(1)}")
    assert calls.index(next(c for c in calls if c.startswith("uv sync --locked"))) < calls.index(up)
    assert f"gh variable set ECR_REGISTRY_PROD --body {url}" in calls
    assert "gh variable set ECR_ACCOUNT_ID_PROD --body 210987654321" in calls
    assert calls[-1] == "gh workflow run deploy.yml --ref main -f stack=prod"


def _gh_with_deployments(bin_dir: Path, deployments: list[dict], statuses: dict[int, list[dict]]) -> None:
    """A `gh api` stand-in serving the REST shapes of "List deployments" and "List deployment
    statuses" (docs.github.com/en/rest/deployments/deployments, /rest/deployments/statuses): arrays
    of objects with `id`, `sha`, `environment`, `created_at`; and `state`, `created_at`. Like gh, it
    applies --jq to the page; the order is deliberately not newest-first."""
    data = bin_dir / "data.json"
    data.write_text(json.dumps({"deployments": deployments, "statuses": {str(k): v for k, v in statuses.items()}}))
    _stub(
        bin_dir,
        "gh",
        'path=""; jq_filter="."; env=""\n'
        "while [ $# -gt 0 ]; do\n"
        '  case "$1" in\n'
        '    --jq) jq_filter="$2"; shift 2 ;;\n'
        '    -f) case "$2" in environment=*) env="${2#environment=}" ;; esac; shift 2 ;;\n'
        '    repos/*) path="$1"; shift ;;\n'
        "    *) shift ;;\n"
        "  esac\n"
        "done\n"
        'case "$path" in\n'
        f'  */statuses) id=$(basename "$(dirname "$path")"); jq ".statuses[\\"$id\\"]" "{data}" ;;\n'
        f'  */deployments) jq --arg env "$env" \'[.deployments[] | select(.environment == $env)]\' "{data}" ;;\n'
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
    assert run("staging", "all") == [b, a, "e" * 40]
    assert run("prod") == []

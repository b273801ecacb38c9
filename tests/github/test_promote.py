"""`cdao promote`, run through the real `cdao` entry point on temporary copies of environments/
inside throwaway git repositories (so branch revisions resolve against real commits)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra import cli, promote
from infra.config import parse_stack_config
from infra.plan.runner import read_stack_file

REPO_ENVIRONMENTS = Path(__file__).resolve().parents[2] / "environments"

DEV_CHARTS = {"flyte-core": "v1.16.2", "keda": "2.16.0", "cert-manager": "v1.16.2"}
STAGING_CHARTS = {"flyte-core": "v1.15.0", "cert-manager": "v1.16.2", "linkerd-crds": "1.8.0"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


def _set_pins(path: Path, revision: str, charts: dict[str, str] | None) -> None:
    """Write the pins with plain text edits (independent of the code under test): the revision in
    place, the chartVersions block where it was (or right after the revision)."""
    lines = path.read_text().splitlines()
    gitops = lines.index("  cdao:gitops:")
    end = next((i for i in range(gitops + 1, len(lines)) if re.match(r"^  \S", lines[i])), len(lines))
    block = lines[gitops + 1 : end]
    revision_at = next(i for i, line in enumerate(block) if line.startswith("    revision:"))
    block[revision_at] = f"    revision: {revision}"
    charts_at = next((i for i, line in enumerate(block) if line.startswith("    chartVersions:")), None)
    if charts_at is None:
        charts_at = revision_at + 1
    else:
        stop = charts_at + 1
        while stop < len(block) and block[stop].startswith("      "):
            stop += 1
        del block[charts_at:stop]
    if charts is not None:
        block[charts_at:charts_at] = ["    chartVersions:", *(f"      {k}: {v}" for k, v in charts.items())]
    path.write_text("\n".join([*lines[: gitops + 1], *block, *lines[end:]]) + "\n")


def _switch_add_ons_off(path: Path) -> None:
    """These pins are made up: with every add-on off, the stack parser needs none of them (an enabled
    add-on must have each chart pin its ApplicationSets read, infra/config.py ADDON_CHART_KEYS)."""
    lines = path.read_text().splitlines()
    start = lines.index("  cdao:addons:")
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith("    "):
            break
        lines[i] = re.sub(r": true$", ": false", lines[i])
    path.write_text("\n".join(lines) + "\n")


def _pins(environments: Path, stack: str) -> tuple[str, dict[str, str]]:
    raw, _ = read_stack_file(stack, environments)
    config, _ = parse_stack_config(stack, raw)
    return config.gitops.revision, dict(config.gitops.chart_versions)


@pytest.fixture
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(var, "cdao tests")
    for var in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(var, "tests@example.invalid")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def repo(tmp_path: Path, git_identity: None) -> Path:
    """A git repository whose environments/ is a copy of the real one, with known pins:
    dev on branch `main` with DEV_CHARTS, staging on an older commit with STAGING_CHARTS."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ENVIRONMENTS, root / "environments")
    for path in (root / "environments").glob("Pulumi.*.yaml"):
        _switch_add_ons_off(path)
    _git(root.parent, "init", "--quiet", "--initial-branch=main", str(root))
    _git(root, "add", "-A")
    _git(root, "commit", "--quiet", "-m", "first")
    first = _git(root, "rev-parse", "HEAD")
    _set_pins(root / "environments" / "Pulumi.dev.yaml", "main", DEV_CHARTS)
    _set_pins(root / "environments" / "Pulumi.staging.yaml", first, STAGING_CHARTS)
    _set_pins(root / "environments" / "Pulumi.prod.yaml", first, STAGING_CHARTS)
    _git(root, "add", "-A")
    _git(root, "commit", "--quiet", "-m", "pins")
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["promote", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dev_to_staging_pins_the_branch_commit_and_copies_chart_versions_exactly(repo, capsys):
    environments = repo / "environments"
    staging = environments / "Pulumi.staging.yaml"
    before = staging.read_text()
    head = _git(repo, "rev-parse", "main")

    code, out, err = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 0, err
    assert _pins(environments, "staging") == (head, DEV_CHARTS)
    # old -> new per pin, including a chart added and one removed
    assert f"cdao:gitops.revision: {_git(repo, 'rev-parse', 'HEAD~1')} -> {head}" in out
    assert "cdao:gitops.chartVersions.flyte-core: v1.15.0 -> v1.16.2" in out
    assert "cdao:gitops.chartVersions.keda: (unset) -> 2.16.0" in out
    assert "cdao:gitops.chartVersions.linkerd-crds: 1.8.0 -> (removed)" in out
    assert "Suggested pull request title:" in out
    assert f"Promote dev -> staging: platform {head[:12]}" in out

    # Everything outside the pins is byte-for-byte what it was: comments, order, quoting.
    def outside_pins(text: str) -> list[str]:
        return [
            line for line in text.splitlines() if not line.startswith(("    revision:", "    chartVersions:", "      "))
        ]

    after = staging.read_text()
    assert outside_pins(after) == outside_pins(before)
    assert "# staging: production's shape at a smaller scale" in after
    assert 'accountId: "210987654321"' in after
    # The untouched charts keep their position; the new one is appended.
    assert _chart_lines(after) == ["flyte-core: v1.16.2", "cert-manager: v1.16.2", "keda: 2.16.0"]


def _chart_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("    chartVersions:") + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("      "):
            break
        block.append(line.strip())
    return block


def test_comments_around_the_charts_stay_where_they_were(repo, capsys):
    environments = repo / "environments"
    staging = environments / "Pulumi.staging.yaml"
    text = staging.read_text()
    text = text.replace("      flyte-core: v1.15.0\n", "      flyte-core: v1.15.0  # pinned for the 1.15 API\n")
    text = text.replace(
        "      cert-manager: v1.16.2\n", "      # cert-manager before linkerd\n      cert-manager: v1.16.2\n"
    )
    text = text.replace("  cdao:codeweave:\n", "  # The external GPU cloud.\n  cdao:codeweave:\n")
    staging.write_text(text)

    code, _, err = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 0, err
    after = staging.read_text()
    # linkerd-crds, the last chart, is removed and keda appended: the comment that introduces the
    # next section still comes right before it, after the last chart.
    assert "      keda: 2.16.0\n  # The external GPU cloud.\n  cdao:codeweave:\n" in after
    assert "      flyte-core: v1.16.2  # pinned for the 1.15 API\n" in after
    assert "      # cert-manager before linkerd\n      cert-manager: v1.16.2\n" in after
    assert _pins(environments, "staging")[1] == DEV_CHARTS


def test_staging_to_prod_copies_an_immutable_revision_as_is(repo, capsys):
    environments = repo / "environments"
    assert run(capsys, "dev", "staging", "--environments", str(environments))[0] == 0
    staging_pins = _pins(environments, "staging")

    code, out, err = run(capsys, "staging", "prod", "--environments", str(environments))

    assert code == 0, err
    assert _pins(environments, "prod") == staging_pins
    assert "resolved to" not in out  # a SHA needs no resolving


def test_nothing_to_promote_leaves_the_file_untouched(repo, capsys):
    environments = repo / "environments"
    assert run(capsys, "dev", "staging", "--environments", str(environments))[0] == 0
    staging = environments / "Pulumi.staging.yaml"
    before, stamp = staging.read_bytes(), staging.stat().st_mtime_ns

    code, out, _ = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 0
    assert out.startswith("nothing to promote")
    assert staging.read_bytes() == before
    assert staging.stat().st_mtime_ns == stamp


def test_dry_run_prints_the_diff_and_writes_nothing(repo, capsys):
    environments = repo / "environments"
    staging = environments / "Pulumi.staging.yaml"
    before = staging.read_bytes()

    code, out, _ = run(capsys, "dev", "staging", "--dry-run", "--environments", str(environments))

    assert code == 0
    assert staging.read_bytes() == before
    assert "dry run: nothing written" in out
    assert re.search(r"^-    revision: [0-9a-f]{40}$", out, re.M)
    assert re.search(r"^\+    revision: [0-9a-f]{40}$", out, re.M)
    assert "+      keda: 2.16.0" in out
    assert "-      linkerd-crds: 1.8.0" in out


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("dev", "prod", "it would skip staging"),
        ("staging", "dev", "promotions only go forward"),
        ("prod", "staging", "promotions only go forward"),
        ("staging", "staging", "promotions only go forward"),
        ("qa", "staging", "unknown environment 'qa'"),
        ("dev", "production", "unknown environment 'production'"),
    ],
)
def test_refuses_skipping_going_backwards_and_unknown_names(repo, capsys, source, target, message):
    environments = repo / "environments"
    before = {p.name: p.read_bytes() for p in environments.iterdir()}

    code, _, err = run(capsys, source, target, "--environments", str(environments))

    assert code == 2
    assert message in err
    assert {p.name: p.read_bytes() for p in environments.iterdir()} == before


def test_unresolvable_branch_names_the_file_and_key(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.dev.yaml", "feature/never-pushed", DEV_CHARTS)

    code, _, err = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 2
    assert "Pulumi.dev.yaml" in err
    assert "cdao:gitops.revision = 'feature/never-pushed'" in err
    assert "--revision" in err


def test_explicit_revision_tag_and_sha(repo, capsys):
    environments = repo / "environments"
    _git(repo, "tag", "platform-2026.11.1")
    _set_pins(environments / "Pulumi.dev.yaml", "feature/never-pushed", DEV_CHARTS)

    code, _, err = run(
        capsys, "dev", "staging", "--revision", "platform-2026.11.1", "--environments", str(environments)
    )
    assert code == 0, err
    assert _pins(environments, "staging")[0] == "platform-2026.11.1"

    sha = _git(repo, "rev-parse", "HEAD")
    code, _, err = run(capsys, "dev", "staging", "--revision", sha[:10], "--environments", str(environments))
    assert code == 0, err
    assert _pins(environments, "staging")[0] == sha  # an abbreviation is pinned in full

    code, _, err = run(capsys, "dev", "staging", "--revision", "no-such-ref", "--environments", str(environments))
    assert code == 2
    assert "--revision 'no-such-ref'" in err


def test_a_tag_in_the_source_is_kept_as_the_tag(repo, capsys):
    environments = repo / "environments"
    _git(repo, "tag", "v3.1.0")
    _set_pins(environments / "Pulumi.dev.yaml", "v3.1.0", DEV_CHARTS)

    code, _, err = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 0, err
    assert _pins(environments, "staging")[0] == "v3.1.0"


def test_the_remote_branch_wins_over_unpushed_local_commits(repo, tmp_path, capsys, git_identity):
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "--quiet", str(repo), str(clone))
    pushed = _git(clone, "rev-parse", "origin/main")
    (clone / "unpushed.txt").write_text("local only\n")
    _git(clone, "add", "unpushed.txt")
    _git(clone, "commit", "--quiet", "-m", "local only")
    assert _git(clone, "rev-parse", "main") != pushed

    code, _, err = run(capsys, "dev", "staging", "--environments", str(clone / "environments"))

    assert code == 0, err
    assert _pins(clone / "environments", "staging")[0] == pushed


def test_a_numeric_looking_sha_is_quoted_so_it_reads_back_as_text(repo, capsys):
    environments = repo / "environments"
    digits = "1234567890" * 4  # valid hex, and an integer to a YAML 1.1 reader

    code, _, err = run(capsys, "dev", "staging", "--revision", digits, "--environments", str(environments))

    assert code == 0, err
    assert f'revision: "{digits}"' in (environments / "Pulumi.staging.yaml").read_text()
    assert _pins(environments, "staging")[0] == digits


def test_source_without_chart_versions_clears_the_target(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.dev.yaml", "main", None)

    code, out, err = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 0, err
    assert _pins(environments, "staging")[1] == {}
    assert "chartVersions" not in (environments / "Pulumi.staging.yaml").read_text()
    assert "cdao:gitops.chartVersions.flyte-core: v1.15.0 -> (removed)" in out


def test_target_gains_a_chart_versions_block_it_did_not_have(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.staging.yaml", _git(repo, "rev-parse", "HEAD"), None)

    code, _, err = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 0, err
    assert _pins(environments, "staging")[1] == DEV_CHARTS


def test_missing_and_malformed_files_are_named(repo, capsys):
    environments = repo / "environments"
    (environments / "Pulumi.prod.yaml").unlink()
    code, _, err = run(capsys, "staging", "prod", "--environments", str(environments))
    assert code == 2
    assert "Pulumi.prod.yaml" in err

    (environments / "Pulumi.staging.yaml").write_text("config:\n  cdao:gitops: [unclosed\n")
    code, _, err = run(capsys, "dev", "staging", "--environments", str(environments))
    assert code == 2
    assert "Pulumi.staging.yaml" in err
    assert "not valid YAML" in err


def test_an_invalid_source_is_refused_with_the_key(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.dev.yaml", "main", {"flyte-core": "latest"})
    before = (environments / "Pulumi.staging.yaml").read_bytes()

    code, _, err = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 2
    assert "Pulumi.dev.yaml" in err
    assert "cdao:gitops.chartVersions.flyte-core" in err
    assert (environments / "Pulumi.staging.yaml").read_bytes() == before


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(repo, capsys, monkeypatch):
    environments = repo / "environments"
    before = {p.name: p.read_bytes() for p in environments.iterdir()}

    def refuse(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(promote.os, "replace", refuse)
    code, _, err = run(capsys, "dev", "staging", "--environments", str(environments))

    assert code == 2
    assert "No space left on device" in err
    assert {p.name: p.read_bytes() for p in environments.iterdir()} == before


def test_pr_json_carries_title_body_and_changes(repo, tmp_path, capsys):
    environments = repo / "environments"
    target = tmp_path / "pr.json"

    code, _, err = run(capsys, "dev", "staging", "--pr-json", str(target), "--environments", str(environments))

    assert code == 0, err
    data = yaml.safe_load(target.read_text())
    assert data["changed"] is True
    assert data["title"].startswith("Promote dev -> staging: platform ")
    assert "| `chartVersions.keda` | `(unset)` | `2.16.0` |" in data["body"]
    assert {"pin": "cdao:gitops.chartVersions.keda", "old": None, "new": "2.16.0"} in data["changes"]

    code, _, _ = run(capsys, "dev", "staging", "--pr-json", str(target), "--environments", str(environments))
    assert code == 0
    assert yaml.safe_load(target.read_text()) == {"changed": False}


def test_file_mode_is_kept(repo, capsys):
    environments = repo / "environments"
    staging = environments / "Pulumi.staging.yaml"
    os.chmod(staging, 0o640)

    assert run(capsys, "dev", "staging", "--environments", str(environments))[0] == 0

    assert staging.stat().st_mode & 0o777 == 0o640


def test_help_exits_zero(capsys):
    assert cli.main(["promote", "--help"]) == 0
    assert "--revision" in capsys.readouterr().out

"""`cdao promote`, run through the real `cdao` entry point on temporary copies of environments/
inside throwaway git repositories: the source's pins are read from its stack file at the commit its
last deployment ran (`--source-deployed`), so every test commits what a deployment would have seen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cdao_cli import main as cli
from cdao_cli import promote
from cdao_cli.plan.runner import read_stack_file
from infra.config import parse_stack_config

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


def commit(root: Path, message: str = "change") -> str:
    _git(root, "add", "-A")
    _git(root, "commit", "--quiet", "--allow-empty", "-m", message)
    return _git(root, "rev-parse", "HEAD")


def run(capsys: pytest.CaptureFixture[str], repo: Path, *args: str, deployed: str | None = None):
    """cdao promote with the source deployed at `deployed` (default: main's tip, i.e. everything
    committed so far was deployed)."""
    deployed = deployed or _git(repo, "rev-parse", "HEAD")
    code = cli.main(["promote", *args, "--source-deployed", deployed, "--environments", str(repo / "environments")])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dev_to_staging_pins_the_deployed_commit_and_copies_chart_versions_exactly(repo, capsys):
    environments = repo / "environments"
    staging = environments / "Pulumi.staging.yaml"
    before = staging.read_text()
    head = _git(repo, "rev-parse", "main")

    code, out, err = run(capsys, repo, "dev", "staging")

    assert code == 0, err
    assert _pins(environments, "staging") == (head, DEV_CHARTS)
    # old -> new per pin, including a chart added and one removed
    assert f"cdao:gitops.revision: {_git(repo, 'rev-parse', 'HEAD~1')} -> {head}" in out
    assert "cdao:gitops.chartVersions.flyte-core: v1.15.0 -> v1.16.2" in out
    assert "cdao:gitops.chartVersions.keda: (unset) -> 2.16.0" in out
    assert "cdao:gitops.chartVersions.linkerd-crds: 1.8.0 -> (removed)" in out
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
    # The untouched charts keep their position; the new one comes where the removed last one was.
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


def test_it_promotes_what_dev_deployed_not_the_tip_of_main(repo, capsys):
    environments = repo / "environments"
    deployed = _git(repo, "rev-parse", "HEAD")
    _set_pins(environments / "Pulumi.dev.yaml", "main", {**DEV_CHARTS, "keda": "2.17.0"})
    tip = commit(repo, "merged after dev's last deployment")

    code, out, err = run(capsys, repo, "dev", "staging", deployed=deployed)

    assert code == 0, err
    assert _pins(environments, "staging") == (deployed, DEV_CHARTS)  # neither the tip nor its keda
    assert tip not in out
    assert f"last successful deployment, at {deployed}" in out


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

    code, _, err = run(capsys, repo, "dev", "staging")

    assert code == 0, err
    after = staging.read_text()
    assert "      keda: 2.16.0\n  # The external GPU cloud.\n  cdao:codeweave:\n" in after
    assert "      flyte-core: v1.16.2  # pinned for the 1.15 API\n" in after
    assert "      # cert-manager before linkerd\n      cert-manager: v1.16.2\n" in after
    assert _pins(environments, "staging")[1] == DEV_CHARTS


def test_everything_but_the_pin_values_keeps_its_bytes(repo, capsys):
    """Sequence indentation, comment spacing and CRLF line ends: the PR body says only the pins change in the file."""
    environments = repo / "environments"
    staging = environments / "Pulumi.staging.yaml"
    text = staging.read_text()
    text = text.replace("  cdao:team: ml-platform\n", "  cdao:team: ml-platform      # owner, for cost reports\n")
    zones = "    availabilityZones:\n    - us-east-1a\n    - us-east-1b\n"  # a sequence at the key's indent
    text = text.replace("  cdao:network:\n", "  cdao:network:\n" + zones, 1)
    text = text.replace("      flyte-core: v1.15.0\n", "      flyte-core:   v1.15.0     # aligned\n")
    staging.write_bytes(text.replace("\n", "\r\n").encode())
    before = staging.read_bytes()

    code, _, err = run(capsys, repo, "dev", "staging")

    assert code == 0, err
    after = staging.read_bytes()
    assert after.count(b"\r\n") == after.count(b"\n")  # every line still ends in CRLF
    old_lines, new_lines = before.split(b"\r\n"), after.split(b"\r\n")
    changed = [line for line in new_lines if line not in old_lines]
    assert sorted(changed) == sorted(
        [
            f"    revision: {_git(repo, 'rev-parse', 'HEAD')}".encode(),
            b"      flyte-core:   v1.16.2     # aligned",
            b"      keda: 2.16.0",
        ]
    )
    assert b"    - us-east-1a\r\n    - us-east-1b\r\n" in after
    assert b"  cdao:team: ml-platform      # owner, for cost reports\r\n" in after


def test_staging_to_prod_copies_what_staging_deployed(repo, capsys):
    environments = repo / "environments"
    assert run(capsys, repo, "dev", "staging")[0] == 0
    staging_pins = _pins(environments, "staging")
    commit(repo, "promotion merged and deployed")

    code, _, err = run(capsys, repo, "staging", "prod")

    assert code == 0, err
    assert _pins(environments, "prod") == staging_pins


def test_a_promotion_staging_has_not_deployed_is_refused(repo, capsys):
    environments = repo / "environments"
    deployed = _git(repo, "rev-parse", "HEAD")
    assert run(capsys, repo, "dev", "staging")[0] == 0
    commit(repo, "promotion merged; its deploy failed")
    before = (environments / "Pulumi.prod.yaml").read_bytes()

    code, _, err = run(capsys, repo, "staging", "prod", deployed=deployed)

    assert code == 2
    assert "last successful deployment" in err and "deploy staging first" in err
    assert (environments / "Pulumi.prod.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("deployed", "message"),
    [
        ("0123456789" * 4, "no such commit"),
        ("abc1234", "expected a full 40-digit commit SHA"),
        ("main", "expected a full 40-digit commit SHA"),
    ],
)
def test_the_deployed_commit_must_exist_on_main(repo, capsys, deployed, message):
    code, _, err = run(capsys, repo, "dev", "staging", deployed=deployed)
    assert code == 2
    assert "--source-deployed" in err and message in err


def test_a_commit_only_a_branch_carries_is_refused(repo, capsys):
    _git(repo, "switch", "--quiet", "--create", "feature")
    side = commit(repo, "unmerged")
    _git(repo, "switch", "--quiet", "main")

    code, _, err = run(capsys, repo, "dev", "staging", deployed=side)

    assert code == 2
    assert "not a commit of main" in err


def test_a_pinned_source_naming_a_missing_commit_is_refused(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.staging.yaml", "0123456789" * 4, STAGING_CHARTS)
    commit(repo)

    code, _, err = run(capsys, repo, "staging", "prod")

    assert code == 2
    assert "0123456789" * 4 in err and "no such commit" in err


def test_nothing_to_promote_leaves_the_file_untouched(repo, capsys):
    environments = repo / "environments"
    assert run(capsys, repo, "dev", "staging")[0] == 0
    staging = environments / "Pulumi.staging.yaml"
    before, stamp = staging.read_bytes(), staging.stat().st_mtime_ns

    code, out, _ = run(capsys, repo, "dev", "staging", deployed=_git(repo, "rev-parse", "HEAD"))

    assert code == 0
    assert out.startswith("nothing to promote")
    assert staging.read_bytes() == before
    assert staging.stat().st_mtime_ns == stamp


def test_dry_run_prints_the_diff_and_writes_nothing(repo, capsys):
    environments = repo / "environments"
    staging = environments / "Pulumi.staging.yaml"
    before = staging.read_bytes()

    code, out, _ = run(capsys, repo, "dev", "staging", "--dry-run")

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

    code, _, err = run(capsys, repo, source, target)

    assert code == 2
    assert message in err
    assert {p.name: p.read_bytes() for p in environments.iterdir()} == before


def test_a_numeric_looking_sha_is_quoted_so_it_reads_back_as_text():
    digits = "1234567890" * 4  # valid hex, and an integer to a YAML 1.1 reader
    assert promote._scalar(digits) == f'"{digits}"'
    assert yaml.safe_load(promote._scalar(digits)) == digits
    assert promote._scalar("c5744c9bc60f0579176881a5b84a19d2b1744090") == "c5744c9bc60f0579176881a5b84a19d2b1744090"


def test_a_source_without_chart_versions_is_refused_not_copied_as_no_pins(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.dev.yaml", "main", None)
    commit(repo)
    before = (environments / "Pulumi.staging.yaml").read_bytes()

    code, _, err = run(capsys, repo, "dev", "staging")

    assert code == 2
    assert "Pulumi.dev.yaml" in err and "chartVersions is missing or empty" in err
    assert (environments / "Pulumi.staging.yaml").read_bytes() == before


def test_target_gains_a_chart_versions_block_it_did_not_have(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.staging.yaml", _git(repo, "rev-parse", "HEAD"), None)

    code, _, err = run(capsys, repo, "dev", "staging")

    assert code == 0, err
    assert _pins(environments, "staging")[1] == DEV_CHARTS


def test_a_target_still_following_a_branch_is_repaired_by_the_promotion(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.staging.yaml", "main", STAGING_CHARTS)

    code, _, err = run(capsys, repo, "dev", "staging")

    assert code == 0, err
    assert _pins(environments, "staging") == (_git(repo, "rev-parse", "HEAD"), DEV_CHARTS)


def test_missing_and_malformed_files_are_named(repo, capsys):
    environments = repo / "environments"
    (environments / "Pulumi.prod.yaml").unlink()
    code, _, err = run(capsys, repo, "staging", "prod")
    assert code == 2
    assert "Pulumi.prod.yaml" in err

    (environments / "Pulumi.staging.yaml").write_text("config:\n  cdao:gitops: [unclosed\n")
    code, _, err = run(capsys, repo, "dev", "staging")
    assert code == 2
    assert "Pulumi.staging.yaml" in err
    assert "not valid YAML" in err


def test_an_invalid_chart_version_is_refused_with_the_key(repo, capsys):
    environments = repo / "environments"
    _set_pins(environments / "Pulumi.dev.yaml", "main", {"flyte-core": "latest"})
    commit(repo)
    before = (environments / "Pulumi.staging.yaml").read_bytes()

    code, _, err = run(capsys, repo, "dev", "staging")

    assert code == 2
    assert "cdao:gitops.chartVersions.flyte-core" in err
    assert (environments / "Pulumi.staging.yaml").read_bytes() == before


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(repo, capsys, monkeypatch):
    environments = repo / "environments"
    before = {p.name: p.read_bytes() for p in environments.iterdir()}
    real_replace = promote.os.replace

    def refuse(src, dst, *args, **kwargs):
        if Path(dst).name.startswith("Pulumi."):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(promote.os, "replace", refuse)
    code, _, err = run(capsys, repo, "dev", "staging")

    assert code == 2
    assert "No space left on device" in err
    assert {p.name: p.read_bytes() for p in environments.iterdir()} == before


def test_pr_json_carries_title_body_revision_and_changes(repo, tmp_path, capsys):
    environments = repo / "environments"
    target = tmp_path / "pr.json"

    code, _, err = run(capsys, repo, "dev", "staging", "--pr-json", str(target))

    assert code == 0, err
    data = yaml.safe_load(target.read_text())
    assert data["changed"] is True
    assert data["revision"] == _git(repo, "rev-parse", "HEAD")
    assert data["title"].startswith("Promote dev -> staging: platform ")
    assert "| `chartVersions.keda` | `(unset)` | `2.16.0` |" in data["body"]
    assert {"pin": "cdao:gitops.chartVersions.keda", "old": None, "new": "2.16.0"} in data["changes"]

    code, _, _ = run(capsys, repo, "dev", "staging", "--pr-json", str(target))
    assert code == 0
    assert yaml.safe_load(target.read_text()) == {"changed": False}
    assert _pins(environments, "staging")[1] == DEV_CHARTS


def test_an_unwritable_pr_json_fails_cleanly_before_the_stack_file_changes(repo, tmp_path, capsys):
    environments = repo / "environments"
    before = (environments / "Pulumi.staging.yaml").read_bytes()

    code, _, err = run(capsys, repo, "dev", "staging", "--pr-json", str(tmp_path / "no-such-dir" / "pr.json"))

    assert code == 2
    assert "--pr-json" in err and "nothing written" in err
    assert "Traceback" not in err
    assert (environments / "Pulumi.staging.yaml").read_bytes() == before


def test_file_mode_is_kept(repo, capsys):
    environments = repo / "environments"
    staging = environments / "Pulumi.staging.yaml"
    os.chmod(staging, 0o640)

    assert run(capsys, repo, "dev", "staging")[0] == 0

    assert staging.stat().st_mode & 0o777 == 0o640


def test_help_exits_zero(capsys):
    assert cli.main(["promote", "--help"]) == 0
    assert "--source-deployed" in capsys.readouterr().out


def test_promoting_the_committed_dev_pins_drops_staging_s_connector_version(tmp_path, git_identity, capsys):
    """The committed files: dev has no `cdao-connector` pin (its image tag is the revision's commit,
    infra/images.py), so the promotion that moves staging onto that code also removes staging's, line
    and comment together, and staging's file then reads with every add-on as committed."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ENVIRONMENTS, root / "environments")
    _git(root.parent, "init", "--quiet", "--initial-branch=main", str(root))
    head = commit(root, "committed environments/")
    assert "cdao-connector" in (root / "environments" / "Pulumi.staging.yaml").read_text()

    code, out, err = run(capsys, root, "dev", "staging", deployed=head)

    assert code == 0, err
    assert "cdao:gitops.chartVersions.cdao-connector: 0.1.0 -> (removed)" in out
    text = (root / "environments" / "Pulumi.staging.yaml").read_text()
    assert "cdao-connector" not in text
    revision, charts = _pins(root / "environments", "staging")
    assert (revision, charts) == (head, _pins(root / "environments", "dev")[1])


def test_the_pull_request_lists_the_per_stack_edits_that_go_live_with_the_new_pin(repo, tmp_path, capsys):
    """A pinned stack runs its own file as of its pin (cdao_cli/stack_revision.py deployed_stack_file):
    every per-stack edit merged into staging's file since its old pin goes live with this merge, and the
    body says which (values of secrets never shown)."""
    staging = repo / "environments" / "Pulumi.staging.yaml"
    text = staging.read_text()
    text = text.replace("  cdao:backup:\n    dailyRetentionDays: 14\n", "")
    ciphertext = "  cdao:codeweaveExternalId:\n    secure: v1:c2VjcmV0\n"
    text = text.replace("  cdao:team: ml-platform\n", "  cdao:team: ml-research\n" + ciphertext)
    text = text.replace("      maxSize: 6\n", "      maxSize: 7\n", 1)
    staging.write_text(text)
    commit(repo, "staging: per-stack edits")
    target = tmp_path / "pr.json"

    code, _, err = run(capsys, repo, "dev", "staging", "--pr-json", str(target))

    assert code == 0, err
    body = yaml.safe_load(target.read_text())["body"]
    assert "nothing else changes" not in body
    assert "| `cdao:team` | `ml-platform` | `ml-research` |" in body
    assert "| `cdao:backup.dailyRetentionDays` | `14` | `(removed)` |" in body
    assert "| `cdao:nodePools.cpu.maxSize` | `6` | `7` |" in body
    assert "| `cdao:codeweaveExternalId` | `(unset)` | `(secret)` |" in body
    assert "c2VjcmV0" not in body


def test_the_pull_request_says_when_no_per_stack_edit_goes_live(repo, tmp_path, capsys):
    target = tmp_path / "pr.json"
    code, _, err = run(capsys, repo, "dev", "staging", "--pr-json", str(target))
    assert code == 0, err
    body = yaml.safe_load(target.read_text())["body"]
    assert "No other key of `Pulumi.staging.yaml` changed between its old pin" in body

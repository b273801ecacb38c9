"""`cdao plan --diff`: what a change does to each stack, base against head.

Most cases plan the real program twice: the repository's stack file as the base, and an edited
copy of environments/ as the head. One case builds a throwaway git repository from this tree and
runs the CLI end to end against a base commit whose configuration no longer parses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cdao_cli.main import main
from cdao_cli.plan import diff
from cdao_cli.plan.mocks import SECRET_MASK
from cdao_cli.plan.report import build_plan
from cdao_cli.plan.runner import ENVIRONMENTS_DIR, OFFLINE_SECRET, REPO_ROOT, run_stack

BASE = diff.Base(ref="main", commit="0123456789abcdef0123456789abcdef01234567")


@pytest.fixture
def edited(tmp_path: Path, plan_of) -> Callable[[str, Callable[[str], str]], tuple[dict, dict]]:
    """edited(stack, edit) -> (base plan, head plan) where head's stack file is edit(base's text)."""

    def make(stack: str, edit: Callable[[str], str]) -> tuple[dict, dict]:
        environments = tmp_path / "environments"
        shutil.copytree(ENVIRONMENTS_DIR, environments, dirs_exist_ok=True)
        path = environments / f"Pulumi.{stack}.yaml"
        text = path.read_text()
        changed = edit(text)
        assert changed != text, "the edit changed nothing: the stack file no longer has what the test edits"
        path.write_text(changed)
        return build_plan(plan_of(stack)), build_plan(run_stack(stack, environments))

    return make


def _names(entries: list[dict], typ: str) -> set[str]:
    return {e["name"] for e in entries if e["type"] == typ}


def test_an_added_node_pool_adds_its_resources_and_raises_the_peak_cost(edited):
    base, head = edited("dev", lambda t: t.replace("    a100-mig:\n      enabled: false\n", ""))
    result = diff.diff_stack("dev", base, head)

    assert result["status"] == "changed"
    assert "pool-a100-mig-ng" in _names(result["resources"]["added"], "aws:eks/nodeGroup:NodeGroup")
    assert _names(result["resources"]["added"], "aws:ec2/launchTemplate:LaunchTemplate")
    assert result["resources"]["removed"] == []
    peak = result["cost"]["peak_usd_month"]
    assert peak["delta"] > 0
    assert peak["delta"] == pytest.approx(peak["head"] - peak["base"], abs=0.01)
    moved = {line["resource_name"] for line in result["cost"]["lines"]}
    assert "pool-a100-mig-ng" in moved


def test_a_removed_bucket_is_listed_as_removed(edited):
    def drop_replication(text: str) -> str:
        return re.sub(r"  cdao:storage:\n    replicationRegion: [a-z0-9-]+\n", "", text)

    base, head = edited("prod", drop_replication)
    result = diff.diff_stack("prod", base, head)

    removed_buckets = _names(result["resources"]["removed"], "aws:s3/bucket:Bucket")
    assert removed_buckets, result["resources"]["removed"]
    assert all("replica" in name for name in removed_buckets)
    assert result["resources"]["added"] == []


def test_a_changed_instance_type_shows_the_input_the_replacement_and_the_cost_moved(edited):
    base, head = edited("dev", lambda t: t.replace("[m5.large, m6i.large]", "[m5.xlarge, m6i.large]"))
    result = diff.diff_stack("dev", base, head)

    (group,) = [c for c in result["resources"]["changed"] if c["name"] == "pool-cpu-ng"]
    assert group["type"] == "aws:eks/nodeGroup:NodeGroup"
    by_path = {c["path"]: c for c in group["changes"]}
    assert by_path["instanceTypes[0]"]["base"] == "m5.large"
    assert by_path["instanceTypes[0]"]["head"] == "m5.xlarge"
    # instance_types is ForceNew in the provider (cdao_cli/plan/replacements.py cites the source).
    assert by_path["instanceTypes[0]"]["forces_replacement"]
    assert group["replace"]
    assert "instanceTypes[1]" not in by_path
    (line,) = [line for line in result["cost"]["lines"] if line["resource_name"] == "pool-cpu-ng"]
    assert line["idle_usd_month"]["delta"] > 0
    assert "m5.xlarge" in line["head_description"]

    text = diff.render_text(BASE, [result])
    assert 'instanceTypes[0]: "m5.large" -> "m5.xlarge"  [forces replacement]' in text


def test_a_change_that_breaks_a_mandatory_rule_shows_it_as_new_and_its_revert_as_cleared(edited):
    # gpuPoolMaxNodes for dev is 2 (policies/settings.py): a third A100 node breaks CDAO-COST-002.
    base, head = edited(
        "dev", lambda t: t.replace("    a100-timeslice:\n      maxSize: 1\n", "    a100-timeslice:\n      maxSize: 3\n")
    )
    forward = diff.diff_stack("dev", base, head)
    assert [(v["rule"], v["level"]) for v in forward["policy"]["new"]] == [("CDAO-COST-002", "mandatory")]
    assert forward["policy"]["cleared"] == []
    assert "1 new (1 mandatory)" in diff.summary_line(forward)

    backward = diff.diff_stack("dev", head, base)
    assert [v["rule"] for v in backward["policy"]["cleared"]] == ["CDAO-COST-002"]
    assert backward["policy"]["new"] == []


def test_unchanged_stacks_collapse_to_one_line_and_an_untouched_change_says_so(plan_of):
    plans = {s: build_plan(plan_of(s)) for s in ("dev", "staging")}
    diffs = [diff.diff_stack(s, p, json.loads(json.dumps(p))) for s, p in plans.items()]
    assert [d["status"] for d in diffs] == ["unchanged", "unchanged"]

    text = diff.render_text(BASE, diffs)
    assert text.count("\n") == 1
    assert text.startswith("No stack changes against main (0123456789ab): dev, staging plan the same")
    markdown = diff.render_markdown(BASE, diffs)
    assert "No stack changes" in markdown
    assert "<details>" not in markdown


def test_markdown_puts_a_summary_line_per_stack_before_folded_details(edited, plan_of):
    base, head = edited("dev", lambda t: t.replace("[m5.large, m6i.large]", "[m5.xlarge, m6i.large]"))
    staging = build_plan(plan_of("staging"))
    diffs = [diff.diff_stack("dev", base, head), diff.diff_stack("staging", staging, staging)]
    markdown = diff.render_markdown(BASE, diffs)
    lines = markdown.splitlines()

    summary = [i for i, line in enumerate(lines) if line.startswith(("| dev |", "| staging |"))]
    details = [i for i, line in enumerate(lines) if line.startswith("<details>")]
    assert len(summary) == 2
    assert len(details) == 1, "only the changed stack gets details"
    assert max(summary) < min(details)
    assert "| staging | no change |" in markdown
    # Equal inputs give byte-equal output.
    assert diff.render_markdown(BASE, diffs) == markdown
    assert diff.render_json(BASE, diffs) == diff.render_json(BASE, json.loads(json.dumps(diffs)))


def test_a_base_plan_without_resource_inputs_is_compared_on_resources_only(plan_of):
    head = build_plan(plan_of("dev"))
    old = json.loads(json.dumps(head))
    for resource in old["resources"]:
        del resource["inputs"], resource["urn"], resource["parent"], resource["replace_on_changes"]
    result = diff.diff_stack("dev", old, head)
    assert result["status"] == "unchanged"
    assert not result["inputs_compared"]
    assert "inputs not compared" in diff.render_text(BASE, [result])


@pytest.mark.usefixtures("cli_shares_plans")
def test_plan_json_carries_each_resources_inputs_with_secrets_masked(capsys: pytest.CaptureFixture[str]):
    assert main(["plan", "--stack", "dev", "--format", "json"]) == 0
    out = capsys.readouterr().out
    plan = json.loads(out)
    assert all({"urn", "parent", "inputs"} <= set(r) for r in plan["resources"])
    by_urn = {r["urn"] for r in plan["resources"]}
    assert all(r["urn"].startswith("urn:pulumi:dev::") for r in plan["resources"])
    # Every parent is a URN the engine knows: a component's, or the stack's.
    assert all(r["parent"].startswith("urn:pulumi:dev::cdao::") for r in plan["resources"])
    assert by_urn
    # The Codeweave external ID is a secret config value: masked, and its stand-in never printed.
    assert OFFLINE_SECRET not in out
    assert re.search(re.escape(SECRET_MASK[:-1]) + r" [0-9a-f]{8}\]", out)
    # URNs as the engine makes them (pulumi/pulumi sdk/go/common/resource/urn New): the parent's
    # whole qualified type, never the root stack's.
    by_name = {(r["type"], r["name"]): r for r in plan["resources"]}
    policy = by_name[("aws:iam/rolePolicy:RolePolicy", "service-roles-codeweave")]
    assert policy["urn"] == (
        "urn:pulumi:dev::cdao::cdao:infra:ServiceRoles$aws:iam/role:Role$aws:iam/rolePolicy:RolePolicy"
        "::service-roles-codeweave"
    )
    role = by_name[("aws:iam/role:Role", "service-roles-codeweave")]
    assert role["parent"] == "urn:pulumi:dev::cdao::cdao:infra:ServiceRoles::service-roles"
    assert "pulumi:pulumi:Stack$" not in out


@pytest.mark.parametrize(
    "path",
    ["instanceTypes[0]", 'tags["kubernetes.io/cluster/x"]', "scalingConfig.maxSize", 'a["with \\"quote"].b[12]'],
)
def test_property_paths_print_in_pulumis_syntax_and_parse_back(path: str):
    assert diff.format_path(diff.parse_path(path)) == path


def test_a_bad_ref_or_another_environments_folder_exits_2_naming_it(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    assert main(["plan", "--stack", "dev", "--diff", "no-such-ref-xyz"]) == 2
    assert "no-such-ref-xyz" in capsys.readouterr().err
    assert main(["plan", "--stack", "dev", "--diff", "--output=x"]) == 2
    assert main(["plan", "--stack", "dev", "--diff", "HEAD", "--environments", str(tmp_path)]) == 2
    assert "--environments" in capsys.readouterr().err


def test_a_change_to_a_secret_input_shows_without_its_value(edited):
    # The Codeweave role's trust policy is an Output.secret: a new vendor account must still show.
    base, head = edited("dev", lambda t: t.replace('accountId: "210987654321"', 'accountId: "999988887777"'))
    result = diff.diff_stack("dev", base, head)
    (role,) = [c for c in result["resources"]["changed"] if c["name"] == "service-roles-codeweave"]
    (change,) = role["changes"]
    assert change["base"] != change["head"]
    assert all(str(v).startswith(SECRET_MASK[:-1]) for v in (change["base"], change["head"]))
    text = diff.render_text(BASE, [result])
    assert "999988887777" not in text and "210987654321" not in text


def _plan(*resources: dict, violations: list[dict] | None = None) -> dict:
    return {"resources": list(resources), "policy": {"violations": violations or []}, "cost": _NO_COST}


def _res(inputs: dict, typ: str = "aws:iam/rolePolicy:RolePolicy", name: str = "p") -> dict:
    return {"type": typ, "name": name, "urn": f"urn:pulumi:t::cdao::{typ}::{name}", "inputs": inputs}


def test_json_documents_are_compared_by_content():
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}],
    }
    widened = json.loads(json.dumps(document))
    widened["Statement"][0]["Action"].append("s3:*")
    result = diff.diff_stack(
        "t", _plan(_res({"policy": json.dumps(document)})), _plan(_res({"policy": json.dumps(widened)}))
    )
    (changed,) = result["resources"]["changed"]
    assert [(c["path"], c["base"], c["head"]) for c in changed["changes"]] == [
        ("policy(json).Statement[0].Action[1]", None, "s3:*")
    ]


def test_set_typed_inputs_ignore_order_but_not_content():
    group = "aws:eks/nodeGroup:NodeGroup"
    reordered = diff.diff_stack(
        "t", _plan(_res({"subnetIds": ["a", "b"]}, group)), _plan(_res({"subnetIds": ["b", "a"]}, group))
    )
    assert reordered["status"] == "unchanged"
    moved = diff.diff_stack(
        "t", _plan(_res({"subnetIds": ["a", "b"]}, group)), _plan(_res({"subnetIds": ["a", "c"]}, group))
    )
    (changed,) = moved["resources"]["changed"]
    assert changed["replace"]


def test_a_finding_whose_message_changes_is_reworded_not_new():
    finding = {"rule": "CDAO-COST-002", "level": "mandatory", "resource_type": "t", "resource_name": "gpu"}
    base = _plan(violations=[{**finding, "message": "max size 8 > cap 6"}])
    head = _plan(violations=[{**finding, "message": "max size 10 > cap 6"}])
    result = diff.diff_stack("t", base, head)
    assert result["policy"]["new"] == [] and result["policy"]["cleared"] == []
    (reworded,) = result["policy"]["changed"]
    assert reworded["head_messages"] == ["max size 10 > cap 6"]
    assert "1 reworded" in diff.summary_line(result)


def test_markdown_is_inert_and_within_githubs_comment_limit():
    hostile = "main | x <!-- y `z` [link](http://e) <details>"
    result = diff.diff_stack("t", _plan(_res({"revision": "main"})), _plan(_res({"revision": hostile})))
    markdown = diff.render_markdown(BASE, [result])
    assert "<!--" not in markdown and "<details>" not in markdown.split("</summary>", 1)[1]
    assert "\\|" in markdown
    many = [_res({"v": i}, name=f"r{i}") for i in range(3000)]
    big = diff.diff_stack("t", _plan(*many), _plan(*[_res({"v": -i}, name=f"r{i}") for i in range(3000)]))
    text = diff.render_markdown(BASE, [big, {**big, "stack": "u"}])
    assert len(text.encode()) <= diff.MARKDOWN_BUDGET
    assert text.count("details left out") == 2


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.mark.e2e
def test_a_base_whose_config_no_longer_parses_is_reported_not_fatal(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in (
        "infra",
        "cdao_cli",
        "cdao_cost",
        "cdao_catalog",
        "cdao_resources",
        "cdao_stacks",
        "policies",
        "environments",
        # CDAO-DATA-021 counts the database pools from platform/'s values files.
        "platform",
    ):
        shutil.copytree(REPO_ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "Pulumi.yaml"):
        shutil.copy(REPO_ROOT / name, repo / name)
    dev = repo / "environments" / "Pulumi.dev.yaml"
    good = dev.read_text()
    _git(repo, "init", "-q", "-b", "main")
    dev.write_text(good.replace("      minSize: 2\n      maxSize: 6\n", "      minSize: 9\n      maxSize: 6\n", 1))
    (repo / "docs").mkdir()
    (repo / "docs" / "hosts").symlink_to("/etc/hosts")  # an absolute link: tar's "data" filter refuses it
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base: a stack file that no longer parses")
    dev.write_text(good)
    _git(repo, "commit", "-qam", "head: fixed")
    status_before = _git(repo, "status", "--porcelain")

    proc = subprocess.run(
        [sys.executable, "-m", "cdao_cli", "plan", "--stack", "dev", "--diff", "HEAD~1", "--format", "json"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (stack,) = json.loads(proc.stdout)["stacks"]
    assert stack["status"] == "error"
    assert "minSize" in stack["base_error"]
    assert stack["head_error"] is None
    assert stack["head_summary"]["resources"] > 0
    # The user's checkout is untouched: no file changed, no worktree registered.
    assert _git(repo, "status", "--porcelain") == status_before
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


def test_the_programs_own_replace_on_changes_is_recorded_and_marks_replacements():
    import contextvars  # noqa: PLC0415

    import pulumi  # noqa: PLC0415
    import pulumi_aws as aws  # noqa: PLC0415
    from pulumi.runtime.stack import run_pulumi_func  # noqa: PLC0415
    from pulumi.runtime.sync_await import _sync_await  # noqa: PLC0415

    from cdao_cli.plan.mocks import AwsMocks, RecordingMonitor  # noqa: PLC0415

    mocks = AwsMocks(region="us-east-1", stack="t")
    monitor = RecordingMonitor(mocks)

    def run() -> None:
        pulumi.runtime.set_mocks(mocks, project="cdao", stack="t", preview=False, monitor=monitor)

        def program() -> None:
            aws.s3.Bucket("b", tags={"team": "a"}, opts=pulumi.ResourceOptions(replace_on_changes=["tags.team"]))

        _sync_await(run_pulumi_func(program))

    contextvars.Context().run(run)
    (bucket,) = [r for r in monitor.registrations.values() if r.name == "b"]
    assert bucket.replace_on_changes == ["tags.team"]

    def plan(tags: dict[str, str]) -> dict:
        resource = {
            "type": bucket.type,
            "name": "b",
            "urn": bucket.urn,
            "inputs": {"tags": tags},
            "replace_on_changes": bucket.replace_on_changes,
        }
        return {"resources": [resource], "policy": {"violations": []}, "cost": _NO_COST}

    (changed,) = diff.diff_stack("t", plan({"team": "a"}), plan({"team": "b"}))["resources"]["changed"]
    assert changed["replace"]
    (other,) = diff.diff_stack("t", plan({"team": "a", "x": "1"}), plan({"team": "a", "x": "2"}))["resources"][
        "changed"
    ]
    assert not other["replace"]


_NO_COST = {"idle_usd_month": 0.0, "peak_usd_month": 0.0, "lines": [], "unpriced": [], "usage_based": []}


@pytest.mark.e2e
def test_sigterm_removes_the_base_tree_and_its_planner(tmp_path: Path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdao_cli", "plan", "--all", "--diff", "HEAD"],
        cwd=REPO_ROOT,
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(temp.glob("cdao-plan-base-*/tree/infra")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(temp.glob("cdao-plan-base-*")), "the base tree never appeared"
    time.sleep(1)  # the base planner is running now
    proc.terminate()
    assert proc.wait(30) == 128 + signal.SIGTERM
    assert not list(temp.iterdir()), "the temporary base tree was left behind"
    planners = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(temp) in _cmdline(p)]
    assert not planners, "the base planner outlived cdao"


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_inputs_the_program_tells_pulumi_to_ignore_are_not_changes(edited):
    # infra/components/node_pool.py sets ignore_changes=["scalingConfig.desiredSize"]: the autoscaler
    # owns the size, and a real preview shows nothing for it.
    base, head = edited("dev", lambda t: t.replace("      minSize: 2\n", "      minSize: 2\n      desiredSize: 3\n", 1))
    result = diff.diff_stack("dev", base, head)
    changed = {c["name"]: c for c in result["resources"]["changed"]}
    group = changed.get("pool-cpu-ng")
    assert group is None or all("desiredSize" not in c["path"] for c in group["changes"])


def test_taints_are_a_set_and_numbers_print_as_the_config_wrote_them():
    group = "aws:eks/nodeGroup:NodeGroup"
    a, b = {"key": "a", "value": "x", "effect": "NO_SCHEDULE"}, {"key": "b", "value": "y", "effect": "NO_SCHEDULE"}
    swapped = diff.diff_stack("t", _plan(_res({"taints": [a, b]}, group)), _plan(_res({"taints": [b, a]}, group)))
    assert swapped["status"] == "unchanged"
    resized = diff.diff_stack("t", _plan(_res({"diskSize": 50.0}, group)), _plan(_res({"diskSize": 100.0}, group)))
    assert "diskSize: 50 -> 100" in diff.render_text(BASE, [resized])


def test_a_rotated_secret_config_value_is_a_change(edited):
    def rotate(text: str) -> str:
        return text + "  cdao:codeweaveExternalId:\n    secure: v1:BBBBBBBBBBBBBBBBBBBBBBBB\n"

    base, head = edited("staging", rotate)
    result = diff.diff_stack("staging", base, head)
    assert result["status"] == "changed"
    assert result["secret_config_changed"] == ["cdao:codeweaveExternalId"]
    assert "BBBB" not in json.dumps(result)
    assert "secret config changed (cdao:codeweaveExternalId)" in diff.summary_line(result)


def test_a_second_finding_of_a_rule_on_a_resource_is_new_not_reworded():
    finding = {"rule": "CDAO-IAM-001", "level": "mandatory", "resource_type": "t", "resource_name": "role"}
    one = _plan(violations=[{**finding, "message": "Statement[0] allows *"}])
    two = _plan(violations=[{**finding, "message": m} for m in ("Statement[0] allows *", "Statement[1] allows iam:*")])
    forward = diff.diff_stack("t", one, two)
    assert [v["message"] for v in forward["policy"]["new"]] == ["Statement[1] allows iam:*"]
    assert forward["policy"]["changed"] == []
    backward = diff.diff_stack("t", two, one)
    assert [v["message"] for v in backward["policy"]["cleared"]] == ["Statement[1] allows iam:*"]


def test_the_fold_header_escapes_the_stack_name_as_html():
    result = diff.diff_stack("prod_eu<1>", _plan(_res({"v": 1})), _plan(_res({"v": 2})))
    assert "<summary><b>prod_eu&lt;1&gt;</b>" in diff.render_markdown(BASE, [result])


def test_a_failing_program_is_exit_2_not_a_policy_violation(monkeypatch, capsys: pytest.CaptureFixture[str]):
    import cdao_cli.plan.baseline  # noqa: PLC0415
    import cdao_cli.plan.runner  # noqa: PLC0415

    def broken(stack: str, environments=None):
        raise RuntimeError("program bug")

    class NoBase:
        def __init__(self, base, repo_root, stacks):
            self.base = base

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def result(self):
            return cdao_cli.plan.baseline.BasePlans(base=self.base, stacks=[])

    monkeypatch.setattr(cdao_cli.plan.runner, "run_stack", broken)
    assert main(["plan", "--stack", "dev"]) == 2
    assert "the program failed: RuntimeError: program bug" in capsys.readouterr().err
    monkeypatch.setattr(cdao_cli.plan.baseline, "BasePlanner", NoBase)
    assert main(["plan", "--stack", "dev", "--diff", "HEAD", "--format", "json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert "program bug" in out["stacks"][0]["head_error"]

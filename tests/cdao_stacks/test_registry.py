"""The stack registry (cdao_stacks): a new stack is one new file in environments/, and every tool
reads it from there. Bad registry input exits 2 naming the file and the key, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cdao_stacks

# The one place the tests name the CLI's entry point (its module may move into cdao_cli).
from cdao_cli.main import main as cdao_main

REPO_ENVIRONMENTS = cdao_stacks.ENVIRONMENTS_DIR
PROMOTED_REVISION = re.compile(r"^(    revision: )[0-9a-f]{40}$", re.MULTILINE)


def _with_entry(text: str, entry: dict[str, str]) -> str:
    """A stack file's text with its registry keys (`cdao-stack:*`) replaced by `entry`. Plain text
    edits, independent of the code under test."""
    lines = [line for line in text.splitlines() if not line.startswith("  cdao-stack:")]
    at = lines.index("config:") + 1
    lines[at:at] = [f"  {key}: {value}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def environments(tmp_path: Path) -> Path:
    """A copy of the real environments/ plus `sandbox`: a plain copy of dev's file (profile dev, no
    promotesFrom), the one new file a new stack needs."""
    folder = tmp_path / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, folder)
    shutil.copy(folder / "Pulumi.dev.yaml", folder / "Pulumi.sandbox.yaml")
    return folder


def _plan(capsys: pytest.CaptureFixture[str], environments: Path, stack: str) -> tuple[int, dict, str]:
    code = cdao_main(["plan", "--stack", stack, "--environments", str(environments), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_the_real_stacks_are_registered_in_promotion_order():
    registry = cdao_stacks.load()
    assert registry.names == ["dev", "staging", "prod"]
    assert registry.promotion_order == ("dev", "staging", "prod")
    assert [registry.get(s).profile for s in registry.names] == ["dev", "staging", "prod"]


def test_a_new_stack_file_is_planned_with_the_profile_it_declares(environments, capsys):
    code, plan, err = _plan(capsys, environments, "sandbox")
    assert (code, err) == (0, "")
    assert plan["stack"] == "sandbox"
    assert plan["profile"] == "dev"
    assert plan["policy"]["installed"] and plan["policy"]["rules"] > 0
    assert not [v for v in plan["policy"]["violations"] if v["level"] == "mandatory"]
    # --all lists it after the promotion chain.
    assert cdao_main(["plan", "--all", "--environments", str(environments), "--format", "json"]) == 0
    assert [p["stack"] for p in json.loads(capsys.readouterr().out)] == ["dev", "staging", "prod", "sandbox"]


def test_plan_all_prints_every_good_stack_when_one_stack_file_has_a_bad_value(tmp_path, capsys):
    """One bad value holds back only its own stack: the others' plans are printed, the bad one is
    named on stderr, and the exit code is 2. Only dev and the bad copy, so one stack is planned."""
    folder = tmp_path / "environments"
    folder.mkdir()
    dev = (REPO_ENVIRONMENTS / "Pulumi.dev.yaml").read_text()
    (folder / "Pulumi.dev.yaml").write_text(dev)
    assert "  cdao:team: ml-platform\n" in dev
    (folder / "Pulumi.sandbox.yaml").write_text(dev.replace("  cdao:team: ml-platform\n", '  cdao:team: "aws:bad"\n'))
    code = cdao_main(["plan", "--all", "--environments", str(folder), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert [p["stack"] for p in json.loads(out)] == ["dev"]
    assert "sandbox" in err and "cdao:team" in err


def test_a_new_stack_following_the_prod_profile_gets_prods_policies(environments, capsys):
    path = environments / "Pulumi.sandbox.yaml"
    # dev's layout (single-AZ database, disposable data) under prod's profile breaks prod's rules; the
    # config check refuses the disposable data first (a prod-profile stack must keep its data).
    path.write_text(_with_entry(path.read_text(), {"cdao-stack:profile": "prod"}))
    code, _, err = _plan(capsys, environments, "sandbox")
    assert code == 2
    assert "stack 'sandbox': cdao:storage.forceDestroy = true: expected false outside dev" in err

    tags = {"team": "ml-platform", "cost-center": "cc-1", "environment": "sandbox"}
    props = {"multiAz": False, "storageEncrypted": True, "skipFinalSnapshot": True, "tags": tags}
    resources = [{"type": "aws:rds/instance:Instance", "name": "db", "props": props}]
    resource_file = environments.parent / "resources.json"
    resource_file.write_text(json.dumps(resources))
    argv = ["policy", "check", str(resource_file), "--environments", str(environments), "--format", "json"]
    assert cdao_main([*argv, "--stack", "sandbox"]) == 1
    violations = json.loads(capsys.readouterr().out)
    assert any(v["rule"] == "CDAO-DATA-008" and "'sandbox'" in v["message"] for v in violations)
    path.write_text(_with_entry(path.read_text(), {"cdao-stack:profile": "dev"}))
    assert cdao_main([*argv, "--stack", "sandbox"]) == 0
    assert not [v for v in json.loads(capsys.readouterr().out) if v["rule"] == "CDAO-DATA-008"]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_a_new_stack_at_the_end_of_the_promotion_chain_is_promoted_to(tmp_path, capsys, monkeypatch):
    for var, value in (("NAME", "cdao tests"), ("EMAIL", "tests@example.invalid")):
        monkeypatch.setenv(f"GIT_AUTHOR_{var}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{var}", value)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    root = tmp_path / "repo"
    environments = root / "environments"
    shutil.copytree(REPO_ENVIRONMENTS, environments)
    prod = (environments / "Pulumi.prod.yaml").read_text()
    qa = {"cdao-stack:profile": "prod", "cdao-stack:promotesFrom": "prod"}
    (environments / "Pulumi.qa.yaml").write_text(_with_entry(prod, qa))
    _git(tmp_path, "init", "--quiet", "--initial-branch=main", str(root))
    _git(root, "add", "-A")
    _git(root, "commit", "--quiet", "-m", "first")
    first = _git(root, "rev-parse", "HEAD")
    for stack in ("staging", "prod", "qa"):
        path = environments / f"Pulumi.{stack}.yaml"
        path.write_text(PROMOTED_REVISION.sub(rf"\g<1>{first}", path.read_text()))
    _git(root, "commit", "--quiet", "-am", "pins")
    head = _git(root, "rev-parse", "HEAD")
    argv = ["--source-deployed", head, "--environments", str(environments), "--dry-run"]

    assert cdao_main(["promote", "prod", "qa", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "nothing to promote: qa already runs what prod deployed" in out

    assert cdao_main(["promote", "staging", "qa", *argv]) == 2
    assert "it would skip prod" in capsys.readouterr().err

    assert cdao_main(["plan", "--all", "--environments", str(environments), "--format", "json"]) == 0
    assert [p["stack"] for p in json.loads(capsys.readouterr().out)] == ["dev", "staging", "prod", "qa"]


def test_doctor_takes_a_new_stack_from_the_registry(environments, tmp_path, capsys):
    outputs = tmp_path / "missing-outputs.json"
    base = ["doctor", "--environments", str(environments), "--outputs", str(outputs)]
    # A registered stack gets past the stack and stops at the outputs file it was given.
    assert cdao_main([*base, "--stack", "sandbox"]) == 2
    err = capsys.readouterr().err
    assert str(outputs) in err and "unknown stack" not in err
    assert cdao_main([*base, "--stack", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown stack 'nosuch'" in err and "sandbox" in err


BAD_ENTRIES = [
    ({}, "environments/Pulumi.sandbox.yaml: cdao-stack:profile = missing: expected the policy profile"),
    ({"cdao-stack:profile": "qa"}, "cdao-stack:profile = 'qa': expected the policy profile the stack follows: dev,"),
    ({"cdao-stack:promotesFrom": "dev"}, "cdao-stack:profile = missing"),
    (
        {"cdao-stack:profile": "dev", "cdao-stack:promotesFrom": "nosuch"},
        "cdao-stack:promotesFrom = 'nosuch': no stack of that name",
    ),
    (
        {"cdao-stack:profile": "dev", "cdao-stack:promotesFrom": "dev"},
        "cdao-stack:promotesFrom = 'dev': environments/Pulumi.sandbox.yaml and environments/Pulumi.staging.yaml",
    ),
    ({"cdao-stack:profile": "dev", "cdao-stack:tier": 1}, "cdao-stack:tier = 1: expected no such key"),
]


COMMANDS = {
    "plan": ["plan", "--stack", "sandbox"],
    "plan-all": ["plan", "--all"],
    "policy": ["policy", "check", "resources.json", "--stack", "sandbox"],
    "promote": ["promote", "dev", "sandbox", "--source-deployed", "0" * 40, "--dry-run"],
    "doctor": ["doctor", "--stack", "sandbox", "--outputs", "outputs.json"],
    "stacks": ["stacks"],
}
# `plan --all` prints the registry's own message for the broken file (the one `stacks` and the
# other commands are checked on for every entry) and then plans every usable stack, ~3 s each time;
# it runs for one fault of the file alone and one of the promotion chain (which leaves only dev).
PLAN_ALL_ENTRIES = (0, 4)


@pytest.mark.parametrize(
    ("entry", "message", "command"),
    [
        pytest.param(entry, message, argv, id=f"{name}-entry{i}")
        for name, argv in COMMANDS.items()
        for i, (entry, message) in enumerate(BAD_ENTRIES)
        if name != "plan-all" or i in PLAN_ALL_ENTRIES
    ],
)
def test_a_bad_registry_entry_exits_2_naming_the_file_and_key(environments, capsys, entry, message, command):
    resources = environments.parent / "resources.json"
    resources.write_text("[]")
    path = environments / "Pulumi.sandbox.yaml"
    path.write_text(_with_entry(path.read_text(), entry))
    argv = [str(resources) if arg == "resources.json" else arg for arg in command]
    assert cdao_main([*argv, "--environments", str(environments)]) == 2
    out, err = capsys.readouterr()
    assert "environments/Pulumi.sandbox.yaml" in out + err and message in out + err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(("entry", "message"), BAD_ENTRIES)
def test_a_bad_stack_file_holds_back_only_its_own_stack_and_its_chain(environments, capsys, entry, message):
    """deploy.yml's rule: one stack's bad file must not hold the others back. A fault of the file
    alone stays with its stack; a fault of the chain (here: two stacks promoted from dev) also holds
    back the other stack it names and the stacks promoted from it (prod, from staging)."""
    path = environments / "Pulumi.sandbox.yaml"
    path.write_text(_with_entry(path.read_text(), entry))
    chain = entry.get("cdao-stack:promotesFrom") == "dev" and "cdao-stack:profile" in entry
    registry = cdao_stacks.load(environments)
    assert set(registry.broken) == ({"sandbox", "staging", "prod"} if chain else {"sandbox"})
    with pytest.raises(cdao_stacks.StackRegistryError, match=re.escape(message)):
        registry.get("sandbox")
    usable = ["dev"] if chain else ["dev", "staging", "prod"]
    assert registry.names == usable
    assert cdao_main(["stacks", "--environments", str(environments)]) == 2
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()] == usable
    assert message in err
    resources = environments.parent / "resources.json"
    resources.write_text("[]")
    argv = ["policy", "check", str(resources), "--environments", str(environments)]
    assert cdao_main([*argv, "--stack", "dev"]) == 0
    assert cdao_main([*argv, "--stack", "staging"]) == (2 if chain else 0)
    capsys.readouterr()


def test_a_stack_name_outside_the_aws_safe_rule_is_refused_naming_the_file(environments, capsys):
    """Pulumi accepts `^[A-Za-z0-9_.-]{1,100}$` (pulumi/pulumi pkg/backend/filestate/backend.go,
    validateStackName); a space would also break `cdao stacks`' space-separated lines."""
    shutil.copy(environments / "Pulumi.dev.yaml", environments / "Pulumi.a b.yaml")
    shutil.copy(environments / "Pulumi.dev.yaml", environments / "Pulumi.Dev_2.yaml")
    registry = cdao_stacks.load(environments)
    assert set(registry.broken) == {"a b", "Dev_2"}
    assert cdao_main(["stacks", "--environments", str(environments)]) == 2
    out, err = capsys.readouterr()
    assert "a b" not in out
    assert "environments/Pulumi.a b.yaml: stack name 'a b'" in err
    assert "environments/Pulumi.Dev_2.yaml" in err
    assert cdao_main(["plan", "--stack", "a b", "--environments", str(environments)]) == 2


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "--stack", "nosuch"],
        ["policy", "check", "resources.json", "--stack", "nosuch"],
        ["promote", "dev", "nosuch", "--source-deployed", "0" * 40, "--dry-run"],
    ],
    ids=["plan", "policy", "promote"],
)
def test_a_stack_the_registry_does_not_know_exits_2(environments, capsys, monkeypatch, command):
    monkeypatch.chdir(environments.parent)
    (environments.parent / "resources.json").write_text("[]")
    assert cdao_main([*command, "--environments", str(environments)]) == 2
    out, err = capsys.readouterr()
    assert "'nosuch'" in out + err and "dev, staging, prod, sandbox" in out + err


def test_the_registry_is_importable_without_pulumi_infra_or_policies():
    code = (
        "import sys, cdao_stacks; cdao_stacks.load(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'pulumi', 'infra', 'policies'}); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ENVIRONMENTS.parent)


def test_the_policy_pack_applies_the_profile_the_stack_file_declares(environments, monkeypatch):
    """Under `pulumi preview --policy-pack policies` the engine names the stack (PULUMI_STACK); the
    pack takes its profile from the registry, CDAO_POLICY_STACK overriding it."""
    pack = pytest.importorskip("policies.pack")
    path = environments / "Pulumi.sandbox.yaml"
    path.write_text(_with_entry(path.read_text(), {"cdao-stack:profile": "staging"}))
    real_load = cdao_stacks.load
    monkeypatch.setattr(pack.cdao_stacks, "load", lambda: real_load(environments))
    monkeypatch.setattr(pack, "_registered_profile", pack._registered_profile.__wrapped__)
    monkeypatch.delenv(pack.STACK_ENV, raising=False)
    monkeypatch.setenv("PULUMI_STACK", "acme/cdao/sandbox")
    assert pack._stack_for({}) == ("sandbox", "staging")
    monkeypatch.setenv(pack.STACK_ENV, "prod")
    assert pack._stack_for({}) == ("sandbox", "prod")
    monkeypatch.delenv(pack.STACK_ENV)
    monkeypatch.setenv("PULUMI_STACK", "nosuch")
    with pytest.raises(pack.ConfigError, match=re.escape("cdao-stack:profile in environments/Pulumi.nosuch.yaml")):
        pack._stack_for({})


def test_a_promotion_cycle_holds_back_its_members_only(environments):
    path = environments / "Pulumi.dev.yaml"
    path.write_text(_with_entry(path.read_text(), {"cdao-stack:profile": "dev", "cdao-stack:promotesFrom": "prod"}))
    registry = cdao_stacks.load(environments)
    assert set(registry.broken) == {"dev", "staging", "prod"}
    assert "promote from each other in a cycle" in str(registry.broken["dev"])
    assert registry.names == ["sandbox"]
    assert registry.get("sandbox").profile == "dev"

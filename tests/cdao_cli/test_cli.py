"""`cdao` is one parser: every subcommand answers bad usage the same way (exit 2, usage on stderr,
nothing on stdout, where a JSON or Markdown report would go)."""

from __future__ import annotations

import subprocess

import pytest

from cdao_cli import EXIT_USAGE
from cdao_cli.main import main


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        ([], "cdao"),
        (["plan"], "cdao plan"),
        (["plan", "--stack", "dev", "--format", "yaml"], "cdao plan"),
        (["policy"], "cdao policy"),
        (["policy", "check"], "cdao policy check"),
        (["policy", "check", "r.json", "--stack", "dev", "--format", "yaml"], "cdao policy check"),
        (["promote", "dev"], "cdao promote"),
        (["promote", "dev", "staging"], "cdao promote"),
        (["doctor", "--stack", "dev"], "cdao doctor"),
        (["flyte-projects"], "cdao flyte-projects"),
        (["stack-revision", "dev"], "cdao stack-revision"),
    ],
)
def test_bad_usage_exits_2_with_the_usage_on_stderr(
    capsys: pytest.CaptureFixture[str], argv: list[str], prog: str
) -> None:
    assert main(argv) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"usage: {prog} ")
    assert f"{prog}: error: " in err


@pytest.mark.parametrize("argv", [["--help"], ["plan", "--help"], ["policy", "check", "--help"], ["promote", "--help"]])
def test_help_exits_0(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("usage: cdao")


def _subcommands_with_environments() -> set[str]:
    """Every (nested) subcommand whose parser has an --environments option, as `cdao <words>`."""
    import argparse  # noqa: PLC0415

    from cdao_cli.main import _parser  # noqa: PLC0415

    found: set[str] = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:  # argparse has no public walk over subparsers
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif "--environments" in action.option_strings:
                found.add(parser.prog)

    walk(_parser())
    return found


# One argv per subcommand that reads the stack registry; the test below fails when a new one is added
# without being listed here, so the missing-folder answer stays the same for all of them.
_WITH_ENVIRONMENTS = {
    "cdao plan": ["plan", "--stack", "dev"],
    "cdao doctor": ["doctor", "--stack", "dev", "--outputs", "dev-outputs.json"],
    "cdao policy check": ["policy", "check", "{resources}", "--stack", "dev"],
    "cdao stacks": ["stacks"],
    "cdao promote": ["promote", "dev", "staging", "--source-deployed", "0" * 40],
    "cdao flyte-projects": ["flyte-projects", "--stack", "dev"],
}


def test_every_subcommand_with_environments_is_covered() -> None:
    assert _subcommands_with_environments() == set(_WITH_ENVIRONMENTS)


@pytest.mark.parametrize("prog", sorted(_WITH_ENVIRONMENTS))
def test_a_missing_environments_folder_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path, prog: str
) -> None:
    missing = tmp_path / "nonexistent"
    resources = tmp_path / "resources.json"
    resources.write_text("[]")  # a readable, empty resource list: only the folder is wrong
    argv = [word.format(resources=resources) for word in _WITH_ENVIRONMENTS[prog]]
    assert main([*argv, "--environments", str(missing)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert str(missing) in err
    assert "Traceback" not in err


def test_stack_not_found_in_a_missing_folder_is_still_that_error(tmp_path) -> None:
    from cdao_cli.plan.runner import StackNotFoundError, read_stack_file  # noqa: PLC0415

    with pytest.raises(StackNotFoundError, match="dev"):
        read_stack_file("dev", tmp_path / "nonexistent")


def test_stack_revision_names_a_commit_missing_locally_and_an_unknown_stack(capsys: pytest.CaptureFixture[str]):
    """`git show <commit>:<path>` fails alike for an absent commit and an absent file: the message
    must say which, and an unknown stack is the registry's answer (exit 2 for both)."""
    from pathlib import Path  # noqa: PLC0415

    repo = Path(__file__).resolve().parents[2]
    missing = "0123456789abcdef" * 2 + "01234567"
    assert main(["stack-revision", "dev", "--commit", missing, "--repo", str(repo)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--commit {missing}: no such commit" in err and "fetch" in err
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert main(["stack-revision", "nosuch", "--commit", head.stdout.strip(), "--repo", str(repo)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown stack 'nosuch'" in err and "no such file" not in err


# -- files in another encoding ------------------------------------------------------------------


#: What Windows PowerShell 5.1's `>` writes: UTF-16 little-endian with a byte order mark.
def _utf16(text: str) -> bytes:
    return text.encode("utf-16")


def _environments(tmp_path, utf16_stack: str | None = None):
    """A copy of the repository's stack files, one of them rewritten in UTF-16."""
    import shutil  # noqa: PLC0415

    import cdao_stacks  # noqa: PLC0415

    folder = tmp_path / "environments"
    shutil.copytree(cdao_stacks.ENVIRONMENTS_DIR, folder)
    if utf16_stack:
        path = folder / f"Pulumi.{utf16_stack}.yaml"
        path.write_bytes(_utf16(path.read_text(encoding="utf-8")))
    return folder


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("doctor --outputs", "o.json"),
        ("policy check FILE", "o.json"),
        ("policy check --config", "o.json"),
        ("plan stack file", "Pulumi.dev.yaml"),
        ("promote target", "Pulumi.staging.yaml"),
        ("promote source", "Pulumi.dev.yaml"),
        ("flyte-projects stack file", "Pulumi.dev.yaml"),
    ],
)
def test_a_file_that_is_not_utf8_exits_2_naming_it(tmp_path, capsys: pytest.CaptureFixture[str], kind, named):
    """JSON is UTF-8 (RFC 8259 section 8.1) and Pulumi reads stack files as UTF-8: another encoding is
    bad input (exit 2) named with its file, never a UnicodeDecodeError traceback (exit 1)."""
    utf16 = tmp_path / "o.json"
    utf16.write_bytes(_utf16("{}"))
    good = tmp_path / "r.json"
    good.write_text("[]", encoding="utf-8")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    promote = ["promote", "dev", "staging", "--source-deployed", head]
    argv = {  # built lazily: each case copies the stack files it rewrites
        "doctor --outputs": lambda: ["doctor", "--stack", "dev", "--outputs", str(utf16)],
        "policy check FILE": lambda: ["policy", "check", str(utf16), "--stack", "dev"],
        "policy check --config": lambda: ["policy", "check", str(good), "--stack", "dev", "--config", str(utf16)],
        "plan stack file": lambda: ["plan", "--stack", "dev", "--environments", str(_environments(tmp_path, "dev"))],
        "promote target": lambda: [
            *promote,
            "--environments",
            str(_environments(tmp_path, "staging")),
        ],
        "promote source": lambda: [*promote, "--environments", str(_environments(tmp_path, "dev"))],
        "flyte-projects stack file": lambda: [
            "flyte-projects",
            "--stack",
            "dev",
            "--environments",
            str(_environments(tmp_path, "dev")),
        ],
    }[kind]()
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert named in err and "UTF-8" in err, err
    assert "Traceback" not in err


def test_a_json_file_with_a_utf8_byte_order_mark_is_read(tmp_path, capsys: pytest.CaptureFixture[str]):
    """RFC 8259 section 8.1 lets a parser ignore a UTF-8 byte order mark, which PowerShell's
    `Out-File -Encoding utf8` writes: the remedy the UTF-16 message gives must work."""
    bom = tmp_path / "r.json"
    bom.write_bytes(b"\xef\xbb\xbf[]")
    assert main(["policy", "check", str(bom), "--stack", "dev"]) == 0
    assert "0 violation(s)" in capsys.readouterr().out


def _repo_with_utf16_stack_file(tmp_path, stack: str = "dev") -> tuple[str, str]:
    """A Git repository whose second commit rewrites `stack`'s file in UTF-16: (repo, commit)."""
    repo = tmp_path / "repo"
    _environments(repo)

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "stacks")
    path = repo / "environments" / f"Pulumi.{stack}.yaml"
    path.write_bytes(_utf16(path.read_text(encoding="utf-8")))
    git("commit", "-qam", "utf-16")
    return str(repo), git("rev-parse", "HEAD")


def test_a_stack_file_not_utf8_at_a_commit_exits_2_naming_it(tmp_path, capsys: pytest.CaptureFixture[str]):
    repo, commit = _repo_with_utf16_stack_file(tmp_path)
    assert main(["stack-revision", "dev", "--commit", commit, "--repo", repo]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"environments/Pulumi.dev.yaml at {commit}: not UTF-8" in err and "UTF-16" in err, err


def test_check_promotion_fails_a_pull_request_whose_stack_file_is_not_utf8(tmp_path, capsys):
    """The pull request's file is what check-promotion judges: not UTF-8 is a failed check (exit 1,
    as for invalid YAML there) naming the file, not a traceback. The checkout is the base."""
    repo, head = _repo_with_utf16_stack_file(tmp_path, "staging")
    subprocess.run(["git", "-C", repo, "checkout", "-q", "HEAD~1"], check=True)
    base = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    argv = ["check-promotion", "--base", base.stdout.strip(), "--head", head, "--author", "a", "--repo", repo]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"environments/Pulumi.staging.yaml at {head}: not UTF-8" in out, out

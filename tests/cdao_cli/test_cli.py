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

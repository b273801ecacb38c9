"""`cdao` is one parser: every subcommand answers bad usage the same way (exit 2, usage on stderr,
nothing on stdout, where a JSON or Markdown report would go)."""

from __future__ import annotations

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

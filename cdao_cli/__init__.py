"""Tooling around the Pulumi program: the `cdao` command (cdao_cli.main) and its subcommands.

`plan` (cdao_cli.plan), `policy check` (cdao_cli.policy), `promote` (cdao_cli.promote), `doctor`
(cdao_cli.doctor), and for CI `flyte-projects` (cdao_cli.flyte_projects) and `stack-revision`
(cdao_cli.stack_revision). infra/ holds only what `pulumi up` runs; this package drives it under
Pulumi's mock runtime and calls policies/ and cdao_cost/ (tests/test_layers.py keeps it so).
"""

import argparse
from pathlib import Path

import cdao_stacks

#: The exit codes of every `cdao` subcommand: clean; a mandatory policy violation or a failed
#: check; bad configuration or usage (argparse's own code for a usage error).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_environments_argument(parser: argparse.ArgumentParser, where: str = "") -> None:
    """`--environments DIR`, which every subcommand that reads stack files takes: the folder of
    `Pulumi.<stack>.yaml` files, whose `cdao-stack:` keys are the stack registry (cdao_stacks)."""
    parser.add_argument(
        "--environments",
        type=Path,
        default=cdao_stacks.ENVIRONMENTS_DIR,
        help=f"folder of Pulumi.<stack>.yaml files, the stack registry{where} "
        "(default: the repository's environments/)",
    )

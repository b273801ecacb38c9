"""Tooling around the Pulumi program: the `cdao` command (cdao_cli.main) and its subcommands.

`plan` (cdao_cli.plan), `policy check` (cdao_cli.policy), `promote` (cdao_cli.promote), `doctor`
(cdao_cli.doctor), and for CI `flyte-projects` (cdao_cli.flyte_projects) and `stack-revision`
(cdao_cli.stack_revision). infra/ holds only what `pulumi up` runs; this package drives it under
Pulumi's mock runtime and calls policies/ and cdao_cost/ (tests/test_layers.py keeps it so).
"""

#: The exit codes of every `cdao` subcommand: clean; a mandatory policy violation or a failed
#: check; bad configuration or usage (argparse's own code for a usage error).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

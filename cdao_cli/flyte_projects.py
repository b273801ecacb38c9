"""`cdao flyte-projects --stack <s>`: the Flyte projects of a stack, one a line, as infra/ creates them
(cdao:flyte.projects).

The registration step (.github/scripts/register-workflows.sh) registers workflows/ into exactly
these projects, so CI and the namespaces and IAM roles infra/ made for each project-domain can never
disagree.
"""

from __future__ import annotations

import argparse
import sys

from cdao_cli import EXIT_OK, EXIT_USAGE, add_environments_argument

DESCRIPTION = "Print the Flyte projects of a stack (cdao:flyte.projects), one a line."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name (environments/Pulumi.<stack>.yaml)")
    add_environments_argument(parser)


def run(args: argparse.Namespace) -> int:
    """EXIT_OK with the projects on stdout; EXIT_USAGE (message on stderr) for a bad stack or file."""
    import cdao_stacks  # noqa: PLC0415
    from cdao_cli.plan.runner import StackFileError, read_stack_file  # noqa: PLC0415
    from infra.config import ConfigError, parse_stack_config  # noqa: PLC0415

    try:
        # The registry first, as every other subcommand: a missing folder or a broken or unknown
        # stack is a StackRegistryError (StackNotFoundError is one), never a traceback.
        cdao_stacks.load(args.environments).get(args.stack)
        raw, _ = read_stack_file(args.stack, args.environments)
        config, _ = parse_stack_config(args.stack, raw)
    except (cdao_stacks.StackRegistryError, StackFileError, ConfigError) as exc:
        print(f"cdao flyte-projects: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(config.flyte.projects))
    return EXIT_OK

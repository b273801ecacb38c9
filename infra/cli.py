"""`cdao`: the platform's command line.

    cdao plan --stack dev [--format text|json|markdown]   offline plan of one stack
    cdao plan --all [--format ...]                         every stack in environments/
    cdao policy check FILE.json --stack dev                 the policy pack on a resource list
    cdao promote dev staging --source-deployed SHA        pin in staging what dev ran at its last deployment

Exit codes: 0 clean, 1 a mandatory policy violation, 2 bad configuration or usage.
Heavy imports (Pulumi, the AWS SDK) happen inside the commands so `cdao --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# The repository's stack folder, resolved from this file so `cdao` works from any directory.
ENVIRONMENTS_DIR = Path(__file__).resolve().parents[1] / "environments"

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2


def _plan(args: argparse.Namespace) -> int:
    from infra.config import ConfigError  # noqa: PLC0415
    from infra.plan import report  # noqa: PLC0415
    from infra.plan.runner import StackFileError, StackNotFoundError, available_stacks, run_stack  # noqa: PLC0415

    stacks = available_stacks(args.environments) if args.all else [args.stack]
    plans = []
    for stack in stacks:
        try:
            plans.append(report.build_plan(run_stack(stack, args.environments)))
        except (ConfigError, StackNotFoundError, StackFileError) as exc:
            print(f"cdao plan: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.format == "json":
        sys.stdout.write(report.render_json(plans, single=not args.all))
    elif args.format == "markdown":
        sys.stdout.write(report.render_markdown(plans))
    else:
        sys.stdout.write(report.render_text(plans))
    return EXIT_VIOLATION if any(report.mandatory_violations(p) for p in plans) else EXIT_OK


def _policy(argv: Sequence[str]) -> int:
    import policies  # noqa: PLC0415

    check_main = getattr(policies, "check_main", None)
    if check_main is None:
        print("cdao policy: no policy pack is installed in policies/", file=sys.stderr)
        return EXIT_USAGE
    return check_main(list(argv))


def _promote(argv: Sequence[str]) -> int:
    from infra import promote  # noqa: PLC0415

    return promote.main(list(argv))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdao", description="CDAO MLOps platform tooling.")
    commands = parser.add_subparsers(dest="command", required=True)

    plan = commands.add_parser(
        "plan",
        help="run the infra/ program for a stack under Pulumi's mock runtime (no CLI, no AWS account)",
        description="Offline plan: resources by component, policy results and estimated monthly cost.",
    )
    target = plan.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="stack name (environments/Pulumi.<stack>.yaml)")
    target.add_argument("--all", action="store_true", help="every stack in environments/, in promotion order")
    plan.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    plan.add_argument(
        "--environments",
        type=Path,
        default=ENVIRONMENTS_DIR,
        help="folder of Pulumi.<stack>.yaml files (default: the repository's environments/)",
    )

    policy = commands.add_parser("policy", help="the policy pack (policies/)")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    policy_commands.add_parser("check", help="evaluate every rule on a JSON resource list", add_help=False)
    commands.add_parser("promote", help="promote one environment's pins to the next", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["policy", "check"]:
        # The pack owns its own argument parsing (`cdao policy check --help`).
        return _policy(argv[2:])
    if argv[:1] == ["promote"]:
        # `cdao promote` owns its own argument parsing too (`cdao promote --help`).
        return _promote(argv[1:])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 on --help
        return int(exc.code or 0)
    return _plan(args)


if __name__ == "__main__":
    sys.exit(main())

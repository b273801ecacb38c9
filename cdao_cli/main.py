"""`cdao`: the platform's command line, one parser for every subcommand.

    cdao plan --stack dev [--format text|json|markdown]   offline plan of one stack
    cdao plan --stack dev --format resources               its resource list, the input of `cdao policy check`
    cdao plan --all [--format ...]                         every stack in environments/
    cdao plan --all --diff origin/main [--format ...]     what this tree changes against a git ref
    cdao policy check FILE.json --stack dev                 the policy pack on a resource list
    cdao promote dev staging --source-deployed SHA        pin in staging what dev ran at its last deployment
    cdao doctor --stack dev --outputs dev.json [...]       check a deployed stack (cdao_cli/doctor)
    cdao flyte-projects --stack dev                        the stack's Flyte projects, one a line
    cdao flyte-projects --stack dev --domain development --set-raw-data-prefix BUCKET
                                                           first set each one's raw output location (CI)
    cdao stack-revision dev --commit SHA [--deployed SHA]  which commit a stack runs; deploy it or not (CI)
    cdao check-promotion --base B --head H --author LOGIN  a promotion PR pins only what upstream ran (CI)
    cdao stacks                                            the stack registry: name, profile, promotesFrom

Exit codes (cdao_cli.EXIT_*), the same for every subcommand: 0 clean, 1 a mandatory policy
violation (plan, policy check), a failed check (doctor) or an update flyteadmin refused
(flyte-projects), 2 bad configuration or usage (argparse's own code for a usage error).
Heavy imports (Pulumi, the AWS SDK) happen inside the commands so `cdao --help` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cdao_stacks
from cdao_cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_environments_argument,
    check_promotion,
    flyte_projects,
    policy,
    promote,
    stack_revision,
)
from cdao_cli.doctor import add_arguments as add_doctor_arguments

ENVIRONMENTS_DIR = cdao_stacks.ENVIRONMENTS_DIR


def _plan(args: argparse.Namespace) -> int:
    from cdao_cli.plan import report  # noqa: PLC0415
    from cdao_cli.plan.runner import StackFileError, StackNotFoundError, run_stack  # noqa: PLC0415
    from infra.config import ConfigError  # noqa: PLC0415
    from policies import ConfigError as PolicyConfigError  # noqa: PLC0415

    if args.format == "resources" and (args.all or args.diff is not None):
        print(
            "cdao plan: --format resources writes one stack's resource list: use --stack without --diff",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.diff is not None:
        return _plan_diff(args)
    try:
        registry = cdao_stacks.load(args.environments)
        stacks = registry.names if args.all else [registry.get(args.stack).name]
    except cdao_stacks.StackRegistryError as exc:
        print(f"cdao plan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # --all plans every usable stack; a broken one is reported and makes the run exit 2.
    for error in registry.broken.values() if args.all else ():
        print(f"cdao plan: {error}", file=sys.stderr)
    # A stack whose file or program fails is named on stderr and makes the run exit 2; the other
    # stacks are still planned and printed (a fault of one file holds back only that stack).
    plans, runs, failed = [], [], False
    for stack in stacks:
        try:
            runs.append(run_stack(stack, args.environments))
            plans.append(report.build_plan(runs[-1]))
        except (ConfigError, PolicyConfigError, StackNotFoundError, StackFileError) as exc:
            print(f"cdao plan: {exc}", file=sys.stderr)
            failed = True
        except Exception as exc:  # a failing program is not a policy violation (exit 1)
            print(f"cdao plan: stack {stack!r}: the program failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed = True
    if failed and not plans:
        return EXIT_USAGE
    if args.format == "resources":
        # The cdao_resources list `cdao policy check` reads, as the plan's own policy evaluation saw it.
        sys.stdout.write(json.dumps(report.policy_resources(runs[0].registrations), indent=2) + "\n")
    elif args.format == "json":
        sys.stdout.write(report.render_json(plans, single=not args.all))
    elif args.format == "markdown":
        sys.stdout.write(report.render_markdown(plans))
    else:
        sys.stdout.write(report.render_text(plans))
    if failed or (args.all and registry.broken):
        return EXIT_USAGE
    return EXIT_FAILED if any(report.mandatory_violations(p) for p in plans) else EXIT_OK


class _Terminated(SystemExit):
    """Raised in the main thread by a SIGTERM while `plan --diff` exports the base; its code is 128 + the signal."""


def _terminate(signum: int, _frame: object) -> None:
    raise _Terminated(128 + signum)


def _start_base_planner(args: argparse.Namespace, repo_root: Path) -> tuple[Any, Any] | None:
    """Start planning `--diff`'s base in the background: (the planner, the SIGTERM handler to restore
    after it), or None when the ref is no commit (said on stderr).

    A SIGTERM (CI cancelling the job, `timeout`) must leave no base tree and no base planner. While
    the base is exported it unwinds through BasePlanner's own cleanup; from then on the handler
    cleans up and exits itself."""
    from cdao_cli.plan.baseline import BasePlanner, BaseRefError, resolve  # noqa: PLC0415

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        try:
            base_ref = resolve(args.diff, repo_root)
            planner = BasePlanner(base_ref, repo_root, None if args.all else [args.stack])
        except BaseRefError as exc:
            signal.signal(signal.SIGTERM, previous)
            print(f"cdao plan: {exc}", file=sys.stderr)
            return None
    except _Terminated as exc:
        if "planner" in locals():  # it arrived after the planner started, before _abort took over
            planner.abort()
        os._exit(exc.code)

    def _abort(signum: int, _frame: object) -> None:
        # Once the head is planned, an exception would not unwind promptly: Pulumi's runtime catches
        # BaseException around the program and first awaits every outstanding resource call
        # (pulumi 3.x sdk/python/lib/pulumi/runtime/stack.py, run_pulumi_func), a whole plan's time
        # under load. So the handler cleans up and leaves itself.
        planner.abort()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, _abort)
    return planner, previous


def _plan_diff(args: argparse.Namespace) -> int:
    from cdao_cli.plan import diff, report  # noqa: PLC0415
    from cdao_cli.plan.runner import StackFileError, StackNotFoundError, run_stack  # noqa: PLC0415
    from infra.config import ConfigError  # noqa: PLC0415
    from policies import ConfigError as PolicyConfigError  # noqa: PLC0415

    repo_root = ENVIRONMENTS_DIR.parent
    if args.environments.resolve() != ENVIRONMENTS_DIR.resolve():
        # The base always plans its own committed environments/; another head folder would compare
        # two unrelated sets of stack files.
        print("cdao plan: --diff compares this repository's environments/; drop --environments", file=sys.stderr)
        return EXIT_USAGE
    try:
        registry = cdao_stacks.load(args.environments)
    except cdao_stacks.StackRegistryError as exc:
        print(f"cdao plan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    order = [*registry.names, *sorted(registry.broken)]
    head_stacks = order if args.all else [args.stack]
    started = _start_base_planner(args, repo_root)
    if started is None:
        return EXIT_USAGE
    planner, previous = started
    head_plans, head_errors = {}, {}
    with contextlib.ExitStack() as restore:
        restore.callback(signal.signal, signal.SIGTERM, previous)
        restore.enter_context(planner)
        # The base plans in a child process meanwhile: the two sides cost about one plan's time.
        for stack in head_stacks:
            if stack in registry.broken:
                head_errors[stack] = " ".join(str(registry.broken[stack]).split())
                continue
            try:
                head_plans[stack] = report.build_plan(run_stack(stack, args.environments))
            except StackNotFoundError:
                pass  # a stack this change removes: the base may still have it
            except (ConfigError, PolicyConfigError, StackFileError) as exc:
                head_errors[stack] = " ".join(str(exc).split())
            except Exception as exc:  # a bug in the changed program: that stack's error, not exit 1
                head_errors[stack] = f"the program failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
        base = planner.result()
    if not args.all and not {args.stack} & (set(head_plans) | set(head_errors) | set(base.stacks)):
        print(f"cdao plan: {StackNotFoundError(args.stack, args.environments)}", file=sys.stderr)
        return EXIT_USAGE
    stacks = sorted(
        set(head_plans) | set(head_errors) | set(base.stacks),
        key=lambda s: (order.index(s) if s in order else len(order), s),
    )
    diffs = [
        diff.diff_stack(
            stack,
            base.plans.get(stack),
            head_plans.get(stack),
            base_error=base.errors.get(stack),
            head_error=head_errors.get(stack),
        )
        for stack in stacks
    ]
    render = {"json": diff.render_json, "markdown": diff.render_markdown}.get(args.format, diff.render_text)
    sys.stdout.write(render(planner.base, diffs))
    if head_errors:
        for message in head_errors.values():
            print(f"cdao plan: {message}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_FAILED if any(report.mandatory_violations(p) for p in head_plans.values()) else EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from cdao_cli import doctor  # noqa: PLC0415
    from cdao_cli.plan.runner import StackFileError  # noqa: PLC0415
    from infra.config import ConfigError  # noqa: PLC0415

    try:
        cdao_stacks.load(args.environments).get(args.stack)
        ctx = doctor.build_context(args)
    except (ConfigError, StackFileError, doctor.DoctorInputError, cdao_stacks.StackRegistryError) as exc:
        print(f"cdao doctor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text, code = doctor.render(args, doctor.run_checks(ctx))
    sys.stdout.write(text)
    return code


def _stacks(args: argparse.Namespace) -> int:
    """`cdao stacks`: the stack registry, one `<name> <profile> <promotesFrom or ->` line a stack, in
    promotion order (what scripts such as first-deploy.sh read instead of a list of their own).
    A broken stack is left out and named on stderr, and the exit code is then 2: the usable stacks
    are still printed, so one bad file holds back no other stack."""
    try:
        registry = cdao_stacks.load(args.environments)
    except cdao_stacks.StackRegistryError as exc:
        print(f"cdao stacks: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for stack in registry.stacks:
        print(f"{stack.name} {stack.profile} {stack.promotes_from or '-'}")
    for error in registry.broken.values():
        print(f"cdao stacks: {error}", file=sys.stderr)
    return EXIT_USAGE if registry.broken else EXIT_OK


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
    plan.set_defaults(run=_plan)
    plan.add_argument(
        "--format",
        choices=("text", "json", "markdown", "resources"),
        default="text",
        help="resources: one stack's [{type, name, props, urn, id}] list, the input of `cdao policy check`",
    )
    plan.add_argument(
        "--diff",
        metavar="GIT_REF",
        help="compare with the plan of GIT_REF's own code and stack files: resources, inputs, policy, cost",
    )
    add_environments_argument(plan)

    doctor = commands.add_parser(
        "doctor",
        help="check a deployed stack: IRSA, node groups, Argo CD, Flyte, connectors, logs, backups",
        description="Post-deploy checks against AWS, the cluster and Flyte (docs/doctor.md).",
    )
    add_doctor_arguments(doctor)
    doctor.set_defaults(run=_doctor)

    policy_parser = commands.add_parser("policy", help="the policy pack (policies/)")
    policy_commands = policy_parser.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser(
        "check", help="evaluate every rule on a JSON resource list", description=policy.DESCRIPTION
    )
    policy.add_arguments(check)
    check.set_defaults(run=policy.run)

    stacks = commands.add_parser(
        "stacks",
        help="list the stack registry: name, policy profile, the stack it is promoted from (cdao_stacks)",
        description=_stacks.__doc__,
    )
    add_environments_argument(stacks)
    stacks.set_defaults(run=_stacks)

    promote_parser = commands.add_parser(
        "promote", help="promote one environment's pins to the next", description=promote.DESCRIPTION
    )
    promote.add_arguments(promote_parser)
    promote_parser.set_defaults(run=promote.run)

    projects = commands.add_parser(
        "flyte-projects",
        help="print the stack's Flyte projects, one a line (what CI registers workflows/ into); "
        "--set-raw-data-prefix first sets each project-domain's raw output location in flyteadmin",
        description=flyte_projects.DESCRIPTION,
    )
    flyte_projects.add_arguments(projects)
    projects.set_defaults(run=flyte_projects.run)

    revision = commands.add_parser(
        "stack-revision",
        help="which commit a stack runs and whether a deploy must reconcile it (deploy.yml, first-deploy.sh)",
        description=stack_revision.DESCRIPTION,
    )
    stack_revision.add_arguments(revision)
    revision.set_defaults(run=stack_revision.run)

    promotion = commands.add_parser(
        "check-promotion",
        help="check a promotion pull request pins only what the upstream stack ran (pull-request.yml)",
        description=check_promotion.DESCRIPTION,
    )
    check_promotion.add_arguments(promotion)
    promotion.set_defaults(run=check_promotion.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (EXIT_OK, EXIT_FAILED or EXIT_USAGE)."""
    # argparse exits 2 (EXIT_USAGE) on bad usage and 0 on --help
    # (docs.python.org/3/library/argparse.html#argparse.ArgumentParser.error).
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

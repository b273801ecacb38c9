"""Check a promotion pull request: it promotes exactly what the upstream stack ran, nothing else.

    cdao check-promotion --base B --head H --author LOGIN [--deployed STACK COMMIT... ...]
    cdao check-promotion --non-promotion --base B --head H

B and H are the pull request's base and head commits (both in the repository at --repo, default the
working directory); LOGIN is the pull request's author; each `--deployed STACK COMMIT...` gives
commits of STACK's successful deployments (`last-deployed.sh <stack> --at <candidates>`, the record
found at a commit whose upstream file holds the head's pins, trusted only if deploy.yml's
registration job wrote it). STACK is any stack of the base's registry (cdao_stacks); a stack given
twice gets the commits of both. The target's upstream stack's commits are used.
pull-request.yml runs this, from the base's checkout, for every pull request from a `promote/...`
branch, as a required status check (docs/github-setup.md, "Approvals people can trust"). It
refuses, naming what is wrong (exit 1; 2 for bad usage: a ref that names no commit, a STACK the
registry does not know):

- a change to anything but one stack file of a pinned stack (staging or prod);
- a change to a key of that file that is not promoted (cdao_cli/pins.py, PROMOTED_KEYS);
- promoted values the upstream stack never ran together in one successful deployment
  (stack_revision.check_upstream_ran, the rule deploy.yml applies before deploying);
- an author other than the person who requested the promotion (`Requested by @<login>` in the head
  commit, which promote.yml writes): GitHub never lets an author approve their own pull request, so
  the requester then needs someone else's approval.

With --non-promotion (every other pull request: the job always runs, since a skipped job reports
Success and does not block a merge even when required, docs.github.com/en/actions/how-tos/
write-workflows/choose-when-workflows-run/control-jobs-with-conditions), it refuses (exit 1) a change
to a promoted or code key (cdao_cli/pins.py PROMOTED_KEYS, CODE_KEYS) in the file of a stack promoted
to (staging, prod), naming the key: merged, it would make `resolve` refuse that stack at every deploy.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import cdao_stacks
from cdao_cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, stack_revision
from cdao_cli.pins import CODE_KEYS, PROMOTED_KEYS
from cdao_cli.plan.runner import StackFileError, read_stack_file

REQUESTED = re.compile(r"^Requested by @(?P<login>[A-Za-z0-9-]+(?:\[bot\])?) in ", re.MULTILINE)


class PromotionCheckError(Exception):
    pass


def _flat(raw: dict) -> dict[str, object]:
    """Stack config keys as `namespace:key.sub`, one level down (where PROMOTED_KEYS live)."""
    flat: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                flat[f"{key}.{sub}"] = inner
        else:
            flat[key] = value
    return flat


def _config_at(repo: Path, stack: str, commit: str) -> dict[str, object]:
    try:
        _, text = stack_revision._stack_file(repo, stack, commit)
    except stack_revision.RevisionError as exc:
        raise PromotionCheckError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="check-promotion-") as tmp:
        (Path(tmp) / f"Pulumi.{stack}.yaml").write_text(text, encoding="utf-8")
        try:
            raw, _ = read_stack_file(stack, Path(tmp))
        except StackFileError as exc:
            raise PromotionCheckError(f"environments/Pulumi.{stack}.yaml at {commit}: {exc}") from None
    return _flat(raw)


def upstreams(repo: Path) -> dict[str, str]:
    """Each stack a promotion targets -> the stack it is promoted from (its cdao-stack:promotesFrom in
    the stack registry of `repo`'s checkout, the pull request's base)."""
    try:
        registry = cdao_stacks.load(repo / "environments")
    except cdao_stacks.StackRegistryError as exc:
        raise PromotionCheckError(str(exc)) from None
    return {stack.name: stack.promotes_from for stack in registry.stacks if stack.promotes_from}


def check(repo: Path, base: str, head: str, author: str, deployed: dict[str, list[str]]) -> str:
    """The target stack of a valid promotion; raises PromotionCheckError naming what is wrong.

    `deployed` maps an upstream stack to commits of its successful deployments."""
    upstream_of = upstreams(repo)
    pinned = tuple(upstream_of)  # the stacks a promotion targets
    changed = (stack_revision._git(repo, "diff", "--name-only", f"{base}...{head}") or "").split()
    targets = [s for s in pinned if f"environments/Pulumi.{s}.yaml" in changed]
    if len(targets) != 1 or len(changed) != 1:
        raise PromotionCheckError(
            f"a promotion changes exactly one of {', '.join(f'environments/Pulumi.{s}.yaml' for s in pinned)}; "
            f"this pull request changes: {', '.join(changed) or 'nothing'}"
        )
    target = targets[0]
    before, after = _config_at(repo, target, base), _config_at(repo, target, head)
    other = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and k not in PROMOTED_KEYS)
    if other:
        raise PromotionCheckError(
            f"environments/Pulumi.{target}.yaml: {', '.join(other)} changed; a promotion changes only "
            f"{', '.join(PROMOTED_KEYS)} (change per-stack keys in their own pull request)"
        )
    try:
        stack_revision.check_upstream_ran(
            repo,
            target,
            upstream_of[target],
            stack_revision.pins_at(repo, target, head),
            deployed.get(upstream_of[target], []),
            at=head,
        )
    except stack_revision.RevisionError as exc:
        raise PromotionCheckError(str(exc)) from None
    message = stack_revision._git(repo, "log", "-1", "--format=%B", head) or ""
    requested = REQUESTED.search(message)
    if requested is None:
        raise PromotionCheckError(
            f"the head commit {head} does not say who requested the promotion (`Requested by @<login>`, "
            "written by promote.yml); run Promote instead of pushing a promote/ branch by hand"
        )
    if requested["login"].lower() != author.lower():
        raise PromotionCheckError(
            f"the promotion was requested by @{requested['login']} but this pull request was opened by @{author}: "
            f"the requester opens it, so that someone else must approve it"
        )
    return target


def check_not_a_promotion(repo: Path, base: str, head: str) -> None:
    """Raise PromotionCheckError naming every promoted or code key (cdao_cli/pins.py) of a promoted-to
    stack's file that changed from `base` to `head` (a file added or removed counts as every key of
    it changed): those move only through `cdao promote`'s pull request."""
    changed = set((stack_revision._git(repo, "diff", "--name-only", f"{base}...{head}") or "").split())
    guarded = (*PROMOTED_KEYS, *CODE_KEYS)
    problems = []
    for target in upstreams(repo):
        name = f"environments/Pulumi.{target}.yaml"
        if name not in changed:
            continue
        before, after = (_config_or_nothing(repo, target, commit) for commit in (base, head))
        keys = [k for k in guarded if before.get(k) != after.get(k)]
        if keys:
            problems.append(f"{name}: {', '.join(keys)} changed")
    if problems:
        raise PromotionCheckError(
            f"{'; '.join(problems)}: what a promoted stack runs changes only through a promotion "
            "(Actions -> Promote), never in another pull request; revert these keys here"
        )


def _config_or_nothing(repo: Path, stack: str, commit: str) -> dict[str, object]:
    """_config_at, or {} when `commit` has no file for `stack` (added or removed by the diff)."""
    if stack_revision._git(repo, "cat-file", "-e", f"{commit}:environments/Pulumi.{stack}.yaml") is None:
        return {}
    return _config_at(repo, stack, commit)


DESCRIPTION = __doc__.split("\n\n")[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True)
    parser.add_argument("--head", required=True)
    parser.add_argument("--author", help="the pull request's author (required unless --non-promotion)")
    parser.add_argument(
        "--non-promotion",
        action="store_true",
        help="the pull request is not from a promote/ branch: refuse a change to a promoted or code key",
    )
    parser.add_argument(
        "--deployed",
        nargs="+",
        action="append",
        default=[],
        metavar=("STACK", "COMMIT"),
        help="commits of STACK's successful deployments (repeat per stack; no COMMIT: none found)",
    )
    parser.add_argument("--repo", type=Path, default=Path.cwd())


def _usage(args: argparse.Namespace) -> tuple[dict[str, list[str]] | None, str | None]:
    """(deployed commits by stack, None), or (None, what is wrong) for a ref that names no commit or
    a --deployed STACK the base's registry does not know."""
    for option, ref in (("--base", args.base), ("--head", args.head)):
        # A leading '-' would reach git as an option.
        if (
            ref.startswith("-")
            or stack_revision._git(args.repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") is None
        ):
            return None, f"{option} {ref}: no such commit in {args.repo}"
    try:
        registry = cdao_stacks.load(args.repo / "environments")
    except cdao_stacks.StackRegistryError as exc:
        return None, str(exc)
    deployed: dict[str, list[str]] = {}
    for stack, *commits in args.deployed:
        try:
            registry.get(stack)
        except cdao_stacks.StackRegistryError as exc:
            return None, f"--deployed {stack}: {exc}"
        deployed.setdefault(stack, []).extend(commits)
    return deployed, None


def run(args: argparse.Namespace) -> int:
    """Print the checked target (EXIT_OK), or a GitHub error annotation naming the fault (EXIT_FAILED;
    EXIT_USAGE for a bad ref or an unknown --deployed stack)."""
    deployed, problem = _usage(args)
    if deployed is None:
        print(f"::error::cdao check-promotion: {problem}")
        return EXIT_USAGE
    if args.non_promotion:
        try:
            check_not_a_promotion(args.repo, args.base, args.head)
        except PromotionCheckError as exc:
            print(f"::error::cdao check-promotion: {exc}")
            return EXIT_FAILED
        print("not a promotion: no promoted stack's promoted or code key changed")
        return EXIT_OK
    if not args.author:
        print("::error::cdao check-promotion: --author: required for a promotion (or pass --non-promotion)")
        return EXIT_USAGE
    try:
        target = check(args.repo, args.base, args.head, args.author, deployed)
    except PromotionCheckError as exc:
        print(f"::error::cdao check-promotion: {exc}")
        return EXIT_FAILED
    print(f"promotion of {target} checked: it pins what {upstreams(args.repo)[target]} ran, and nothing else")
    return EXIT_OK

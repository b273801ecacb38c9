"""`cdao promote <from> <to>`: write the promotion of one environment's pins to the next.

An environment pins what it runs with two keys of its stack file (environments/Pulumi.<stack>.yaml):

    cdao:gitops.revision        the platform revision Argo CD syncs (a branch in dev; an immutable
                                commit SHA or tag once promoted)
    cdao:gitops.chartVersions   chart key -> exact chart version

Promotion copies exactly those pins from <from> to <to>, one step at a time (dev -> staging -> prod),
and leaves everything else in the target file as it was: comments, key order, quoting. A branch in
the source is resolved to the commit it points at, so staging and prod never follow a moving branch.
The written change is what a pull request carries, so prod changes only by a reviewed diff.

Exit codes: 0 promoted (or nothing to promote), 2 bad usage, configuration or revision.
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark
from ruamel.yaml.error import YAMLError as RuamelYAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from infra.config import NAMESPACE, ConfigError, parse_stack_config
from infra.plan.runner import ENVIRONMENTS_DIR, StackFileError, StackNotFoundError, read_stack_file

PROMOTION_ORDER = ("dev", "staging", "prod")
GITOPS_KEY = f"{NAMESPACE}:gitops"
REVISION_KEY = "revision"
CHARTS_KEY = "chartVersions"

EXIT_OK, EXIT_USAGE = 0, 2

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEX = re.compile(r"^[0-9a-f]{7,40}$")


class PromotionError(Exception):
    """A promotion that must not be written; the message names the file, key or value at fault."""


@dataclass(frozen=True)
class Pins:
    revision: str
    chart_versions: dict[str, str]


@dataclass
class Promotion:
    source: str
    target: str
    target_path: Path
    old: Pins
    new: Pins
    source_revision: str  # as written in the source file, before resolving a branch
    old_text: str
    new_text: str
    changes: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 on --help
        return int(exc.code or 0)
    try:
        promotion = plan_promotion(args.source, args.target, args.environments, revision=args.revision)
    except PromotionError as exc:
        print(f"cdao promote: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if not promotion.changed:
        print(
            f"nothing to promote: {promotion.target} already runs {promotion.source}'s pins "
            f"(revision {promotion.new.revision}, {len(promotion.new.chart_versions)} chart versions)"
        )
        if args.pr_json:
            args.pr_json.write_text(json.dumps({"changed": False}) + "\n")
        return EXIT_OK

    print(render_summary(promotion))
    if args.dry_run:
        print("\n--- diff (dry run: nothing written) ---")
        sys.stdout.write(render_diff(promotion))
    else:
        try:
            write_atomically(promotion.target_path, promotion.new_text)
        except OSError as exc:
            print(f"cdao promote: cannot write {promotion.target_path}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"\nwrote {promotion.target_path}")
    title, body = pull_request_text(promotion)
    print(f"\nSuggested pull request title:\n  {title}\n\nSuggested pull request body:\n{body}")
    if args.pr_json:
        args.pr_json.write_text(
            json.dumps(
                {
                    "changed": True,
                    "title": title,
                    "body": body,
                    "changes": [{"pin": k, "old": o, "new": n} for k, o, n in promotion.changes],
                },
                indent=2,
            )
            + "\n"
        )
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdao promote",
        description=(
            "Copy one environment's pins (cdao:gitops.revision and cdao:gitops.chartVersions) to the next "
            f"environment ({' -> '.join(PROMOTION_ORDER)}), preserving everything else in the target file."
        ),
    )
    parser.add_argument("source", metavar="FROM", help=f"environment to promote from ({', '.join(PROMOTION_ORDER)})")
    parser.add_argument("target", metavar="TO", help="the next environment in the promotion order")
    parser.add_argument(
        "--revision",
        help="the immutable revision (commit SHA or tag) to pin in TO; default: FROM's revision, a branch "
        "resolved to its commit with git",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the summary and the diff; write nothing")
    parser.add_argument(
        "--environments",
        type=Path,
        default=ENVIRONMENTS_DIR,
        help="folder of Pulumi.<stack>.yaml files (default: the repository's environments/)",
    )
    parser.add_argument(
        "--pr-json",
        type=Path,
        help="also write the suggested pull request title, body and changes as JSON to this file",
    )
    return parser


def check_order(source: str, target: str) -> None:
    for name in (source, target):
        if name not in PROMOTION_ORDER:
            raise PromotionError(f"unknown environment {name!r}: expected one of {', '.join(PROMOTION_ORDER)}")
    step = PROMOTION_ORDER.index(target) - PROMOTION_ORDER.index(source)
    order = " -> ".join(PROMOTION_ORDER)
    if step <= 0:
        raise PromotionError(f"cannot promote {source} -> {target}: promotions only go forward ({order})")
    if step > 1:
        skipped = PROMOTION_ORDER[PROMOTION_ORDER.index(source) + 1]
        raise PromotionError(
            f"cannot promote {source} -> {target}: it would skip {skipped}; promotions go one step at a time "
            f"({order}), so promote {source} -> {skipped} first"
        )


def plan_promotion(source: str, target: str, environments: Path, revision: str | None = None) -> Promotion:
    """Everything about the promotion, validated, without writing anything."""
    check_order(source, target)
    source_path = environments / f"Pulumi.{source}.yaml"
    target_path = environments / f"Pulumi.{target}.yaml"

    source_config = _parse(source, environments)
    # A target that is already broken is not ours to promote into; its pins as the program reads them.
    target_config = _parse(target, environments)
    source_revision = source_config.gitops.revision
    source_charts = dict(source_config.gitops.chart_versions)

    if revision is not None:
        pinned = _explicit_revision(revision, environments)
    else:
        pinned = _immutable_revision(source_revision, source_path, environments)
    new = Pins(pinned, source_charts)

    old_text = _read_text(target_path)
    document = _load_round_trip(old_text, target_path)
    config = document.get("config") if isinstance(document, dict) else None
    gitops = config.get(GITOPS_KEY) if isinstance(config, dict) else None
    if not isinstance(gitops, CommentedMap):
        raise PromotionError(f"{target_path}: config.{GITOPS_KEY} is missing or not a mapping")
    old = Pins(target_config.gitops.revision, dict(target_config.gitops.chart_versions))

    changes = _changes(old, new)
    new_text = old_text
    if changes:
        _apply(gitops, new)
        new_text = _dump_round_trip(document)
        _validate_candidate(target, new_text, target_path, new)
    return Promotion(source, target, target_path, old, new, source_revision, old_text, new_text, changes)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise PromotionError(f"{path}: no such stack file") from None
    except OSError as exc:
        raise PromotionError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _parse(stack: str, environments: Path):
    try:
        raw, _ = read_stack_file(stack, environments)
        config, _ = parse_stack_config(stack, raw)
    except (StackNotFoundError, StackFileError) as exc:
        raise PromotionError(str(exc)) from None
    except ConfigError as exc:
        raise PromotionError(f"{environments / f'Pulumi.{stack}.yaml'}: {exc}") from None
    except OSError as exc:
        raise PromotionError(f"{environments / f'Pulumi.{stack}.yaml'}: cannot read: {exc.strerror or exc}") from None
    return config


def _git(environments: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell; the ref is passed after --end-of-options
            ["git", "-C", str(environments), *args],  # noqa: S607 - git from PATH, as a developer runs it
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _commit_of(ref: str, environments: Path) -> str | None:
    return _git(environments, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")


def _is_tag(name: str, environments: Path) -> bool:
    return _git(environments, "show-ref", "--verify", "--quiet", f"refs/tags/{name}") is not None


def _immutable_revision(revision: str, source_path: Path, environments: Path) -> str:
    """The source's revision as something that cannot move: a full commit SHA or a tag."""
    if _FULL_SHA.fullmatch(revision):
        return revision
    if _is_tag(revision, environments):
        return revision
    # The remote branch first: Argo CD fetches from the remote, and a local branch may hold unpushed commits.
    for ref in (f"refs/remotes/origin/{revision}", f"refs/heads/{revision}"):
        sha = _commit_of(ref, environments)
        if sha:
            return sha
    if _HEX.fullmatch(revision):
        sha = _commit_of(revision, environments)
        if sha:
            return sha
    raise PromotionError(
        f"{source_path}: {GITOPS_KEY}.{REVISION_KEY} = {revision!r} is not a commit SHA or tag, and git cannot "
        f"resolve it as a branch (origin/{revision} or {revision}) in the repository holding {environments}; "
        "fetch the branch, or pass --revision <commit-sha-or-tag>"
    )


def _explicit_revision(revision: str, environments: Path) -> str:
    if not revision or revision != revision.strip() or any(c.isspace() for c in revision):
        raise PromotionError(f"--revision {revision!r}: expected a commit SHA or a tag name")
    if _FULL_SHA.fullmatch(revision) or _is_tag(revision, environments):
        return revision
    if _HEX.fullmatch(revision):
        sha = _commit_of(revision, environments)
        if sha:
            return sha
        raise PromotionError(f"--revision {revision!r}: an abbreviated SHA git cannot resolve; give all 40 digits")
    sha = _commit_of(f"refs/remotes/origin/{revision}", environments) or _commit_of(
        f"refs/heads/{revision}", environments
    )
    if sha:
        return sha
    raise PromotionError(
        f"--revision {revision!r}: not a 40-digit commit SHA, nor a tag or branch git knows in the repository "
        f"holding {environments}"
    )


def _changes(old: Pins, new: Pins) -> list[tuple[str, str | None, str | None]]:
    changes: list[tuple[str, str | None, str | None]] = []
    if old.revision != new.revision:
        changes.append((f"{GITOPS_KEY}.{REVISION_KEY}", old.revision, new.revision))
    for chart in [*old.chart_versions, *(c for c in new.chart_versions if c not in old.chart_versions)]:
        before, after = old.chart_versions.get(chart), new.chart_versions.get(chart)
        if before != after:
            changes.append((f"{GITOPS_KEY}.{CHARTS_KEY}.{chart}", before, after))
    return changes


def _scalar(value: str) -> str:
    # The program reads stack files with PyYAML (YAML 1.1): a SHA of only digits, or one like 1e10...,
    # would come back as a number. Quote exactly the values that would not read back as this string.
    return value if yaml.safe_load(value) == value else DoubleQuotedScalarString(value)


def _apply(gitops: CommentedMap, new: Pins) -> None:
    """Edit the target's gitops mapping in place, so every other node keeps its comments and position."""
    if REVISION_KEY in gitops:
        gitops[REVISION_KEY] = _scalar(new.revision)
    else:
        gitops.insert(len(gitops), REVISION_KEY, _scalar(new.revision))

    charts = gitops.get(CHARTS_KEY)
    if not new.chart_versions:
        if isinstance(charts, CommentedMap) and len(charts):
            # Comment lines after the last chart introduce whatever follows the block: keep them.
            _give_lines(gitops, _take_lines(charts, list(charts)[-1]), after=CHARTS_KEY)
        gitops.pop(CHARTS_KEY, None)
        return
    if not isinstance(charts, CommentedMap):
        charts = CommentedMap()
        after = list(gitops).index(REVISION_KEY) + 1
        gitops.insert(after, CHARTS_KEY, charts)
    # ruamel keeps the comment lines that follow an entry on that entry. Lines after the last chart
    # belong to what follows the block, so they must stay last whichever charts come and go.
    trailer = _take_lines(charts, list(charts)[-1]) if len(charts) else ""
    for chart in [c for c in charts if c not in new.chart_versions]:
        keys = list(charts)
        position = keys.index(chart)
        lines = _take_lines(charts, chart)
        del charts[chart]
        if position > 0:  # the lines introduce the next chart, which is still there
            _give_lines(charts, lines, after=keys[position - 1])
    for chart, version in new.chart_versions.items():
        charts[chart] = _scalar(version)
    _give_lines(charts, trailer, after=list(charts)[-1])


def _take_lines(mapping: CommentedMap, key: Any) -> str:
    """Detach the full comment lines that follow `key`'s value, keeping its end-of-line comment."""
    entry = mapping.ca.items.get(key)
    token = entry[2] if entry and len(entry) > 2 else None
    if token is None or "\n" not in token.value:
        return ""
    cut = token.value.index("\n") + 1
    lines, token.value = token.value[cut:], token.value[:cut]
    return lines


def _give_lines(mapping: CommentedMap, lines: str, after: Any) -> None:
    if not lines:
        return
    entry = mapping.ca.items.setdefault(after, [None, None, None, None])
    if entry[2] is None:
        entry[2] = CommentToken("\n" + lines, CommentMark(0), None)
    else:
        entry[2].value += lines


def _yaml() -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap long lines or comments of the target
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def _load_round_trip(text: str, path: Path) -> Any:
    try:
        return _yaml().load(text)
    except RuamelYAMLError as exc:
        raise PromotionError(f"{path}: not valid YAML: {exc}") from None


def _dump_round_trip(document: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(document, stream)
    return stream.getvalue()


def _validate_candidate(target: str, text: str, target_path: Path, new: Pins) -> None:
    """Parse the promoted file exactly as the program will, before anything touches the real file."""
    with tempfile.TemporaryDirectory(prefix="cdao-promote-") as tmp:
        candidate = Path(tmp) / f"Pulumi.{target}.yaml"
        candidate.write_text(text)
        try:
            raw, _ = read_stack_file(target, Path(tmp))
            config, _ = parse_stack_config(target, raw)
        except (StackFileError, ConfigError) as exc:
            raise PromotionError(f"{target_path}: the promoted file would be invalid, nothing written: {exc}") from None
    got = Pins(config.gitops.revision, dict(config.gitops.chart_versions))
    if got != new:
        raise PromotionError(f"{target_path}: the promoted file would read back as {got}, not {new}; nothing written")


def write_atomically(path: Path, text: str) -> None:
    """Replace path's content in one rename, so a failure leaves the old file, never half of the new."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def render_summary(promotion: Promotion) -> str:
    lines = [f"promote {promotion.source} -> {promotion.target} ({promotion.target_path}):"]
    for key, old, new in promotion.changes:
        lines.append(f"  {key}: {old if old is not None else '(unset)'} -> {new if new is not None else '(removed)'}")
    if promotion.source_revision != promotion.new.revision:
        lines.append(
            f"  ({promotion.source}'s revision {promotion.source_revision!r} resolved to {promotion.new.revision})"
        )
    return "\n".join(lines)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def render_diff(promotion: Promotion) -> str:
    name = _display(promotion.target_path).lstrip("/")
    return "".join(
        difflib.unified_diff(
            promotion.old_text.splitlines(keepends=True),
            promotion.new_text.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )


def pull_request_text(promotion: Promotion) -> tuple[str, str]:
    revision = promotion.new.revision
    short = revision[:12] if _FULL_SHA.fullmatch(revision) else revision
    title = f"Promote {promotion.source} -> {promotion.target}: platform {short}"
    rows = "\n".join(
        f"| `{key.removeprefix(GITOPS_KEY + '.')}` | `{old or '(unset)'}` | `{new or '(removed)'}` |"
        for key, old, new in promotion.changes
    )
    body = (
        f"Promotes the pins `{GITOPS_KEY}.{REVISION_KEY}` and `{GITOPS_KEY}.{CHARTS_KEY}` from "
        f"`{promotion.source}` to `{promotion.target}` (`{promotion.target_path.name}`); nothing else changes.\n\n"
        f"| pin | {promotion.target} now | after merge |\n|---|---|---|\n{rows}\n\n"
        f"`{promotion.source}` runs revision `{promotion.source_revision}`"
        + (f", resolved to the commit `{revision}`" if promotion.source_revision != revision else "")
        + ".\n\n"
        f"Merging applies `{promotion.target}` with `pulumi up` after its environment's reviewers approve.\n\n"
        f"Written by `cdao promote {promotion.source} {promotion.target}`."
    )
    return title, body


__all__ = ["PROMOTION_ORDER", "Pins", "Promotion", "PromotionError", "check_order", "main", "plan_promotion"]

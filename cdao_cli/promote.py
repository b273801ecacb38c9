"""`cdao promote <from> <to>`: write the promotion of what one stack ran to the next stack.

A stack runs one revision for everything (docs/github-setup.md, "One revision per stack"): the infra/
program, platform/ as Argo CD syncs it, the registered workflows/ and the images, all at the commit of
`cdao:gitops.revision` in environments/Pulumi.<stack>.yaml, with the chart versions of
`cdao:gitops.chartVersions`. dev may name the branch `main` (it runs the commit each deploy is for);
staging and prod pin a full commit SHA (infra/config.py refuses anything else there).

Promotion copies what <from> last deployed, not what its file says today: `--source-deployed` is the
commit of `main` at which <from>'s last successful deployment ran (deploy.yml records one GitHub
deployment per stack; promote.yml reads it). The pins are read from <from>'s stack file at that
commit; a branch there means that commit itself. A source whose file on `main` pins something else
than it deployed has a promotion still in flight and is refused. Everything else in the target file
stays byte for byte: only the value of each changed pin is rewritten in place.

Exit codes (cdao_cli.EXIT_*): 0 promoted (or nothing to promote), 2 bad usage, configuration or revision.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import cdao_stacks
from cdao_cli import EXIT_OK, EXIT_USAGE, add_environments_argument
from cdao_cli.files import NotUtf8Error, read_utf8
from cdao_cli.pins import CHARTS_KEY, GITOPS_KEY, PULUMI_SECRETS_KEYS, REVISION_KEY, Pins, is_secure, pins_of
from cdao_cli.plan.runner import ENVIRONMENTS_DIR, StackFileError, StackNotFoundError, read_stack_file
from infra.config import ConfigError, parse_stack_config

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
# A block-mapping line `<indent><key>: <value>[  # comment]`, the value plain or quoted.
_ENTRY = re.compile(r"""^(?P<lead>\s*(?P<key>[^\s:#][^:#]*?):[ \t]+)(?P<value>"[^"]*"|'[^']*'|[^\s#]+)(?P<rest>.*)$""")


class PromotionError(Exception):
    """A promotion that must not be written; the message names the file, key or value at fault."""


@dataclass
class Promotion:
    source: str
    target: str
    target_path: Path
    old: Pins
    new: Pins
    source_deployed: str  # the commit of main the source's last successful deployment ran at
    old_text: str
    new_text: str
    changes: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    # The target's own keys that go live with the new pin (file_changes), None when the old pin is
    # not a commit holding the target's file (a branch being repaired): then all of the new one does.
    file_changes: list[tuple[str, str | None, str | None]] | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def run(args: argparse.Namespace) -> int:
    """`cdao promote FROM TO`: EXIT_OK promoted or nothing to promote, EXIT_USAGE anything refused."""
    try:
        promotion = plan_promotion(args.source, args.target, args.environments, args.source_deployed)
    except PromotionError as exc:
        print(f"cdao promote: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if not promotion.changed:
        print(
            f"nothing to promote: {promotion.target} already runs what {promotion.source} deployed "
            f"(revision {promotion.new.revision}, {len(promotion.new.chart_versions)} chart versions)"
        )
        return _write_pr_json(args.pr_json, {"changed": False})

    print(render_summary(promotion))
    title, body = pull_request_text(promotion)
    if args.dry_run:
        print("\n--- diff (dry run: nothing written) ---")
        sys.stdout.write(render_diff(promotion))
    else:
        # The pull request text first: a path that cannot be written fails before the stack file changes.
        payload = {
            "changed": True,
            "title": title,
            "body": body,
            "revision": promotion.new.revision,
            "changes": [{"pin": k, "old": o, "new": n} for k, o, n in promotion.changes],
        }
        if (code := _write_pr_json(args.pr_json, payload)) != EXIT_OK:
            return code
        try:
            write_atomically(promotion.target_path, promotion.new_text)
        except OSError as exc:
            if args.pr_json:
                args.pr_json.unlink(missing_ok=True)
            print(f"cdao promote: cannot write {promotion.target_path}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"\nwrote {promotion.target_path}")
    print(f"\nSuggested pull request title:\n  {title}\n\nSuggested pull request body:\n{body}")
    return EXIT_OK


def _write_pr_json(path: Path | None, payload: dict[str, Any]) -> int:
    if path is None:
        return EXIT_OK
    try:
        write_atomically(path, json.dumps(payload, indent=2) + "\n")
    except OSError as exc:
        print(f"cdao promote: --pr-json {path}: cannot write: {exc.strerror or exc}; nothing written", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


DESCRIPTION = (
    "Pin in TO exactly what FROM last deployed: its revision and chart versions (TO's stack file names "
    "FROM in cdao-stack:promotesFrom), preserving everything else in the target file."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FROM", help="environment to promote from")
    parser.add_argument("target", metavar="TO", help="the next environment in the promotion order")
    parser.add_argument(
        "--source-deployed",
        required=True,
        metavar="COMMIT",
        help="full SHA of the main commit FROM's last successful deployment ran at (promote.yml reads it from "
        "GitHub's deployments of FROM's '<stack>-workflows' environment)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the summary and the diff; write nothing")
    add_environments_argument(parser, ", inside the git repository")
    parser.add_argument(
        "--pr-json",
        type=Path,
        help="also write the pull request title, body, revision and changes as JSON to this file",
    )


def check_order(source: str, target: str, environments: Path = ENVIRONMENTS_DIR) -> None:
    """Refuse anything but one step along the registry's promotion chain (cdao_stacks: each stack
    file's `cdao-stack:promotesFrom`). Raises PromotionError naming the stacks and the order."""
    try:
        registry = cdao_stacks.load(environments)
    except cdao_stacks.StackRegistryError as exc:
        raise PromotionError(str(exc)) from None
    for name in (source, target):
        if name in registry.broken:
            raise PromotionError(str(registry.broken[name]))
        if name not in registry.names:
            raise PromotionError(
                f"unknown environment {name!r}: no {environments.name}/Pulumi.{name}.yaml "
                f"(stacks here: {', '.join(registry.names)})"
            )
    successor = {s.promotes_from: s.name for s in registry.stacks if s.promotes_from}
    chain = [source]
    while chain[-1] in successor and chain[-1] != target:
        chain.append(successor[chain[-1]])
    order = " -> ".join(registry.promotion_order) or "none: no stack file sets promotesFrom"
    if chain[-1] != target or len(chain) == 1:
        raise PromotionError(f"cannot promote {source} -> {target}: promotions only go forward ({order})")
    if len(chain) > 2:
        skipped = chain[1]
        raise PromotionError(
            f"cannot promote {source} -> {target}: it would skip {skipped}; promotions go one step at a time "
            f"({order}), so promote {source} -> {skipped} first"
        )


def plan_promotion(source: str, target: str, environments: Path, source_deployed: str) -> Promotion:
    """Everything about the promotion, validated, without writing anything.

    Raises PromotionError naming the file, key or commit at fault.
    """
    check_order(source, target, environments)
    source_path = environments / f"Pulumi.{source}.yaml"
    target_path = environments / f"Pulumi.{target}.yaml"
    deployed = _deployed_commit(source_deployed, environments)

    deployed_pins = _pins_at(source, deployed, environments)
    current = _parse(source, environments)
    if _FULL_SHA.fullmatch(current.gitops.revision):
        current_pins = Pins(current.gitops.revision, dict(current.gitops.chart_versions))
        if current_pins != deployed_pins:
            raise PromotionError(
                f"{source_path}: {source} pins revision {current_pins.revision} but its last successful deployment "
                f"(at {deployed}) ran {deployed_pins.revision}"
                + ("" if current_pins.revision != deployed_pins.revision else " with other chart versions")
                + f"; deploy {source} first (Deploy workflow, stack {source}), then promote what it ran"
            )
    new = deployed_pins
    _check_on_main(new.revision, f"{source}'s deployed revision", environments)

    old_text = _read_text(target_path)
    old = _target_pins(target, environments)
    changes = _changes(old, new)
    new_text = _edit(old_text, target_path, old, new) if changes else old_text
    if changes:
        _validate_candidate(target, new_text, target_path, new)
    file_changes = file_changes_between(target, old.revision, new.revision, environments)
    return Promotion(source, target, target_path, old, new, deployed, old_text, new_text, changes, file_changes)


def _file_at(stack: str, commit: str, environments: Path) -> str | None:
    """The text of <stack>'s file at <commit> (git, from the repository holding `environments`)."""
    prefix = (_git(environments, "rev-parse", "--show-prefix") or "").strip()
    return _git(environments, "show", f"{commit}:{prefix}Pulumi.{stack}.yaml")


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if is_secure(value):
        out[prefix] = "(secret)"
    elif isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}", out)
    else:
        out[prefix] = value if isinstance(value, str) else json.dumps(value, default=str)


def _per_stack_keys(text: str) -> dict[str, str]:
    """Dotted key -> value (as text; `(secret)` for a `secure:` value) of a stack file's keys that a
    pinned stack takes from its pin (cdao_cli/pins.py): every key but the promoted ones and Pulumi's
    secrets settings."""
    document = cdao_stacks.load_yaml(text) or {}
    out: dict[str, str] = {}
    if not isinstance(document, dict):
        return out
    for key, value in document.items():
        if key == "config" and isinstance(value, dict):
            for name, item in value.items():
                own = item
                if name == GITOPS_KEY and isinstance(item, dict):
                    own = {k: v for k, v in item.items() if k not in (REVISION_KEY, CHARTS_KEY)}
                _flatten(own, str(name), out)
        elif key not in PULUMI_SECRETS_KEYS and key != "config":
            _flatten(value, f"(top level) {key}", out)
    return out


def file_changes_between(
    target: str, old_revision: str, new_revision: str, environments: Path
) -> list[tuple[str, str | None, str | None]] | None:
    """The per-stack keys of <target>'s file that differ between its file at `old_revision` (the old pin)
    and at `new_revision` (the new pin), as (dotted key, old, new); None (added/removed) for a missing
    key. A pinned stack runs its own file as of its pin (cdao_cli/stack_revision.py deployed_stack_file),
    so these go live with the promotion. None when the old pin is no commit holding the file."""
    old_text = _file_at(target, old_revision, environments) if _FULL_SHA.fullmatch(old_revision) else None
    new_text = _file_at(target, new_revision, environments)
    if old_text is None or new_text is None:
        return None
    try:
        before, after = _per_stack_keys(old_text), _per_stack_keys(new_text)
    except yaml.YAMLError:
        return None
    return [
        (key, before.get(key), after.get(key))
        for key in [*before, *(k for k in after if k not in before)]
        if before.get(key) != after.get(key)
    ]


def _read_text(path: Path) -> str:
    try:
        # Bytes decoded as they are keep CRLF line ends and a byte order mark: the file is written back.
        return read_utf8(path, strip_bom=False)
    except NotUtf8Error as exc:
        raise PromotionError(str(exc)) from None
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


def _target_pins(target: str, environments: Path) -> Pins:
    """The target's pins as the program reads them. A target that is broken is not ours to promote
    into, except for the one problem a promotion repairs: a branch where a commit must be pinned."""
    path = environments / f"Pulumi.{target}.yaml"
    try:
        raw, _ = read_stack_file(target, environments)
    except (StackNotFoundError, StackFileError) as exc:
        raise PromotionError(str(exc)) from None
    try:
        config, _ = parse_stack_config(target, raw)
    except ConfigError as exc:
        if exc.keys != [f"{GITOPS_KEY}.{REVISION_KEY}"]:
            raise PromotionError(f"{path}: {exc}") from None
        gitops = raw.get(GITOPS_KEY) or {}
        return Pins(
            str(gitops.get(REVISION_KEY, "main")), {str(k): str(v) for k, v in (gitops.get(CHARTS_KEY) or {}).items()}
        )
    return pins_of(config)


def _git(environments: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell; refs are checked as full SHAs first
            ["git", "-C", str(environments), *args],  # noqa: S607 - git from PATH, as a developer runs it
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _is_commit(sha: str, environments: Path) -> bool:
    return _git(environments, "cat-file", "-e", f"{sha}^{{commit}}") is not None


def _check_on_main(sha: str, what: str, environments: Path) -> None:
    """A pin must be a commit that exists and that `main` (the checked-out HEAD) contains: code that
    was reviewed and merged, never a commit only a branch or a fork carries."""
    if not _FULL_SHA.fullmatch(sha):
        raise PromotionError(f"{what} {sha!r}: expected a full 40-digit commit SHA")
    if not _is_commit(sha, environments):
        raise PromotionError(f"{what} {sha}: no such commit in the repository holding {environments}")
    if _git(environments, "merge-base", "--is-ancestor", sha, "HEAD") is None:
        raise PromotionError(
            f"{what} {sha}: not a commit of main (HEAD does not contain it); only merged code is pinned"
        )


def _deployed_commit(sha: str, environments: Path) -> str:
    _check_on_main(sha, "--source-deployed", environments)
    return sha


def _pins_at(stack: str, commit: str, environments: Path) -> Pins:
    """The pins in <stack>'s file at <commit>, a branch revision resolved to <commit> itself (a stack
    that follows main runs the commit it was deployed at)."""
    prefix = (_git(environments, "rev-parse", "--show-prefix") or "").strip()
    name = f"{prefix}Pulumi.{stack}.yaml"
    text = _git(environments, "show", f"{commit}:{name}")
    where = f"{name} at {commit}"
    if text is None:
        raise PromotionError(f"{where}: no such file")
    try:
        document = cdao_stacks.load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise PromotionError(f"{where}: not valid YAML: {exc}") from None
    gitops = (document.get("config") or {}).get(GITOPS_KEY) if isinstance(document, dict) else None
    if not isinstance(gitops, dict):
        raise PromotionError(f"{where}: config.{GITOPS_KEY} is missing or not a mapping")
    revision = str(gitops.get(REVISION_KEY, "main"))
    charts = gitops.get(CHARTS_KEY)
    if not isinstance(charts, dict) or not charts:
        # Promoting nothing would remove every chart pin from the target.
        raise PromotionError(
            f"{where}: {GITOPS_KEY}.{CHARTS_KEY} is missing or empty; there are no chart pins to promote"
        )
    return Pins(revision if _FULL_SHA.fullmatch(revision) else commit, {str(k): str(v) for k, v in charts.items()})


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
    return value if cdao_stacks.load_yaml(value) == value else json.dumps(value)


def _edit(text: str, path: Path, old: Pins, new: Pins) -> str:  # noqa: PLR0915 - the lazy imports count as statements
    """Rewrite only the lines of changed pins, in place: every other byte (indentation, comments,
    quoting, line ends) stays as it was. ruamel gives each key's line; the value is replaced on it."""
    # Loaded here, not at import: `cdao --help` builds this command's parser without it.
    from ruamel.yaml import YAML  # noqa: PLC0415
    from ruamel.yaml.comments import CommentedMap  # noqa: PLC0415
    from ruamel.yaml.error import YAMLError as RuamelYAMLError  # noqa: PLC0415

    try:
        document = YAML(typ="rt").load(text)
    except RuamelYAMLError as exc:
        raise PromotionError(f"{path}: not valid YAML: {exc}") from None
    config = document.get("config") if isinstance(document, dict) else None
    gitops = config.get(GITOPS_KEY) if isinstance(config, dict) else None
    if not isinstance(gitops, CommentedMap) or gitops.fa.flow_style():
        raise PromotionError(f"{path}: config.{GITOPS_KEY} is missing or not a block mapping")
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"

    def replace(line_no: int, key: str, value: str) -> None:
        body = lines[line_no].rstrip("\r\n")
        match = _ENTRY.match(body)
        if not match or match["key"].strip("'\"") != key:
            raise PromotionError(f"{path}:{line_no + 1}: expected `{key}: <value>` on one line")
        lines[line_no] = match["lead"] + _scalar(value) + match["rest"] + lines[line_no][len(body) :]

    inserts: dict[int, list[str]] = {}  # after line -> new lines
    removals: set[int] = set()
    if REVISION_KEY not in gitops:
        raise PromotionError(f"{path}: {GITOPS_KEY}.{REVISION_KEY} is missing; write `{REVISION_KEY}: <commit>` first")
    if old.revision != new.revision:
        replace(gitops.lc.key(REVISION_KEY)[0], REVISION_KEY, new.revision)

    charts = gitops.get(CHARTS_KEY)
    if isinstance(charts, CommentedMap) and len(charts) and not charts.fa.flow_style():
        indent = " " * charts.lc.key(next(iter(charts)))[1]
        for chart in charts:
            if chart not in new.chart_versions:
                removals.add(charts.lc.key(chart)[0])
            elif new.chart_versions[chart] != old.chart_versions.get(chart):
                replace(charts.lc.key(chart)[0], chart, new.chart_versions[chart])
        after = charts.lc.key(list(charts)[-1])[0]
        added = [c for c in new.chart_versions if c not in charts]
    elif charts is None or charts == {}:
        at, column = gitops.lc.key(REVISION_KEY)
        indent = " " * (column + 2)
        after = at
        head = " " * column + f"{CHARTS_KEY}:" + newline
        inserts.setdefault(at, []).append(head)
        if CHARTS_KEY in gitops:  # `chartVersions: {}` or an empty key: replaced by the block
            removals.add(gitops.lc.key(CHARTS_KEY)[0])
        added = list(new.chart_versions)
    else:
        raise PromotionError(f"{path}: {GITOPS_KEY}.{CHARTS_KEY} must be a block mapping of chart: version")
    inserts.setdefault(after, []).extend(f"{indent}{c}: {_scalar(new.chart_versions[c])}{newline}" for c in added)

    out: list[str] = []
    for number, line in enumerate(lines):
        if number not in removals:
            out.append(line)
        out.extend(inserts.get(number, []))
    return "".join(out)


def _validate_candidate(target: str, text: str, target_path: Path, new: Pins) -> None:
    """Parse the promoted file exactly as the program will, before anything touches the real file."""
    with tempfile.TemporaryDirectory(prefix="cdao-promote-") as tmp:
        candidate = Path(tmp) / f"Pulumi.{target}.yaml"
        candidate.write_text(text, encoding="utf-8")
        try:
            raw, _ = read_stack_file(target, Path(tmp))
            config, _ = parse_stack_config(target, raw)
        except (StackFileError, ConfigError) as exc:
            raise PromotionError(f"{target_path}: the promoted file would be invalid, nothing written: {exc}") from None
    got = pins_of(config)
    if got != new:
        raise PromotionError(f"{target_path}: the promoted file would read back as {got}, not {new}; nothing written")


def write_atomically(path: Path, text: str) -> None:
    """Replace path's content in one rename, so a failure leaves the old file, never half of the new."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
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
    lines.append(f"  (what {promotion.source} ran in its last successful deployment, at {promotion.source_deployed})")
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
    short = revision[:12]
    title = f"Promote {promotion.source} -> {promotion.target}: platform {short}"
    rows = "\n".join(
        f"| `{key.removeprefix(GITOPS_KEY + '.')}` | `{old or '(unset)'}` | `{new or '(removed)'}` |"
        for key, old, new in promotion.changes
    )
    name = promotion.target_path.name
    if promotion.file_changes is None:
        per_stack = (
            f"The old pin `{promotion.old.revision}` is not a commit holding `{name}`: `{promotion.target}` "
            f"will run its whole file as of `{revision}`."
        )
    elif promotion.file_changes:
        edits = "\n".join(
            f"| `{key}` | `{old if old is not None else '(unset)'}` | `{new if new is not None else '(removed)'}` |"
            for key, old, new in promotion.file_changes
        )
        per_stack = (
            f"A pinned stack runs its own `{name}` as of its pin, so these per-stack edits, merged since the "
            f"old pin `{promotion.old.revision}`, also go live with this merge:\n\n"
            f"| key | at the old pin | at the new pin |\n|---|---|---|\n{edits}"
        )
    else:
        per_stack = (
            f"No other key of `{name}` changed between its old pin `{promotion.old.revision}` and the new one: "
            "no per-stack edit goes live with this merge."
        )
    body = (
        f"Promotes the pins `{GITOPS_KEY}.{REVISION_KEY}` and `{GITOPS_KEY}.{CHARTS_KEY}` from "
        f"`{promotion.source}` to `{promotion.target}` (`{name}`); this pull request changes only their "
        "values in the file.\n\n"
        f"| pin | {promotion.target} now | after merge |\n|---|---|---|\n{rows}\n\n"
        f"These are the pins `{promotion.source}` ran in its last successful deployment (deployed at "
        f"`{promotion.source_deployed}`). `{promotion.target}` will run `infra/`, `platform/`, `workflows/` and "
        f"the images of commit `{revision}`, with its stack file as of that commit (the stack's secrets "
        "from main).\n\n"
        f"{per_stack}\n\n"
        f"Merging deploys `{promotion.target}` (deploy.yml) after its environment's reviewers approve.\n\n"
        f"Written by `cdao promote {promotion.source} {promotion.target}`."
    )
    return title, body


__all__ = [
    "Pins",
    "Promotion",
    "PromotionError",
    "add_arguments",
    "check_order",
    "plan_promotion",
    "run",
]

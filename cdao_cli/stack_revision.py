"""Which commit a stack runs, and whether a deploy run must reconcile the stack to it.

    cdao stack-revision STACK --commit C [--deployed D] [--force] [--upstream-deployed U ...] [--main M]
                        [--stack-file PATH]

C is the commit of `main` the deploy run is for (GITHUB_SHA); D is the commit of `main` at which the
stack's last successful deployment ran (the newest successful GitHub deployment of the stack's
`<stack>-workflows` environment, which deploy.yml's registration job creates; empty if none).

The stack file at C says what the stack runs (docs/github-setup.md, "One revision per stack"):
`cdao:gitops.revision` is a full commit SHA (in a stack promoted from another, `cdao-stack:promotesFrom`:
staging, prod; infra/config.py refuses anything else there), or the branch `main` in dev, which then
runs C itself. Every job of the stack checks out that revision, with the stack file a deploy at C
gives it (deployed_stack_file: a pinned stack's own file at its pin, with C's promoted keys and
secrets), which --stack-file PATH writes.

Printed for $GITHUB_OUTPUT: `revision=<sha>`, `deploy=true|false` and `reason=<text>`. deploy is true
when the stack has never been deployed, when that stack file or the resolved revision at C differs from
what it ran at D (so a run cancelled or failed earlier is made good by any later run), or with --force; it is
false when nothing changed, and when D is newer than C (a re-run of an old run must not roll a stack
back). Exit 2, with the file and key named, when the stack file at C is invalid (without --main: this
code's config refuses it) or its revision is not a commit that C contains.

With --main (main's tip when an apply or registration job starts), a job whose stack state (resolved
revision and stack file) differs from main's does nothing (`reason=superseded by main ...`), and
`reconcile=true` is printed when main's state is not what the stack last deployed: deploy.yml then
dispatches a Deploy run, since GitHub may have cancelled the newer run's pending job in favour of
this older one (resolve()). The guards that pass it run the *pin's* code on main's history, so in
that mode no stack file is parsed with the config schema (main's file may use keys newer than the
pin; resolve, with main's code, validated it): only resolved revisions and composed files
(deployed_stack_file) are compared, and --stack-file writes the file this code composes, which the
guard compares with the one resolve handed the job.

With --upstream-deployed (commits of the previous stack's successful deployments, from
`last-deployed.sh <previous> --at <candidates>`), a stack promoted from another (`cdao-stack:promotesFrom`
in its file: staging, prod) is also refused promoted values (cdao_cli/pins.py: the revision and every
chart version) that the previous stack never ran together in one deployment: however their stack file
was changed (by hand, or a promotion whose source failed since), prod only runs what staging ran and
staging only what dev ran.

    cdao stack-revision STACK --commit C --upstream-candidates

prints `upstream=<stack it is promoted from>` (empty for none) and `candidates=<sha> ...`: the commits
of main up to C, oldest first, at which the upstream's stack file holds exactly STACK's promoted values
at C (a stack following `main` ran the commit itself, so for dev that is the pinned commit alone). A
deployment record of the upstream at any of them proves it ran those values, so last-deployed.sh
looks each up by commit (REST "List deployments", `sha` and `environment` filters,
docs.github.com/en/rest/deployments/deployments) and stops at the first: no window of recent
deployments to fall out of, and a few API calls instead of hundreds. Promoted values are compared as
written in the files (raw YAML), so an upstream record whose file today's config code would refuse
(a key added or tightened since) still counts.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError as RuamelYAMLError

import cdao_stacks
from cdao_cli import EXIT_OK, EXIT_USAGE
from cdao_cli.files import NotUtf8Error, decode_utf8
from cdao_cli.pins import (
    CHARTS_KEY,
    GITOPS_KEY,
    PULUMI_SECRETS_KEYS,
    REVISION_KEY,
    SECRET_CONFIG_KEYS,
    Pins,
    code_keys_set,
    is_secure,
    pins_of,
)
from cdao_cli.plan.runner import StackFileError, read_stack_file
from cdao_cli.promote import write_atomically
from infra.config import ConfigError, StackConfig, parse_stack_config

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
FOLLOWED_BRANCH = "main"  # the one branch deploy.yml runs on, so the only one a stack can follow


class RevisionError(Exception):
    """The stack file at the run's commit names no revision this stack can run."""


@dataclass(frozen=True)
class Decision:
    revision: str
    deploy: bool
    reason: str
    # main has work for this stack that this job does not do, and that no deployment has done yet:
    # deploy.yml then dispatches a Deploy run, because the job that would have done it may have been
    # cancelled by this older one (see resolve(), `main`).
    reconcile: bool = False


def _git_bytes(repo: Path, *args: str) -> bytes | None:
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell; refs are validated SHAs
        ["git", "-C", str(repo), *args],  # noqa: S607 - git from PATH, as on the runner
        capture_output=True,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


def _git(repo: Path, *args: str) -> str | None:
    """git's own output (object names, refs): ASCII, unlike a file's content (_git_bytes)."""
    out = _git_bytes(repo, *args)
    return None if out is None else out.decode("utf-8", errors="replace")


def _contains(repo: Path, newer: str, older: str) -> bool:
    return _git(repo, "merge-base", "--is-ancestor", older, newer) is not None


def _stack_file(repo: Path, stack: str, commit: str) -> tuple[str, str]:
    """(blob id, text) of the stack file at commit. At a full commit SHA, read once per process: what
    a commit holds never changes, and a resolve reads each stack's file at the same few commits
    hundreds of times (two git processes a read). A ref (a branch) is followed at each read."""
    if FULL_SHA.fullmatch(commit):
        return _stack_file_at_sha(repo, stack, commit)
    return _read_stack_file(repo, stack, commit)


@functools.lru_cache(maxsize=512)
def _stack_file_at_sha(repo: Path, stack: str, commit: str) -> tuple[str, str]:
    # lru_cache keeps no exception: a commit fetched after a failed read is read again.
    return _read_stack_file(repo, stack, commit)


def _read_stack_file(repo: Path, stack: str, commit: str) -> tuple[str, str]:
    name = f"environments/Pulumi.{stack}.yaml"
    blob, data = _git(repo, "rev-parse", f"{commit}:{name}"), _git_bytes(repo, "show", f"{commit}:{name}")
    if blob is None or data is None:
        # `git show <commit>:<path>` fails alike for an absent commit and an absent file: say which.
        if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
            raise RevisionError(f"--commit {commit}: no such commit in {repo} (fetch it: git -C {repo} fetch origin)")
        try:
            cdao_stacks.load(repo / "environments").get(stack)
        except cdao_stacks.StackRegistryError as exc:
            raise RevisionError(str(exc)) from None
        raise RevisionError(f"{name} at {commit}: no such file")
    try:
        return blob.strip(), decode_utf8(data, f"{name} at {commit}")
    except NotUtf8Error as exc:
        raise RevisionError(str(exc)) from None


def config_at(repo: Path, stack: str, commit: str) -> StackConfig:
    """The stack's configuration in its stack file at `commit` (validated as the program will)."""
    name = f"environments/Pulumi.{stack}.yaml at {commit}"
    _, text = _stack_file(repo, stack, commit)
    with tempfile.TemporaryDirectory(prefix="stack-revision-") as tmp:
        (Path(tmp) / f"Pulumi.{stack}.yaml").write_text(text, encoding="utf-8")
        try:
            raw, _ = read_stack_file(stack, Path(tmp))
            if not any(key.startswith(f"{cdao_stacks.NAMESPACE}:") for key in raw):
                # A file from before the stack registry: the stack is what the registry at the run's
                # checkout says it is.
                entry = cdao_stacks.load(repo / "environments").get(stack).entry
                raw[cdao_stacks.PROFILE_KEY] = entry.profile
                if entry.promotes_from is not None:
                    raw[cdao_stacks.PROMOTES_FROM_KEY] = entry.promotes_from
            config, _ = parse_stack_config(stack, raw)
        except (StackFileError, ConfigError, cdao_stacks.StackRegistryError) as exc:
            raise RevisionError(f"{name}: {exc}") from None
    return config


def revision_at(repo: Path, stack: str, commit: str) -> str:
    """The commit `stack` runs according to its stack file at `commit` (validated as the program will)."""
    return pins_at(repo, stack, commit).revision


def pins_at(repo: Path, stack: str, commit: str) -> Pins:
    """The promoted values (cdao_cli/pins.py) of `stack`'s file at `commit`, validated with this
    checkout's config code, its revision a commit of main (a branch resolved to `commit`). Raises
    RevisionError naming the file and key. For the code that runs a pin (the guards), which must not
    parse main's newer file with its older schema, see _revision."""
    config = config_at(repo, stack, commit)
    _checked_revision(repo, stack, commit, config.gitops.revision, config.entry.promotes_from)
    return pins_of(config, commit)


def _checked_revision(repo: Path, stack: str, commit: str, revision: str, promotes_from: str | None) -> str:
    """The commit a deploy at `commit` runs for a stack file whose `cdao:gitops.revision` is
    `revision`: `main` (a stack promoted from none: `commit` itself) or a full SHA that `commit`
    contains. Raises RevisionError naming the file and key."""
    name = f"environments/Pulumi.{stack}.yaml at {commit}"
    # A stack promoted from another (its cdao-stack:promotesFrom, the stack registry) pins a commit.
    if revision == FOLLOWED_BRANCH and promotes_from is None:
        return commit
    if not FULL_SHA.fullmatch(revision):
        raise RevisionError(
            f"{name}: cdao:gitops.revision = {revision!r}: expected a full commit SHA, or `{FOLLOWED_BRANCH}` "
            "in a stack not promoted from another (cdao-stack:promotesFrom)"
        )
    if _git(repo, "cat-file", "-e", f"{revision}^{{commit}}") is None:
        raise RevisionError(f"{name}: cdao:gitops.revision = {revision}: no such commit")
    if not _contains(repo, commit, revision):
        raise RevisionError(f"{name}: cdao:gitops.revision = {revision}: not a commit of main (not merged)")
    return revision


def _promotes_from(repo: Path, stack: str, config: dict[str, Any]) -> str | None:
    """The stack's `cdao-stack:promotesFrom` as its file's `config:` mapping writes it; a file from
    before the stack registry (no `cdao-stack:` key) is what the registry at `repo`'s checkout says
    (as config_at reads it)."""
    if not any(str(key).startswith(f"{cdao_stacks.NAMESPACE}:") for key in config):
        try:
            return cdao_stacks.load(repo / "environments").get(stack).entry.promotes_from
        except cdao_stacks.StackRegistryError as exc:
            raise RevisionError(f"environments/Pulumi.{stack}.yaml: {exc}") from None
    source = config.get(cdao_stacks.PROMOTES_FROM_KEY)
    return None if source is None else str(source)


def _revision_of_file(repo: Path, stack: str, commit: str) -> str:
    """_revision of `stack`'s file at `commit` (no config schema)."""
    name = f"environments/Pulumi.{stack}.yaml at {commit}"
    return _revision(repo, stack, commit, _document(_stack_file(repo, stack, commit)[1], name))


def _revision(repo: Path, stack: str, commit: str, document: Any) -> str:
    """_checked_revision of a stack file's parsed document, read without the config schema: the guards
    run a pin's code on main's file, which may use keys the pin's config has never heard of
    (docs/github-setup.md, "Which stack file a deploy runs"); resolve, with main's code, validated it."""
    name = f"environments/Pulumi.{stack}.yaml at {commit}"
    config = document.get("config") or {}
    gitops = config.get(GITOPS_KEY)
    revision = gitops.get(REVISION_KEY) if isinstance(gitops, dict) else None
    if revision is None:
        raise RevisionError(f"{name}: {GITOPS_KEY}.{REVISION_KEY}: missing")
    return _checked_revision(repo, stack, commit, str(revision), _promotes_from(repo, stack, config))


def raw_pins_at(repo: Path, stack: str, commit: str) -> Pins:
    """The promoted values as written in the stack file at `commit`, without the config code: what a
    record of that commit ran, whatever keys the file's other parts hold that today's code would
    refuse. `main` in a stack promoted from none resolves to `commit` (pins_at). Values compare as
    text, as YAML wrote them; a file without them, or with a revision its stack could not run, yields
    an empty revision (it matches nothing)."""
    return _raw_pins(_stack_file(repo, stack, commit)[1], commit)


def _raw_pins(text: str, commit: str) -> Pins:
    return _document_pins(_load(text), commit)


def _load(text: str) -> Any:
    """The stack file's YAML document, or None when it does not parse."""
    try:
        return cdao_stacks.load_yaml(text) or {}
    except yaml.YAMLError:
        return None


def _document_pins(document: Any, commit: str) -> Pins:
    if document is None:
        return Pins("", {})
    config = (document.get("config") or {}) if isinstance(document, dict) else {}
    gitops = config.get(GITOPS_KEY) if isinstance(config, dict) else None
    if not isinstance(gitops, dict):
        return Pins("", {})
    revision = str(gitops.get(REVISION_KEY, ""))
    charts = gitops.get(CHARTS_KEY) or {}
    charts = {str(k): str(v) for k, v in charts.items()} if isinstance(charts, dict) else {}
    if FULL_SHA.fullmatch(revision):
        return Pins(revision, charts)
    # Only a stack promoted from none may follow a branch (pins_at): it ran the commit itself.
    if revision == FOLLOWED_BRANCH and cdao_stacks.PROMOTES_FROM_KEY not in config:
        return Pins(commit, charts)
    return Pins("", {})


def _round_trip() -> YAML:
    """ruamel's round-trip YAML 1.2, as Pulumi's Go YAML reads stack files (a YAML 1.1 loader would
    turn `on` into true and re-quote values); comments, order and quoting survive."""
    loader = YAML(typ="rt")
    loader.preserve_quotes = True
    loader.width = 1 << 20
    return loader


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> Any:
    """ruamel's round-trip parse of a stack file's text, once per text: its pure-Python parser takes
    ~10 ms for a stack file, and one `cdao stack-revision` run (or a test's sequence of them in one
    process) parses the same few texts dozens of times (each stack's file at the run commit and at its
    pin, for every decision and guard). Shared: callers get a deep copy (_document), which they edit.
    A text that does not parse raises, and lru_cache keeps no exception."""
    return _round_trip().load(text)


def _document(text: str, name: str) -> CommentedMap:
    """The stack file's round-trip document, the caller's own to edit (a copy of _parsed's)."""
    try:
        document = copy.deepcopy(_parsed(text))
    except RuamelYAMLError as exc:
        raise RevisionError(f"{name}: not valid YAML: {exc}") from None
    if document is None:
        document = CommentedMap()
    if not isinstance(document, dict) or not isinstance(document.get("config") or {}, dict):
        raise RevisionError(f"{name}: expected a mapping with a 'config:' mapping of key: value")
    return document


def _refuse_code_keys(document: CommentedMap, where: str) -> None:
    """A stack file must not set a key that is code (cdao_cli/pins.py CODE_KEYS): it would run an Argo
    CD chart or a platform folder the stack before it never ran."""
    keys = code_keys_set(document.get("config") or {})
    if keys:
        raise RevisionError(
            f"{where}: {', '.join(keys)}: code, not a per-stack setting (cdao_cli/pins.py): every stack runs "
            "infra/config.py's default at its revision, promoted with it; remove the key and change the "
            "default in a pull request instead"
        )


def _refuse_undeclared_secrets(document: CommentedMap, where: str) -> None:
    """Only a key declared secret (cdao_cli/pins.py SECRET_CONFIG_KEYS) may hold a `secure:` value:
    deployed_stack_file takes such values from main, so an encrypted setting (`aws:endpoints`, a
    `cdao:` section) would reach a pinned stack with no promotion."""
    keys = [str(k) for k, value in (document.get("config") or {}).items() if is_secure(value)]
    undeclared = [k for k in keys if k not in SECRET_CONFIG_KEYS]
    if undeclared:
        raise RevisionError(
            f"{where}: {', '.join(undeclared)}: a `secure:` value on a key that is not a secret "
            f"(secrets: {', '.join(SECRET_CONFIG_KEYS)}, infra/config.py SECRET_KEYS); set it in plain text "
            "(`pulumi config set` without --secret), so it is promoted with the pin like every other setting"
        )


def deployed_stack_file(repo: Path, stack: str, commit: str) -> str:
    """The stack file (YAML text) a deploy of `stack` at run commit `commit` gives the program of its
    revision (docs/github-setup.md, "Which stack file a deploy runs").

    A stack following `main` (dev) runs `commit` itself: its file at `commit`, byte for byte. A pinned
    stack (staging, prod) runs the code of its pin, which parses the file with the pin's config schema
    (unknown keys refused), so it gets its own file *as of the pin*, with from `commit` only:
    the promoted keys (cdao_cli/pins.py: `cdao:gitops.revision`, `cdao:gitops.chartVersions`, as
    written), and the stack's secrets (Pulumi's `secretsprovider`, `encryptedkey`, `encryptionsalt`
    and the `secure:` values of the keys declared secret, cdao_cli/pins.py SECRET_CONFIG_KEYS, which
    follow the stack's key, never its code).
    Every other key, top-level ones included, edited on `main` reaches the stack with the first pin
    that contains the edit. The pin's text is kept as written (comments, order, quoting) but for
    those keys. No config schema is involved (the guards run this with a pin's code on main's file,
    which may use keys newer than the pin): only the revision is checked (_revision).

    Raises RevisionError naming the file and key: the file at `commit` is not a YAML mapping or its
    revision is not one the stack can run (_checked_revision), the stack has no file at its pin
    (promote a commit that has one), either file sets a key that is code (cdao_cli/pins.py
    CODE_KEYS), or either file holds a `secure:` value on a key not declared secret.
    """
    name = f"environments/Pulumi.{stack}.yaml"
    _, text = _stack_file(repo, stack, commit)
    current = _document(text, f"{name} at {commit}")
    revision = _revision(repo, stack, commit, current)
    _refuse_code_keys(current, f"{name} at {commit}")
    _refuse_undeclared_secrets(current, f"{name} at {commit}")
    if revision == commit:
        return text
    try:
        _, pinned_text = _stack_file(repo, stack, revision)
    except RevisionError:
        raise RevisionError(
            f"{name} at {commit}: {GITOPS_KEY}.{REVISION_KEY} = {revision}: that commit has no {name}, "
            "whose keys its code would read; promote a commit that has it"
        ) from None
    document = _document(pinned_text, f"{name} at {revision}")
    _refuse_code_keys(document, f"{name} at {revision} (the pin)")
    _refuse_undeclared_secrets(document, f"{name} at {revision} (the pin)")
    current_config = current.get("config") or CommentedMap()
    # Every other top-level key (an ESC `environment:` import, say, which feeds config to the
    # program: pulumi.com/docs/esc/guides/pulumi-iac/) stays as the pin wrote it.
    for key in PULUMI_SECRETS_KEYS:
        if key in current:
            document[key] = current[key]
        elif key in document:
            del document[key]
    if document.get("config") is None:
        document["config"] = CommentedMap()
    config = document["config"]
    for key in [k for k, value in config.items() if is_secure(value)]:
        del config[key]
    if config.get(GITOPS_KEY) is None:
        config[GITOPS_KEY] = CommentedMap()
    gitops = config[GITOPS_KEY]
    promoted = current_config.get(GITOPS_KEY) or {}
    for key in (REVISION_KEY, CHARTS_KEY):
        if key in promoted:
            gitops[key] = promoted[key]
        elif key in gitops:
            del gitops[key]
    for key, value in current_config.items():
        if is_secure(value):
            config[key] = value
    out = StringIO()
    _round_trip().dump(document, out)
    # The header names nothing of `commit`: two runs whose deploy gives the same file compare equal.
    header = (
        f"# {name} at {revision} (the pin), with {GITOPS_KEY}.{REVISION_KEY}, {GITOPS_KEY}.{CHARTS_KEY} "
        "and the stack's secrets from main (cdao stack-revision).\n"
    )
    return header + out.getvalue()


def _wanted(pins: Pins) -> Pins:
    return Pins(pins.revision, {str(k): str(v) for k, v in pins.chart_versions.items()})


def _history_pins(repo: Path, stack: str, commit: str) -> list[tuple[str, Pins]]:
    """(c, promoted values of `stack`'s file at c, as written) for every commit c of `commit`'s history
    that has the file, oldest first. One git process finds the file's blob at every commit
    (`<rev>:<path>` objects, `git cat-file --batch-check`: "<sha> blob <size>", or "... missing"),
    and each distinct blob is read and parsed once (a file unchanged over hundreds of commits took
    seconds to parse again at each)."""
    history = (_git(repo, "rev-list", "--reverse", commit) or "").split()
    name = f"environments/Pulumi.{stack}.yaml"
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", "-C", str(repo), "cat-file", "--batch-check"],  # noqa: S607 - git from PATH
        input="".join(f"{c}:{name}\n" for c in history),
        capture_output=True,
        text=True,
        check=True,
    )
    blobs = [parts[0] if parts[1:2] == ["blob"] else "" for parts in map(str.split, result.stdout.splitlines())]
    documents: dict[str, Any] = {}
    found = []
    for candidate, blob in zip(history, blobs, strict=True):
        if blob:
            if blob not in documents:
                documents[blob] = _load(_git(repo, "cat-file", "-p", blob) or "")
            found.append((candidate, _document_pins(documents[blob], candidate)))
    return found


def upstream_candidates(repo: Path, stack: str, commit: str) -> tuple[str | None, list[str]]:
    """(upstream, commits): the stack's `cdao-stack:promotesFrom` and the commits of main up to
    `commit`, oldest first, at which the upstream's file holds exactly `stack`'s promoted values at
    `commit` (see the module docstring). (None, []) for a stack promoted from none."""
    upstream = config_at(repo, stack, commit).entry.promotes_from
    if upstream is None:
        return None, []
    wanted = _wanted(pins_at(repo, stack, commit))
    return upstream, [c for c, pins in _history_pins(repo, upstream, commit) if pins == wanted]


def check_upstream_ran(
    repo: Path, stack: str, upstream: str, pins: Pins, upstream_deployed: list[str], *, at: str | None = None
) -> None:
    """Refuse `pins` unless `upstream` (the stack's cdao-stack:promotesFrom) ran all of them (every key
    of cdao_cli/pins.py's PROMOTED_KEYS) together in one of its successful deployments, `upstream_deployed`,
    as its stack file at that commit wrote them (raw_pins_at: no config code involved). `at`: the
    commit whose history the refusal's message compares with, to name the keys that differ."""
    ran: list[Pins] = []
    for commit in upstream_deployed:
        if not FULL_SHA.fullmatch(commit):
            continue  # not a record's commit (an empty line of a lookup that found none, say)
        try:
            ran.append(raw_pins_at(repo, upstream, commit))
        except RevisionError:
            continue  # no stack file of the upstream at that commit: it vouches for nothing
    pins = _wanted(pins)
    if pins in ran:
        return
    promote = f"only `cdao promote {upstream} {stack}` pins what {upstream} ran"
    where = f"environments/Pulumi.{stack}.yaml"
    # Which keys to name: compared with what the upstream's file held with this revision (newest
    # first), read from git; a record is what proves a run, this only makes the message precise.
    held = [p for _, p in reversed(_history_pins(repo, upstream, at))] if at else []
    same_revision = [p for p in [*ran, *held] if p.revision == pins.revision and p != pins]
    if not same_revision or pins in held:  # the upstream's file held exactly these: no record of a run
        raise RevisionError(
            f"{where}: {GITOPS_KEY}.{REVISION_KEY} = {pins.revision}: {upstream} never ran it in a successful "
            f"deployment; {promote}"
        )
    # The revision ran upstream, with other chart versions: name the keys that differ from the newest.
    closest = same_revision[0].chart_versions
    charts = [*pins.chart_versions, *(chart for chart in closest if chart not in pins.chart_versions)]
    keys = ", ".join(
        f"{GITOPS_KEY}.{CHARTS_KEY}.{chart} = {pins.chart_versions.get(chart, '(unset)')}"
        for chart in charts
        if pins.chart_versions.get(chart) != closest.get(chart)
    )
    raise RevisionError(
        f"{where}: {keys}: {upstream} never ran these chart versions with revision {pins.revision} in a "
        f"successful deployment; {promote}"
    )


def resolve(
    repo: Path,
    stack: str,
    commit: str,
    deployed: str | None,
    *,
    force: bool = False,
    upstream_deployed: list[str] | None = None,
    main: str | None = None,
) -> Decision:
    """Decide for the job of run `commit`; see the module docstring.

    `main` is main's tip when the job starts (the apply and registration guards pass it). GitHub keeps
    one pending job per concurrency group and cancels it when another job is queued, whatever run
    either belongs to (docs.github.com/actions/how-tos/write-workflows/choose-when-workflows-run/
    control-workflow-concurrency): an older run's job queued last can cancel a newer run's. So a job
    whose stack state (revision and stack file) differs from main's does nothing, and says
    `reconcile` when main's state is not what the stack last deployed.
    """
    if main is None:
        # The resolve job (main's code): the file at `commit` must be one main's config reads, named
        # with its key if not. A guard (`main` given) runs a pin's older code, whose schema may not
        # know main's keys: it compares revisions and composed files only (_revision).
        pins_at(repo, stack, commit)
    decision = _decide(repo, stack, commit, deployed, force)
    if main is not None and main != commit:
        decision = _against_main(repo, stack, commit, deployed, main=main, decision=decision)
    # Checked before any deploy, not for a stack that stays as it is.
    if decision.deploy and upstream_deployed is not None:
        name = f"environments/Pulumi.{stack}.yaml at {commit}"
        document = _document(_stack_file(repo, stack, commit)[1], name)
        upstream = _promotes_from(repo, stack, document.get("config") or {})
        if upstream is not None:
            check_upstream_ran(repo, stack, upstream, raw_pins_at(repo, stack, commit), upstream_deployed, at=commit)
    return decision


def _state(repo: Path, stack: str, commit: str) -> tuple[str, str]:
    """What a deploy at `commit` makes the stack run: its resolved revision and the stack file the
    program reads (deployed_stack_file)."""
    return _revision_of_file(repo, stack, commit), deployed_stack_file(repo, stack, commit)


def _against_main(
    repo: Path, stack: str, commit: str, deployed: str | None, *, main: str, decision: Decision
) -> Decision:
    if not FULL_SHA.fullmatch(main) or not _contains(repo, main, commit):
        raise RevisionError(f"main {main!r}: not a commit containing this run's commit {commit}")
    wanted = _state(repo, stack, main)
    try:
        done = _state(repo, stack, deployed) if deployed else None
    except RevisionError:
        done = None  # what ran then no longer reads
    reconcile = done != wanted
    if _state(repo, stack, commit) != wanted:
        return Decision(
            decision.revision,
            False,
            f"superseded by main at {main}: {stack} should run {wanted[0]} with its stack file there",
            reconcile,
        )
    return Decision(decision.revision, decision.deploy, decision.reason, reconcile and not decision.deploy)


def _decide(repo: Path, stack: str, commit: str, deployed: str | None, force: bool) -> Decision:
    revision = _revision_of_file(repo, stack, commit)
    # What a deploy at `commit` would run: refused here (a key that is code, say) before any decision.
    stack_file = deployed_stack_file(repo, stack, commit)
    if not deployed:
        return Decision(revision, True, f"{stack} has no successful deployment yet")
    if not FULL_SHA.fullmatch(deployed) or _git(repo, "cat-file", "-e", f"{deployed}^{{commit}}") is None:
        raise RevisionError(f"last deployment of {stack}: {deployed!r} is not a commit of this repository")
    if not _contains(repo, commit, deployed):
        return Decision(
            revision, False, f"superseded: {stack} was deployed at {deployed}, which is newer than {commit}"
        )
    if force:
        return Decision(revision, True, f"deploy of {stack} requested at {revision}")
    try:
        ran = _revision_of_file(repo, stack, deployed)
        same_file = deployed_stack_file(repo, stack, deployed) == stack_file
    except RevisionError:
        ran, same_file = "", False  # what ran then no longer reads: reconcile
    if ran == revision and same_file:
        return Decision(revision, False, f"{stack} already runs {revision} with this stack file")
    if ran == revision:
        return Decision(
            revision,
            True,
            f"{stack}: the stack file it runs (environments/Pulumi.{stack}.yaml) changed, "
            f"revision {revision} unchanged",
        )
    return Decision(revision, True, f"{stack}: {ran or 'unknown'} -> {revision}")


DESCRIPTION = __doc__.split("\n\n")[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stack")
    parser.add_argument("--commit", required=True, help="the commit of main this run deploys (GITHUB_SHA)")
    parser.add_argument("--deployed", default="", help="commit of the stack's last successful deployment")
    parser.add_argument("--force", action="store_true", help="deploy even when nothing changed")
    parser.add_argument(
        "--upstream-deployed",
        nargs="*",
        metavar="COMMIT",
        help="commits of the previous stack's successful deployments: the revision must be one it ran",
    )
    parser.add_argument(
        "--main", default=None, help="main's tip when the job starts: a job behind main's state does nothing"
    )
    parser.add_argument(
        "--upstream-candidates",
        action="store_true",
        help="print upstream= and candidates=: the commits whose upstream record would prove the pins ran",
    )
    parser.add_argument(
        "--stack-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the stack file a deploy at --commit gives the program of the stack's revision",
    )
    parser.add_argument("--repo", type=Path, default=Path.cwd())


def run(args: argparse.Namespace) -> int:
    """Print revision=, deploy= and reason= lines (EXIT_OK), or name what is wrong (EXIT_USAGE)."""
    if args.upstream_candidates:
        try:
            upstream, candidates = upstream_candidates(args.repo, args.stack, args.commit)
        except RevisionError as exc:
            print(f"cdao stack-revision: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"upstream={upstream or ''}")
        print(f"candidates={' '.join(candidates)}")
        return EXIT_OK
    try:
        decision = resolve(
            args.repo,
            args.stack,
            args.commit,
            args.deployed or None,
            force=args.force,
            upstream_deployed=args.upstream_deployed,
            main=args.main,
        )
        stack_file = deployed_stack_file(args.repo, args.stack, args.commit) if args.stack_file else None
    except RevisionError as exc:
        print(f"cdao stack-revision: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if stack_file is not None:
        try:
            write_atomically(args.stack_file, stack_file)
        except OSError as exc:
            print(f"cdao stack-revision: --stack-file {args.stack_file}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    print(f"revision={decision.revision}")
    print(f"deploy={'true' if decision.deploy else 'false'}")
    print(f"reason={decision.reason}")
    if args.main is not None:
        print(f"reconcile={'true' if decision.reconcile else 'false'}")
    return EXIT_OK

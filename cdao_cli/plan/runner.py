"""Run the real infra/ program for one stack under Pulumi's mock runtime.

The program is executed exactly as the Pulumi language host would (infra/__main__.py, reading its
config through pulumi.Config), with the stack file's values installed as the engine would pass them.
Each run happens in a fresh contextvars.Context because Pulumi keeps its settings, root stack and
config in context variables: a second stack in the same process must not see the first one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import os
import runpy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

import cdao_stacks
from cdao_cli.files import NotUtf8Error, read_utf8
from infra.config import NAMESPACE, SECRET_KEYS, ConfigError, GitOpsConfig, StackConfig
from infra.images import FULL_SHA, REVISION_COMMIT_ENV

if TYPE_CHECKING:
    from cdao_cli.plan.mocks import Registration

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS_DIR = cdao_stacks.ENVIRONMENTS_DIR
PROGRAM = REPO_ROOT / "infra" / "__main__.py"
PROJECT = "cdao"

# The stand-in for a secret the offline plan cannot decrypt (encrypted with the stack's secrets
# provider) or that is not set on this machine. It satisfies the program's checks, never leaves
# the process, and the report lists which keys were stood in for.
OFFLINE_SECRET = "offline-plan-stand-in"  # noqa: S105 - deliberately not a secret

# The stand-in for the commit a branch revision (dev's `main`) resolves to, which only a deploy knows
# (infra/images.py; deploy.yml passes it in CDAO_REVISION_COMMIT). Git's null object id, the all-zero
# name git itself uses for "no object" (git-scm.com/docs/githooks, pre-receive): it names no commit,
# so no image, and the report says it was stood in.
OFFLINE_COMMIT = "0" * 40


class StackNotFoundError(cdao_stacks.UnknownStackError):
    def __init__(self, stack: str, environments_dir: Path):
        try:
            known = available_stacks(environments_dir)
        except cdao_stacks.StackRegistryError:
            known = []  # no usable folder: raising that here would replace this error with another
        super().__init__(stack, environments_dir, known)


class StackFileError(ValueError):
    """The stack file itself cannot be read as Pulumi stack configuration."""


@dataclass
class PlanRun:
    stack: str
    config: StackConfig
    registrations: list[Registration]
    outputs: dict[str, Any]
    substituted_secrets: list[str]
    # The commit stood in for CDAO_REVISION_COMMIT (OFFLINE_COMMIT), or None when the plan had one.
    revision_commit_stand_in: str | None = None
    # Per secret config key in the stack file: a digest of its ciphertext (not of the secret), so a
    # diff can say a secret was rotated; None where the key is not set in the file.
    secret_ciphertexts: dict[str, str | None] = field(default_factory=dict)


def available_stacks(environments_dir: Path = ENVIRONMENTS_DIR) -> list[str]:
    """The registry's stacks (cdao_stacks): the promotion chain in order, then the others by name.

    A broken stack (cdao_stacks.Registry.broken) is not among them."""
    return cdao_stacks.load(environments_dir).names


def read_stack_file(stack: str, environments_dir: Path = ENVIRONMENTS_DIR) -> tuple[dict[str, Any], list[str]]:
    """The stack's raw config as the engine would pass it, and the secret keys stood in for."""
    path = environments_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise StackNotFoundError(stack, environments_dir)
    try:
        document = cdao_stacks.load_yaml(read_utf8(path)) or {}
    except NotUtf8Error as exc:
        raise StackFileError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise StackFileError(f"{path}: expected a mapping with a 'config:' mapping of key: value")
    raw: dict[str, Any] = {}
    substituted: list[str] = []
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            raw[key] = OFFLINE_SECRET
            substituted.append(key)
        else:
            raw[key] = value
    for secret in SECRET_KEYS:
        full = f"{NAMESPACE}:{secret}"
        if full not in raw:
            raw[full] = OFFLINE_SECRET
            substituted.append(full)
    return raw, sorted(substituted)


def secret_ciphertexts(stack: str, environments_dir: Path = ENVIRONMENTS_DIR) -> dict[str, str | None]:
    """For each secret config key (every `secure:` value in the file, and SECRET_KEYS): the first 12
    hex digits of the SHA-256 of its ciphertext as committed, or None when the file does not set it.

    The ciphertext is already public in Git; its digest lets a diff say a secret was rotated even
    though the offline plan can only ever see the same stand-in on both sides.
    """
    # read_stack_file has read this file; a caller gets here only once it has.
    document = cdao_stacks.load_yaml(read_utf8(environments_dir / f"Pulumi.{stack}.yaml")) or {}
    found = {
        key: hashlib.sha256(str(value["secure"]).encode()).hexdigest()[:12]
        for key, value in (document.get("config") or {}).items()
        if isinstance(value, dict) and set(value) == {"secure"}
    }
    return {**{f"{NAMESPACE}:{k}": None for k in SECRET_KEYS}, **found}


def run_stack(stack: str, environments_dir: Path = ENVIRONMENTS_DIR) -> PlanRun:
    """Run the program on the stack file's config; the program's own parse is the only one.

    Raises StackNotFoundError or StackFileError for the file, and the program's ConfigError (which
    it raises before declaring anything, infra/__main__.py) for a bad value.
    """
    raw, substituted = read_stack_file(stack, environments_dir)
    stand_in = _revision_commit_stand_in(raw)
    try:
        with _environment(REVISION_COMMIT_ENV, stand_in):
            registrations, outputs, config = contextvars.Context().run(
                _run_program, stack, _mock_region(raw), raw, substituted
            )
    except Exception as exc:
        # infra/__main__.py turns a ConfigError into pulumi.RunError (no traceback under the engine);
        # `raise ... from None` hides the ConfigError but keeps it as __context__
        # (docs.python.org/3/library/exceptions.html#exception-context). Raise it: bad input, exit 2.
        if isinstance(exc.__context__, ConfigError):
            raise exc.__context__ from None
        raise
    return PlanRun(
        stack, config, registrations, outputs, substituted, stand_in, secret_ciphertexts(stack, environments_dir)
    )


def _mock_region(raw: dict[str, Any]) -> str:
    """The region the mocks answer with (ARNs, get_region). The program refuses a missing or invalid
    aws:region before it declares anything, so the mocks never answer with one."""
    region = raw.get("aws:region")
    return region if isinstance(region, str) else ""


def _revision_commit_stand_in(raw: dict[str, Any]) -> str | None:
    """OFFLINE_COMMIT when the stack follows a branch and no commit was given, else None."""
    gitops = raw.get(f"{NAMESPACE}:gitops", {})
    if isinstance(gitops, str):
        try:
            gitops = json.loads(gitops)
        except ValueError:
            gitops = {}
    revision = gitops.get("revision") if isinstance(gitops, dict) else None
    revision = revision if isinstance(revision, str) else GitOpsConfig.model_fields["revision"].default
    if FULL_SHA.fullmatch(revision) or REVISION_COMMIT_ENV in os.environ:
        return None
    return OFFLINE_COMMIT


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """The program reads the commit where a deploy puts it, the environment (infra/__main__.py): set
    the stand-in only for this run and remove it after, so no later run takes it for a real one."""
    if value is None:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        del os.environ[name]


def run_program_with_config(
    stack: str, region: str, raw: dict[str, Any], *, stand_in_revision_commit: bool = True
) -> tuple[list[Registration], Exception | None]:
    """Run the program with arbitrary raw config: what it registered, and the error it raised.

    Used to prove the program itself declares nothing when its config is bad. With
    stand_in_revision_commit=False a branch revision gets no OFFLINE_COMMIT (what a deploy without
    CDAO_REVISION_COMMIT sees).
    """
    registrations: list[Registration] = []
    error: Exception | None = None

    def run() -> None:
        nonlocal error
        try:
            _run_program(stack, region, raw, [], sink=registrations)
        except Exception as exc:
            error = exc

    with _environment(REVISION_COMMIT_ENV, _revision_commit_stand_in(raw) if stand_in_revision_commit else None):
        contextvars.Context().run(run)
    return registrations, error


def _ensure_event_loop() -> None:
    """Pulumi's mock runtime builds its futures on this thread's current event loop. asyncio.run()
    (in any library a process used before) leaves the thread with none, and a closed loop cannot
    run them: give the thread a fresh loop in either case."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def _run_program(
    stack: str,
    region: str,
    raw: dict[str, Any],
    secret_keys: list[str],
    sink: list[Registration] | None = None,
) -> tuple[list[Registration], dict[str, Any], StackConfig]:
    """Run infra/__main__.py under the mocks: what it registered, its outputs, and the config it parsed."""
    import pulumi  # noqa: PLC0415 - the Pulumi SDK loads only when a plan actually runs
    from pulumi.runtime import settings  # noqa: PLC0415
    from pulumi.runtime.stack import run_pulumi_func  # noqa: PLC0415
    from pulumi.runtime.sync_await import _sync_await  # noqa: PLC0415

    from cdao_cli.plan.mocks import AwsMocks, RecordingMonitor  # noqa: PLC0415 - they import the Pulumi SDK

    _ensure_event_loop()
    mocks = AwsMocks(region=region, stack=stack)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    # The engine hands structured values to the program as JSON text; do the same.
    pulumi.runtime.set_all_config(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, secret_keys=secret_keys
    )
    collected: dict[str, Any] = {}
    parsed: list[StackConfig] = []

    def program() -> None:
        # run_path returns the module's globals (docs.python.org/3/library/runpy.html#runpy.run_path):
        # `config` is the StackConfig infra/__main__.py parsed and built from.
        parsed.append(runpy.run_path(str(PROGRAM), run_name="__main__")["config"])
        root = settings.get_root_resource()
        for name, value in root.outputs.items():
            pulumi.Output.from_input(value).apply(lambda v, n=name: collected.__setitem__(n, v))

    try:
        _sync_await(run_pulumi_func(program))
    finally:
        if sink is not None:
            sink.extend(monitor.registrations.values())
    return list(monitor.registrations.values()), collected, parsed[0]


__all__ = [
    "ConfigError",
    "PlanRun",
    "StackFileError",
    "StackNotFoundError",
    "available_stacks",
    "read_stack_file",
    "run_program_with_config",
    "run_stack",
]

"""The stack registry: which stacks exist, the policy profile each follows, and the promotion order.

A stack is one file, `environments/Pulumi.<name>.yaml`, and the file says what it is in the
`cdao-stack:` keys of its `config:` mapping (documented with every other key in infra/config.py):

    config:
      cdao-stack:profile: staging      # the policy profile it follows: one of PROFILES
      cdao-stack:promotesFrom: dev     # optional: `cdao promote dev <name>` writes this stack's pins

The keys have their own namespace, not `cdao:`, because staging and prod run the infra/ code of their
pinned revision against the stack file on main (docs/github-setup.md, "Why this stays compatible"):
that code refuses unknown `cdao:` keys and ignores other namespaces. Pulumi takes a stack file's keys
as `<namespace>:<name>` in any namespace and hands them all to the program (pulumi/pulumi#2228,
pkg/resource/config/key.go); only a project that declares `config:` in Pulumi.yaml validates them
against it (pulumi/pulumi#11127), and this one declares none.

Nothing else lists stacks: `cdao plan --all`, `cdao policy check`, `cdao promote`, `cdao doctor`, the
policy pack and .github/scripts read this registry. The promotion order is the chain the
`promotesFrom` links form (dev -> staging -> prod); a stack outside it (a sandbox) is planned after
the chain's stacks, by name.

This module is a leaf: it imports neither Pulumi, nor infra/, nor policies/, so the policy pack and
scripts can import it (../shared/DESIGN.md, "Layers"). Errors are StackRegistryError, whose message
names the file and the key; a bad file holds back only its own stack and the stacks of its broken
promotion chain (`Registry.broken`), so every other stack keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# PyYAML's safe loader in C (libyaml, in PyYAML's wheels) where it was built: the same resolvers and
# constructors as yaml.SafeLoader, so the same documents and the same error classes (yaml.YAMLError),
# parsing about 9 times faster; `cdao plan`, `promote` and the promotion checks parse stack files
# hundreds of times. An error's message lacks only the pure loader's echo of the offending line.
_SAFE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """The one YAML document ``text`` holds, as ``yaml.safe_load`` reads it (None when empty).
    Raises yaml.YAMLError, naming the line and column, for text that is not YAML."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506  (a safe loader: SafeLoader's C twin)


def load_yaml_all(text: str) -> list[Any]:
    """Every YAML document ``text`` holds, as ``yaml.safe_load_all`` reads them. Raises yaml.YAMLError."""
    return list(yaml.load_all(text, Loader=_SAFE_LOADER))


#: The stack file's config namespace of the registry entry, and its keys.
NAMESPACE = "cdao-stack"
PROFILE_KEY = f"{NAMESPACE}:profile"
PROMOTES_FROM_KEY = f"{NAMESPACE}:promotesFrom"
#: Policy profiles: the columns of the pack's per-profile settings (policies/settings.py DEFAULTS).
PROFILES: tuple[str, ...] = ("dev", "staging", "prod")
#: Profiles whose stacks are disposable: a teardown may delete their data (infra/config.py's
#: teardown check, the pack's destroyableStack setting).
DESTROYABLE_PROFILES: frozenset[str] = frozenset({"dev"})
#: The repository's stack folder, resolved from this file so every tool works from any directory.
ENVIRONMENTS_DIR = Path(__file__).resolve().parents[1] / "environments"

_FILE = re.compile(r"^Pulumi\.(?P<name>.+)\.yaml$")
#: A stack name: lowercase letters and digits joined by single hyphens. Pulumi itself accepts
#: `^[A-Za-z0-9_.-]{1,100}$` (pulumi/pulumi pkg/backend/filestate/backend.go, validateStackName); the
#: name also becomes part of S3, RDS, ECR, EKS and Backup names, which allow only this subset
#: (infra/names.py STACK_NAME_SOURCES), and `cdao stacks` prints it in a space-separated line.
STACK_NAME = r"[a-z0-9]+(-[a-z0-9]+)*"
STACK_NAME_MAX = 100


class StackRegistryError(ValueError):
    """A stack file or stack name the registry cannot use; the message names the file and the key."""


class EntryError(StackRegistryError):
    """A bad registry entry: `key` (e.g. `cdao-stack:profile`), the `value` found (None when
    missing) and what was `expected`, so infra/config.py can report it like every other key."""

    def __init__(self, where: str, key: str, value: Any, expected: str):
        shown = "missing" if value is None else repr(value)
        super().__init__(f"{where}: {key} = {shown}: expected {expected}")
        self.key, self.value, self.expected = key, value, expected


class UnknownStackError(StackRegistryError, LookupError):
    """A stack name with no `Pulumi.<name>.yaml` in the environments folder."""

    def __init__(self, stack: str, environments_dir: Path, known: list[str]):
        super().__init__(
            f"unknown stack {stack!r}: no {environments_dir.name}/Pulumi.{stack}.yaml "
            f"(stacks here: {', '.join(known) or 'none'})"
        )
        self.stack = stack


@dataclass(frozen=True)
class StackEntry:
    """What a stack file's `cdao-stack:` keys say: its policy profile and the stack it is promoted from."""

    profile: str
    promotes_from: str | None = None

    @property
    def destroyable(self) -> bool:
        """Whether a teardown may delete the stack's data (DESTROYABLE_PROFILES)."""
        return self.profile in DESTROYABLE_PROFILES


def parse_entry(config: Mapping[str, Any], where: str) -> StackEntry:
    """The registry entry in a stack's config mapping (`{"cdao-stack:profile": "dev", ...}`, as the
    stack file's `config:` or the engine holds it). `where` names the file (or stack) for the error.

    Raises EntryError naming the key: a missing or unknown profile, an empty promotesFrom, or another
    key in the `cdao-stack:` namespace.
    """
    for key in config:
        if isinstance(key, str) and key.startswith(f"{NAMESPACE}:") and key not in (PROFILE_KEY, PROMOTES_FROM_KEY):
            raise EntryError(where, key, config[key], f"no such key (only {PROFILE_KEY}, {PROMOTES_FROM_KEY})")
    profile = config.get(PROFILE_KEY)
    if profile not in PROFILES:
        raise EntryError(where, PROFILE_KEY, profile, f"the policy profile the stack follows: {', '.join(PROFILES)}")
    source = config.get(PROMOTES_FROM_KEY)
    if source is not None and (not isinstance(source, str) or not source):
        raise EntryError(where, PROMOTES_FROM_KEY, source, "the name of the stack this one is promoted from")
    return StackEntry(profile, source)


@dataclass(frozen=True)
class Stack:
    name: str
    path: Path
    entry: StackEntry

    @property
    def profile(self) -> str:
        return self.entry.profile

    @property
    def promotes_from(self) -> str | None:
        return self.entry.promotes_from


@dataclass(frozen=True)
class Registry:
    environments_dir: Path
    stacks: tuple[Stack, ...]  # the promotion chain first, in order, then the other stacks by name
    # Stacks whose own file is bad, or whose promotion chain is (a promotesFrom naming a missing or
    # broken stack, two stacks promoted from one, a cycle), with the error: one bad file holds back
    # only its own stack and the stacks promoted from it, never the others.
    broken: Mapping[str, StackRegistryError] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The usable stacks' names (broken ones aside)."""
        return [s.name for s in self.stacks]

    def get(self, name: str) -> Stack:
        """The stack called `name`. Raises its StackRegistryError if it is broken, UnknownStackError
        (naming the folder and the known stacks) if there is no such file."""
        if name in self.broken:
            raise self.broken[name]
        for stack in self.stacks:
            if stack.name == name:
                return stack
        raise UnknownStackError(name, self.environments_dir, [*self.names, *sorted(self.broken)])

    @property
    def promotion_order(self) -> tuple[str, ...]:
        """The stacks of the promotion chain, first to last (empty when no stack declares promotesFrom)."""
        sources = {s.promotes_from for s in self.stacks if s.promotes_from}
        return tuple(s.name for s in self.stacks if s.promotes_from or s.name in sources)


def load(environments_dir: Path = ENVIRONMENTS_DIR) -> Registry:
    """Read every `Pulumi.<name>.yaml` in `environments_dir`.

    A file's own faults (a name outside STACK_NAME, unreadable YAML, a missing or bad `cdao-stack:`
    key) and the chain's (a `promotesFrom` naming no usable stack here, two stacks promoted from the
    same one, a cycle) put the stacks involved in `Registry.broken`, each with a StackRegistryError
    naming the file and key; the other stacks stay usable. Raises StackRegistryError only when the
    folder does not exist.
    """
    if not environments_dir.is_dir():
        raise StackRegistryError(f"{environments_dir}: no such folder of stack files")
    found: dict[str, Stack] = {}
    broken: dict[str, StackRegistryError] = {}
    for path in sorted(environments_dir.iterdir()):
        match = _FILE.match(path.name)
        if not match or not path.is_file():
            continue
        name, where = match["name"], f"{environments_dir.name}/{path.name}"
        try:
            found[name] = Stack(name, path, _read_entry(path, name, where))
        except StackRegistryError as exc:
            broken[name] = exc
    stacks = _ordered(found, broken, environments_dir)
    return Registry(environments_dir, stacks, broken)


def _read_entry(path: Path, name: str, where: str) -> StackEntry:
    if len(name) > STACK_NAME_MAX or not re.fullmatch(STACK_NAME, name):
        raise StackRegistryError(
            f"{where}: stack name {name!r}: expected lowercase letters and digits joined by single hyphens, "
            f"at most {STACK_NAME_MAX} characters (it becomes part of AWS names; rename the file)"
        )
    try:
        document = load_yaml(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise StackRegistryError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        # Pulumi reads stack files as UTF-8 YAML; the CLI's other inputs say the same (cdao_cli/files.py,
        # which this leaf cannot import).
        raise StackRegistryError(
            f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise StackRegistryError(f"{where}: not valid YAML: {exc}") from None
    config = document.get("config") if isinstance(document, Mapping) else None
    if not isinstance(config, Mapping):
        raise StackRegistryError(f"{where}: expected a mapping with a 'config:' mapping of key: value")
    return parse_entry(config, where)


def _ordered(
    found: dict[str, Stack], broken: dict[str, StackRegistryError], environments_dir: Path
) -> tuple[Stack, ...]:
    """The usable stacks in promotion order; moves the stacks of a broken chain from `found` to `broken`."""
    folder = environments_dir.name
    sources: dict[str, list[str]] = {}
    for stack in found.values():
        if stack.promotes_from is not None:
            sources.setdefault(stack.promotes_from, []).append(stack.name)
    for source, successors in sources.items():
        if len(successors) > 1:
            # One successor per stack: `cdao promote` and the promotion workflow follow one chain.
            both = " and ".join(f"{folder}/Pulumi.{n}.yaml" for n in sorted(successors))
            for name in successors:
                broken[name] = StackRegistryError(
                    f"{folder}/Pulumi.{name}.yaml: {PROMOTES_FROM_KEY} = {source!r}: {both} are both promoted "
                    f"from {source!r}; a stack has one successor"
                )
    # A cycle: following promotesFrom from a stack comes back to it.
    for stack in found.values():
        seen, name = [], stack.name
        while name in found and name not in seen and found[name].promotes_from is not None:
            seen.append(name)
            name = found[name].promotes_from
        if seen and name == stack.name:
            cycle = sorted(seen)
            broken[stack.name] = StackRegistryError(
                f"{folder}/Pulumi.{stack.name}.yaml: {PROMOTES_FROM_KEY}: the stacks {', '.join(cycle)} "
                "promote from each other in a cycle"
            )
    # A stack promoted from a missing or broken stack is held back too, down the chain.
    changed = True
    while changed:
        changed = False
        for stack in found.values():
            source = stack.promotes_from
            if stack.name in broken or source is None or (source in found and source not in broken):
                continue
            why = "no stack of that name" if source not in found and source not in broken else "that stack is broken"
            known = ", ".join(sorted(n for n in found if n not in broken))
            broken[stack.name] = StackRegistryError(
                f"{folder}/{stack.path.name}: {PROMOTES_FROM_KEY} = {source!r}: {why} (usable stacks here: {known})"
            )
            changed = True
    usable = {name: stack for name, stack in found.items() if name not in broken}
    successor = {s.promotes_from: s.name for s in usable.values() if s.promotes_from}
    chain: list[str] = []
    for head in sorted(name for name in successor if usable[name].promotes_from is None):
        name: str | None = head
        while name is not None:
            chain.append(name)
            name = successor.get(name)
    rest = sorted(set(usable) - set(chain))
    return tuple(usable[name] for name in [*chain, *rest])


__all__ = [
    "DESTROYABLE_PROFILES",
    "ENVIRONMENTS_DIR",
    "NAMESPACE",
    "PROFILES",
    "PROFILE_KEY",
    "PROMOTES_FROM_KEY",
    "STACK_NAME",
    "EntryError",
    "Registry",
    "Stack",
    "StackEntry",
    "StackRegistryError",
    "UnknownStackError",
    "load",
    "parse_entry",
]

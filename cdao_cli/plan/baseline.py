"""Plan a git ref's own code and stack files, for `cdao plan --diff <ref>`.

The base is planned by the base's code, not by today's: its tree is written into a temporary
folder from git's objects (`git ls-tree` and `git cat-file --batch`: no `.gitattributes`
export rules, filters or tar extraction in the way; the user's checkout, index and `.git` are never
written) and its own `cdao plan --stack <s> --format json` runs there in a child process, with this
environment's installed dependencies. The child starts at once, so the head can be planned
meanwhile; it runs in its own process group, which is killed with the temporary folder however
the parent ends (an exception, Ctrl-C, or SIGTERM, which `cdao` turns into an exit).

Each stack is planned on its own, so a base whose configuration no longer parses (exit 2) is a
per-stack error the diff reports, not a crash. A base from before plans carried resource inputs
shows added and removed resources but no changed inputs (see `cdao_cli.plan.diff`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdao_cli.plan.diff import Base

# Runs inside the base's tree. It finds the base's `cdao` entry point in the base's own
# pyproject.toml, so it keeps working when the CLI moves, and writes one JSON document:
# {stack: {"code": exit code, "stdout": ..., "stderr": ...}}.
_DRIVER = r"""
import contextlib, importlib, io, json, sys, tomllib, traceback
module, _, func = tomllib.load(open("pyproject.toml", "rb"))["project"]["scripts"]["cdao"].partition(":")
main = getattr(importlib.import_module(module), func)
results = {}
for stack in sys.argv[2:]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["plan", "--stack", stack, "--format", "json"])
        except SystemExit as exc:
            code = exc.code
        except Exception:
            code = None
            traceback.print_exc()
    results[stack] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump(results, fh)
"""


class BaseRefError(ValueError):
    """The ref does not name a commit of this repository (exit 2)."""


@dataclass
class BasePlans:
    base: Base
    stacks: list[str]
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _git(repo_root: Path, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell; refs come after --end-of-options
        ["git", "-C", str(repo_root), *args],  # noqa: S607 - git from PATH, as a developer runs it
        capture_output=True,
        text=text,
        check=False,
    )


def resolve(ref: str, repo_root: Path) -> Base:
    """`ref` -> Base(ref, full commit id). Raises BaseRefError naming the ref."""
    proc = _git(repo_root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BaseRefError(f"--diff {ref!r}: not a commit of the repository at {repo_root}")
    return Base(ref=ref, commit=proc.stdout.strip())


class BasePlanner:
    """Start planning the base in the background; `result()` waits for it.

    Use as a context manager: the temporary tree is removed on exit, whatever happened.
    """

    def __init__(self, base: Base, repo_root: Path, stacks: list[str] | None):
        self.base = base
        self._tmp = Path(tempfile.mkdtemp(prefix="cdao-plan-base-"))
        self._tree = self._tmp / "tree"
        self._out = self._tmp / "plans.json"
        try:
            self._export(repo_root)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        environments = self._tree / "environments"
        # The base's stack files by name, not through the stack registry: a base from before the
        # registry has no `cdao-stack:` keys, and its own code (the driver) judges its files.
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in environments.glob("Pulumi.*.yaml"))
        # With --stack, a stack the base does not have is simply absent there (a new stack).
        self.stacks = [s for s in stacks if s in known] if stacks is not None else known
        env = {**os.environ, "PYTHONPATH": str(self._tree), "PYTHONDONTWRITEBYTECODE": "1"}
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter on our own driver
            [sys.executable, "-c", _DRIVER, str(self._out), *self.stacks],
            cwd=self._tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: killed as a whole on the way out
        )

    def _export(self, repo_root: Path) -> None:
        """Write the base commit's tree: regular and executable files, and symlinks as links."""
        listing = _git(repo_root, "ls-tree", "-r", "-z", "--full-tree", self.base.commit, text=False)
        if listing.returncode != 0:
            raise BaseRefError(f"--diff {self.base.ref!r}: git ls-tree failed: {listing.stderr.decode().strip()}")
        entries = []
        for record in listing.stdout.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, sha = meta.split()
            if kind == b"blob":  # submodules (kind "commit") have no content here
                entries.append((mode.decode(), sha.decode(), os.fsdecode(path)))
        batch = subprocess.run(  # noqa: S603 - fixed argv, object ids from ls-tree on stdin
            ["git", "-C", str(repo_root), "cat-file", "--batch"],  # noqa: S607 - git from PATH
            input=b"".join(f"{sha}\n".encode() for _, sha, _ in entries),
            capture_output=True,
            check=False,
        )
        if batch.returncode != 0:
            raise BaseRefError(f"--diff {self.base.ref!r}: git cat-file failed: {batch.stderr.decode().strip()}")
        data, pos = batch.stdout, 0
        for mode, _, path in entries:
            header_end = data.index(b"\n", pos)
            size = int(data[pos:header_end].split()[2])
            content = data[header_end + 1 : header_end + 1 + size]
            pos = header_end + 1 + size + 1
            target = self._tree / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if mode == "120000":
                target.symlink_to(os.fsdecode(content))
            else:
                target.write_bytes(content)
                if mode == "100755":
                    target.chmod(0o755)

    def result(self) -> BasePlans:
        stdout, stderr = self._proc.communicate()
        plans = BasePlans(base=self.base, stacks=self.stacks)
        if not self._out.is_file():
            detail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
            for stack in self.stacks:
                plans.errors[stack] = f"the base's planner failed: {detail[0]}"
            return plans
        for stack, res in json.loads(self._out.read_text(encoding="utf-8")).items():
            code, out, err = res["code"], res["stdout"], res["stderr"]
            if code in (0, 1):  # 1 is a mandatory violation: the plan itself is complete
                try:
                    plans.plans[stack] = json.loads(out)
                    continue
                except json.JSONDecodeError:
                    pass
            # The base's own message (a ConfigError names the stack, key and value; a YAML error the
            # file and line), or a traceback's last line.
            lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
            message = " ".join(lines if code == 2 else lines[-1:]) if lines else f"exit {code}"
            # Paths name the temporary tree; say them as the repository does, so output is stable.
            plans.errors[stack] = message.removeprefix("cdao plan: ").replace(f"{self._tree}/", "")
        return plans

    def __enter__(self) -> BasePlanner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.communicate()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def abort(self) -> None:
        """Kill the base's process group and remove the temporary tree, from a signal handler: it may
        interrupt this object's own `communicate()`/`wait()`, whose lock it would wait for, so it reaps
        the child with os.waitpid instead of through Popen."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._proc.pid, 0)
        shutil.rmtree(self._tmp, ignore_errors=True)

"""What one doctor run knows: what the deployment declared, the deployed stack's outputs, and clients.

The doctor judges a stack by facts of its own deployment, never by this checkout's Python (whose
defaults and contract may have moved on since the stack's commit was deployed):
- the `declared` stack output (infra/declared.py, written by the program that deployed the stack):
  service accounts, cluster labels, chart pins, the platform/ commit, node-pool labels, taints and
  GPU resources, the backup age; and `logGroups` with each group's declared retention;
- platform/ at the commit the deployment recorded (`declared.repoRevision`, the commit Argo CD syncs
  as the cluster Secret's `cdao.io/repo-revision`), read with `git show <commit>:<path>` and
  `git ls-tree` from the repository this code lives in (fetch first), so an engineer on main can
  doctor prod pinned at an older commit.
Outputs come from `pulumi stack output --json --stack <name>` (secrets print as "[secret]"; the doctor
needs none of them). A stack deployed by a program older than the `declared` output cannot be
doctored: read_outputs exits 2 naming the missing output and the first commit that records it.
AWS is reached through boto3's default credential chain in the stack's region; Kubernetes through a
kubeconfig (optional: its checks are skipped without one).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdao_authority import parse_authority

from cdao_cli.files import NotUtf8Error, decode_utf8, read_utf8
from infra.config import LOG_RETENTION_DAYS
from infra.declared import DECLARED_OUTPUT, DECLARED_VERSION, Declared
from infra.names import AWS_REGION, BACKUP_VAULT_NAME


class DoctorInputError(ValueError):
    """Bad input to `cdao doctor` (exit 2): names the file or option and what was wrong."""


#: The repository this code is part of: where the stack's commit is looked up.
REPO = Path(__file__).resolve().parents[2]
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class PlatformFiles:
    """The repository's files at `commit`, or in the working tree of `repo` when `commit` is None.
    Paths are relative to the repository's root, with `/` (`platform/bootstrap/appsets`)."""

    repo: Path = REPO
    commit: str | None = None

    @property
    def where(self) -> str:
        """How a message names the source: `<commit>` or `the working tree of <repo>`."""
        return self.commit if self.commit else f"the working tree of {self.repo}"

    def read(self, path: str) -> str:
        """The file's text. Raises DoctorInputError naming the path and the revision if it is absent."""
        if self.commit is None:
            try:
                return read_utf8(self.repo / path, f"{path} in {self.where}")
            except OSError as exc:
                raise DoctorInputError(f"{path} in {self.where}: cannot read it ({exc.strerror})") from None
            except NotUtf8Error as exc:
                raise DoctorInputError(str(exc)) from None
        return _git(self.repo, "show", f"{self.commit}:{path}", what=f"{path} at {self.commit}")

    def list(self, folder: str, suffix: str) -> list[str]:
        """The paths of the files directly in `folder` whose names end in `suffix`, sorted."""
        if self.commit is None:
            return sorted(f"{folder}/{p.name}" for p in (self.repo / folder).glob(f"*{suffix}") if p.is_file())
        # ls-tree lists a folder's entries given `<folder>/`; --name-only prints full paths.
        names = _git(self.repo, "ls-tree", "--name-only", self.commit, f"{folder}/", what=f"{folder}/ at {self.commit}")
        return sorted(n for n in names.splitlines() if n.endswith(suffix))


def platform_files(stack: str, revision: str, repo: Path = REPO) -> PlatformFiles:
    """platform/ at `revision`, the full commit SHA the stack's deployment recorded (`declared.repoRevision`).

    Raises DoctorInputError (exit 2) if `revision` is not a full SHA, if `repo` is not a Git
    repository, or if the commit is not in it (fetch it)."""
    pinned = f"--stack {stack}: the deployment runs platform/ at {revision!r} (declared.repoRevision)"
    if not _COMMIT.fullmatch(revision):
        raise DoctorInputError(f"{pinned}: not a full commit SHA")

    def git_ok(*args: str) -> bool:
        return (
            subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["git", "-C", str(repo), *args],  # noqa: S607 - git from PATH
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )

    if not git_ok("rev-parse", "--git-dir"):
        raise DoctorInputError(f"{pinned}; {repo} is not a Git repository to read it from (clone the repository)")
    # `cat-file -e <sha>^{commit}` exits non-zero when the object is absent or not a commit (git-cat-file(1)).
    if not git_ok("cat-file", "-e", f"{revision}^{{commit}}"):
        raise DoctorInputError(
            f"{pinned}, which is not in the local repository {repo}: fetch it (git -C {repo} fetch origin), "
            "then run the doctor again"
        )
    return PlatformFiles(repo, revision)


def first_declaring_commit(repo: Path = REPO) -> str | None:
    """The first commit of HEAD's history that adds infra/declared.py (the program's `declared`
    output), or None when the history here does not hold it (a shallow clone)."""
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", "-C", str(repo), "log", "--diff-filter=A", "--format=%H", "--reverse", "--", "infra/declared.py"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    commits = done.stdout.split() if done.returncode == 0 else []
    return commits[0] if commits else None


def _git(repo: Path, *args: str, what: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", "-C", str(repo), *args],  # noqa: S607 - git from PATH
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", errors="replace")
        raise DoctorInputError(f"{what}: git {args[0]} failed: {' '.join(stderr.split())}")
    # A file's content (git show) is bytes in whatever encoding it was committed in.
    try:
        return decode_utf8(done.stdout, what).rstrip("\n")
    except NotUtf8Error as exc:
        raise DoctorInputError(str(exc)) from None


@dataclass
class DoctorContext:
    stack: str
    outputs: dict[str, Any]
    session: Any  # boto3.session.Session in the stack's region
    kube: Any | None = None  # kubernetes.client.ApiClient, or None when no kubeconfig was given
    connector_endpoint: str | None = None  # host:port of the connector service (e.g. a port-forward)
    flyte_ca_file: Path | None = None  # a private CA for the Flyte endpoint; None trusts the system roots
    skipped_kube_reason: str = "no kubeconfig given (--kubeconfig)"
    platform: PlatformFiles = field(default_factory=PlatformFiles)  # platform/ as the stack runs it
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """A boto3 client with short timeouts and few retries: the doctor should answer in about a
        minute (3 tries of at most 20 s each), not wait out botocore's defaults (60 s reads, legacy
        retries) on an endpoint that hangs. ``total_max_attempts`` counts the first try;
        ``max_attempts`` would count retries only (botocore args.py ``_compute_retry_max_attempts``)."""
        if service not in self._clients:
            from botocore.config import Config  # noqa: PLC0415

            config = Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard", "total_max_attempts": 3})
            self._clients[service] = self.session.client(service, config=config)
        return self._clients[service]

    @property
    def declared(self) -> dict[str, Any]:
        """The `declared` output (infra/declared.py): what the deployment promised."""
        return self.outputs[DECLARED_OUTPUT]

    def output(self, key: str) -> Any:
        """A stack output (read_outputs has checked the ones the checks need), or None."""
        return self.outputs.get(key)


# The outputs the checks read, with their shapes (infra/program.py exports them). `pulumi stack
# output --json` prints a secret output as the string "[secret]" unless --show-secrets is given;
# none of these is secret, so that string in one of them means the file is not this stack's.
MASKED_OUTPUT = "[secret]"
_STR = (str, "a non-empty string")
_STR_MAP = (dict, "an object of strings")
REQUIRED_OUTPUTS: dict[str, tuple[type, str]] = {
    "region": (str, "an AWS region code such as us-east-1"),
    "clusterName": _STR,
    "roleArns": _STR_MAP,
    "flyteEndpoint": (str, "https://host[:port], a DNS name or IP address and an optional port 1-65535"),
    "flyteCertificateArn": _STR,
    "logGroups": (dict, "an object of {name, retentionDays}: a non-empty name, days one of LOG_RETENTION_DAYS"),
    "dbInstanceIdentifier": _STR,
    "efsFileSystemId": _STR,
}
BACKUP_OUTPUT = ("backup", (dict, "an object with vaultName, an AWS Backup vault name ([a-zA-Z0-9_-]{2,50})"))


def read_outputs(path: Path, stack: str, repo: Path = REPO) -> dict[str, Any]:
    """Parse `pulumi stack output --json` saved to a file and check the keys the doctor reads.

    Raises DoctorInputError naming the file and the key: the `declared` output (infra/declared.py)
    must be there, of DECLARED_VERSION and of `stack` (a program older than it records nothing to
    judge by: the message names the first commit that records it); every output in
    REQUIRED_OUTPUTS is required, `backup` when `declared.backupMaxAgeHours` says AWS Backup is on;
    no string output may be empty or the secret placeholder; `region` must be an AWS region code
    (infra/names.py AWS_REGION), `flyteEndpoint` https://host[:port] (flyte_host_port),
    `backup.vaultName` an AWS Backup vault name (infra/names.py BACKUP_VAULT_NAME) and each
    `logGroups[*].retentionDays` a retention CloudWatch Logs accepts (infra/config.py LOG_RETENTION_DAYS).
    """
    try:
        data = json.loads(read_utf8(path, f"--outputs {path}"))
    except OSError as exc:
        raise DoctorInputError(f"--outputs {path}: cannot read it ({exc.strerror})") from None
    except NotUtf8Error as exc:
        raise DoctorInputError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise DoctorInputError(f"--outputs {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise DoctorInputError(f"--outputs {path}: expected the JSON object `pulumi stack output --json` prints")
    declared = data.get(DECLARED_OUTPUT)
    if declared is None:
        first = first_declaring_commit(repo)
        since = f"commit {first}" if first else "the commit that adds infra/declared.py"
        raise DoctorInputError(
            f"--outputs {path}: no `{DECLARED_OUTPUT}` output: the program that deployed stack {stack!r} predates "
            f"the record the doctor judges a deployment by, which {since} first exports. Deploy that commit "
            "or a later one to this stack (promote it, pulumi up), then save the outputs again"
        )
    problems = _declared_problems(declared, stack)
    required = dict(REQUIRED_OUTPUTS)
    if not problems and declared.get("backupMaxAgeHours") is not None:
        required[BACKUP_OUTPUT[0]] = BACKUP_OUTPUT[1]
    for key, (kind, described) in required.items():
        value = data.get(key)
        if value is None:
            problems.append(f"{key} is missing")
        elif value == MASKED_OUTPUT:
            problems.append(f"{key} is {json.dumps(value)}, the placeholder Pulumi prints for a secret")
        elif not isinstance(value, kind) or not _well_formed(key, value):
            problems.append(f"{key} is {json.dumps(value)[:60]}, expected {described}")
    if problems:
        raise DoctorInputError(
            f"--outputs {path}: " + "; ".join(problems) + " (save `pulumi stack output --json --stack <stack>` "
            "after a `pulumi up` of this revision)"
        )
    return data


def _declared_problems(declared: Any, stack: str) -> list[str]:
    if not isinstance(declared, dict):
        return [f"{DECLARED_OUTPUT} is {json.dumps(declared)[:60]}, expected the object infra/declared.py exports"]
    if declared.get("version") != DECLARED_VERSION:
        return [
            f"{DECLARED_OUTPUT}.version is {declared.get('version')!r}; this doctor reads version {DECLARED_VERSION} "
            "(run the doctor from the commit that deployed the stack or a later one)"
        ]
    from pydantic import ValidationError  # noqa: PLC0415 - loaded when outputs are read, not for --help

    problems = []
    try:
        # The model the deploying program built the output with (infra/declared.py): every key, at every depth.
        Declared.model_validate(declared)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where = ".".join([DECLARED_OUTPUT, *(str(part) for part in error["loc"])])
            got = "missing" if error["type"] == "missing" else f"{json.dumps(error['input'], default=str)[:60]}"
            problems.append(f"{where} is {got}: {error['msg']}")
    if declared.get("stack") != stack:
        problems.append(
            f"{DECLARED_OUTPUT}.stack is {declared.get('stack')!r}: these are not stack {stack!r}'s outputs"
        )
    return problems


def _well_formed(key: str, value: Any) -> bool:
    check = _SHAPES.get(key)
    if check is not None:
        return check(value)
    return value.strip() != "" if isinstance(value, str) else True


def _log_group(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and value["name"].strip() != ""
        # bool is an int in Python; JSON's true is no number of days
        and type(value.get("retentionDays")) is int
        and value["retentionDays"] in LOG_RETENTION_DAYS
    )


def flyte_host_port(endpoint: str) -> tuple[str, int]:
    """The `flyteEndpoint` output, `https://host[:port]` with an optional trailing "/" (what
    infra/components/edge.py exports: `https://<hostname>`), as (host, port); the port is 443, https's
    default (RFC 9110 section 4.2.2), when it has none. Host and port follow `cdao_authority`'s
    grammar (the one of --connector-endpoint); an IPv6 host keeps its brackets, as a URL and a gRPC
    target both write it. Raises ValueError: another scheme, or user information, a path, a query or
    a fragment, which the checks (they dial host and port) would otherwise drop without a word."""
    scheme, rest = endpoint[: len("https://")], endpoint[len("https://") :]
    if scheme.lower() != "https://":  # RFC 3986 section 3.1: a scheme is case-insensitive
        raise ValueError(f"{endpoint!r} is not an https:// URL")
    authority = parse_authority(rest.removesuffix("/"))
    return authority.host, authority.port or 443


def _https_url(value: str) -> bool:
    try:
        flyte_host_port(value)
    except ValueError:
        return False
    return True


_SHAPES: dict[str, Callable[[Any], bool]] = {
    "region": lambda v: re.fullmatch(AWS_REGION, v) is not None,
    "flyteEndpoint": _https_url,
    "roleArns": lambda v: all(isinstance(arn, str) for arn in v.values()),
    "logGroups": lambda v: all(_log_group(group) for group in v.values()),
    "backup": lambda v: (
        isinstance(v.get("vaultName"), str) and re.fullmatch(BACKUP_VAULT_NAME, v["vaultName"]) is not None
    ),
}

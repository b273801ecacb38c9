"""What one doctor run knows: the stack's declared config, the deployed stack's outputs, and clients.

Declared facts (labels, taints, retention, chart pins) come from the stack file parsed by
`infra/config.py`, exactly as the program reads it. Deployed names and ARNs come from the stack's
outputs, which `pulumi stack output --json --stack <name>` prints (secrets print as "[secret]";
the doctor needs none of them). AWS is reached through boto3's default credential chain in the
stack's region; Kubernetes through a kubeconfig (optional: its checks are skipped without one).

platform/'s files are read as the stack runs them (PlatformFiles, platform_files): a stack pinned
to a commit (`cdao:gitops.revision`, a full SHA in every promoted stack) runs that commit's
platform/, since Argo CD syncs `cdao.io/repo-revision` (infra/contract.py). The doctor's platform
facts (the ApplicationSets that say which Applications exist, the task types flyte-core's values
route to the connector, whether flyteadmin uses auth) are read with `git show <commit>:<path>` and
`git ls-tree <commit> <folder>/` from the repository this code lives in, so an engineer on main can
doctor prod pinned at an older commit. A stack following a branch (dev: `main`) runs the branch's
tip at its last deploy, which cannot be told from here: its files are read from the working tree.
Facts the doctor takes from Python code (the service-account contract, node-pool labels and GPU
arithmetic, the backup plan's windows) are the code it runs, so CODE_FACT_PATHS must be the same at
the pin as in the checkout, or platform_files refuses.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import LOG_RETENTION_DAYS, StackConfig
from infra.names import AWS_REGION, BACKUP_VAULT_NAME


class DoctorInputError(ValueError):
    """Bad input to `cdao doctor` (exit 2): names the file or option and what was wrong."""


#: The repository this code is part of: where the stack's commit is looked up.
REPO = Path(__file__).resolve().parents[2]
#: The modules whose facts the doctor imports rather than reads (see the module docstring).
CODE_FACT_PATHS = (
    "infra/contract.py",
    "infra/components/node_pool.py",
    "infra/components/backup.py",
    "plugins/cdao_pools",
)
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
                return (self.repo / path).read_text(encoding="utf-8")
            except OSError as exc:
                raise DoctorInputError(f"{path} in {self.where}: cannot read it ({exc.strerror})") from None
        return _git(self.repo, "show", f"{self.commit}:{path}", what=f"{path} at {self.commit}")

    def list(self, folder: str, suffix: str) -> list[str]:
        """The paths of the files directly in `folder` whose names end in `suffix`, sorted."""
        if self.commit is None:
            return sorted(f"{folder}/{p.name}" for p in (self.repo / folder).glob(f"*{suffix}") if p.is_file())
        # ls-tree lists a folder's entries given `<folder>/`; --name-only prints full paths.
        names = _git(self.repo, "ls-tree", "--name-only", self.commit, f"{folder}/", what=f"{folder}/ at {self.commit}")
        return sorted(n for n in names.splitlines() if n.endswith(suffix))


def platform_files(stack: str, revision: str, repo: Path = REPO) -> PlatformFiles:
    """Where the doctor reads platform/ for a stack whose `cdao:gitops.revision` is `revision`.

    A full commit SHA: that commit of the local repository. Raises DoctorInputError (exit 2) if `repo`
    is not a Git repository, if the commit is not in it (fetch it), or if CODE_FACT_PATHS differ
    between the commit and the working tree (run from a checkout of the commit). Anything else (a
    branch): the working tree.
    """
    if not _COMMIT.fullmatch(revision):
        return PlatformFiles(repo, None)
    pinned = f"--stack {stack}: the stack runs {revision} (cdao:gitops.revision)"

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
    # Against the working tree, so uncommitted edits count too.
    changed = _git(repo, "diff", "--name-only", revision, "--", *CODE_FACT_PATHS, what=f"the diff against {revision}")
    if changed:
        files = ", ".join(changed.splitlines()[:5])
        raise DoctorInputError(
            f"{pinned}; the checks' code facts differ between it and this checkout ({files}): run the doctor "
            f"from a checkout of it (git worktree add ../cdao-{stack} {revision}) with --environments pointing "
            "at this checkout's environments/"
        )
    return PlatformFiles(repo, revision)


def _git(repo: Path, *args: str, what: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", "-C", str(repo), *args],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise DoctorInputError(f"{what}: git {args[0]} failed: {' '.join(done.stderr.split())}")
    return done.stdout.rstrip("\n")


@dataclass
class DoctorContext:
    stack: str
    config: StackConfig
    outputs: dict[str, Any]
    session: Any  # boto3.session.Session in the stack's region
    kube: Any | None = None  # kubernetes.client.ApiClient, or None when no kubeconfig was given
    connector_endpoint: str | None = None  # host:port of the connector service (e.g. a port-forward)
    flyte_ca_file: Path | None = None  # a private CA for the Flyte endpoint; None trusts the system roots
    skipped_kube_reason: str = "no kubeconfig given (--kubeconfig)"
    platform: PlatformFiles = field(default_factory=PlatformFiles)  # platform/ as the stack runs it
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """A boto3 client with short timeouts and few retries: the doctor should answer in a minute,
        not wait out botocore's defaults (60 s reads, legacy retries) on an endpoint that hangs."""
        if service not in self._clients:
            from botocore.config import Config  # noqa: PLC0415

            config = Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard", "max_attempts": 3})
            self._clients[service] = self.session.client(service, config=config)
        return self._clients[service]

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
    "flyteEndpoint": (str, "an https:// URL of a host with an optional port 1-65535"),
    "flyteCertificateArn": _STR,
    "logGroups": (dict, "an object of {name, retentionDays}: a non-empty name, days one of LOG_RETENTION_DAYS"),
    "dbInstanceIdentifier": _STR,
    "efsFileSystemId": _STR,
}
BACKUP_OUTPUT = ("backup", (dict, "an object with vaultName, an AWS Backup vault name ([a-zA-Z0-9_-]{2,50})"))


def read_outputs(path: Path, backup_enabled: bool, cluster_name: str | None = None) -> dict[str, Any]:
    """Parse `pulumi stack output --json` saved to a file and check the keys the doctor reads.

    Raises DoctorInputError naming the file and the key: every output the current program exports
    is required (`backup` only when the stack enables AWS Backup); no string output may be empty or
    the secret placeholder; `region` must be an AWS region code (infra/names.py AWS_REGION) and
    `clusterName`, when `cluster_name` is given, the stack's cluster (infra/program.py cluster_name);
    `flyteEndpoint` an https URL with a host and a valid port, `backup.vaultName` an AWS Backup vault
    name (infra/names.py BACKUP_VAULT_NAME) and each `logGroups[*].retentionDays` a retention
    CloudWatch Logs accepts (infra/config.py LOG_RETENTION_DAYS).
    """
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise DoctorInputError(f"--outputs {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise DoctorInputError(f"--outputs {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise DoctorInputError(f"--outputs {path}: expected the JSON object `pulumi stack output --json` prints")
    required = dict(REQUIRED_OUTPUTS)
    if backup_enabled:
        required[BACKUP_OUTPUT[0]] = BACKUP_OUTPUT[1]
    problems = []
    for key, (kind, described) in required.items():
        value = data.get(key)
        if value is None:
            problems.append(f"{key} is missing")
        elif value == MASKED_OUTPUT:
            problems.append(f"{key} is {json.dumps(value)}, the placeholder Pulumi prints for a secret")
        elif not isinstance(value, kind) or not _well_formed(key, value):
            problems.append(f"{key} is {json.dumps(value)[:60]}, expected {described}")
        elif key == "clusterName" and cluster_name is not None and value != cluster_name:
            problems.append(f"clusterName is {value!r}, this stack's cluster is {cluster_name!r}")
    if problems:
        raise DoctorInputError(
            f"--outputs {path}: " + "; ".join(problems) + " (save `pulumi stack output --json --stack <stack>` "
            "after a `pulumi up` of this revision)"
        )
    return data


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


def _https_url(value: str) -> bool:
    """An https URL with a host and, if any, a port 1-65535 (urlsplit's .port raises ValueError on a
    port that is not a number or out of range, which the checks would otherwise meet)."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        return False
    return url.scheme == "https" and bool(url.hostname) and port != 0


_SHAPES: dict[str, Callable[[Any], bool]] = {
    "region": lambda v: re.fullmatch(AWS_REGION, v) is not None,
    "flyteEndpoint": _https_url,
    "roleArns": lambda v: all(isinstance(arn, str) for arn in v.values()),
    "logGroups": lambda v: all(_log_group(group) for group in v.values()),
    "backup": lambda v: (
        isinstance(v.get("vaultName"), str) and re.fullmatch(BACKUP_VAULT_NAME, v["vaultName"]) is not None
    ),
}

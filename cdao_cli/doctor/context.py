"""What one doctor run knows: the stack's declared config, the deployed stack's outputs, and clients.

Declared facts (labels, taints, retention, chart pins) come from the stack file parsed by
`infra/config.py`, exactly as the program reads it. Deployed names and ARNs come from the stack's
outputs, which `pulumi stack output --json --stack <name>` prints (secrets print as "[secret]";
the doctor needs none of them). AWS is reached through boto3's default credential chain in the
stack's region; Kubernetes through a kubeconfig (optional: its checks are skipped without one).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import StackConfig
from infra.names import AWS_REGION


class DoctorInputError(ValueError):
    """Bad input to `cdao doctor` (exit 2): names the file or option and what was wrong."""


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
    "flyteEndpoint": _STR,
    "flyteCertificateArn": _STR,
    "logGroups": (dict, "an object of {name, retentionDays}"),
    "dbInstanceIdentifier": _STR,
    "efsFileSystemId": _STR,
}
BACKUP_OUTPUT = ("backup", (dict, "an object with vaultName"))


def read_outputs(path: Path, backup_enabled: bool, cluster_name: str | None = None) -> dict[str, Any]:
    """Parse `pulumi stack output --json` saved to a file and check the keys the doctor reads.

    Raises DoctorInputError naming the file and the key: every output the current program exports
    is required (`backup` only when the stack enables AWS Backup); no string output may be empty or
    the secret placeholder; `region` must be an AWS region code (infra/names.py AWS_REGION) and
    `clusterName`, when `cluster_name` is given, the stack's cluster (infra/program.py cluster_name).
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
    if isinstance(value, str):
        return re.fullmatch(AWS_REGION, value) is not None if key == "region" else value.strip() != ""
    if key == "roleArns":
        return all(isinstance(v, str) for v in value.values())
    if key == "logGroups":
        return all(isinstance(v, dict) and {"name", "retentionDays"} <= set(v) for v in value.values())
    if key == "backup":
        return isinstance(value.get("vaultName"), str)
    return True

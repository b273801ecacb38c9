"""What one doctor run knows: the stack's declared config, the deployed stack's outputs, and clients.

Declared facts (labels, taints, retention, chart pins) come from the stack file parsed by
`infra/config.py`, exactly as the program reads it. Deployed names and ARNs come from the stack's
outputs, which `pulumi stack output --json --stack <name>` prints (secrets print as "[secret]";
the doctor needs none of them). AWS is reached through boto3's default credential chain in the
stack's region; Kubernetes through a kubeconfig (optional: its checks are skipped without one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import StackConfig


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
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def output(self, key: str) -> Any:
        """A stack output, or None when the deployed program version does not export it."""
        return self.outputs.get(key)


def read_outputs(path: Path) -> dict[str, Any]:
    """Parse `pulumi stack output --json` saved to a file. Raises DoctorInputError naming the file."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise DoctorInputError(f"--outputs {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise DoctorInputError(f"--outputs {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise DoctorInputError(f"--outputs {path}: expected the JSON object `pulumi stack output --json` prints")
    return data

"""Entry point of the CrossGuard pack: `pulumi preview --policy-pack policies`.

The Python language host runs this directory as a script, so sys.path[0] is policies/ itself:
swap it for the repository root so `import policies` resolves to the package (and the family
module `policies/rules/kubernetes.py` can never shadow the `kubernetes` distribution).
"""

import sys
from pathlib import Path

_PACK_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _PACK_DIR]
sys.path.insert(0, str(_PACK_DIR.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.pack import PACK_NAME, build_policies  # noqa: E402

# Constructing the pack starts the analyzer's gRPC server and blocks until the engine is done.
PolicyPack(
    name=PACK_NAME,
    policies=build_policies(),
    enforcement_level=EnforcementLevel.ADVISORY,
    description="CDAO platform guardrails: IAM least privilege and trust, cost, data protection, network, Kubernetes.",
)

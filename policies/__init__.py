"""CrossGuard policy pack for the CDAO platform: rules guarding IAM, cost, data protection, network.

Importing this package never starts the policy server: only `__main__.py` builds the PolicyPack.
"""

from policies.core import UNKNOWN_TOKEN, Rule
from policies.engine import RULES, Violation, evaluate
from policies.settings import ConfigError

__all__ = ["RULES", "UNKNOWN_TOKEN", "ConfigError", "Rule", "Violation", "evaluate"]

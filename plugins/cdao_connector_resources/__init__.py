"""How the connectors name and tag what they create in AWS: the one owner of these facts.

infra/ (``infra/components/identity.py``) imports this module to scope the connector's IAM policy,
so the names and tags the connectors use and the ARNs and tag conditions the policy grants cannot
drift apart. It imports nothing but the standard library, so infra/ can import it without flytekit.

The stack name reaches the connector service as ``CDAO_STACK`` (cluster Secret annotation
``cdao.io/stack``, see ``cdao_connectors.config``).
"""

from __future__ import annotations

# Tag key every resource the connectors create carries, with the stack name as value. The EMR
# policy allows RunJobFlow only when the request carries it (aws:RequestTag) and every later call
# only on clusters that carry it (aws:ResourceTag).
STACK_TAG = "cdao.io/stack"
MANAGED_BY_TAG = "managed-by"
MANAGED_BY = "cdao-flyte-connector"


def name_prefix(stack: str) -> str:
    """``cdao-<stack>-``: the prefix of every AWS Batch job definition the connector registers, which
    the policy grants ``job-definition/cdao-<stack>-*`` on."""
    return f"cdao-{stack}-"


def resource_tags(stack: str) -> dict[str, str]:
    """Tags of every resource the connector creates for ``stack``, as a key -> value mapping."""
    return {STACK_TAG: stack, MANAGED_BY_TAG: MANAGED_BY}

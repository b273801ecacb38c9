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


# The connector attempt table's schema (plugins/cdao_connectors/_attempts.py reads and writes it,
# infra/components/compute.py declares it and identity.py grants on it). Its partition key, string:
ATTEMPT_KEY = "attempt"
# Epoch seconds after which DynamoDB's TTL deletes an item.
EXPIRES_AT = "expires_at"
# The sparse global secondary index of the attempts whose job may be running with nobody to stop it
# (cdao_connectors._attempts, "Sweeping"): only items carrying both key attributes are in it
# (DynamoDB developer guide, "Take advantage of sparse indexes",
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-indexes-general-sparse-indexes.html).
# Its partition key (string, always SWEEP_QUEUE) and sort key (number: epoch seconds after which a
# surviving replica may stop the job).
SWEEP_INDEX = "sweep"
SWEEP_QUEUE_ATTRIBUTE = "sweep_queue"
SWEEP_QUEUE = "due"
SWEEP_AFTER = "sweep_after"

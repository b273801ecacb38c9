"""What the sweep's tests share (tests/plugins/test_sweeper*.py): the attempt table as a sweep sees
it at a later time, the attempts in its sweep index, and a raw HTTP body for answering an AWS call
from a botocore ``before-send`` hook."""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from cdao_connector_resources import SWEEP_AFTER, SWEEP_QUEUE_ATTRIBUTE
from cdao_connectors._attempts import AttemptLedger

REGION = "us-east-1"


def ledger(ahead: float = 0.0) -> AttemptLedger:
    """The test's attempt table (``CDAO_ATTEMPT_TABLE``) as a sweep ``ahead`` seconds from now sees it."""
    return AttemptLedger(
        boto3.client("dynamodb", region_name=REGION),
        os.environ["CDAO_ATTEMPT_TABLE"],
        clock=lambda: time.time() + ahead,
    )


def armed() -> list[dict[str, Any]]:
    """The items of the test's attempt table in the sweep index (holding both of its keys)."""
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=os.environ["CDAO_ATTEMPT_TABLE"])["Items"]
    return [i for i in items if SWEEP_QUEUE_ATTRIBUTE in i and SWEEP_AFTER in i]


class RawBody:
    """A raw HTTP body as botocore reads it (``AWSResponse.raw.stream()``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any):
        yield self._data

"""The connectors' attempt table (infra/components/compute.py) and what the connector's IRSA role may do
on it (infra/components/identity.py), as the planned stack declares them.

The connector service claims each task attempt with GetItem/PutItem/UpdateItem on the table, and a
surviving replica finds the attempts whose job nobody may stop any more through the sparse global
secondary index SWEEP_INDEX (cdao_connector_resources, the one owner of these names), with Query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cdao_connector_resources import (
    ATTEMPT_KEY,
    EXPIRES_AT,
    SWEEP_AFTER,
    SWEEP_INDEX,
    SWEEP_QUEUE,
    SWEEP_QUEUE_ATTRIBUTE,
)
from moto import mock_aws

from cdao_cli.plan.runner import PlanRun


@pytest.fixture
def prod(plan_of) -> PlanRun:
    return plan_of("prod")


def _table(run: PlanRun):
    (table,) = [r for r in run.registrations if r.type == "aws:dynamodb/table:Table" and r.name.endswith("-attempts")]
    return table


def _key_attributes(inputs: dict) -> set[str]:
    """Every attribute the table or one of its indexes uses as a key, in the provider's input shape
    (pulumi_aws 7.51.1 dynamodb/_inputs.py: hashKey/rangeKey on the table and its local secondary
    indexes, keySchemas[].attributeName, or the deprecated hashKey/rangeKey, on a global one)."""
    keys = {inputs["hashKey"], inputs.get("rangeKey")}
    for index in inputs.get("globalSecondaryIndexes", []):
        keys |= {k["attributeName"] for k in index.get("keySchemas", [])}
        keys |= {index.get("hashKey"), index.get("rangeKey")}
    for index in inputs.get("localSecondaryIndexes", []):
        keys.add(index["rangeKey"])
    return keys - {None}


def test_the_attempt_table_has_the_sparse_sweep_index(prod: PlanRun):
    inputs = _table(prod).inputs
    assert inputs["hashKey"] == ATTEMPT_KEY
    assert inputs["ttl"] == {"attributeName": EXPIRES_AT, "enabled": True}
    # An index of an on-demand table takes no capacity settings of its own.
    assert inputs["billingMode"] == "PAY_PER_REQUEST"
    # KEYS_ONLY: the sweeper claims each attempt it found with a conditional UpdateItem returning the item.
    assert inputs["globalSecondaryIndexes"] == [
        {
            "name": SWEEP_INDEX,
            "keySchemas": [
                {"attributeName": SWEEP_QUEUE_ATTRIBUTE, "keyType": "HASH"},
                {"attributeName": SWEEP_AFTER, "keyType": "RANGE"},
            ],
            "projectionType": "KEYS_ONLY",
        }
    ]


def test_the_attempt_table_defines_exactly_its_key_attributes(prod: PlanRun):
    """CreateTable's AttributeDefinitions "describe the key schema for the table and indexes" (DynamoDB
    API reference, CreateTable, https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html);
    DynamoDB rejects one no key uses ("Some AttributeDefinitions are not used", as moto 5.2.5
    moto/dynamodb/responses.py _throw_attr_error reproduces it: the next test), and the provider
    warns it would plan the table again at every `pulumi up` (pulumi_aws 7.51.1 dynamodb/table.py,
    Table's note "Only define attributes on the table object that are going to be used as a hash key
    or range key for the table itself, or for LSI/GSI keys")."""
    inputs = _table(prod).inputs
    defined = {a["name"]: a["type"] for a in inputs["attributes"]}
    assert len(defined) == len(inputs["attributes"]), "an attribute is defined twice"
    assert set(defined) == _key_attributes(inputs)
    # The sweeper compares sweep_after with the epoch seconds of now: a number.
    assert defined == {ATTEMPT_KEY: "S", SWEEP_QUEUE_ATTRIBUTE: "S", SWEEP_AFTER: "N"}


def _create_table_request(inputs: dict) -> dict:
    """The CreateTable request the provider makes of the planned table's inputs
    (hashicorp/terraform-provider-aws internal/service/dynamodb/table.go resourceTableCreate at
    f583d818: `attribute` -> AttributeDefinitions, `hash_key` -> KeySchema, `global_secondary_index` ->
    GlobalSecondaryIndexes, no ProvisionedThroughput on PAY_PER_REQUEST; an index's `key_schema`
    entries are KeySchemaElements, pulumi_aws 7.51.1 dynamodb/_inputs.py
    TableGlobalSecondaryIndexKeySchemaArgs). Only the parts Query depends on."""
    request = {
        "TableName": inputs["name"],
        "BillingMode": inputs["billingMode"],
        "KeySchema": [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": a["name"], "AttributeType": a["type"]} for a in inputs["attributes"]
        ],
    }
    # Set only when the table declares an index (resourceTableCreate: `if v, ok := d.GetOk(...)`).
    if inputs.get("globalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index["name"],
                "KeySchema": [
                    {"AttributeName": k["attributeName"], "KeyType": k["keyType"]} for k in index["keySchemas"]
                ],
                "Projection": {"ProjectionType": index["projectionType"]},
            }
            for index in inputs["globalSecondaryIndexes"]
        ]
    return request


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


def test_the_sweep_index_lists_only_the_attempts_due_for_a_sweep(prod: PlanRun, dynamodb):
    """The planned table, created in moto (which applies CreateTable's AttributeDefinitions rules),
    answers the sweeper's Query (cdao_connectors._attempts, "Sweeping"): an item is in the sparse
    index only while it carries both key attributes, and KEYS_ONLY gives back only keys."""
    table = _table(prod).inputs["name"]
    dynamodb.create_table(**_create_table_request(_table(prod).inputs))
    now = 1_800_000_000

    def put(attempt: str, sweep_after: int | None = None) -> None:
        item = {ATTEMPT_KEY: {"S": attempt}, EXPIRES_AT: {"N": str(now + 86400)}, "job": {"S": "j"}}
        if sweep_after is not None:
            item |= {SWEEP_QUEUE_ATTRIBUTE: {"S": SWEEP_QUEUE}, SWEEP_AFTER: {"N": str(sweep_after)}}
        dynamodb.put_item(TableName=table, Item=item)

    put("due", sweep_after=now - 5)
    put("later", sweep_after=now + 60)
    put("owned")  # a live replica still owns its job: no sweep attributes, so not in the index
    answer = dynamodb.query(
        TableName=table,
        IndexName=SWEEP_INDEX,
        KeyConditionExpression="#q = :q AND #after <= :now",
        ExpressionAttributeNames={"#q": SWEEP_QUEUE_ATTRIBUTE, "#after": SWEEP_AFTER},
        ExpressionAttributeValues={":q": {"S": SWEEP_QUEUE}, ":now": {"N": str(now)}},
    )
    assert answer["Items"] == [
        {ATTEMPT_KEY: {"S": "due"}, SWEEP_QUEUE_ATTRIBUTE: {"S": SWEEP_QUEUE}, SWEEP_AFTER: {"N": str(now - 5)}}
    ]


def test_the_connector_may_claim_attempts_on_the_table_and_query_only_the_sweep_index(prod: PlanRun):
    """The connector role's whole DynamoDB access. Who needs each action (plugins/cdao_connectors/_attempts.py):
    GetItem reads a claim (and, strongly consistent, each attempt the sweeper found), PutItem claims
    an attempt, UpdateItem records its job or gives it up, Query finds the attempts to sweep. Query
    on an index is authorized on the index's ARN, `<table ARN>/index/<name>` (Service Authorization
    Reference, Amazon DynamoDB, resource type "index":
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html), so
    granting it there lets the role query neither the table itself nor any other index."""
    table_arn = _table(prod).outputs["arn"]
    (policy,) = [
        p
        for p in prod.registrations
        if p.type == "aws:iam/rolePolicy:RolePolicy" and p.name == "workload-identity-connector"
    ]
    grants: dict[tuple[str, ...], set[str]] = {}
    for s in json.loads(policy.inputs["policy"])["Statement"]:
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        dynamodb = sorted(a for a in actions if a.startswith("dynamodb:"))
        if dynamodb:
            assert s["Effect"] == "Allow" and "Condition" not in s, s
            resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
            grants.setdefault(tuple(sorted(resources)), set()).update(dynamodb)
    assert grants == {
        (table_arn,): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        (f"{table_arn}/index/{SWEEP_INDEX}",): {"dynamodb:Query"},
    }

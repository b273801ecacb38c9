"""EMR Spark tasks serialized by the tests (moto's EMR does not run steps)."""

from __future__ import annotations

from cdao_sdk import spark_task


@spark_task(cluster_id="j-ABCDEFGH1234", spark_conf={"spark.executor.memory": "4g"})
def on_cluster(rows: int) -> int:
    return rows


@spark_task(instance_type="r5.2xlarge", instance_count=4)
def on_transient(rows: int) -> int:
    return rows


@spark_task(
    platform="emr-serverless",
    execution_role_arn="arn:aws:iam::123456789012:role/cdao-emr-job",
    application_id="00f0000000000000",
)
def on_serverless(rows: int) -> int:
    return rows


@spark_task()
def on_default_serverless(rows: int) -> int:
    """``@spark_task()`` as a workflow author writes it: EMR Serverless, every setting from the stack."""
    return rows

"""Portfolio risk analytics with Spark: default rates and exposure per region and employment type.

Registered, the Spark step runs on a transient EMR cluster that terminates itself; locally the same
body starts Spark in local mode (``SparkSession.builder.getOrCreate()`` attaches to the cluster's
session under ``spark-submit`` and creates a local one otherwise).
"""

from __future__ import annotations

import datetime

from cdao_sdk import spark_task, task, workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import CSVFile

from workflows import _platform
from workflows._data import CREDIT_CATEGORICAL, CREDIT_NUMERIC, TARGET, load_table

CACHE_VERSION = "1.0"
SEGMENT_COLUMNS = ("region", "employment")


@task(
    workload_type="mlops",
    retries=3,
    timeout=datetime.timedelta(minutes=20),
    # Not cached: the path may hold new data on every run.
)
def export_applications(raw_data_path: str) -> FlyteDirectory:
    """Land the applications as a CSV part file in a directory, the layout Spark reads in parallel."""
    df = load_table(raw_data_path, required=(TARGET, *CREDIT_NUMERIC, *CREDIT_CATEGORICAL))
    out = _platform.work_dir() / "applications"
    out.mkdir(exist_ok=True)
    df.to_csv(out / "part-00000.csv", index=False)
    return FlyteDirectory(str(out))


@spark_task(
    instance_type="m5.xlarge",
    instance_count=3,
    spark_conf={"spark.sql.adaptive.enabled": "true", "spark.executor.memory": "8g"},
    retries=2,
    timeout=datetime.timedelta(hours=1),
    cache=True,
    cache_version=CACHE_VERSION,
)
def segment_risk_report(applications: FlyteDirectory) -> CSVFile:
    """One row per (region, employment): volume, default rate, exposure, and the rank of the segment's
    default rate within its region."""
    import pandas as pd  # noqa: PLC0415
    from pyspark.sql import SparkSession, Window  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: PLC0415

    spark = SparkSession.builder.appName("segment-risk-report").getOrCreate()
    df = spark.read.csv(applications.download(), header=True, inferSchema=True)
    by_segment = (
        df.groupBy(*SEGMENT_COLUMNS)
        .agg(
            F.count("*").alias("applications"),
            F.avg(TARGET).alias("default_rate"),
            F.avg("debt_to_income").alias("mean_debt_to_income"),
            F.avg("credit_utilization").alias("mean_credit_utilization"),
            F.sum("loan_amount").alias("total_loan_amount"),
            F.sum(F.col("loan_amount") * F.col(TARGET)).alias("defaulted_loan_amount"),
        )
        .withColumn(
            "risk_rank_in_region",
            F.dense_rank().over(Window.partitionBy("region").orderBy(F.desc("default_rate"))),
        )
        .orderBy(*SEGMENT_COLUMNS)
    )
    # The report is a few dozen rows: collect it to the driver instead of writing Spark part files
    # (and without toPandas, which wants pyarrow on the cluster for no gain at this size).
    out = _platform.work_dir() / "segment_risk_report.csv"
    pd.DataFrame([row.asDict() for row in by_segment.collect()]).to_csv(out, index=False)
    return CSVFile(str(out))


@workflow
def spark_analytics_pipeline(raw_data_path: str = "builtin://credit_scoring") -> CSVFile:
    return segment_risk_report(applications=export_applications(raw_data_path=raw_data_path))

"""Small Delta helpers shared by every stage: create-if-missing, idempotent appends."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_jobs.common.config import Config


def ensure_table(
    spark: SparkSession,
    config: Config,
    table: str,
    schema: T.StructType,
    partition_by: Sequence[str] = (),
) -> None:
    """Create ``recsys.<table>`` at its lakehouse location unless it exists; registers it by name.

    The location is the identity: with the embedded catalog the table is created by path and
    then registered, so a name registered for another lakehouse root is re-pointed, not reused.
    """
    from delta.tables import DeltaTable

    from spark_jobs.common.spark import register_table

    builder = DeltaTable.createIfNotExists(spark).location(config.table_path(table)).addColumns(schema)
    if config.spark.catalog != "embedded":
        builder = builder.tableName(config.table(table))
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    builder.execute()
    if config.spark.catalog == "embedded":
        register_table(spark, config, table)


def idempotent_append(df: DataFrame, path: str, app_id: str, version: int) -> None:
    """Append once per (app_id, version): a replayed micro-batch is skipped by Delta itself.

    This is Delta's transactional write identity (``txnAppId``/``txnVersion``), the cheap
    exactly-once path for append-only logs such as bronze and quarantine.
    """
    (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .save(path)
    )


def query_id(spark: SparkSession, checkpoint: str) -> str:
    """The streaming query id recorded in a checkpoint (stable across restarts).

    Read through Hadoop's FileSystem so it works for local, DBFS and object-store checkpoints.
    """
    import json

    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(f"{checkpoint}/metadata")
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[attr-defined]
    stream = fs.open(path)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        return str(json.loads(reader.readLine())["id"])
    finally:
        stream.close()

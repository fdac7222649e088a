"""Small Delta helpers shared by every stage: create-if-missing, idempotent appends, compaction
for streaming sinks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_jobs.common.config import Config

log = logging.getLogger(__name__)
AUTO_COMPACT_CONF = "spark.databricks.delta.autoCompact.enabled"


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


def batch_compaction_conf() -> dict[str, str]:
    """Session settings for compaction: batch jobs let Delta compact after their writes.

    This module owns compaction: streaming sinks turn it off per micro-batch
    (``streaming_session``) and compact on their own schedule (``compact_every``).
    """
    return {AUTO_COMPACT_CONF: "true"}


def streaming_session(batch: DataFrame) -> SparkSession:
    """The micro-batch's session, with Delta's auto compaction off for its writes.

    Auto compaction runs synchronously after a commit and, with a commit every few seconds,
    after nearly every one: it doubled the cost of the serving writes. Streaming sinks compact on
    their own schedule instead (``compact_every``); batch jobs keep the session's setting.
    """
    spark = batch.sparkSession
    spark.conf.set(AUTO_COMPACT_CONF, "false")
    return spark


def compact_every(spark: SparkSession, paths: Iterable[str], batch_id: int, every: int) -> None:
    """Compact ``paths`` (OPTIMIZE, bin-packing small files) on every ``every``-th micro-batch.

    Compaction changes no data, so a replayed batch may run it again harmlessly; it is also best
    effort: a conflict with another writer (an erasure, a maintenance run) is logged and the next
    turn tries again, rather than failing the stream.
    """
    if every <= 0 or batch_id % every != every - 1:
        return
    from delta.tables import DeltaTable

    for path in paths:
        try:
            DeltaTable.forPath(spark, path).optimize().executeCompaction()
        except Exception as err:  # Delta's concurrent-modification errors come through py4j
            log.warning("compaction of %s skipped at batch %s: %s", path, batch_id, err)

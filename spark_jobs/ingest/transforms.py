"""Pure DataFrame transforms of the ingest stage (no I/O, no clock: time comes in as columns).

``to_bronze``      Kafka source rows -> bronze rows
``to_silver``      validated rows -> silver rows (valid only, first copy of each event_id)
``to_quarantine``  validated rows -> quarantine rows (invalid only, with the reason)
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.common.errors import require_columns
from spark_jobs.contract.events import REASON_SEPARATOR, silver_schema
from spark_jobs.ingest.validate import RAW, REASONS

BRONZE_COLUMNS = (
    names.KAFKA_KEY,
    names.KAFKA_VALUE,
    names.KAFKA_TOPIC,
    names.KAFKA_PARTITION,
    names.KAFKA_OFFSET,
    names.KAFKA_TS,
    names.INGEST_TS,
)
QUARANTINE_COLUMNS = (
    names.KAFKA_VALUE,
    names.REASON,
    names.KAFKA_TOPIC,
    names.KAFKA_PARTITION,
    names.KAFKA_OFFSET,
    names.KAFKA_KEY,
    names.KAFKA_TS,
    names.INGEST_TS,
)


def to_bronze(kafka_rows: DataFrame, ingest_ts: Column) -> DataFrame:
    """Kafka records as strings plus their coordinates; nothing is parsed or dropped here.

    Bytes that are not UTF-8 are decoded with replacement characters and then fail JSON
    parsing downstream, so they still reach quarantine.
    """
    require_columns(kafka_rows, ("key", "value", "topic", "partition", "offset", "timestamp"), "to_bronze")
    return kafka_rows.select(
        F.col("key").cast("string").alias(names.KAFKA_KEY),
        F.col("value").cast("string").alias(names.KAFKA_VALUE),
        F.col("topic").alias(names.KAFKA_TOPIC),
        F.col("partition").alias(names.KAFKA_PARTITION),
        F.col("offset").alias(names.KAFKA_OFFSET),
        F.col("timestamp").alias(names.KAFKA_TS),
        ingest_ts.alias(names.INGEST_TS),
    )


def to_silver(validated: DataFrame) -> DataFrame:
    """Valid rows in silver's column order, one row per event_id (the earliest Kafka copy).

    Duplicates *within* the batch are dropped here; duplicates of rows already in the table
    are dropped by the MERGE in ``sinks``.
    """
    require_columns(
        validated, (REASONS, names.EVENT_ID, names.KAFKA_PARTITION, names.KAFKA_OFFSET), "to_silver"
    )
    first_copy = Window.partitionBy(names.EVENT_ID).orderBy(names.KAFKA_PARTITION, names.KAFKA_OFFSET)
    columns = [f.name for f in silver_schema().fields]
    return (
        validated.where(F.size(REASONS) == 0)
        .withColumn("_copy", F.row_number().over(first_copy))
        .where(F.col("_copy") == 1)
        .withColumn(names.EVENT_DATE, F.to_date(names.EVENT_TS))
        .select(*columns)
    )


def to_quarantine(validated: DataFrame) -> DataFrame:
    """Rejected rows with every reason joined by ``; `` and the raw value untouched."""
    require_columns(validated, (REASONS, RAW), "to_quarantine")
    return validated.where(F.size(REASONS) > 0).select(
        F.col(RAW).alias(names.KAFKA_VALUE),
        F.array_join(REASONS, REASON_SEPARATOR).alias(names.REASON),
        *QUARANTINE_COLUMNS[2:],
    )

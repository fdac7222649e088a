"""Schemas and creation of the ingest tables (bronze, silver, quarantine)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table
from spark_jobs.contract.events import silver_schema

BRONZE_SCHEMA = T.StructType(
    [
        T.StructField(names.KAFKA_KEY, T.StringType()),
        T.StructField(names.KAFKA_VALUE, T.StringType()),
        T.StructField(names.KAFKA_TOPIC, T.StringType(), nullable=False),
        T.StructField(names.KAFKA_PARTITION, T.IntegerType(), nullable=False),
        T.StructField(names.KAFKA_OFFSET, T.LongType(), nullable=False),
        T.StructField(names.KAFKA_TS, T.TimestampType()),
        T.StructField(names.INGEST_TS, T.TimestampType(), nullable=False),
    ]
)
QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField(names.KAFKA_VALUE, T.StringType()),
        T.StructField(names.REASON, T.StringType(), nullable=False),
        T.StructField(names.KAFKA_TOPIC, T.StringType(), nullable=False),
        T.StructField(names.KAFKA_PARTITION, T.IntegerType(), nullable=False),
        T.StructField(names.KAFKA_OFFSET, T.LongType(), nullable=False),
        T.StructField(names.KAFKA_KEY, T.StringType()),
        T.StructField(names.KAFKA_TS, T.TimestampType()),
        T.StructField(names.INGEST_TS, T.TimestampType(), nullable=False),
    ]
)


def ensure_ingest_tables(spark: SparkSession, config: Config) -> None:
    """Create the three ingest tables if they are missing (idempotent)."""
    ensure_table(spark, config, names.EVENTS_BRONZE, BRONZE_SCHEMA)
    ensure_table(spark, config, names.EVENTS, silver_schema(), partition_by=(names.EVENT_DATE,))
    ensure_table(spark, config, names.EVENTS_QUARANTINE, QUARANTINE_SCHEMA)

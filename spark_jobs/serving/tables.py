"""Schemas and creation of the serving tables: the per-user top-N and the exposure log.

``recommendations`` holds the *current* list of every scored user, keyed by (user_id, rank) and
rewritten by MERGE. ``recommendation_log`` keeps every list ever served (one row per rank, with the
micro-batch that produced it), append-only: it is what CTR per A/B variant is computed from, and
what the freshness benchmark reads (``generated_at - last_event_ts``).
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table

SOURCE = "source"  # the candidate source an explanation was derived from (als, cooc, trending, ...)
LAST_EVENT_TS = "last_event_ts"  # the newest event of the user the list accounts for
BATCH_ID = "batch_id"

RECOMMENDATIONS_SCHEMA = T.StructType(
    [
        T.StructField(names.USER_ID, T.StringType(), nullable=False),
        T.StructField(names.RANK, T.IntegerType(), nullable=False),
        T.StructField(names.ITEM_ID, T.StringType(), nullable=False),
        T.StructField(names.SCORE, T.DoubleType(), nullable=False),
        T.StructField(names.REASON, T.StringType(), nullable=False),
        T.StructField(SOURCE, T.StringType(), nullable=False),
        T.StructField(names.MODEL_VERSION, T.StringType(), nullable=False),
        T.StructField(names.VARIANT, T.StringType(), nullable=False),
        T.StructField(LAST_EVENT_TS, T.TimestampType()),
        T.StructField(names.GENERATED_AT, T.TimestampType(), nullable=False),
    ]
)
LOG_SCHEMA = T.StructType(
    [*RECOMMENDATIONS_SCHEMA.fields, T.StructField(BATCH_ID, T.LongType(), nullable=False)]
)


def ensure_serving_tables(spark: SparkSession, config: Config) -> None:
    """Create ``recsys.recommendations`` and ``recsys.recommendation_log`` if missing (idempotent)."""
    ensure_table(spark, config, names.RECOMMENDATIONS, RECOMMENDATIONS_SCHEMA)
    ensure_table(spark, config, names.RECOMMENDATION_LOG, LOG_SCHEMA)

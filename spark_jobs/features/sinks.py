"""The named ``foreachBatch`` sink of the feature stream: fold each micro-batch into both tables.

Each table is updated by one MERGE on its key whose source rows are the batch folded into the
table's current rows (read, fold, MERGE): the fold needs each stored decayed value with its
``decay_ts``, and keeping it one pure function (``transforms``) lets it be tested on its own.
The feature stream is the only writer of these tables.

Exactly once: the high-water mark is per table, not per row. Each MERGE is committed under
Delta's transactional write identity (``txnAppId`` = table + the query id in the checkpoint,
``txnVersion`` = batch id). A batch that runs again after a crash (written, checkpoint not yet
committed) finds its version recorded and Delta skips that MERGE, so nothing is counted twice;
a crash between the two MERGEs replays only the table that missed its batch. The mark is
committed atomically with the data and costs no column.

The checkpoint and the feature tables belong together: a new checkpoint (new query id) over the
old tables would fold silver in a second time. Reset both, or neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.clock import Clock
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table, query_id
from spark_jobs.features.columns import CATEGORIES, ITEM_FEATURES_SCHEMA, USER_FEATURES_SCHEMA
from spark_jobs.features.transforms import (
    fold_item_features,
    fold_user_features,
    item_batch_features,
    user_batch_features,
)

BatchSink = Callable[[DataFrame, int], None]

TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"
ITEM_CATEGORIES_SCHEMA = T.StructType(
    [
        T.StructField(names.ITEM_ID, T.StringType(), nullable=False),
        T.StructField(CATEGORIES, T.ArrayType(T.StringType())),
    ]
)


def ensure_feature_tables(spark: SparkSession, config: Config) -> None:
    """Create ``recsys.user_features`` and ``recsys.item_features`` if they are missing (idempotent)."""
    ensure_table(spark, config, names.USER_FEATURES, USER_FEATURES_SCHEMA)
    ensure_table(spark, config, names.ITEM_FEATURES, ITEM_FEATURES_SCHEMA)


def feature_sink(config: Config, clock: Clock) -> BatchSink:
    """The stream's sink; ``clock`` (timezone-aware) stamps ``updated_ts``, read once per batch."""
    return partial(update_features_batch, config=config, clock=clock)


def update_features_batch(batch: DataFrame, batch_id: int, *, config: Config, clock: Clock) -> None:
    """foreachBatch sink of the feature stream: aggregate the batch and fold it into both tables.

    The batch's reference time is its newest ``event_ts`` (from the data, so a replay computes
    the same values); an empty batch changes nothing. Runs under the ``features`` query: its
    checkpoint holds the query id the writes are identified by.
    """
    spark = batch.sparkSession
    events = batch.persist()
    try:
        newest = events.agg(F.max(F.unix_micros(names.EVENT_TS))).first()[0]
        if newest is None:
            return
        reference_ts, updated_ts = F.timestamp_micros(F.lit(newest)), _timestamp(clock())
        settings = config.features
        query = query_id(spark, config.checkpoint(names.QUERY_FEATURES))
        users = user_batch_features(
            events, item_categories(spark, config), reference_ts, updated_ts, settings
        )
        merge_features(
            spark,
            config,
            names.USER_FEATURES,
            fold_user_features(_table(spark, config, names.USER_FEATURES), users, settings),
            app_id=f"{names.USER_FEATURES}:{query}",
            version=batch_id,
        )
        items = item_batch_features(events, reference_ts, updated_ts, settings)
        merge_features(
            spark,
            config,
            names.ITEM_FEATURES,
            fold_item_features(_table(spark, config, names.ITEM_FEATURES), items, settings),
            app_id=f"{names.ITEM_FEATURES}:{query}",
            version=batch_id,
        )
    finally:
        events.unpersist()


def merge_features(
    spark: SparkSession, config: Config, table: str, rows: DataFrame, app_id: str, version: int
) -> None:
    """Upsert folded rows into a feature table on its key, once per (``app_id``, ``version``)."""
    from delta.tables import DeltaTable

    key = {names.USER_FEATURES: names.USER_ID, names.ITEM_FEATURES: names.ITEM_ID}[table]
    with delta_transaction(spark, app_id, version):
        (
            DeltaTable.forPath(spark, config.table_path(table))
            .alias("t")
            .merge(rows.alias("s"), f"t.{key} = s.{key}")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )


@contextmanager
def delta_transaction(spark: SparkSession, app_id: str, version: int) -> Iterator[None]:
    """Commit the Delta DML inside under (``app_id``, ``version``); Delta skips it if already seen.

    The identity is a session setting, so it is removed again at once: in ``foreachBatch`` the
    session is the query's own clone, and nothing else may be written under this identity.
    """
    spark.conf.set(TXN_APP_ID, app_id)
    spark.conf.set(TXN_VERSION, str(version))
    try:
        yield
    finally:
        spark.conf.unset(TXN_APP_ID)
        spark.conf.unset(TXN_VERSION)


def item_categories(spark: SparkSession, config: Config) -> DataFrame:
    """``item_id, categories`` of ``recsys.items`` as the batch finds it; empty before there is a catalog.

    Affinity already folded in is not rewritten when an item's categories change later.
    """
    from delta.tables import DeltaTable

    path = config.table_path(names.ITEMS)
    if not DeltaTable.isDeltaTable(spark, path):
        return spark.createDataFrame([], ITEM_CATEGORIES_SCHEMA)
    return spark.read.format("delta").load(path).select(names.ITEM_ID, CATEGORIES)


def _table(spark: SparkSession, config: Config, table: str) -> DataFrame:
    return spark.read.format("delta").load(config.table_path(table))


def _timestamp(moment: datetime) -> Column:
    """A timezone-aware ``datetime`` as a timestamp literal (a naive one would be read as local time)."""
    if moment.tzinfo is None:
        raise ValueError(f"the feature sink's clock must return timezone-aware times, got {moment!r}")
    return F.lit(moment).cast(T.TimestampType())

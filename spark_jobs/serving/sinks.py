"""Writing scored lists: an idempotent MERGE into the serving table and an append to the exposure log.

Each user's list is padded to ``top_n`` ranks (missing ranks carry a null item), so one MERGE
keyed on (user_id, rank) updates the ranks that exist, inserts new ones and deletes the ranks a
shorter list no longer has, without touching any other user. Both writes carry Delta's
transaction identity (app id, batch id): a replayed micro-batch is skipped by Delta itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import idempotent_append
from spark_jobs.serving.tables import BATCH_ID, LOG_SCHEMA, RECOMMENDATIONS_SCHEMA

TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"


def pad_ranks(recs: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """Every scored user gets rows for ranks 1..top_n; ranks beyond their list have no item."""
    users = recs[names.USER_ID].drop_duplicates()
    grid = pd.MultiIndex.from_product([users, range(1, top_n + 1)], names=[names.USER_ID, names.RANK])
    padded = recs.set_index([names.USER_ID, names.RANK]).reindex(grid).reset_index()
    return padded[[f.name for f in RECOMMENDATIONS_SCHEMA.fields]]


@contextmanager
def transaction_identity(spark: SparkSession, app_id: str, version: int) -> Iterator[None]:
    """Session confs that make the next Delta DML idempotent per (app_id, version)."""
    spark.conf.set(TXN_APP_ID, app_id)
    spark.conf.set(TXN_VERSION, str(version))
    try:
        yield
    finally:
        spark.conf.unset(TXN_APP_ID)
        spark.conf.unset(TXN_VERSION)


def to_frame(spark: SparkSession, rows: pd.DataFrame, schema) -> DataFrame:
    """pandas -> Spark with the table's schema through one Arrow table (no per-row Python
    objects, whatever the session's Arrow setting); NaN/None become nulls, timestamps are UTC."""
    import pyarrow as pa
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    frame = rows[[f.name for f in schema.fields]].copy()
    for f in schema.fields:
        if isinstance(f.dataType, T.TimestampType):
            stamps = pd.to_datetime(frame[f.name])
            frame[f.name] = (
                stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
            )
    table = pa.Table.from_pandas(frame, schema=to_arrow_schema(schema), preserve_index=False, safe=False)
    return spark.createDataFrame(table, schema=schema)


def merge_recommendations(
    spark: SparkSession, config: Config, recs: pd.DataFrame, app_id: str, version: int
) -> None:
    """MERGE the scored users' lists into ``recsys.recommendations`` (other users untouched)."""
    from delta.tables import DeltaTable

    source = to_frame(spark, pad_ranks(recs, config.serving.top_n), _nullable(RECOMMENDATIONS_SCHEMA))
    merge = (
        DeltaTable.forPath(spark, config.table_path(names.RECOMMENDATIONS))
        .alias("t")
        .merge(
            source.alias("s"), f"t.{names.USER_ID} = s.{names.USER_ID} AND t.{names.RANK} = s.{names.RANK}"
        )
        .whenMatchedDelete(condition=f"s.{names.ITEM_ID} IS NULL")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll(condition=f"s.{names.ITEM_ID} IS NOT NULL")
    )
    with transaction_identity(spark, f"{names.RECOMMENDATIONS}:{app_id}", version):
        merge.execute()


def append_log(spark: SparkSession, config: Config, recs: pd.DataFrame, app_id: str, version: int) -> None:
    """Append the served lists to ``recsys.recommendation_log`` once per (app_id, version)."""
    rows = recs.assign(**{BATCH_ID: version})
    idempotent_append(
        to_frame(spark, rows, LOG_SCHEMA),
        config.table_path(names.RECOMMENDATION_LOG),
        f"{names.RECOMMENDATION_LOG}:{app_id}",
        version,
    )


def write_lists(spark: SparkSession, config: Config, recs: pd.DataFrame, app_id: str, version: int) -> None:
    """Both writes of a scored batch, the log append on a second thread beside the MERGE.

    The two commits go to different tables and each is idempotent on its own (the append by its
    write options, the MERGE by the session's transaction identity), so their order does not
    matter; on two cores most of each commit is waiting (planning, the Delta log, task launch),
    so overlapping them takes about a second off every micro-batch. Either failure fails the
    batch, and its replay redoes only the write that did not commit.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsys-log") as pool:
        logged = pool.submit(append_log, spark, config, recs, app_id, version)
        merge_recommendations(spark, config, recs, app_id, version)
        logged.result()


def _nullable(schema):
    """The padded source has null items for missing ranks; the target keeps its NOT NULLs."""
    from pyspark.sql import types as T

    return T.StructType([T.StructField(f.name, f.dataType, nullable=True) for f in schema.fields])

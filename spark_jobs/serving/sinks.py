"""Writing scored lists: an idempotent MERGE into the serving table and an append to the exposure log.

Lists come as a Spark DataFrame scored on the executors (``distributed.score_states``), already
padded per user by ``pad_ranks``; nothing of them passes through the driver.

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
from pyspark.sql import functions as F

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


def merge_recommendations(
    spark: SparkSession, config: Config, scored: DataFrame, app_id: str, version: int
) -> None:
    """MERGE the scored users' padded lists into ``recsys.recommendations`` (other users untouched)."""
    from delta.tables import DeltaTable

    merge = (
        DeltaTable.forPath(spark, config.table_path(names.RECOMMENDATIONS))
        .alias("t")
        .merge(
            scored.alias("s"), f"t.{names.USER_ID} = s.{names.USER_ID} AND t.{names.RANK} = s.{names.RANK}"
        )
        .whenMatchedDelete(condition=f"s.{names.ITEM_ID} IS NULL")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll(condition=f"s.{names.ITEM_ID} IS NOT NULL")
    )
    with transaction_identity(spark, f"{names.RECOMMENDATIONS}:{app_id}", version):
        merge.execute()


def append_log(spark: SparkSession, config: Config, scored: DataFrame, app_id: str, version: int) -> None:
    """Append the served lists (padding dropped) to ``recsys.recommendation_log`` once per
    (app_id, version)."""
    rows = scored.where(F.col(names.ITEM_ID).isNotNull()).withColumn(BATCH_ID, F.lit(version).cast("long"))
    idempotent_append(
        rows.select(*[f.name for f in LOG_SCHEMA.fields]),
        config.table_path(names.RECOMMENDATION_LOG),
        f"{names.RECOMMENDATION_LOG}:{app_id}",
        version,
    )


def write_lists(spark: SparkSession, config: Config, scored: DataFrame, app_id: str, version: int) -> None:
    """Both writes of a scored batch, the log append on a second thread beside the MERGE.

    ``scored`` holds padded lists (``pad_ranks``) and is read by both writes: the caller
    materialises it once (scoring is the expensive part). The two commits go to different tables
    and each is idempotent on its own (the append by its write options, the MERGE by the
    session's transaction identity), so their order does not matter; on two cores most of each
    commit is waiting (planning, the Delta log, task launch), so overlapping them takes about a
    second off every micro-batch. Either failure fails the batch, and its replay redoes only the
    write that did not commit.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsys-log") as pool:
        logged = pool.submit(append_log, spark, config, scored, app_id, version)
        merge_recommendations(spark, config, scored, app_id, version)
        logged.result()

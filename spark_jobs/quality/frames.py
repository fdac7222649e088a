"""Pure DataFrame transforms that shape lakehouse tables into what a suite checks.

Row-level expectations (not null, in set, between) run on the table rows themselves; rules about
*groups* of rows (exactly N ranks per user, scores sorted, items in the catalog) are summarised
here into one row per group, so each rule becomes a plain column expectation whose failure
names the rule. No I/O and no clock: windows are bounded by the ``checked_at`` passed in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.common.errors import require_columns

RANK = "rank"
SCORE = "score"


def silver_window(events: DataFrame, checked_at: datetime, window: timedelta) -> DataFrame:
    """Silver rows that *arrived* (``ingest_ts``) in ``(checked_at - window, checked_at]``.

    Arrival time, not event time: a quality gate judges what the last runs wrote, and replayed
    history (MovieLens from 1998) arrives now with old event times.
    """
    require_columns(events, (names.INGEST_TS,), "silver_window")
    start = checked_at - window
    return events.where(
        (F.col(names.INGEST_TS) > F.lit(start)) & (F.col(names.INGEST_TS) <= F.lit(checked_at))
    )


def recommendation_checks(recommendations: DataFrame, items: DataFrame | None) -> DataFrame:
    """One row per user of the serving table with the facts the serving suite judges.

    Columns: ``user_id``, ``n_ranks``, ``min_rank``, ``ranks_contiguous`` (ranks are 1..n with
    no gap or repeat), ``duplicate_items``, ``scores_sorted`` (non-increasing by rank),
    ``null_items`` and ``unknown_items`` (items not in ``recsys.items``; 0 when ``items`` is None).
    """
    require_columns(recommendations, (names.USER_ID, RANK, names.ITEM_ID, SCORE), "recommendation_checks")
    by_rank = Window.partitionBy(names.USER_ID).orderBy(RANK)
    recs = recommendations.withColumn("_next_score", F.lead(SCORE).over(by_rank))
    if items is not None:
        require_columns(items, (names.ITEM_ID,), "recommendation_checks(items)")
        known = items.select(names.ITEM_ID).distinct().withColumn("_known", F.lit(True))
        recs = recs.join(known, names.ITEM_ID, "left")
    else:
        recs = recs.withColumn("_known", F.lit(True))
    return recs.groupBy(names.USER_ID).agg(
        F.count(F.lit(1)).alias("n_ranks"),
        F.min(RANK).alias("min_rank"),
        (
            (F.countDistinct(RANK) == F.count(F.lit(1)))
            & (F.max(RANK) - F.min(RANK) + 1 == F.count(F.lit(1)))
        ).alias("ranks_contiguous"),
        (F.count(names.ITEM_ID) - F.countDistinct(names.ITEM_ID)).cast("long").alias("duplicate_items"),
        F.coalesce(F.min(F.col(SCORE) >= F.col("_next_score")), F.lit(True)).alias("scores_sorted"),
        F.sum(F.when(F.col(names.ITEM_ID).isNull(), 1).otherwise(0)).cast("long").alias("null_items"),
        F.sum(F.when(F.col(names.ITEM_ID).isNotNull() & F.col("_known").isNull(), 1).otherwise(0))
        .cast("long")
        .alias("unknown_items"),
    )

"""Pure Spark transforms: the distributions drift compares, as small count tables.

Each function takes the events of one window (already cut by ``in_window``) and returns a
DataFrame ``(bucket string, n double)`` small enough to collect; no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.common.errors import DataFrameMissingColumnError

BUCKET = "bucket"
N = "n"
# Events per user in the window: 1, 2, 3-5, 6-10, 11-20, 21-50, 51+.
ACTIVITY_EDGES = (2, 3, 6, 11, 21, 51)
CLICK_TYPES = ("click", "like", "purchase")
IMPRESSION_TYPES = ("view",)


def _require(df: DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFrameMissingColumnError(f"{where}: missing column(s) {missing}; got {df.columns}")


def in_window(df: DataFrame, column: str, start: datetime, end: datetime) -> DataFrame:
    """Rows with ``start <= column < end`` (half-open, so adjacent windows never share a row)."""
    _require(df, (column,), "in_window")
    return df.where((F.col(column) >= F.lit(start)) & (F.col(column) < F.lit(end)))


def _counts(df: DataFrame, bucket: Column) -> DataFrame:
    return df.groupBy(bucket.alias(BUCKET)).agg(F.count(F.lit(1)).cast("double").alias(N))


def event_type_counts(events: DataFrame) -> DataFrame:
    _require(events, (names.EVENT_TYPE,), "event_type_counts")
    return _counts(events, F.col(names.EVENT_TYPE))


def item_counts(events: DataFrame) -> DataFrame:
    """Events per item (the popularity distribution; the tail is folded later)."""
    _require(events, (names.ITEM_ID,), "item_counts")
    return _counts(events, F.col(names.ITEM_ID))


def category_counts(events: DataFrame, items: DataFrame) -> DataFrame:
    """Events per category of the item (an item in k categories counts once in each)."""
    _require(events, (names.ITEM_ID,), "category_counts")
    _require(items, (names.ITEM_ID, "categories"), "category_counts(items)")
    exploded = items.select(names.ITEM_ID, F.explode_outer("categories").alias("_category"))
    joined = events.select(names.ITEM_ID).join(exploded, names.ITEM_ID, "left")
    return _counts(joined, F.coalesce(F.col("_category"), F.lit("__unknown__")))


def activity_bucket(n_events: Column) -> Column:
    """Label of the activity bucket of a per-user event count (``ACTIVITY_EDGES``)."""
    labels = ["1", "2", "3-5", "6-10", "11-20", "21-50", "51+"]
    expr = F.lit(labels[-1])
    for edge, label in reversed(list(zip(ACTIVITY_EDGES, labels, strict=False))):
        expr = F.when(n_events < edge, F.lit(label)).otherwise(expr)
    return expr


def user_activity_counts(events: DataFrame) -> DataFrame:
    """Users per activity bucket: is the mix of light and heavy users shifting?"""
    _require(events, (names.USER_ID,), "user_activity_counts")
    per_user = events.groupBy(names.USER_ID).agg(F.count(F.lit(1)).alias("_events"))
    return _counts(per_user, activity_bucket(F.col("_events")))


def score_bucket_counts(scores: DataFrame, edges: list[float], column: str = "score") -> DataFrame:
    """Rows per score bucket ``b00``.. for the inner ``edges`` (same labels as ``metrics.bucketise``)."""
    _require(scores, (column,), "score_bucket_counts")
    index = sum((F.col(column) >= F.lit(e)).cast("int") for e in edges) if edges else F.lit(0)
    label = F.format_string("b%02d", index)
    return _counts(scores.where(F.col(column).isNotNull()), label)


def click_through(events: DataFrame, served: DataFrame) -> DataFrame:
    """Impressions and clicks on served (user, item) pairs: one row ``(impressions, clicks)``."""
    _require(events, (names.USER_ID, names.ITEM_ID, names.EVENT_TYPE), "click_through")
    _require(served, (names.USER_ID, names.ITEM_ID), "click_through(served)")
    pairs = served.select(names.USER_ID, names.ITEM_ID).distinct()
    hits = events.join(pairs, [names.USER_ID, names.ITEM_ID], "inner")
    return hits.agg(
        F.sum(F.col(names.EVENT_TYPE).isin(*IMPRESSION_TYPES).cast("long")).alias("impressions"),
        F.sum(F.col(names.EVENT_TYPE).isin(*CLICK_TYPES).cast("long")).alias("clicks"),
    )


def collect_counts(counts: DataFrame) -> dict[str, float]:
    """The small count table as a dict (an action: call it in the job, not in transforms)."""
    return {str(r[BUCKET]): float(r[N]) for r in counts.collect()}

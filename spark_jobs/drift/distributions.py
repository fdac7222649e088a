"""Pure Spark transforms: the distributions drift compares, as small count tables, and the live
quality of what was served (CTR, nDCG of the served lists).

Each function takes the events of one window (already cut by ``in_window``) and returns a
DataFrame small enough to collect (``(bucket string, n double)`` for distributions); no I/O, no
clock. "Served" rows are ``recsys.recommendation_log`` (every list served) or, on lakehouses
without it, ``recsys.recommendations``: ``user_id, item_id, rank, generated_at``.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.common.errors import require_columns
from spark_jobs.contract.events import CLICK_EVENT_TYPES, VIEW_EVENT_TYPES

BUCKET = "bucket"
N = "n"
# Events per user in the window: 1, 2, 3-5, 6-10, 11-20, 21-50, 51+.
ACTIVITY_EDGES = (2, 3, 6, 11, 21, 51)
RATING_TYPE = "rating"
POSITIVE_RATING = 4.0  # a rating at least this high says "liked", like a click
NDCG_K = 10
NDCG = "ndcg"
LISTS = "lists"


def in_window(df: DataFrame, column: str, start: datetime, end: datetime) -> DataFrame:
    """Rows with ``start <= column < end`` (half-open, so adjacent windows never share a row)."""
    require_columns(df, (column,), "in_window")
    return df.where((F.col(column) >= F.lit(start)) & (F.col(column) < F.lit(end)))


def _counts(df: DataFrame, bucket: Column) -> DataFrame:
    return df.groupBy(bucket.alias(BUCKET)).agg(F.count(F.lit(1)).cast("double").alias(N))


def event_type_counts(events: DataFrame) -> DataFrame:
    require_columns(events, (names.EVENT_TYPE,), "event_type_counts")
    return _counts(events, F.col(names.EVENT_TYPE))


def item_counts(events: DataFrame) -> DataFrame:
    """Events per item (the popularity distribution; the tail is folded later)."""
    require_columns(events, (names.ITEM_ID,), "item_counts")
    return _counts(events, F.col(names.ITEM_ID))


def category_counts(events: DataFrame, items: DataFrame) -> DataFrame:
    """Events per category of the item (an item in k categories counts once in each)."""
    require_columns(events, (names.ITEM_ID,), "category_counts")
    require_columns(items, (names.ITEM_ID, "categories"), "category_counts(items)")
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
    require_columns(events, (names.USER_ID,), "user_activity_counts")
    per_user = events.groupBy(names.USER_ID).agg(F.count(F.lit(1)).alias("_events"))
    return _counts(per_user, activity_bucket(F.col("_events")))


def score_bucket_counts(scores: DataFrame, edges: list[float], column: str = "score") -> DataFrame:
    """Rows per score bucket ``b00``.. for the inner ``edges`` (same labels as ``metrics.bucketise``)."""
    require_columns(scores, (column,), "score_bucket_counts")
    index = sum((F.col(column) >= F.lit(e)).cast("int") for e in edges) if edges else F.lit(0)
    label = F.format_string("b%02d", index)
    return _counts(scores.where(F.col(column).isNotNull()), label)


def click_through(events: DataFrame, served: DataFrame) -> DataFrame:
    """Impressions and clicks on served (user, item) pairs: one row ``(impressions, clicks)``.

    An event counts when its item had been served to its user before it (at or after the pair's
    first ``generated_at``): what the user did *with* a recommendation, not before it existed.
    """
    require_columns(events, (names.USER_ID, names.ITEM_ID, names.EVENT_TYPE, names.EVENT_TS), "click_through")
    require_columns(served, (names.USER_ID, names.ITEM_ID, names.GENERATED_AT), "click_through(served)")
    pairs = served.groupBy(names.USER_ID, names.ITEM_ID).agg(F.min(names.GENERATED_AT).alias("_first_served"))
    hits = events.join(pairs, [names.USER_ID, names.ITEM_ID], "inner").where(
        F.col(names.EVENT_TS) >= F.col("_first_served")
    )
    return hits.agg(
        F.sum(F.col(names.EVENT_TYPE).isin(*VIEW_EVENT_TYPES).cast("long")).alias("impressions"),
        F.sum(F.col(names.EVENT_TYPE).isin(*CLICK_EVENT_TYPES).cast("long")).alias("clicks"),
    )


def positive_events(events: DataFrame, min_rating: float = POSITIVE_RATING) -> DataFrame:
    """Events that say the user liked the item: a click, like or purchase, or a rating >= ``min_rating``."""
    require_columns(events, (names.EVENT_TYPE, names.VALUE), "positive_events")
    rated = (F.col(names.EVENT_TYPE) == RATING_TYPE) & (F.col(names.VALUE) >= F.lit(min_rating))
    return events.where(F.col(names.EVENT_TYPE).isin(*CLICK_EVENT_TYPES) | rated)


def list_ndcg(
    served: DataFrame, events: DataFrame, k: int = NDCG_K, min_rating: float = POSITIVE_RATING
) -> DataFrame:
    """nDCG@k of every served list against what its user liked *after* it was served.

    A list is the rows of one user with one ``generated_at`` (ranks 1..). Its relevant items are
    the distinct items of the user's ``positive_events`` strictly after ``generated_at`` (the
    caller cuts ``events`` to the window, so "after, within the window"), binary gains:
    ``DCG = sum over hits at rank r <= k of 1 / log2(r + 1)``, the ideal DCG ranks
    ``min(k, #relevant)`` hits first. Lists whose user liked nothing afterwards have no nDCG and
    are left out, as users without test items are in offline evaluation.
    Returns ``(user_id, generated_at, ndcg)``.
    """
    require_columns(
        served, (names.USER_ID, names.ITEM_ID, names.RANK, names.GENERATED_AT), "list_ndcg(served)"
    )
    require_columns(events, (names.USER_ID, names.ITEM_ID, names.EVENT_TS), "list_ndcg")
    key = [names.USER_ID, names.GENERATED_AT]
    lists = served.where(F.col(names.RANK) <= k).select(*key, names.RANK, names.ITEM_ID)
    liked = positive_events(events, min_rating).select(
        names.USER_ID, names.ITEM_ID, F.col(names.EVENT_TS).alias("_liked_at")
    )
    relevant = (
        lists.select(*key)
        .distinct()
        .join(liked, names.USER_ID)
        .where(F.col("_liked_at") > F.col(names.GENERATED_AT))
        .select(*key, names.ITEM_ID)
        .distinct()
    )
    n_relevant = relevant.groupBy(*key).agg(F.count(F.lit(1)).alias("_n_relevant"))
    dcg = (
        lists.join(relevant, [*key, names.ITEM_ID], "inner")
        .groupBy(*key)
        .agg(F.sum(1.0 / F.log2(F.col(names.RANK) + 1)).alias("_dcg"))
    )
    ideal = F.aggregate(
        F.sequence(F.lit(1), F.least(F.col("_n_relevant"), F.lit(k))),
        F.lit(0.0),
        lambda acc, r: acc + 1.0 / F.log2(r + 1),
    )
    return n_relevant.join(dcg, key, "left").select(
        *key, (F.coalesce(F.col("_dcg"), F.lit(0.0)) / ideal).alias(NDCG)
    )


def mean_ndcg(per_list: DataFrame) -> DataFrame:
    """One row ``(lists, ndcg)``: how many lists had relevant items, and their mean nDCG (null if none)."""
    require_columns(per_list, (NDCG,), "mean_ndcg")
    return per_list.agg(F.count(F.lit(1)).alias(LISTS), F.avg(NDCG).alias(NDCG))


def collect_counts(counts: DataFrame) -> dict[str, float]:
    """The small count table as a dict (an action: call it in the job, not in transforms)."""
    return {str(r[BUCKET]): float(r[N]) for r in counts.collect()}

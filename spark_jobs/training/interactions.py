"""From silver events to user-item interaction strengths: pure Spark DataFrame transforms.

Confidence per event type follows how much an action says about taste:
view (1) < click (2) < dwell (1..4, scaled by time up to ``DWELL_FULL_MS``) < like (4) and
rating (its value, 0..5) < purchase (6); scroll counts 0.5..1.5 by depth. ``skip`` and
``dislike`` are negative: Spark's implicit ALS reads a negative net strength as a confident
"not interested", every other model ignores non-positive pairs. Each event's weight decays
exponentially with its age relative to ``reference_ts`` (half-life in days), which the caller
passes in (the newest event time of the data, never the wall clock), so re-running on the same
data gives the same strengths.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from spark_jobs.common import names
from spark_jobs.common.errors import require_columns
from spark_jobs.training.columns import N_EVENTS, STRENGTH, TIMESTAMP

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

WEIGHT = "weight"
DEFAULT_HALF_LIFE_DAYS = 90.0
DWELL_FULL_MS = 60_000  # dwell time at which a dwell counts as much as a like
RATING_MAX = 5.0
DEFAULT_RATING = 3.0  # a rating event without a value
EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "scroll": 1.0,  # x (0.5 + depth)
    "dwell": 1.0,  # x (1 + 3 * min(dwell_ms / DWELL_FULL_MS, 1))
    "like": 4.0,
    "rating": 1.0,  # x value (clipped to 0..RATING_MAX)
    "purchase": 6.0,
    "skip": -0.5,
    "dislike": -2.0,
}


def event_weight(weights: Mapping[str, float] = EVENT_WEIGHTS) -> Column:
    """The confidence of one event as a Column expression (0 for unknown event types)."""
    from pyspark.sql import functions as F

    et = F.col(names.EVENT_TYPE)
    base = F.lit(0.0)
    for event_type, weight in weights.items():
        base = F.when(et == event_type, F.lit(float(weight))).otherwise(base)
    dwell_share = F.least(
        F.coalesce(F.col(names.DWELL_MS).cast("double"), F.lit(0.0)) / DWELL_FULL_MS, F.lit(1.0)
    )
    depth = F.coalesce(F.col(names.SCROLL_DEPTH), F.lit(0.0))
    rating = F.least(
        F.greatest(F.coalesce(F.col(names.VALUE), F.lit(DEFAULT_RATING)), F.lit(0.0)), F.lit(RATING_MAX)
    )
    scale = (
        F.when(et == "dwell", 1.0 + 3.0 * dwell_share)
        .when(et == "scroll", 0.5 + depth)
        .when(et == "rating", rating)
        .otherwise(F.lit(1.0))
    )
    return base * scale


def with_event_weight(df: DataFrame, weights: Mapping[str, float] = EVENT_WEIGHTS) -> DataFrame:
    """Add ``weight``: the event's confidence before time decay."""
    require_columns(
        df, (names.EVENT_TYPE, names.DWELL_MS, names.SCROLL_DEPTH, names.VALUE), "with_event_weight"
    )
    return df.withColumn(WEIGHT, event_weight(weights))


def with_time_decay(
    df: DataFrame, reference_ts: datetime, half_life_days: float = DEFAULT_HALF_LIFE_DAYS
) -> DataFrame:
    """Multiply ``weight`` by ``0.5 ** (age_days / half_life_days)``; events after the
    reference count as age 0. ``half_life_days <= 0`` disables decay."""
    from pyspark.sql import functions as F

    require_columns(df, (WEIGHT, names.EVENT_TS), "with_time_decay")
    if half_life_days <= 0:
        return df
    age_s = F.lit(reference_ts).cast("timestamp").cast("double") - F.col(names.EVENT_TS).cast("double")
    age_days = F.greatest(age_s / 86_400.0, F.lit(0.0))
    return df.withColumn(WEIGHT, F.col(WEIGHT) * F.pow(F.lit(0.5), age_days / float(half_life_days)))


def aggregate_interactions(df: DataFrame) -> DataFrame:
    """One row per (user, item): ``strength`` (sum of weights), ``n_events`` and ``timestamp``
    (epoch seconds of the latest event), the frame ``train_recommender`` reads."""
    from pyspark.sql import functions as F

    require_columns(df, (names.USER_ID, names.ITEM_ID, WEIGHT, names.EVENT_TS), "aggregate_interactions")
    return df.groupBy(names.USER_ID, names.ITEM_ID).agg(
        F.sum(WEIGHT).alias(STRENGTH),
        F.count(F.lit(1)).alias(N_EVENTS),
        F.max(F.col(names.EVENT_TS)).cast("double").alias(TIMESTAMP),
    )


def build_interactions(
    events: DataFrame,
    reference_ts: datetime,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    weights: Mapping[str, float] = EVENT_WEIGHTS,
) -> DataFrame:
    """Silver events -> interactions (weight, decay, aggregate), dropping zero-strength pairs."""
    from pyspark.sql import functions as F

    return (
        events.transform(lambda df: with_event_weight(df, weights))
        .transform(lambda df: with_time_decay(df, reference_ts, half_life_days))
        .transform(aggregate_interactions)
        .where(F.col(STRENGTH) != 0.0)
    )


def user_context(events: DataFrame) -> DataFrame:
    """Per user: most frequent ``device`` and mean ``hour_of_day`` from the event context."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    require_columns(events, (names.USER_ID, names.CONTEXT), "user_context")
    ctx = events.select(
        names.USER_ID,
        F.col(f"{names.CONTEXT}.device").alias("device"),
        F.col(f"{names.CONTEXT}.hour_of_day").alias("hour_of_day"),
    )
    hours = ctx.groupBy(names.USER_ID).agg(F.avg("hour_of_day").alias("hour_of_day"))
    counts = ctx.where(F.col("device").isNotNull()).groupBy(names.USER_ID, "device").count()
    ranked = counts.withColumn(
        "_r", F.row_number().over(Window.partitionBy(names.USER_ID).orderBy(F.desc("count"), "device"))
    )
    devices = ranked.where(F.col("_r") == 1).select(names.USER_ID, "device")
    return hours.join(devices, names.USER_ID, "left")

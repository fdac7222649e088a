"""Pure transforms of the feature stage (no I/O, no clock: time comes in as columns).

``with_categories``       rows with an ``item_id`` -> the same rows with their item's categories
``user_batch_features``   events of one micro-batch + catalog -> one user_features row per user
``fold_user_features``    current rows + batch rows -> the new rows of the batch's users
``item_batch_features``   events of one micro-batch -> one item_features row per item
``fold_item_features``    current rows + batch rows -> the new rows of the batch's items

A batch is first aggregated as if it were all there is, into rows with the feature table's
schema, then folded into the stored rows. ``reference_ts`` is the batch's newest event time:
the time the batch rows' decayed values are expressed at (their ``decay_ts``). ``updated_ts`` is
the sink's clock. Both must be constant columns (``F.lit``).

Decay is exact whatever order events arrive in: a value ``v`` stored at ``decay_ts`` is worth
``v * 2^-((t - decay_ts) / half_life)`` at ``t``, and folding moves both sides to the later of
their two ``decay_ts`` before adding them. So an event at ``e`` always ends up contributing
``2^-((decay_ts - e) / half_life)``, whether it came early, on time or late.

Late events (older than the stream's watermark) are folded in like any other: decayed values,
counts, sketches and last-N (merged by event time) stay exact. What they cannot change: a late
event older than the row's newest event does not replace ``device``, ``country`` or
``last_session_id``; one before the frequency window is not counted in ``n_events_7d``; and a
late event of a session other than the user's last one counts that session again.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.common.config import FeatureSettings
from spark_jobs.common.errors import require_columns
from spark_jobs.contract.events import CLICK_EVENT_TYPES, NEGATIVE_EVENT_TYPES, VIEW_EVENT_TYPES
from spark_jobs.features.columns import (
    BATCH_SESSIONS,
    CATEGORIES,
    CATEGORY_AFFINITY,
    CLICKS,
    COUNTRY,
    CTR,
    DAILY_EVENTS,
    DECAY_TS,
    DEVICE,
    FREQUENCY_WINDOW_DAYS,
    HLL_LG_CONFIG_K,
    ITEM_FEATURE_COLUMNS,
    LAST_EVENT_TS,
    LAST_ITEMS,
    LAST_ITEMS_TS,
    LAST_SESSION_ID,
    MEAN_EVENTS_PER_SESSION,
    N_EVENTS,
    N_EVENTS_7D,
    N_SESSION_EVENTS,
    N_SESSIONS,
    N_USERS,
    POPULARITY,
    TRENDING,
    UPDATED_TS,
    USER_FEATURE_COLUMNS,
    USER_FEATURES_SCHEMA,
    USERS_SKETCH,
    VIEWS,
)

USER_EVENT_COLUMNS = (
    names.USER_ID,
    names.ITEM_ID,
    names.EVENT_TYPE,
    names.SESSION_ID,
    names.EVENT_TS,
    names.CONTEXT,
)
ITEM_EVENT_COLUMNS = (names.ITEM_ID, names.USER_ID, names.EVENT_TYPE, names.EVENT_TS)


def decay_factor(from_ts: Column, to_ts: Column, half_life_hours: float) -> Column:
    """``2^-((to_ts - from_ts) / half_life)``: what one unit at ``from_ts`` is worth at ``to_ts``."""
    seconds = (F.unix_micros(to_ts) - F.unix_micros(from_ts)) / 1e6
    return F.pow(F.lit(2.0), -seconds / (half_life_hours * 3600.0))


def decayed_as_of(value: Column, decay_ts: Column, at_ts: Column, half_life_hours: float) -> Column:
    """A stored decayed value moved to the reader's time ``at_ts`` (for readers, not the stream)."""
    return value * decay_factor(decay_ts, at_ts, half_life_hours)


def events_in_window(daily_events: Column, end_ts: Column) -> Column:
    """Events of the ``FREQUENCY_WINDOW_DAYS`` UTC days ending on ``end_ts``'s day, from ``daily_events``."""
    return F.aggregate(
        F.map_values(_window(daily_events, end_ts)), F.lit(0).cast("bigint"), lambda total, n: total + n
    )


def ctr(clicks: Column, views: Column, settings: FeatureSettings) -> Column:
    """Smoothed click-through rate: an item with few views sits near the prior, not at 0 or 1."""
    return (clicks + settings.ctr_prior_clicks) / (views + settings.ctr_prior_views)


def with_categories(events: DataFrame, items: DataFrame) -> DataFrame:
    """Rows with their item's ``categories``; empty for items missing from ``items`` or without any."""
    require_columns(events, (names.ITEM_ID,), "with_categories (events)")
    require_columns(items, (names.ITEM_ID, CATEGORIES), "with_categories (items)")
    return events.join(items.select(names.ITEM_ID, CATEGORIES), names.ITEM_ID, "left").withColumn(
        CATEGORIES, F.coalesce(F.col(CATEGORIES), F.array().cast("array<string>"))
    )


def user_batch_features(
    events: DataFrame,
    items: DataFrame,
    reference_ts: Column,
    updated_ts: Column,
    settings: FeatureSettings,
) -> DataFrame:
    """One ``user_features`` row per user of ``events``, plus ``_batch_sessions``.

    ``items`` is the catalog (``item_id``, ``categories``). Affinity: each positive event adds
    its decayed weight, split evenly over its item's categories, so a user's affinities sum to
    their decayed count of positive events on categorised items. Last-N: distinct items by
    their latest event, newest first.

    Two small pre-aggregations feed everything: per user and day (counts, sessions, latest
    context) and per user and item (latest time, decayed weight), so the catalog is joined to
    distinct pairs, not to every event.
    """
    require_columns(events, USER_EVENT_COLUMNS, "user_batch_features")
    ts, context = F.col(names.EVENT_TS), F.col(names.CONTEXT)
    per_day = events.groupBy(names.USER_ID, F.to_date(ts).alias("_day")).agg(
        F.count(F.lit(1)).alias("_n"),
        F.max(ts).alias("_last"),
        F.count(names.SESSION_ID).alias("_session_events"),
        F.collect_set(names.SESSION_ID).alias("_sessions"),
        _newest_with(F.col(names.SESSION_ID)).alias("_session"),
        _newest_with(context["device"]).alias("_device"),
        _newest_with(context["country"]).alias("_country"),
    )
    per_user = per_day.groupBy(names.USER_ID).agg(
        F.max("_last").alias(LAST_EVENT_TS),
        F.sum("_n").alias(N_EVENTS),
        F.map_from_entries(F.collect_list(F.struct("_day", "_n"))).alias(DAILY_EVENTS),
        F.sum("_session_events").alias(N_SESSION_EVENTS),
        F.array_distinct(F.flatten(F.collect_list("_sessions"))).alias(BATCH_SESSIONS),
        F.max("_session")["v"].alias(LAST_SESSION_ID),
        F.max("_device")["v"].alias(DEVICE),
        F.max("_country")["v"].alias(COUNTRY),
    )
    per_item = events.groupBy(names.USER_ID, names.ITEM_ID).agg(
        F.max(ts).alias(names.EVENT_TS),
        F.sum(
            F.when(_positive(), decay_factor(ts, reference_ts, settings.affinity_half_life_hours)).otherwise(
                0.0
            )
        ).alias("_weight"),
    )
    affinity = (
        with_categories(per_item.where(F.col("_weight") > 0), items)
        .where(F.size(CATEGORIES) > 0)
        .select(
            names.USER_ID,
            F.explode(CATEGORIES).alias("_category"),
            (F.col("_weight") / F.size(CATEGORIES)).alias("_weight"),
        )
        .groupBy(names.USER_ID, "_category")
        .agg(F.sum("_weight").alias("_weight"))
        .groupBy(names.USER_ID)
        .agg(F.map_from_entries(F.collect_list(F.struct("_category", "_weight"))).alias(CATEGORY_AFFINITY))
    )
    newest_items = F.sort_array(F.collect_list(F.struct(names.EVENT_TS, names.ITEM_ID)), asc=False)
    recent = per_item.groupBy(names.USER_ID).agg(F.slice(newest_items, 1, settings.last_n).alias("_recent"))
    rows = per_user.join(affinity, names.USER_ID, "left").join(recent, names.USER_ID, "left")
    daily_events = _window(F.col(DAILY_EVENTS), reference_ts)
    n_sessions = F.size(BATCH_SESSIONS).cast("bigint")
    return rows.select(
        names.USER_ID,
        LAST_EVENT_TS,
        N_EVENTS,
        events_in_window(daily_events, reference_ts).alias(N_EVENTS_7D),
        daily_events.alias(DAILY_EVENTS),
        F.coalesce(F.col(CATEGORY_AFFINITY), _empty(CATEGORY_AFFINITY)).alias(CATEGORY_AFFINITY),
        F.transform("_recent", lambda r: r[names.ITEM_ID]).alias(LAST_ITEMS),
        F.transform("_recent", lambda r: r[names.EVENT_TS]).alias(LAST_ITEMS_TS),
        n_sessions.alias(N_SESSIONS),
        N_SESSION_EVENTS,
        _mean_per_session(F.col(N_SESSION_EVENTS), n_sessions).alias(MEAN_EVENTS_PER_SESSION),
        LAST_SESSION_ID,
        DEVICE,
        COUNTRY,
        reference_ts.alias(DECAY_TS),
        updated_ts.alias(UPDATED_TS),
        BATCH_SESSIONS,
    )


def fold_user_features(current: DataFrame, batch: DataFrame, settings: FeatureSettings) -> DataFrame:
    """The batch's users with their stored row and their batch row combined (``user_features`` schema).

    ``current`` may hold any users (the whole table); only the batch's users come out. A user
    not in ``current`` gets the batch row as is. Sessions: a batch session equal to the stored
    ``last_session_id`` is the same session continuing, so it is not counted again.
    """
    require_columns(current, USER_FEATURE_COLUMNS, "fold_user_features (current)")
    require_columns(batch, (*USER_FEATURE_COLUMNS, BATCH_SESSIONS), "fold_user_features (batch)")
    old, new = _sides()
    decay_ts = F.greatest(old(DECAY_TS), new(DECAY_TS))
    h = settings.affinity_half_life_hours
    old_share, new_share = decay_factor(old(DECAY_TS), decay_ts, h), decay_factor(new(DECAY_TS), decay_ts, h)
    daily = _window(
        F.map_zip_with(
            old(DAILY_EVENTS),
            new(DAILY_EVENTS),
            lambda _, a, b: F.coalesce(a, F.lit(0)) + F.coalesce(b, F.lit(0)),
        ),
        decay_ts,
    )
    affinity = F.map_zip_with(
        old(CATEGORY_AFFINITY),
        new(CATEGORY_AFFINITY),
        lambda _, a, b: F.coalesce(a * old_share, F.lit(0.0)) + F.coalesce(b * new_share, F.lit(0.0)),
    )
    recent = _newest(F.concat(_recent(old), _recent(new)), settings.last_n)
    continued = F.coalesce(F.array_contains(new(BATCH_SESSIONS), old(LAST_SESSION_ID)), F.lit(False))
    n_sessions = old(N_SESSIONS) + new(N_SESSIONS) - continued.cast("bigint")
    n_session_events = old(N_SESSION_EVENTS) + new(N_SESSION_EVENTS)
    newer = new(LAST_EVENT_TS) >= old(LAST_EVENT_TS)

    def latest(column: str) -> Column:
        return F.when(newer, F.coalesce(new(column), old(column))).otherwise(
            F.coalesce(old(column), new(column))
        )

    folded = {
        names.USER_ID: new(names.USER_ID),
        LAST_EVENT_TS: F.greatest(old(LAST_EVENT_TS), new(LAST_EVENT_TS)),
        N_EVENTS: old(N_EVENTS) + new(N_EVENTS),
        N_EVENTS_7D: events_in_window(daily, decay_ts),
        DAILY_EVENTS: daily,
        CATEGORY_AFFINITY: affinity,
        LAST_ITEMS: F.transform(recent, lambda r: r[names.ITEM_ID]),
        LAST_ITEMS_TS: F.transform(recent, lambda r: r[names.EVENT_TS]),
        N_SESSIONS: n_sessions,
        N_SESSION_EVENTS: n_session_events,
        MEAN_EVENTS_PER_SESSION: _mean_per_session(n_session_events, n_sessions),
        LAST_SESSION_ID: latest(LAST_SESSION_ID),
        DEVICE: latest(DEVICE),
        COUNTRY: latest(COUNTRY),
        DECAY_TS: decay_ts,
        UPDATED_TS: new(UPDATED_TS),
    }
    return _fold(current, batch, names.USER_ID, folded)


def item_batch_features(
    events: DataFrame, reference_ts: Column, updated_ts: Column, settings: FeatureSettings
) -> DataFrame:
    """One ``item_features`` row per item of ``events``.

    Popularity and trending are decayed counts of positive events (long and short half-life);
    ``n_users`` is a HyperLogLog estimate (exact for small counts) so it can grow batch by batch.
    """
    require_columns(events, ITEM_EVENT_COLUMNS, "item_batch_features")
    ts, event_type = F.col(names.EVENT_TS), F.col(names.EVENT_TYPE)

    def decayed_count(half_life_hours: float) -> Column:
        return F.sum(F.when(_positive(), decay_factor(ts, reference_ts, half_life_hours)).otherwise(0.0))

    rows = events.groupBy(names.ITEM_ID).agg(
        F.max(ts).alias(LAST_EVENT_TS),
        F.count(F.lit(1)).alias(N_EVENTS),
        F.hll_sketch_agg(names.USER_ID, HLL_LG_CONFIG_K).alias(USERS_SKETCH),
        decayed_count(settings.popularity_half_life_hours).alias(POPULARITY),
        decayed_count(settings.trending_half_life_hours).alias(TRENDING),
        F.count(F.when(event_type.isin(*VIEW_EVENT_TYPES), 1)).alias(VIEWS),
        F.count(F.when(event_type.isin(*CLICK_EVENT_TYPES), 1)).alias(CLICKS),
    )
    return rows.select(
        names.ITEM_ID,
        LAST_EVENT_TS,
        N_EVENTS,
        F.hll_sketch_estimate(USERS_SKETCH).alias(N_USERS),
        USERS_SKETCH,
        POPULARITY,
        TRENDING,
        VIEWS,
        CLICKS,
        ctr(F.col(CLICKS), F.col(VIEWS), settings).alias(CTR),
        reference_ts.alias(DECAY_TS),
        updated_ts.alias(UPDATED_TS),
    )


def fold_item_features(current: DataFrame, batch: DataFrame, settings: FeatureSettings) -> DataFrame:
    """The batch's items with their stored row and their batch row combined (``item_features`` schema)."""
    require_columns(current, ITEM_FEATURE_COLUMNS, "fold_item_features (current)")
    require_columns(batch, ITEM_FEATURE_COLUMNS, "fold_item_features (batch)")
    old, new = _sides()
    decay_ts = F.greatest(old(DECAY_TS), new(DECAY_TS))

    def decayed_sum(column: str, half_life_hours: float) -> Column:
        return old(column) * decay_factor(old(DECAY_TS), decay_ts, half_life_hours) + new(
            column
        ) * decay_factor(new(DECAY_TS), decay_ts, half_life_hours)

    sketch = F.hll_union(old(USERS_SKETCH), new(USERS_SKETCH))
    views, clicks = old(VIEWS) + new(VIEWS), old(CLICKS) + new(CLICKS)
    folded = {
        names.ITEM_ID: new(names.ITEM_ID),
        LAST_EVENT_TS: F.greatest(old(LAST_EVENT_TS), new(LAST_EVENT_TS)),
        N_EVENTS: old(N_EVENTS) + new(N_EVENTS),
        N_USERS: F.hll_sketch_estimate(sketch),
        USERS_SKETCH: sketch,
        POPULARITY: decayed_sum(POPULARITY, settings.popularity_half_life_hours),
        TRENDING: decayed_sum(TRENDING, settings.trending_half_life_hours),
        VIEWS: views,
        CLICKS: clicks,
        CTR: ctr(clicks, views, settings),
        DECAY_TS: decay_ts,
        UPDATED_TS: new(UPDATED_TS),
    }
    return _fold(current, batch, names.ITEM_ID, folded)


def _sides() -> tuple[Callable[[str], Column], Callable[[str], Column]]:
    """Column accessors of the stored (``o``) and the batch (``n``) side of a fold."""
    return (lambda c: F.col(f"o.{c}")), (lambda c: F.col(f"n.{c}"))


def _fold(current: DataFrame, batch: DataFrame, key: str, folded: dict[str, Column]) -> DataFrame:
    """Left-join the batch to its stored rows; new keys take the batch row, the others ``folded``."""
    joined = batch.alias("n").join(current.alias("o"), F.col(f"n.{key}") == F.col(f"o.{key}"), "left")
    is_new = F.col(f"o.{key}").isNull()
    return joined.select(
        *(F.when(is_new, F.col(f"n.{name}")).otherwise(value).alias(name) for name, value in folded.items())
    )


def _positive() -> Column:
    return ~F.col(names.EVENT_TYPE).isin(*NEGATIVE_EVENT_TYPES)


def _newest_with(value: Column) -> Column:
    """Aggregate: ``(ts, v)`` of the newest event where ``value`` is not null (ties: the greatest value).

    The max of such structs is again one, so partial results combine with ``F.max``.
    """
    return F.max(F.when(value.isNotNull(), F.struct(F.col(names.EVENT_TS).alias("ts"), value.alias("v"))))


def _window(daily_events: Column, end_ts: Column) -> Column:
    """The entries of ``daily_events`` inside the frequency window ending on ``end_ts``'s UTC day."""
    last_day = F.to_date(end_ts)
    first_day = F.date_sub(last_day, FREQUENCY_WINDOW_DAYS - 1)
    return F.coalesce(
        F.map_filter(daily_events, lambda day, _: (day >= first_day) & (day <= last_day)),
        _empty(DAILY_EVENTS),
    )


def _recent(side: Callable[[str], Column]) -> Column:
    """A row's last items as ``(event_ts, item_id)`` structs, the shape ``_newest`` sorts."""
    return F.zip_with(
        side(LAST_ITEMS_TS),
        side(LAST_ITEMS),
        lambda ts, item: F.struct(ts.alias(names.EVENT_TS), item.alias(names.ITEM_ID)),
    )


def _newest(entries: Column, n: int) -> Column:
    """The ``n`` newest distinct items of ``(event_ts, item_id)`` structs, each at its latest time.

    Ties in time are broken by item id (descending), so the order is deterministic.
    """
    latest = F.filter(
        entries,
        lambda e: ~F.exists(
            entries,
            lambda other: (other[names.ITEM_ID] == e[names.ITEM_ID])
            & (other[names.EVENT_TS] > e[names.EVENT_TS]),
        ),
    )
    return F.slice(F.sort_array(F.array_distinct(latest), asc=False), 1, n)


def _empty(column: str) -> Column:
    """An empty map typed like ``column`` of ``user_features``."""
    return F.create_map().cast(USER_FEATURES_SCHEMA[column].dataType)


def _mean_per_session(n_session_events: Column, n_sessions: Column) -> Column:
    return F.when(n_sessions > 0, n_session_events / n_sessions)

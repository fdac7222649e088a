"""The feature job: one streaming query, ``features``, with its own checkpoint.

``features``  recsys.events (silver) -> recsys.user_features + recsys.item_features

The source is silver read as a Delta stream with a watermark of ``features.watermark`` on
``event_ts``. An event is *late* when its event time is older than the watermark (the newest
event time the stream has seen, minus ``features.watermark``). The query has no stateful
operator (each micro-batch is aggregated on its own and folded into the tables by the sink), so
Spark drops nothing for being late: late events are folded in by the decay math like the others
(what that means per feature: ``spark_jobs.features.transforms``). The watermark shows in the
progress lines, as how far behind event time the stream runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.common import names
from spark_jobs.common.clock import Clock, utc_now
from spark_jobs.common.config import Config
from spark_jobs.features.columns import DECAY_TS, LAST_EVENT_TS, TRENDING
from spark_jobs.features.sinks import BatchSink, ensure_feature_tables, feature_sink
from spark_jobs.features.transforms import decayed_as_of
from spark_jobs.ingest.tables import ensure_ingest_tables

# The silver columns the features read; the Delta source reads no others.
SOURCE_COLUMNS = (
    names.USER_ID,
    names.ITEM_ID,
    names.EVENT_TYPE,
    names.SESSION_ID,
    names.EVENT_TS,
    names.CONTEXT,
)


@dataclass(frozen=True)
class FeatureCounts:
    """What the feature tables hold after a run."""

    users: int
    items: int
    newest_event_ts: datetime | None


def events_source(spark: SparkSession, config: Config) -> DataFrame:
    """Silver as a stream, watermarked on event time.

    ``skipChangeCommits`` passes over deletions in silver (GDPR erasure, retention) instead of
    failing: the erasure job removes the user from the feature tables itself.
    """
    return (
        spark.readStream.format("delta")
        .option("skipChangeCommits", "true")
        .load(config.table_path(names.EVENTS))
        .select(*SOURCE_COLUMNS)
        .withWatermark(names.EVENT_TS, config.features.watermark)
    )


def start(
    spark: SparkSession,
    config: Config,
    once: bool,
    sink: BatchSink | None = None,
    clock: Clock = utc_now,
) -> StreamingQuery:
    """Start silver -> feature tables. ``once`` folds in what is there (availableNow) and stops."""
    ensure_ingest_tables(spark, config)
    ensure_feature_tables(spark, config)
    writer = (
        events_source(spark, config)
        .writeStream.queryName(names.QUERY_FEATURES)
        .option("checkpointLocation", config.checkpoint(names.QUERY_FEATURES))
        .foreachBatch(sink or feature_sink(config, clock))
    )
    if once:
        return writer.trigger(availableNow=True).start()
    return writer.trigger(processingTime=config.features.trigger_interval).start()


def run_once(
    spark: SparkSession,
    config: Config,
    on_progress: Callable[[str], None] | None = None,
    clock: Clock = utc_now,
) -> FeatureCounts:
    """Fold every silver event not yet folded into the feature tables, and return their counts."""
    query = start(spark, config, once=True, clock=clock)
    while not query.awaitTermination(2):
        _report(query, on_progress)
    _report(query, on_progress)
    if query.exception():
        raise query.exception()  # type: ignore[misc]
    return feature_counts(spark, config)


def run_continuous(
    spark: SparkSession, config: Config, on_progress: Callable[[str], None] | None = None
) -> None:
    """Run the query until interrupted (Ctrl-C stops it cleanly between batches)."""
    query = start(spark, config, once=False)
    try:
        while query.isActive:
            time.sleep(5)
            _report(query, on_progress)
        if query.exception():
            raise query.exception()  # type: ignore[misc]
    finally:
        query.stop()


def feature_counts(spark: SparkSession, config: Config) -> FeatureCounts:
    users = _table(spark, config, names.USER_FEATURES)
    items = _table(spark, config, names.ITEM_FEATURES)
    return FeatureCounts(
        users=users.count(),
        items=items.count(),
        newest_event_ts=items.agg(F.max(LAST_EVENT_TS)).first()[0],
    )


def top_trending(spark: SparkSession, config: Config, limit: int = 5) -> list[tuple[str, float]]:
    """The items trending most as of the newest event time in the table, for summaries.

    Rows are stored at different ``decay_ts``; they are decayed to one time before comparing.
    """
    items = _table(spark, config, names.ITEM_FEATURES)
    at = items.agg(F.max(DECAY_TS)).first()[0]
    if at is None:
        return []
    trending = decayed_as_of(
        F.col(TRENDING), F.col(DECAY_TS), F.lit(at), config.features.trending_half_life_hours
    )
    rows = items.select(names.ITEM_ID, trending.alias(TRENDING)).orderBy(F.desc(TRENDING), names.ITEM_ID)
    return [(r[names.ITEM_ID], r[TRENDING]) for r in rows.limit(limit).collect()]


def _table(spark: SparkSession, config: Config, table: str) -> DataFrame:
    return spark.read.format("delta").load(config.table_path(table))


_reported: dict[str, int] = {}


def _report(query: StreamingQuery, on_progress: Callable[[str], None] | None) -> None:
    """Print each finished micro-batch once, with the event-time watermark."""
    progress = query.lastProgress
    if on_progress and progress and _reported.get(str(query.id)) != progress["batchId"]:
        _reported[str(query.id)] = progress["batchId"]
        watermark = (progress.get("eventTime") or {}).get("watermark", "-")
        on_progress(
            f"{query.name}: batch {progress['batchId']}, {progress['numInputRows']:,} events"
            f" ({progress.get('processedRowsPerSecond') or 0:,.0f}/s), watermark {watermark}"
        )

"""The ingest job: two streaming queries, each with its own checkpoint.

``ingest_bronze``  Kafka topic -> recsys.events_bronze            (raw records, exactly once)
``ingest_silver``  recsys.events_bronze -> recsys.events           (validated, typed, deduplicated)
                                        -> recsys.events_quarantine (every rejected record + reason)

Silver reads bronze, not Kafka, so silver can be rebuilt from bronze after Kafka's retention
has passed, and a bug fix in validation can be replayed without re-producing events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.common import names
from spark_jobs.common.broker import ensure_reachable
from spark_jobs.common.config import Config
from spark_jobs.ingest.sinks import append_bronze_batch, upsert_silver_batch
from spark_jobs.ingest.tables import ensure_ingest_tables
from spark_jobs.ingest.transforms import to_bronze

BatchSink = Callable[[DataFrame, int], None]


@dataclass(frozen=True)
class TableCounts:
    """Row counts that must add up: every produced record is in exactly one place."""

    bronze: int
    silver: int
    quarantine: int

    @property
    def duplicates(self) -> int:
        """Valid records dropped because their event_id was already in silver."""
        return self.bronze - self.silver - self.quarantine


def kafka_source(spark: SparkSession, config: Config) -> DataFrame:
    """The raw Kafka stream of the events topic."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("kafka.security.protocol", config.kafka.security_protocol)
        .option("subscribe", config.kafka.topic)
        .option("startingOffsets", config.kafka.starting_offsets)
        .option("maxOffsetsPerTrigger", config.kafka.max_offsets_per_trigger)
        .option("failOnDataLoss", "true")
        .load()
    )


def start_bronze(
    spark: SparkSession, config: Config, once: bool, sink: BatchSink | None = None
) -> StreamingQuery:
    """Start Kafka -> bronze. ``once`` drains what is there (availableNow) and stops."""
    ensure_reachable(config.kafka.bootstrap_servers)
    ensure_ingest_tables(spark, config)
    bronze = to_bronze(kafka_source(spark, config), F.current_timestamp())
    writer = (
        bronze.writeStream.queryName(names.QUERY_BRONZE)
        .option("checkpointLocation", config.checkpoint(names.QUERY_BRONZE))
        .foreachBatch(sink or partial(append_bronze_batch, config=config))
    )
    return _with_trigger(writer, config, once).start()


def start_silver(
    spark: SparkSession, config: Config, once: bool, sink: BatchSink | None = None
) -> StreamingQuery:
    """Start bronze -> silver + quarantine.

    ``skipChangeCommits`` lets the stream pass over bronze deletions (GDPR erasure, retention)
    instead of failing: those are applied to silver directly by the erasure job.
    """
    ensure_ingest_tables(spark, config)
    bronze = (
        spark.readStream.format("delta")
        .option("skipChangeCommits", "true")
        .load(config.table_path(names.EVENTS_BRONZE))
    )
    writer = (
        bronze.writeStream.queryName(names.QUERY_SILVER)
        .option("checkpointLocation", config.checkpoint(names.QUERY_SILVER))
        .foreachBatch(sink or partial(upsert_silver_batch, config=config))
    )
    return _with_trigger(writer, config, once).start()


def run_once(
    spark: SparkSession, config: Config, on_progress: Callable[[str], None] | None = None
) -> TableCounts:
    """Drain Kafka into bronze, then bronze into silver/quarantine, and return the counts."""
    for start in (start_bronze, start_silver):
        query = start(spark, config, once=True)
        _await(query, on_progress)
    return table_counts(spark, config)


def run_continuous(
    spark: SparkSession, config: Config, on_progress: Callable[[str], None] | None = None
) -> None:
    """Run both queries until interrupted (Ctrl-C stops them cleanly between batches)."""
    queries = [start_bronze(spark, config, once=False), start_silver(spark, config, once=False)]
    try:
        while all(q.isActive for q in queries):
            time.sleep(5)
            for q in queries:
                _report(q, on_progress)
        for q in queries:
            if q.exception():
                raise q.exception()  # type: ignore[misc]
    finally:
        for q in queries:
            q.stop()


def table_counts(spark: SparkSession, config: Config) -> TableCounts:
    def count(table: str) -> int:
        return spark.read.format("delta").load(config.table_path(table)).count()

    return TableCounts(
        bronze=count(names.EVENTS_BRONZE),
        silver=count(names.EVENTS),
        quarantine=count(names.EVENTS_QUARANTINE),
    )


def _with_trigger(writer, config: Config, once: bool):  # DataStreamWriter -> DataStreamWriter
    if once:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=config.ingest.trigger_interval)


def _await(query: StreamingQuery, on_progress: Callable[[str], None] | None) -> None:
    while not query.awaitTermination(2):
        _report(query, on_progress)
    _report(query, on_progress)
    if query.exception():
        raise query.exception()  # type: ignore[misc]


_reported: dict[str, int] = {}


def _report(query: StreamingQuery, on_progress: Callable[[str], None] | None) -> None:
    """Print each finished micro-batch once."""
    progress = query.lastProgress
    if on_progress and progress and _reported.get(str(query.id)) != progress["batchId"]:
        _reported[str(query.id)] = progress["batchId"]
        on_progress(
            f"{query.name}: batch {progress['batchId']}, {progress['numInputRows']:,} rows"
            f" ({progress.get('processedRowsPerSecond') or 0:,.0f}/s)"
        )


def top_reasons(spark: SparkSession, config: Config, limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent quarantine reasons, for summaries."""
    rows = (
        spark.read.format("delta")
        .load(config.table_path(names.EVENTS_QUARANTINE))
        .groupBy(names.REASON)
        .count()
        .orderBy(F.desc("count"), names.REASON)
        .limit(limit)
        .collect()
    )
    return [(r[names.REASON], r["count"]) for r in rows]

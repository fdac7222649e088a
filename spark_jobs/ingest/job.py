"""The ingest job: Kafka -> bronze, silver and quarantine, exactly once.

``ingest``         Kafka topic -> recsys.events_bronze             (raw records + coordinates)
                               -> recsys.events                    (validated, typed, deduplicated)
                               -> recsys.events_quarantine         (every rejected record + reason)

The live path is one query: each Kafka micro-batch is cached once and written to all three
tables, so a valid event reaches silver in the same micro-batch that lands it in bronze (half the
latency of a second stream over bronze, and one stream less to run). The staged pair
(``ingest_bronze`` Kafka -> bronze, ``ingest_silver`` bronze -> silver + quarantine, each with
its own checkpoint) re-derives silver from bronze after Kafka's retention has passed, e.g. to
replay a validation fix without re-producing events (``recsys ingest --from-bronze``).
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
from spark_jobs.ingest.sinks import append_bronze_batch, ingest_batch, upsert_silver_batch
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


def start_ingest(
    spark: SparkSession, config: Config, once: bool, sink: BatchSink | None = None
) -> StreamingQuery:
    """Start Kafka -> bronze + silver + quarantine (one query). ``once`` drains what is there."""
    return _start_from_kafka(
        spark, config, once, names.QUERY_INGEST, sink or partial(ingest_batch, config=config)
    )


def start_bronze(
    spark: SparkSession, config: Config, once: bool, sink: BatchSink | None = None
) -> StreamingQuery:
    """Start the staged Kafka -> bronze. ``once`` drains what is there (availableNow) and stops."""
    return _start_from_kafka(
        spark, config, once, names.QUERY_BRONZE, sink or partial(append_bronze_batch, config=config)
    )


def _start_from_kafka(
    spark: SparkSession, config: Config, once: bool, query: str, sink: BatchSink
) -> StreamingQuery:
    """A query over the Kafka records in bronze's shape, named ``query`` (= its checkpoint)."""
    ensure_reachable(config.kafka.bootstrap_servers)
    ensure_ingest_tables(spark, config)
    records = to_bronze(kafka_source(spark, config), F.current_timestamp())
    writer = (
        records.writeStream.queryName(query)
        .option("checkpointLocation", config.checkpoint(query))
        .foreachBatch(sink)
    )
    return _with_trigger(writer, config, once).start()


def start_silver(
    spark: SparkSession, config: Config, once: bool, sink: BatchSink | None = None
) -> StreamingQuery:
    """Start the staged bronze -> silver + quarantine (rebuilds and replays from bronze).

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
    spark: SparkSession,
    config: Config,
    on_progress: Callable[[str], None] | None = None,
    from_bronze: bool = False,
) -> TableCounts:
    """Drain Kafka into bronze, silver and quarantine (or, ``from_bronze``, re-derive silver and
    quarantine from what bronze holds beyond the staged checkpoint) and return the counts."""
    _await(_start(spark, config, once=True, from_bronze=from_bronze), on_progress)
    return table_counts(spark, config)


def run_continuous(
    spark: SparkSession,
    config: Config,
    on_progress: Callable[[str], None] | None = None,
    from_bronze: bool = False,
) -> None:
    """Run the ingest query until interrupted (Ctrl-C stops it cleanly between batches)."""
    query = _start(spark, config, once=False, from_bronze=from_bronze)
    try:
        while query.isActive:
            time.sleep(5)
            _report(query, on_progress)
        if query.exception():
            raise query.exception()  # type: ignore[misc]
    finally:
        query.stop()


def _start(spark: SparkSession, config: Config, once: bool, from_bronze: bool) -> StreamingQuery:
    return (start_silver if from_bronze else start_ingest)(spark, config, once=once)


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

"""Named ``foreachBatch`` sinks of the ingest streams; every one is safe to replay.

``ingest_batch`` is the sink of the live ingest query: one Kafka micro-batch, cached once, lands
in bronze, silver and quarantine. ``append_bronze_batch`` and ``upsert_silver_batch`` are the
two halves of the staged pair (Kafka -> bronze, bronze -> silver), kept for rebuilding silver
from bronze (``recsys ingest --from-bronze``).

A micro-batch can run twice (a crash after the write, before the checkpoint commit). Bronze and
quarantine are append-only logs keyed by Kafka coordinates: they use Delta's idempotent
transactional appends (``txnAppId`` = table + query id, ``txnVersion`` = batch id), so a replay
is skipped. Silver is keyed by ``event_id``: an insert-only MERGE both drops duplicates of
earlier events and makes a replay a no-op.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from math import ceil

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import compact_every, idempotent_append, query_id, streaming_session
from spark_jobs.contract.events import Limits
from spark_jobs.ingest.transforms import to_quarantine, to_silver
from spark_jobs.ingest.validate import REASONS, validate_records


def ingest_batch(batch: DataFrame, batch_id: int, *, config: Config) -> None:
    """foreachBatch sink of the one-query ingest: Kafka records -> bronze, silver, quarantine.

    Silver is written from the same micro-batch, so it does not wait for bronze's commit and a
    second stream to pick it up. The batch is cached, but the bronze append and the validation
    start side by side, so the first read may come from Kafka twice (a few thousand small
    records from the broker's page cache: cheaper than a job to fill the cache first, measured
    by the freshness benchmark). The three writes are idempotent on their own
    (transaction ids from this query's id and the batch id; the insert-only MERGE), so they run
    side by side (bronze on a second thread) and a crash between or after any of them is
    repaired by the replay of the batch.
    """
    spark = streaming_session(batch)
    query = query_id(spark, config.checkpoint(names.QUERY_INGEST))
    records = batch.persist()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsys-bronze") as pool:
            bronze = pool.submit(
                idempotent_append,
                records,
                config.table_path(names.EVENTS_BRONZE),
                f"{names.EVENTS_BRONZE}:{query}",
                batch_id,
            )
            land_validated(spark, config, records, f"{names.EVENTS_QUARANTINE}:{query}", batch_id)
            bronze.result()
    finally:
        records.unpersist()
    tables = (names.EVENTS_BRONZE, names.EVENTS, names.EVENTS_QUARANTINE)
    compact_every(spark, [config.table_path(t) for t in tables], batch_id, config.spark.stream_compact_every)


def append_bronze_batch(batch: DataFrame, batch_id: int, *, config: Config) -> None:
    """foreachBatch sink of the staged Kafka -> bronze stream."""
    spark = streaming_session(batch)
    app_id = f"{names.EVENTS_BRONZE}:{query_id(spark, config.checkpoint(names.QUERY_BRONZE))}"
    bronze = config.table_path(names.EVENTS_BRONZE)
    idempotent_append(batch, bronze, app_id, batch_id)
    compact_every(spark, [bronze], batch_id, config.spark.stream_compact_every)


def upsert_silver_batch(batch: DataFrame, batch_id: int, *, config: Config) -> None:
    """foreachBatch sink of the staged bronze -> silver stream (rebuilds, replays)."""
    spark = streaming_session(batch)
    app_id = f"{names.EVENTS_QUARANTINE}:{query_id(spark, config.checkpoint(names.QUERY_SILVER))}"
    land_validated(spark, config, batch, app_id, batch_id)
    tables = [config.table_path(t) for t in (names.EVENTS, names.EVENTS_QUARANTINE)]
    compact_every(spark, tables, batch_id, config.spark.stream_compact_every)


def land_validated(
    spark: SparkSession, config: Config, records: DataFrame, quarantine_app_id: str, batch_id: int
) -> None:
    """Validate bronze-shaped ``records``, MERGE the valid ones into silver and append the rest
    to quarantine (idempotently as ``quarantine_app_id``, ``batch_id``), the two side by side
    once the validated batch is cached. A side with no rows writes nothing: the same batch always
    has the same rows, so a replay decides the same way, and most batches have nothing to
    quarantine (a Delta commit saved per micro-batch)."""
    validated = validate_records(records, Limits.from_config(config)).persist()
    try:
        valid = F.size(REASONS) == 0
        summary = validated.agg(  # one pass over the batch, which also fills the cache
            F.min(F.when(valid, F.to_date(names.EVENT_TS))).alias("earliest"),
            F.count(F.when(~valid, True)).alias("rejected"),
        ).first()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsys-quarantine") as pool:
            quarantined = (
                pool.submit(
                    idempotent_append,
                    to_quarantine(validated),
                    config.table_path(names.EVENTS_QUARANTINE),
                    quarantine_app_id,
                    batch_id,
                )
                if summary["rejected"]
                else None
            )
            if summary["earliest"] is not None:
                merge_new_events(spark, config, to_silver(validated), summary["earliest"])
            if quarantined is not None:
                quarantined.result()
    finally:
        validated.unpersist()


def merge_new_events(spark: SparkSession, config: Config, events: DataFrame, earliest: date) -> None:
    """Insert events whose ``event_id`` is not in silver yet (insert-only MERGE).

    The lookup is bounded to the dedup horizon before the batch's ``earliest`` event date, which
    lets Delta prune old ``event_date`` partitions: a copy of an event carries the same event
    time, so it always falls inside the horizon.
    """
    from delta.tables import DeltaTable

    lower = earliest - timedelta(days=ceil(config.ingest.dedup_horizon_hours / 24))
    (
        DeltaTable.forPath(spark, config.table_path(names.EVENTS))
        .alias("t")
        .merge(
            events.alias("s"),
            f"t.{names.EVENT_ID} = s.{names.EVENT_ID} AND t.{names.EVENT_DATE} >= DATE'{lower.isoformat()}'",
        )
        .whenNotMatchedInsertAll()
        .execute()
    )

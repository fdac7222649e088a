"""Synthetic history straight into the lakehouse: catalog tables and silver events, no Kafka.

Benchmarks and notebooks that study what happens *after* ingest (training, scoring) need a
lakehouse with a realistic history, and producing it through Kafka and the ingest stream would
cost minutes of set-up that measure nothing. This module writes the same synthetic world and
events as ``recsys produce synthetic`` (``produce.synthetic``) in the shape the ingest stream
gives them: ``recsys.items`` / ``recsys.users`` through the catalog upsert, and contract events
as typed silver rows (``contract.events.silver_schema``) appended to ``recsys.events``.

Only valid, unique events are written (the generator's clean stream): this is what silver holds
after validation and dedup. Nothing reads the clock: the end of the history and the ingest time
are arguments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.contract import events as contract
from spark_jobs.produce import catalog
from spark_jobs.produce.synthetic import (
    World,
    build_world,
    generate_events,
    item_rows,
    user_rows,
    world_anchor_ms,
)

ARROW_CONF = "spark.sql.execution.arrow.pyspark.enabled"
CHUNK_EVENTS = 200_000  # events per Delta append: bounds driver memory, not the total
DEFAULT_SPAN_S = 3 * 86_400.0
CONTEXT_KEYS = ("device", "country", "referrer", "hour_of_day")
_FLAT_SCHEMA = T.StructType(
    [
        T.StructField(names.EVENT_ID, T.StringType()),
        T.StructField(names.EVENT_TYPE, T.StringType()),
        T.StructField(names.USER_ID, T.StringType()),
        T.StructField(names.ITEM_ID, T.StringType()),
        T.StructField(names.SESSION_ID, T.StringType()),
        T.StructField(names.EVENT_TS, T.TimestampType()),
        T.StructField(names.DWELL_MS, T.LongType()),
        T.StructField(names.SCROLL_DEPTH, T.DoubleType()),
        T.StructField(names.VALUE, T.DoubleType()),
        *(
            T.StructField(f"_ctx_{k}", T.IntegerType() if k == "hour_of_day" else T.StringType())
            for k in CONTEXT_KEYS
        ),
        T.StructField(names.SCHEMA_VERSION, T.IntegerType()),
        T.StructField(names.INGEST_TS, T.TimestampType()),
    ]
)


@dataclass(frozen=True)
class SyntheticHistory:
    """What ``write_history`` put into the lakehouse."""

    world: World
    events: int
    start_ms: int  # event time of the simulated stream's start
    end_ms: int  # ... and of its end (the newest event is at or before it)
    anchor_ms: int  # ``created_before_ms`` of the world: rebuild it with ``build_world``


def events_frame(events: Iterable[Mapping[str, Any]], ingest_ts: datetime) -> pd.DataFrame:
    """Contract events (dicts, as the generator yields them) -> flat pandas rows for silver.

    Timestamps come out timezone-aware UTC. Raises ``ValueError`` for an event whose
    ``event_ts`` is not a contract timestamp (this path writes valid events only).
    """
    if ingest_ts.tzinfo is None:
        raise ValueError(f"ingest_ts must be timezone-aware, got {ingest_ts!r}")
    columns: dict[str, list[Any]] = {f.name: [] for f in _FLAT_SCHEMA.fields}
    for event in events:
        millis = contract.event_ts_millis(event.get(names.EVENT_TS))
        if millis is None:
            raise ValueError(f"event {event.get(names.EVENT_ID)!r} has no valid event_ts")
        context = event.get(names.CONTEXT) or {}
        columns[names.EVENT_ID].append(event[names.EVENT_ID])
        columns[names.EVENT_TYPE].append(event[names.EVENT_TYPE])
        columns[names.USER_ID].append(event[names.USER_ID])
        columns[names.ITEM_ID].append(event[names.ITEM_ID])
        columns[names.SESSION_ID].append(event.get(names.SESSION_ID))
        columns[names.EVENT_TS].append(millis)
        columns[names.DWELL_MS].append(event.get(names.DWELL_MS))
        columns[names.SCROLL_DEPTH].append(event.get(names.SCROLL_DEPTH))
        columns[names.VALUE].append(event.get(names.VALUE))
        for key in CONTEXT_KEYS:
            columns[f"_ctx_{key}"].append(context.get(key))
        columns[names.SCHEMA_VERSION].append(event.get(names.SCHEMA_VERSION, contract.SCHEMA_VERSION))
    n = len(columns[names.EVENT_ID])
    frame = pd.DataFrame({k: v for k, v in columns.items() if k != names.INGEST_TS})
    frame[names.EVENT_TS] = pd.to_datetime(
        pd.Series(columns[names.EVENT_TS], dtype="int64"), unit="ms", utc=True
    )
    frame[names.DWELL_MS] = pd.array(columns[names.DWELL_MS], dtype="Int64")
    frame["_ctx_hour_of_day"] = pd.array(columns["_ctx_hour_of_day"], dtype="Int32")
    frame[names.SCHEMA_VERSION] = pd.array(columns[names.SCHEMA_VERSION], dtype="Int32")
    for col in (names.SCROLL_DEPTH, names.VALUE):
        frame[col] = pd.to_numeric(frame[col], errors="raise").astype("float64")
    frame[names.INGEST_TS] = pd.Series(
        [pd.Timestamp(ingest_ts).tz_convert(UTC)] * n, dtype="datetime64[us, UTC]"
    )
    return frame[[f.name for f in _FLAT_SCHEMA.fields]]


def silver_df(spark: SparkSession, frame: pd.DataFrame) -> DataFrame:
    """Flat rows of ``events_frame`` -> a DataFrame with exactly silver's columns and types."""
    with arrow_enabled(spark):
        flat = spark.createDataFrame(frame, schema=_FLAT_SCHEMA)
    context = F.struct(*(F.col(f"_ctx_{k}").alias(k) for k in CONTEXT_KEYS))
    by_name = {names.CONTEXT: context, names.EVENT_DATE: F.to_date(names.EVENT_TS)}
    return flat.select(
        *(
            by_name.get(f.name, F.col(f.name)).cast(f.dataType).alias(f.name)
            for f in contract.silver_schema().fields
        )
    )


def append_events(
    spark: SparkSession,
    config: Config,
    events: Iterable[Mapping[str, Any]],
    ingest_ts: datetime,
    chunk: int = CHUNK_EVENTS,
) -> int:
    """Append contract events to ``recsys.events`` (created, partitioned, if missing); the count.

    A plain append, as silver's MERGE would do for events it has not seen: the caller passes
    events with new ids (the generator's ids depend on the seed and the start time).
    """
    from spark_jobs.ingest.tables import ensure_ingest_tables

    ensure_ingest_tables(spark, config)
    written = 0
    iterator = iter(events)
    while batch := list(islice(iterator, chunk)):
        (
            silver_df(spark, events_frame(batch, ingest_ts))
            .write.format("delta")
            .mode("append")
            .save(config.table_path(names.EVENTS))
        )
        written += len(batch)
    return written


def write_catalog(spark: SparkSession, config: Config, world: World, now_ts: datetime) -> None:
    """Upsert the world's items and users into ``recsys.items`` / ``recsys.users``."""
    catalog.upsert_catalog(
        spark,
        config,
        catalog.items_df(spark, item_rows(world)),
        catalog.users_df(spark, user_rows(world)),
        now_ts,
    )


def write_history(
    spark: SparkSession,
    config: Config,
    *,
    n_users: int,
    n_items: int,
    n_events: int,
    end_ms: int,
    seed: int = 42,
    span_s: float = DEFAULT_SPAN_S,
) -> SyntheticHistory:
    """A synthetic world's catalog and ``n_events`` of its events ending near ``end_ms``.

    The events span about ``span_s`` seconds of event time (the generator's traffic is set to
    ``n_events / span_s`` events per second) and are ingested "at" ``end_ms``. The world is the
    one ``build_world(n_users, n_items, seed, anchor_ms)`` returns, so a producer can continue
    the same users and items live (``SyntheticHistory.anchor_ms``).
    """
    if n_events < 1 or span_s <= 0:
        raise ValueError(f"need n_events >= 1 and span_s > 0, got {n_events} and {span_s}")
    start_ms = end_ms - int(span_s * 1000)
    anchor_ms = world_anchor_ms(start_ms)
    world = build_world(n_users, n_items, seed, anchor_ms)
    stamp = datetime.fromtimestamp(end_ms / 1000, UTC)
    write_catalog(spark, config, world, stamp)
    events = generate_events(world, n_events, start_ms, events_per_s=n_events / span_s)
    written = append_events(spark, config, events, stamp)
    return SyntheticHistory(world, written, start_ms, end_ms, anchor_ms)


def user_events(
    user_id: str,
    item_ids: Iterable[str],
    start_ms: int,
    *,
    event_type: str = "like",
    gap_ms: int = 60_000,
    context: Mapping[str, Any] | None = None,
    id_seed: str = "user-events",
) -> list[dict[str, Any]]:
    """One contract event of ``event_type`` per item for one user, ``gap_ms`` apart from
    ``start_ms``; ids are derived from ``id_seed``, the user, the item and the time (stable)."""
    import uuid

    if event_type not in contract.EVENT_TYPES:
        raise ValueError(f"unknown event_type {event_type!r} (one of {', '.join(contract.EVENT_TYPES)})")
    out = []
    for n, item in enumerate(item_ids):
        ts = start_ms + n * gap_ms
        out.append(
            {
                names.EVENT_ID: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{id_seed}:{user_id}:{item}:{ts}")),
                names.EVENT_TYPE: event_type,
                names.USER_ID: user_id,
                names.ITEM_ID: item,
                names.EVENT_TS: datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds"),
                names.CONTEXT: {"device": "desktop", **(context or {})},
                names.SCHEMA_VERSION: contract.SCHEMA_VERSION,
            }
        )
    return out


@contextlib.contextmanager
def arrow_enabled(spark: SparkSession) -> Iterator[None]:
    """Arrow for pandas -> Spark conversions inside the block; the session's setting after it."""
    before = spark.conf.get(ARROW_CONF, None)
    spark.conf.set(ARROW_CONF, "true")
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(ARROW_CONF)
        else:
            spark.conf.set(ARROW_CONF, before)

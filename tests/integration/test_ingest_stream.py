"""Ingestion against the real broker and Delta: exact rows, idempotent replays, crash recovery."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.ingest import job, sinks
from spark_jobs.ingest.sinks import append_bronze_batch, ingest_batch, upsert_silver_batch
from spark_jobs.stack.kafka import LocalKafka

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def _event(n: int, user: str = "u1", **extra: object) -> dict[str, object]:
    return {
        "event_id": str(uuid.UUID(int=n, version=4)),
        "event_type": "click",
        "user_id": user,
        "item_id": f"i{n}",
        "event_ts": 1_767_261_600_000 + n,  # 2026-01-01T10:00:00Z + n ms
        "schema_version": 1,
        **extra,
    }


def _produce(config: Config, records: list[tuple[str | None, bytes]]) -> None:
    LocalKafka(config).ensure_topic(config.kafka.topic, config.kafka.partitions)
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all")
    for key, value in records:
        producer.send(config.kafka.topic, key=key.encode() if key else None, value=value)
    producer.flush()
    producer.close()


def _json(event: dict[str, object]) -> tuple[str, bytes]:
    return str(event.get("user_id")), json.dumps(event).encode()


def _table(spark, config: Config, table: str):
    return spark.read.format("delta").load(config.table_path(table))


def test_good_duplicate_and_bad_events_land_exactly(spark, kafka, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    good = [_event(n, user=f"u{n % 3}", dwell_ms=100 * n) for n in range(1, 7)]
    future_ms = int(datetime.now(UTC).timestamp() * 1000) + 10 * 86_400_000
    bad = {
        b"{broken": "invalid_json",
        json.dumps(_event(90, user_id=7)).encode(): "wrong_type:user_id",
        json.dumps(_event(91, event_type="hover")).encode(): "unknown_event_type",
        json.dumps(_event(92, event_ts=future_ms)).encode(): "future_event_ts",
        json.dumps(_event(93, schema_version=2)).encode(): "unsupported_schema_version",
    }
    records = (
        [_json(e) for e in good] + [(None, raw) for raw in bad] + [_json(good[0]), _json(good[1])]
    )
    _produce(config, records)

    counts = job.run_once(spark, config)

    assert counts == job.TableCounts(bronze=13, silver=6, quarantine=5)
    assert counts.duplicates == 2
    silver = {
        r[names.EVENT_ID]: (
            r[names.USER_ID],
            r[names.ITEM_ID],
            r[names.DWELL_MS],
            r[names.EVENT_TS],
        )
        for r in _table(spark, config, names.EVENTS).collect()
    }
    assert silver == {
        e["event_id"]: (
            e["user_id"],
            e["item_id"],
            e["dwell_ms"],
            datetime.fromtimestamp(e["event_ts"] / 1000, UTC).replace(tzinfo=None),
        )
        for e in good
    }
    quarantine = {
        (r.value.encode(), r.reason)
        for r in _table(spark, config, names.EVENTS_QUARANTINE).collect()
    }
    assert quarantine == set(bad.items())
    coordinates = (
        _table(spark, config, names.EVENTS_QUARANTINE)
        .select("topic", "partition", "offset")
        .distinct()
        .count()
    )
    assert coordinates == 5

    # Nothing new in Kafka: a second run changes nothing.
    assert job.run_once(spark, config) == counts
    # A producer replaying the same events: bronze keeps the raw log, silver stays exact.
    _produce(config, [_json(e) for e in good])
    assert job.run_once(spark, config) == job.TableCounts(bronze=19, silver=6, quarantine=5)


def test_stop_midway_then_restart_loses_and_duplicates_nothing(
    spark, kafka, fresh_lakehouse: Config
) -> None:
    import dataclasses

    config = dataclasses.replace(
        fresh_lakehouse,
        kafka=dataclasses.replace(fresh_lakehouse.kafka, max_offsets_per_trigger=40),
    )
    events = [_event(n, user=f"u{n % 7}") for n in range(1, 301)]
    _produce(config, [_json(e) for e in events] + [(None, b"not json")] * 3)

    query = job.start_ingest(spark, config, once=True)
    deadline = time.monotonic() + 120
    while not query.recentProgress and time.monotonic() < deadline:
        time.sleep(0.2)
    query.stop()
    partial = _table(spark, config, names.EVENTS_BRONZE).count()
    assert 0 < partial < 303

    assert job.run_once(spark, config) == job.TableCounts(bronze=303, silver=300, quarantine=3)
    bronze = _table(spark, config, names.EVENTS_BRONZE)
    assert bronze.select("partition", "offset").distinct().count() == 303


class Crash(RuntimeError):
    pass


def _crash_after(sink, config: Config, batch: int, message: str):
    """``sink`` that writes as usual, then "dies" on micro-batch ``batch`` before the commit."""

    def crashing(df, batch_id: int) -> None:
        sink(df, batch_id, config=config)
        if batch_id == batch:
            raise Crash(message)

    return crashing


def test_crash_between_and_after_the_writes_is_replayed_exactly_once(
    spark, kafka, fresh_lakehouse: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live one-query ingest "dies" after its bronze write (before silver), then after all
    three writes (before the checkpoint commit); each replay completes exactly what is missing."""
    import dataclasses

    config = dataclasses.replace(
        fresh_lakehouse,
        kafka=dataclasses.replace(fresh_lakehouse.kafka, max_offsets_per_trigger=50),
    )
    events = [_event(n, user=f"u{n % 5}") for n in range(1, 121)]
    _produce(config, [_json(e) for e in events] + [(None, b"[]")] * 4)

    land = sinks.land_validated

    def crash_before_silver(spark, config, records, app_id, batch_id) -> None:
        if batch_id == 0:
            raise Crash("killed between bronze and silver")
        land(spark, config, records, app_id, batch_id)

    monkeypatch.setattr(sinks, "land_validated", crash_before_silver)
    with pytest.raises(Exception, match="killed between bronze and silver"):
        job.start_ingest(spark, config, once=True).awaitTermination()
    monkeypatch.undo()
    first = _table(spark, config, names.EVENTS_BRONZE).count()
    assert 0 < first <= 50
    assert _table(spark, config, names.EVENTS).count() == 0

    all_then_crash = _crash_after(ingest_batch, config, 1, "killed after every write")
    with pytest.raises(Exception, match="killed after every write"):
        job.start_ingest(spark, config, once=True, sink=all_then_crash).awaitTermination()
    assert _table(spark, config, names.EVENTS_BRONZE).count() > first  # batch 1 was written

    assert job.run_once(spark, config) == job.TableCounts(bronze=124, silver=120, quarantine=4)
    silver_ids = {
        r[0] for r in _table(spark, config, names.EVENTS).select(names.EVENT_ID).collect()
    }
    assert silver_ids == {e["event_id"] for e in events}
    bronze = _table(spark, config, names.EVENTS_BRONZE)
    assert bronze.select("partition", "offset").distinct().count() == 124


def test_staged_pair_crashes_are_replayed_and_silver_is_rederived_from_bronze(
    spark, kafka, fresh_lakehouse: Config
) -> None:
    """The staged pair (``--from-bronze``): each sink writes, then the process "dies" before the
    checkpoint commit; the replays are no-ops and silver ends exactly as the live path makes it."""
    import dataclasses

    config = dataclasses.replace(
        fresh_lakehouse,
        kafka=dataclasses.replace(fresh_lakehouse.kafka, max_offsets_per_trigger=50),
    )
    events = [_event(n, user=f"u{n % 5}") for n in range(1, 121)]
    _produce(config, [_json(e) for e in events] + [(None, b"[]")] * 4)

    bronze_then_crash = _crash_after(append_bronze_batch, config, 1, "killed after bronze write")
    silver_then_crash = _crash_after(upsert_silver_batch, config, 0, "killed after silver write")
    with pytest.raises(Exception, match="killed after bronze write"):
        job.start_bronze(spark, config, once=True, sink=bronze_then_crash).awaitTermination()
    with pytest.raises(Exception, match="killed after silver write"):
        job.start_silver(spark, config, once=True, sink=silver_then_crash).awaitTermination()

    job.start_bronze(spark, config, once=True).awaitTermination()
    counts = job.run_once(spark, config, from_bronze=True)
    assert counts == job.TableCounts(bronze=124, silver=120, quarantine=4)
    silver_ids = {
        r[0] for r in _table(spark, config, names.EVENTS).select(names.EVENT_ID).collect()
    }
    assert silver_ids == {e["event_id"] for e in events}

"""Producing into the real local broker: every record arrives once, byte for byte, keyed by user."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaConsumer

from spark_jobs.common.config import Config
from spark_jobs.common.errors import BrokerUnavailableError
from spark_jobs.produce import synthetic
from spark_jobs.produce.kafka_sink import KafkaSink, encode_value, ensure_topic, message_key

pytestmark = pytest.mark.integration

START_MS = 1_700_000_000_000


def test_records_arrive_exactly_once_in_per_user_order(kafka: Config) -> None:
    from spark_jobs.stack.kafka import LocalKafka

    topic = f"t.produce.{uuid.uuid4().hex[:8]}"
    LocalKafka(kafka).ensure_topic(topic, 2)
    world = synthetic.build_world(30, 20, seed=5, created_before_ms=START_MS)
    records = [
        r.record
        for r in synthetic.generate_records(world, 400, START_MS, bad_fraction=0.1, duplicate_fraction=0.05)
    ]
    with KafkaSink(kafka.kafka.bootstrap_servers, topic) as sink:
        for record in records:
            sink.send(message_key(record), record)
    assert (sink.stats().sent, sink.stats().failed) == (400, 0)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    received = list(consumer)
    consumer.close()

    expected = [(message_key(r), encode_value(r)) for r in records]
    assert sorted((m.key or b"", m.value) for m in received) == sorted((k or b"", v) for k, v in expected)
    sent_by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in expected:
        if key is not None:
            sent_by_key[key].append(value)
    got_by_key: dict[bytes, list[bytes]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for m in sorted(received, key=lambda m: (m.partition, m.offset)):
        if m.key is not None:
            got_by_key[m.key].append(m.value)
            partitions[m.key].add(m.partition)
    assert got_by_key == sent_by_key
    assert all(len(p) == 1 for p in partitions.values())


def test_missing_topic_is_reported(kafka: Config) -> None:
    sink = KafkaSink(kafka.kafka.bootstrap_servers, "t.no-such-topic", max_block_ms=2000)
    with pytest.raises(BrokerUnavailableError, match=r"topic t\.no-such-topic .*may not exist"):
        sink.send("u1", {"user_id": "u1"})
    sink.close(timeout_s=1)


def test_producers_create_their_missing_topic_once(kafka: Config) -> None:
    from spark_jobs.stack.kafka import LocalKafka

    topic = f"t.created.{uuid.uuid4().hex[:8]}"
    config = dataclasses.replace(kafka, kafka=dataclasses.replace(kafka.kafka, topic=topic, partitions=3))
    assert ensure_topic(config) is True
    assert ensure_topic(config) is False
    assert LocalKafka(kafka).topic_partitions(topic) == 3
    with KafkaSink.from_config(config) as sink:
        sink.send("u1", {"user_id": "u1"})
    assert sink.stats().sent == 1

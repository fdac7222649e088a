"""The local broker for real: the session's ``kafka`` fixture, and a second broker of our own."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from spark_jobs.common.config import Config, load_config
from spark_jobs.stack.kafka import LocalKafka
from spark_jobs.stack.ports import LOOPBACK, free_port, port_is_free

pytestmark = pytest.mark.integration


def test_fixture_broker_runs_under_the_lakehouse_root(kafka: Config) -> None:
    status = LocalKafka(kafka).status()

    assert status.running is True
    assert status.pid == int((kafka.stack_dir / "kafka.pid").read_text())
    assert status.bootstrap == kafka.kafka.bootstrap_servers
    assert status.data_dir == kafka.stack_dir / "kafka" / "data"
    assert (status.data_dir / "meta.properties").is_file()
    assert status.log_file.is_file()


def test_configured_topic_exists_with_configured_partitions(kafka: Config) -> None:
    consumer = KafkaConsumer(bootstrap_servers=kafka.kafka.bootstrap_servers)
    try:
        partitions = consumer.partitions_for_topic(kafka.kafka.topic)
    finally:
        consumer.close()

    assert partitions == set(range(kafka.kafka.partitions))
    assert LocalKafka(kafka).topic_partitions(kafka.kafka.topic) == kafka.kafka.partitions


def test_keyed_messages_round_trip_exactly(kafka: Config) -> None:
    broker = LocalKafka(kafka)
    topic = f"test.stack.{uuid.uuid4().hex[:8]}"
    sent = [(b"u1", b"first"), (b"u2", b"second"), (b"u1", b"third")]

    assert broker.ensure_topic(topic, 2) is True
    assert broker.ensure_topic(topic, 2) is False
    _produce(kafka.kafka.bootstrap_servers, topic, sent)
    received = _consume_all(kafka.kafka.bootstrap_servers, topic, expected=len(sent))

    assert sorted(received) == sorted(sent)
    # one key, one partition: u1's two messages keep their order
    assert [v for k, v in received if k == b"u1"] == [b"first", b"third"]


def test_start_again_is_a_no_op(kafka: Config) -> None:
    before = LocalKafka(kafka).status()

    after = LocalKafka(kafka).start(timeout_s=30)

    assert (after.running, after.pid) == (True, before.pid)


def test_a_second_broker_starts_and_stops_idempotently(tmp_path: Path) -> None:
    broker_port, controller_port = free_port(), free_port()
    config = load_config(
        "local",
        overrides={
            "lakehouse_root": str(tmp_path / "lakehouse"),
            "kafka": {
                "bootstrap_servers": f"localhost:{broker_port}",
                "broker_port": broker_port,
                "controller_port": controller_port,
                "partitions": 1,
                "broker_heap": "256m",
            },
        },
        environ={},
    )
    broker = LocalKafka(config)
    try:
        started = broker.start()
        assert (started.running, started.bootstrap) == (True, f"localhost:{broker_port}")
        assert started.data_dir.is_relative_to(tmp_path)
        assert broker.topic_partitions(config.kafka.topic) == 1
    finally:
        stopped = broker.stop()

    assert stopped is True
    assert broker.status().running is False
    assert broker.stop() is False
    assert not broker.pid_file.exists()
    assert port_is_free(broker_port, LOOPBACK)


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consume_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 30
) -> list[tuple[bytes, bytes]]:
    """Everything in ``topic`` from the beginning (no consumer group), in per-partition order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = sum(consumer.end_offsets(partitions).values())
        assert end == expected, f"{topic} holds {end} messages, expected {expected}"
        received: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while len(received) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received += [(r.key, r.value) for r in records]
        return received
    finally:
        consumer.close()

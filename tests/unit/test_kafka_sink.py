"""The Kafka sink on a fake producer: wire format, keys, counted outcomes, broker errors.

Also the JSON-lines reader, whose (key, value) pairs go straight into the sink.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, NoBrokersAvailable, NotLeaderForPartitionError
from kafka.future import Future

from spark_jobs.common.errors import BrokerUnavailableError, UsageError
from spark_jobs.produce.jsonl import JsonLinesFile
from spark_jobs.produce.kafka_sink import PRODUCER_DEFAULTS, KafkaSink, encode_value, message_key

pytestmark = pytest.mark.unit


class FakeProducer:
    """Keeps what was sent; ``flush`` acknowledges everything except values in ``reject``."""

    def __init__(self, reject: tuple[bytes, ...] = (), **settings: Any) -> None:
        self.settings = settings
        self.reject = reject
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.pending: list[tuple[bytes | None, Future]] = []
        self.closed = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        self.sent.append((topic, key, value))
        future = Future()
        self.pending.append((value, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        for value, future in self.pending:
            if value in self.reject:
                future.failure(NotLeaderForPartitionError())
            else:
                future.success(None)
        self.pending = []

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def make_sink(**kwargs: Any) -> tuple[KafkaSink, FakeProducer]:
    made: list[FakeProducer] = []

    def factory(**settings: Any) -> FakeProducer:
        made.append(FakeProducer(**kwargs, **settings))
        return made[0]

    return KafkaSink("host-a:9092,host-b:9092", "recsys.events", producer_factory=factory), made[0]


def test_records_go_out_as_compact_json_or_raw_bytes_with_user_keys() -> None:
    sink, producer = make_sink()
    sink.send("u1", {"user_id": "u1", "ctx": {"country": "DE"}, "title": "Café"})
    sink.send(b"u2", b"{not json")
    sink.send(None, "text line")
    assert producer.sent == [
        ("recsys.events", b"u1", '{"user_id":"u1","ctx":{"country":"DE"},"title":"Café"}'.encode()),
        ("recsys.events", b"u2", b"{not json"),
        ("recsys.events", None, b"text line"),
    ]


def test_producer_settings_favour_durability_and_throughput() -> None:
    _, producer = make_sink()
    assert producer.settings["bootstrap_servers"] == ["host-a:9092", "host-b:9092"]
    assert producer.settings["acks"] == "all"
    assert producer.settings["enable_idempotence"] is True
    assert producer.settings["retries"] > 0
    assert producer.settings["linger_ms"] > 0
    assert producer.settings["batch_size"] >= 256 * 1024
    assert {k: producer.settings[k] for k in PRODUCER_DEFAULTS} == PRODUCER_DEFAULTS


def test_outcomes_are_counted_from_callbacks() -> None:
    sink, producer = make_sink(reject=(b"bad",))
    for value in (b"a", b"bad", b"c"):
        sink.send(None, value)
    before = sink.stats()
    assert (before.submitted, before.sent, before.failed, before.pending) == (3, 0, 0, 3)
    after = sink.close()
    assert (after.submitted, after.sent, after.failed, after.pending, after.bytes) == (
        3,
        2,
        1,
        0,
        5,
    )
    assert after.errors == ("NotLeaderForPartitionError x1",)
    assert producer.closed


def test_unreachable_broker_is_a_named_error_with_a_hint() -> None:
    def no_broker(**_settings: Any) -> FakeProducer:
        raise NoBrokersAvailable()

    with pytest.raises(BrokerUnavailableError, match="Kafka at localhost:1 is not reachable") as err:
        KafkaSink("localhost:1", "t", producer_factory=no_broker)
    assert err.value.hint == "start it with `recsys stack up` or set RECSYS_KAFKA_BOOTSTRAP"


def test_timeouts_while_sending_are_broker_errors() -> None:
    class Stuck(FakeProducer):
        def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
            raise KafkaTimeoutError("Failed to update metadata after 30.0 secs.")

    sink = KafkaSink("localhost:1", "t", producer_factory=Stuck)
    with pytest.raises(BrokerUnavailableError, match=r"no partitions for topic t .*may not exist"):
        sink.send("u", b"{}")


def test_real_producer_without_broker_fails_fast() -> None:
    with pytest.raises(BrokerUnavailableError) as err:
        KafkaSink("127.0.0.1:1", "t", api_version_auto_timeout_ms=500, request_timeout_ms=1000)
    assert "127.0.0.1:1" in str(err.value)


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"user_id": "u7"}, b"u7"),
        ({"user_id": 7}, None),
        ({"user_id": ""}, None),
        ({}, None),
        (b'{"user_id":"u8","x":1}', b"u8"),
        (b"[1]", None),
        (b"{broken", None),
        (b"\xff\xfe", None),
    ],
)
def test_message_key_is_the_string_user_id(record: Any, key: bytes | None) -> None:
    assert message_key(record) == key


def test_encode_value_keeps_non_ascii_text() -> None:
    assert encode_value({"t": "é", "n": 1.5}) == '{"t":"é","n":1.5}'.encode()


def test_jsonl_file_sends_lines_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"user_id":"u1","a":1}\n\n{oops\r\n  \n[1]\n{"user_id": "u2"}')
    source = JsonLinesFile(path)
    assert list(source) == [
        (b"u1", b'{"user_id":"u1","a":1}'),
        (None, b"{oops"),
        (None, b"[1]"),
        (b"u2", b'{"user_id": "u2"}'),
    ]
    assert (source.records, source.keyed, source.blank_lines) == (4, 2, 2)


def test_jsonl_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        JsonLinesFile(tmp_path / "nope.jsonl")
    with pytest.raises(UsageError, match="is not a file"):
        JsonLinesFile(tmp_path)


def test_backpressure_bounds_records_awaiting_acknowledgement() -> None:
    class SlowAcks(FakeProducer):
        """Acknowledges from another thread, a little later, like the real sender thread."""

        def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
            future = super().send(topic, value, key)
            threading.Timer(0.001, future.success, args=(None,)).start()
            return future

    sink = KafkaSink("h:1", "t", max_pending=4, producer_factory=SlowAcks)
    peak = 0
    for i in range(40):
        sink.send(None, str(i))
        peak = max(peak, sink.stats().pending)
    deadline = time.monotonic() + 5
    while sink.stats().pending and time.monotonic() < deadline:
        time.sleep(0.001)
    assert peak <= 4
    assert (sink.stats().sent, sink.stats().failed) == (40, 0)

"""The one way producers write to Kafka: a thin, counted wrapper around kafka-python.

Delivery settings favour "no loss, no broker-side duplicates" (``acks="all"``, idempotence,
retries) and throughput (linger + large batches). Outcomes are counted from the producer's
callbacks, so ``sent`` means acknowledged by the broker, not merely queued. Connection problems
surface as ``BrokerUnavailableError`` with a hint, never as a kafka-python traceback.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    TopicAlreadyExistsError,
)

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.console import Progress
from spark_jobs.common.errors import BrokerUnavailableError, RecsysError

BROKER_HINT = "start it with `recsys stack up` or set RECSYS_KAFKA_BOOTSTRAP"

# Tuned for a local single broker and ~300-byte events: big batches, a short linger so a
# paced producer still delivers promptly, idempotence so retries never duplicate a record.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "retries": 10,
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "max_block_ms": 15_000,
    "request_timeout_ms": 30_000,
    "delivery_timeout_ms": 120_000,
}
# kafka-python 2.x has no bounded buffer (buffer_memory is gone): the sink itself stops queueing
# when this many records await acknowledgement, so memory stays flat however many are sent.
MAX_PENDING = 50_000
BACKPRESSURE_SLEEP_S = 0.005
MAX_ERRORS_KEPT = 5
# One encoder for all records: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
ABORT_CLOSE_S = 5.0


class ProducerLike(Protocol):
    """The part of ``KafkaProducer`` the sink uses (a fake one in tests and benchmarks)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclass(frozen=True)
class SinkStats:
    """Outcome of a sink so far: ``submitted`` = handed to the producer, ``sent`` = acknowledged."""

    submitted: int
    sent: int
    failed: int
    bytes: int
    errors: tuple[str, ...]

    @property
    def pending(self) -> int:
        return self.submitted - self.sent - self.failed


def encode_value(value: Mapping[str, Any] | bytes | str) -> bytes:
    """Wire form of a record: dicts become compact UTF-8 JSON; bytes go as given."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return _ENCODER.encode(value).encode("utf-8")


def message_key(record: Mapping[str, Any] | bytes | str) -> bytes | None:
    """The partitioning key of a record: its ``user_id`` when it has a string one, else None.

    Raw records are parsed for it; a record that does not parse gets no key (Kafka then spreads
    it over partitions, and the stream quarantines it wherever it lands).
    """
    if isinstance(record, bytes | str):
        try:
            parsed = json.loads(record)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        record = parsed if isinstance(parsed, dict) else {}
    user_id = record.get(names.USER_ID)
    return user_id.encode("utf-8") if isinstance(user_id, str) and user_id else None


def ensure_topic(config: Config, timeout_s: float = 15.0) -> bool:
    """Create the configured events topic if it is missing; True if it was created now.

    Brokers here do not auto-create topics (a typo should fail, not fork the stream), so the
    producers create the one topic they were told to use, with the configured partitions and
    replication. An existing topic is left as it is, whatever its partition count.
    """
    kafka = config.kafka
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers.split(","),
            security_protocol=kafka.security_protocol,
            client_id="recsys-produce",
            request_timeout_ms=int(timeout_s * 1000),
            api_version_auto_timeout_ms=int(min(timeout_s, 5.0) * 1000),
        )
    except (NoBrokersAvailable, KafkaConnectionError, KafkaTimeoutError) as err:
        raise BrokerUnavailableError(
            f"Kafka at {kafka.bootstrap_servers} is not reachable: {err}", hint=BROKER_HINT
        ) from None
    try:
        if kafka.topic in admin.list_topics():
            return False
        topic = NewTopic(kafka.topic, kafka.partitions, kafka.replication_factor)
        admin.create_topics([topic], timeout_ms=int(timeout_s * 1000))
        return True
    except TopicAlreadyExistsError:
        return False  # created by someone else meanwhile
    except KafkaError as err:
        raise RecsysError(
            f"topic {kafka.topic} is missing and could not be created at {kafka.bootstrap_servers}: {err!r}",
            hint=f"create it ({kafka.partitions} partitions) or fix RECSYS_KAFKA__TOPIC",
        ) from None
    finally:
        admin.close()


class KafkaSink:
    """Send records to one topic, counting acknowledgements and failures.

    Use as a context manager, or call ``close()``; ``flush()`` waits for every queued record.
    ``producer_factory`` builds the underlying producer from keyword settings (default:
    ``KafkaProducer``); tests pass a fake one to run without a broker.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        security_protocol: str = "PLAINTEXT",
        progress: Progress | None = None,
        max_pending: int = MAX_PENDING,
        producer_factory: Callable[..., ProducerLike] = KafkaProducer,
        **overrides: Any,
    ) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.progress = progress
        self.max_pending = max_pending
        self.submitted = 0
        self.sent = 0
        self.failed = 0
        self.bytes = 0
        self._errors: Counter[str] = Counter()
        settings = {
            **PRODUCER_DEFAULTS,
            "bootstrap_servers": bootstrap_servers.split(","),
            "security_protocol": security_protocol,
            **overrides,
        }
        self._stuck_after_s = settings["delivery_timeout_ms"] / 1000 + 30
        try:
            self._producer = producer_factory(**settings)
        except (NoBrokersAvailable, KafkaConnectionError, KafkaTimeoutError) as err:
            raise self._unavailable(err) from None

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> KafkaSink:
        """A sink for the configured bootstrap servers and events topic."""
        return cls(
            config.kafka.bootstrap_servers,
            config.kafka.topic,
            security_protocol=config.kafka.security_protocol,
            **kwargs,
        )

    def send(self, key: str | bytes | None, value: Mapping[str, Any] | bytes | str) -> None:
        """Queue one record; ``key`` is the user id (str or bytes) or None."""
        if self.submitted - self.sent - self.failed >= self.max_pending:
            self._wait_for_acks()
        data = encode_value(value)
        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        try:
            future = self._producer.send(self.topic, value=data, key=key_bytes)
        except KafkaTimeoutError as err:
            # The broker answered at start-up, so missing metadata mostly means a missing topic.
            raise BrokerUnavailableError(
                f"Kafka at {self.bootstrap_servers} gave no partitions for topic {self.topic} "
                f"({err}); the topic may not exist",
                hint="`recsys stack up` creates the configured topic; check RECSYS_KAFKA__TOPIC",
            ) from None
        except (NoBrokersAvailable, KafkaConnectionError) as err:
            raise self._unavailable(err) from None
        future.add_callback(self._on_sent)
        future.add_errback(self._on_failed)
        self.submitted += 1
        self.bytes += len(data)
        if self.progress is not None:
            self.progress.advance()

    def flush(self, timeout_s: float | None = None) -> SinkStats:
        """Wait until every queued record is acknowledged or failed; return the counts."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError as err:
            raise self._unavailable(err, what="did not acknowledge all records in time") from None
        return self.stats()

    def close(self, timeout_s: float | None = None) -> SinkStats:
        """Flush and release the producer's connections and threads."""
        try:
            self.flush(timeout_s)
        finally:
            self._producer.close(timeout=timeout_s)
        return self.stats()

    def stats(self) -> SinkStats:
        errors = tuple(f"{name} x{count}" for name, count in self._errors.most_common(MAX_ERRORS_KEPT))
        return SinkStats(self.submitted, self.sent, self.failed, self.bytes, errors)

    def __enter__(self) -> KafkaSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:  # interrupted or failed: deliver what is queued if it goes quickly, then let go
            self._producer.close(timeout=ABORT_CLOSE_S)

    def _wait_for_acks(self) -> None:
        """Let the sender thread drain to half of ``max_pending``; failures count as drained.

        Records fail on their own after ``delivery_timeout_ms``; waiting longer than that
        means the producer is stuck, which is reported rather than waited on forever.
        """
        deadline = time.monotonic() + self._stuck_after_s
        while self.submitted - self.sent - self.failed > self.max_pending // 2:
            if time.monotonic() > deadline:
                raise self._unavailable(
                    KafkaTimeoutError(f"no acknowledgement for {self._stuck_after_s:.0f}s"),
                    what="stopped acknowledging records",
                )
            time.sleep(BACKPRESSURE_SLEEP_S)

    def _on_sent(self, _metadata: object) -> None:
        self.sent += 1

    def _on_failed(self, error: BaseException) -> None:
        self.failed += 1
        self._errors[type(error).__name__] += 1

    def _unavailable(self, err: Exception, what: str = "is not reachable") -> BrokerUnavailableError:
        return BrokerUnavailableError(
            f"Kafka at {self.bootstrap_servers} {what} (topic {self.topic}): {err}",
            hint=BROKER_HINT,
        )

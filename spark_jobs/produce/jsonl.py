"""JSON-lines files as Kafka records, byte for byte (backfills, replays, tests).

Lines are not validated or re-encoded: a malformed line is sent as it is, and the ingest stream
quarantines it with its reason, exactly as it would a bad record from an app. Only the line
terminator is removed, and blank lines are skipped (they are layout, not records).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from spark_jobs.common.errors import UsageError
from spark_jobs.produce.kafka_sink import message_key


class JsonLinesFile:
    """The records of one file: iterate for ``(key, value)`` pairs; counts fill in as it goes.

    ``key`` is the line's ``user_id`` when the line parses as an object with a string one,
    else None.
    """

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise UsageError(f"file {path} does not exist", hint="pass a JSON-lines file with --path")
        if not path.is_file():
            raise UsageError(f"{path} is not a file", hint="pass a JSON-lines file with --path")
        self.path = path
        self.records = 0
        self.keyed = 0
        self.blank_lines = 0

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes]]:
        with self.path.open("rb") as handle:
            for line in handle:
                value = line.rstrip(b"\n").removesuffix(b"\r")
                if not value.strip():
                    self.blank_lines += 1
                    continue
                key = message_key(value)
                self.records += 1
                self.keyed += key is not None
                yield key, value

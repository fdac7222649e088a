"""The Spark validator and the producers' Python validator must agree record by record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from spark_jobs.contract.events import Limits, validate_event
from spark_jobs.ingest.validate import REASONS, validate_records

pytestmark = pytest.mark.spark

KAFKA_TS = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF_MS = int(KAFKA_TS.timestamp() * 1000)
LIMITS = Limits(max_event_bytes=600, max_id_length=40, max_future_skew_ms=3_600_000)
UUID = "0d5e1f8a-3c1b-4c8e-9a53-2f7f4f9f0a11"


def event(**changes: object) -> str:
    base: dict[str, object] = {
        "event_id": UUID,
        "event_type": "click",
        "user_id": "u1",
        "item_id": "i1",
        "event_ts": "2026-01-01T11:00:00Z",
        "schema_version": 1,
    }
    for key, value in changes.items():
        if value is ...:
            base.pop(key, None)
        else:
            base[key] = value
    return json.dumps(base)


CASES: list[tuple[str, list[str]]] = [
    (event(), []),
    (
        event(
            event_ts=REF_MS - 5,
            session_id="s",
            dwell_ms=0,
            scroll_depth=1,
            value=4.5,
            context={"device": "tv", "country": "FR", "referrer": "home", "hour_of_day": 23},
        ),
        [],
    ),
    (event(event_ts="2026-01-01 11:00:00.123456+02:00", context=None, value=None), []),
    (event(extra_field={"nested": [1, 2]}), []),
    ("x" * 700, ["oversized"]),
    ("{not json", ["invalid_json"]),
    ('{"a": 1, "a": 2}', ["invalid_json"]),
    ('{"value": NaN}', ["invalid_json"]),
    (event() + "}", ["invalid_json"]),
    (event() + " trailing", ["invalid_json"]),
    (event() + "] x", ["invalid_json"]),
    (event() + "," + event(), ["invalid_json"]),
    (event() + ",0", ["invalid_json"]),
    ("", ["invalid_json"]),
    ("null", ["not_an_object"]),
    ("  " + event() + "\n", []),
    ("[1, 2]", ["not_an_object"]),
    ('"just a string"', ["not_an_object"]),
    (event(schema_version=2, event_type="nope"), ["unsupported_schema_version"]),
    (event(schema_version=...), ["missing_field:schema_version"]),
    (event(schema_version="1"), ["wrong_type:schema_version"]),
    (event(schema_version=1.0), ["wrong_type:schema_version"]),
    (
        event(event_id=..., user_id=None, item_id=""),
        ["missing_field:event_id", "missing_field:user_id", "missing_field:item_id"],
    ),
    (
        event(user_id=42, item_id=["i"], event_type=True),
        ["wrong_type:event_type", "wrong_type:user_id", "wrong_type:item_id"],
    ),
    (event(event_id="not-a-uuid"), ["invalid_format:event_id"]),
    (event(event_id=UUID + "\n"), ["invalid_format:event_id"]),
    (event(event_id=UUID + "-0000"), ["too_long:event_id"]),
    (event(user_id="u" * 41, session_id="s" * 41), ["too_long:user_id", "too_long:session_id"]),
    (event(event_type="hover"), ["unknown_event_type"]),
    (event(event_ts="2026-01-01T11:00:00"), ["invalid_format:event_ts"]),
    (event(event_ts="2026-13-01T11:00:00Z"), ["invalid_format:event_ts"]),
    (event(event_ts="yesterday"), ["invalid_format:event_ts"]),
    (event(event_ts=1.5e12), ["wrong_type:event_ts"]),
    (event(event_ts=-1), ["out_of_range:event_ts"]),
    (event(event_ts=REF_MS + 3_600_001), ["future_event_ts"]),
    (event(event_ts=REF_MS + 3_600_000), []),
    (event(event_ts="2026-01-01T14:00:00+01:00"), []),
    (event(event_ts="2026-01-01T14:00:01+01:00"), ["future_event_ts"]),
    (
        event(dwell_ms=-5, scroll_depth=1.01, value="9"),
        ["out_of_range:dwell_ms", "out_of_range:scroll_depth", "wrong_type:value"],
    ),
    (event(dwell_ms=1.5), ["wrong_type:dwell_ms"]),
    (event(context="mobile"), ["wrong_type:context"]),
    (
        event(context={"device": "watch", "hour_of_day": 24, "country": 7}),
        [
            "out_of_range:context.device",
            "wrong_type:context.country",
            "out_of_range:context.hour_of_day",
        ],
    ),
    (
        event(event_ts=REF_MS + 9_000_000, context={"hour_of_day": -1}, schema_version=None),
        ["future_event_ts", "out_of_range:context.hour_of_day", "missing_field:schema_version"],
    ),
]


def test_python_validator_expectations() -> None:
    for raw, expected in CASES:
        assert validate_event(raw, REF_MS, LIMITS) == expected, raw


def test_spark_agrees_with_python_validator(spark) -> None:
    rows = [(raw, KAFKA_TS) for raw, _ in CASES]
    df = spark.createDataFrame(rows, "value string, kafka_ts timestamp")
    got = [r[REASONS] for r in validate_records(df, LIMITS).select(REASONS).collect()]
    expected = [validate_event(raw, REF_MS, LIMITS) for raw, _ in CASES]
    mismatches = [(raw, e, g) for (raw, _), e, g in zip(CASES, expected, got, strict=True) if e != g]
    assert not mismatches, "\n".join(f"{r!r}: python={e} spark={g}" for r, e, g in mismatches)

"""The pure-Python contract validator: a valid event per type, a minimal bad record per reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spark_jobs.contract.events import EVENT_TYPES, Limits, event_ts_millis, validate_event

pytestmark = pytest.mark.unit

REFERENCE_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
LIMITS = Limits(max_event_bytes=2048, max_id_length=40, max_future_skew_ms=3_600_000)
EXTRA_BY_TYPE: dict[str, dict[str, Any]] = {
    "dwell": {"dwell_ms": 12_000},
    "scroll": {"scroll_depth": 0.75},
    "rating": {"value": 4},
    "purchase": {"value": 9.99},
}


def good(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "0b6f1c2e-8a44-4c1b-9a0e-3b5f7d2c1e90",
        "event_type": "view",
        "user_id": "u1",
        "item_id": "i1",
        "session_id": "s1",
        "event_ts": "2023-11-14T22:00:00.000Z",
        "context": {"device": "mobile", "country": "DE", "referrer": "home", "hour_of_day": 23},
        "schema_version": 1,
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


def check(raw: Any) -> list[str]:
    return validate_event(raw, REFERENCE_MS, LIMITS)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_one_valid_event_of_each_type_passes(event_type: str) -> None:
    event = good(event_type=event_type, **EXTRA_BY_TYPE.get(event_type, {}))
    assert check(event) == []
    assert check(json.dumps(event)) == []
    assert check(json.dumps(event).encode("utf-8")) == []


def test_optional_fields_may_be_absent() -> None:
    minimal = {k: good()[k] for k in ("event_id", "event_type", "user_id", "item_id", "event_ts")}
    assert check({**minimal, "schema_version": 1}) == []


@pytest.mark.parametrize(
    ("raw", "reasons"),
    [
        pytest.param(json.dumps(good(pad="x" * 3000)), ["oversized"], id="oversized"),
        pytest.param(b'{"event_id": "x"', ["invalid_json"], id="invalid_json-truncated"),
        pytest.param(b"\xff\xfe\x00", ["invalid_json"], id="invalid_json-not-utf8"),
        pytest.param("[1, 2]", ["not_an_object"], id="not_an_object-list"),
        pytest.param('"view"', ["not_an_object"], id="not_an_object-string"),
        pytest.param(good(schema_version=2), ["unsupported_schema_version"], id="version-2"),
        pytest.param(
            good(schema_version=2, user_id=5),
            ["unsupported_schema_version"],
            id="version-2-wins-over-other-reasons",
        ),
        pytest.param(good(user_id=None), ["missing_field:user_id"], id="missing-user"),
        pytest.param(good(user_id=""), ["missing_field:user_id"], id="empty-user"),
        pytest.param(good(schema_version=None), ["missing_field:schema_version"], id="no-ver"),
        pytest.param(good(item_id=7), ["wrong_type:item_id"], id="wrong_type-item"),
        pytest.param(good(dwell_ms="12"), ["wrong_type:dwell_ms"], id="wrong_type-dwell"),
        pytest.param(good(dwell_ms=1.5), ["wrong_type:dwell_ms"], id="wrong_type-dwell-float"),
        pytest.param(good(value=True), ["wrong_type:value"], id="wrong_type-bool-value"),
        pytest.param(good(schema_version="1"), ["wrong_type:schema_version"], id="version-str"),
        pytest.param(good(context="mobile"), ["wrong_type:context"], id="wrong_type-context"),
        pytest.param(good(user_id="u" * 41), ["too_long:user_id"], id="too_long"),
        pytest.param(good(event_id="not-a-uuid"), ["invalid_format:event_id"], id="bad-uuid"),
        pytest.param(good(event_ts="2023-11-14T22:00:00"), ["invalid_format:event_ts"], id="ts-no-zone"),
        pytest.param(good(event_ts="yesterday"), ["invalid_format:event_ts"], id="ts-text"),
        pytest.param(good(dwell_ms=-1), ["out_of_range:dwell_ms"], id="dwell-negative"),
        pytest.param(good(scroll_depth=1.01), ["out_of_range:scroll_depth"], id="scroll-gt-1"),
        pytest.param(good(event_ts=-5), ["out_of_range:event_ts"], id="ts-negative"),
        pytest.param(good(context={"hour_of_day": 25}), ["out_of_range:context.hour_of_day"], id="hour-25"),
        pytest.param(good(context={"device": "fridge"}), ["out_of_range:context.device"], id="device"),
        pytest.param(good(event_type="hover"), ["unknown_event_type"], id="event-type"),
        pytest.param(good(event_ts=REFERENCE_MS + 3_600_001), ["future_event_ts"], id="future-millis"),
        pytest.param(good(event_ts="2023-11-15T00:00:00Z"), ["future_event_ts"], id="future-iso"),
    ],
)
def test_each_reason_from_a_minimal_bad_record(raw: Any, reasons: list[str]) -> None:
    assert check(raw) == reasons


def test_several_problems_are_all_reported_in_field_order() -> None:
    raw = good(event_id=None, item_id=3, dwell_ms=-2, context={"device": "fridge"})
    raw.pop("schema_version")
    assert check(raw) == [
        "missing_field:event_id",
        "wrong_type:item_id",
        "out_of_range:dwell_ms",
        "out_of_range:context.device",
        "missing_field:schema_version",
    ]


@pytest.mark.parametrize(
    ("event_ts", "millis"),
    [
        ("2023-11-14T22:00:00Z", 1_699_999_200_000),
        ("2023-11-14T22:00:00.123Z", 1_699_999_200_123),
        ("2023-11-14T23:00:00+01:00", 1_699_999_200_000),
        ("2023-11-14 22:00:00.5-00:00", 1_699_999_200_500),
        (1_699_999_200_000, 1_699_999_200_000),
    ],
)
def test_iso_with_zone_and_epoch_millis_are_both_accepted(event_ts: Any, millis: int) -> None:
    assert check(good(event_ts=event_ts)) == []
    assert event_ts_millis(event_ts) == millis


def test_iso_without_zone_is_rejected_and_has_no_millis() -> None:
    assert check(good(event_ts="2023-11-14T22:00:00.123")) == ["invalid_format:event_ts"]
    assert event_ts_millis("2023-11-14T22:00:00.123") is None


def test_future_is_judged_against_reference_ms() -> None:
    ts = REFERENCE_MS + 2 * 3_600_000  # two hours ahead; the skew allowed is one hour
    assert check(good(event_ts=ts)) == ["future_event_ts"]
    assert validate_event(good(event_ts=ts), ts - 3_600_000, LIMITS) == []
    assert check(good(event_ts=REFERENCE_MS + 3_600_000)) == []  # exactly at the limit: fine


def test_bool_is_not_an_integer_for_epoch_millis() -> None:
    assert check(good(event_ts=True)) == ["wrong_type:event_ts"]

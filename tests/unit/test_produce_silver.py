"""Contract events -> flat silver rows (the pure half of ``spark_jobs.produce.silver``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from spark_jobs.contract.events import validate_event
from spark_jobs.produce.silver import events_frame, user_events

pytestmark = pytest.mark.unit

INGEST = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
T0 = int(datetime(2026, 11, 1, 10, 0, tzinfo=UTC).timestamp() * 1000)


def test_events_frame_types_every_column_and_keeps_nulls():
    events = [
        {
            "event_id": "00000000-0000-4000-8000-000000000001",
            "event_type": "dwell",
            "user_id": "u1",
            "item_id": "i1",
            "session_id": "s1",
            "event_ts": "2026-11-01T10:00:00.250Z",
            "dwell_ms": 1500,
            "context": {"device": "mobile", "country": "DE", "referrer": "home", "hour_of_day": 11},
            "schema_version": 1,
        },
        {
            "event_id": "00000000-0000-4000-8000-000000000002",
            "event_type": "rating",
            "user_id": "u2",
            "item_id": "i2",
            "event_ts": T0 + 60_000,
            "value": 4.0,
            "schema_version": 1,
        },
    ]
    expected = pd.DataFrame(
        {
            "event_id": [e["event_id"] for e in events],
            "event_type": ["dwell", "rating"],
            "user_id": ["u1", "u2"],
            "item_id": ["i1", "i2"],
            "session_id": ["s1", None],
            "event_ts": pd.to_datetime([T0 + 250, T0 + 60_000], unit="ms", utc=True),
            "dwell_ms": pd.array([1500, None], dtype="Int64"),
            "scroll_depth": [float("nan"), float("nan")],
            "value": [float("nan"), 4.0],
            "_ctx_device": ["mobile", None],
            "_ctx_country": ["DE", None],
            "_ctx_referrer": ["home", None],
            "_ctx_hour_of_day": pd.array([11, None], dtype="Int32"),
            "schema_version": pd.array([1, 1], dtype="Int32"),
            "ingest_ts": pd.Series([pd.Timestamp(INGEST)] * 2, dtype="datetime64[us, UTC]"),
        }
    )
    pd.testing.assert_frame_equal(events_frame(events, INGEST), expected)


def test_events_frame_refuses_naive_ingest_time_and_bad_event_ts():
    good = user_events("u1", ["i1"], T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        events_frame(good, datetime(2026, 11, 1))
    with pytest.raises(ValueError, match="no valid event_ts"):
        events_frame([{**good[0], "event_ts": "yesterday"}], INGEST)


def test_user_events_are_valid_contract_events_with_stable_ids():
    events = user_events("u1", ["i1", "i2"], T0, event_type="like", gap_ms=1_000)
    assert [validate_event(e, reference_ms=T0) for e in events] == [[], []]
    assert [(e["item_id"], e["event_ts"]) for e in events] == [
        ("i1", "2026-11-01T10:00:00.000+00:00"),
        ("i2", "2026-11-01T10:00:01.000+00:00"),
    ]
    assert events == user_events("u1", ["i1", "i2"], T0, event_type="like", gap_ms=1_000)
    assert len({e["event_id"] for e in events}) == 2
    with pytest.raises(ValueError, match="unknown event_type"):
        user_events("u1", ["i1"], T0, event_type="poke")

"""The scorer's per-user state: exact decay whatever the order, bounded history, context, impressions,
and the format check that refuses a state written by another scorer version."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from spark_jobs.common import names
from spark_jobs.serving.user_state import (
    COUNTRY,
    DEVICE,
    HOUR,
    STATE_FORMAT,
    TS,
    StateFormatError,
    UserState,
    bound,
    decayed_strengths,
    fold_events,
    fold_served,
)
from spark_jobs.training.interactions import WEIGHT

pytestmark = pytest.mark.unit

DAY = 86_400.0
HALF_LIFE_DAYS = 10.0


def events(rows: list[tuple[str, float, float, str]]) -> pd.DataFrame:
    """(item, weight, ts, device) -> the processor's event rows."""
    return pd.DataFrame(
        {
            names.ITEM_ID: [r[0] for r in rows],
            WEIGHT: [r[1] for r in rows],
            TS: [r[2] for r in rows],
            DEVICE: [r[3] for r in rows],
            HOUR: [int(r[2] // 3600 % 24) for r in rows],
            COUNTRY: ["US"] * len(rows),
        }
    )


def test_decay_is_exact_whatever_order_and_batching_events_arrive_in():
    rows = [("a", 2.0, 0.0, "tv"), ("a", 4.0, 10 * DAY, "mobile"), ("b", -0.5, 5 * DAY, "desktop")]
    at_once, late_first, one_by_one = UserState(), UserState(), UserState()
    fold_events(at_once, events(rows), HALF_LIFE_DAYS, 500)
    fold_events(late_first, events(rows[1:]), HALF_LIFE_DAYS, 500)
    fold_events(late_first, events(rows[:1]), HALF_LIFE_DAYS, 500)
    for row in reversed(rows):
        fold_events(one_by_one, events([row]), HALF_LIFE_DAYS, 500)
    # Pair "a" is stored as of its newest event: the day-0 event counts one half-life less.
    expected = {"a": (4.0 + 2.0 * 0.5, 10 * DAY), "b": (-0.5, 5 * DAY)}
    for state in (at_once, late_first, one_by_one):
        assert state.pairs.keys() == expected.keys()
        for item, (value, last) in expected.items():
            assert state.pairs[item] == pytest.approx((value, last))
        assert (state.device, state.newest_ts) == ("mobile", 10 * DAY)  # the newest event's context
    # Scoring 10 days after the newest event halves every stored value.
    values = decayed_strengths(
        pd.Series([5.0, -0.5]).to_numpy(), pd.Series([10 * DAY, 5 * DAY]).to_numpy(), 20 * DAY, HALF_LIFE_DAYS
    )
    assert values.tolist() == pytest.approx([2.5, -0.5 * 0.5**1.5])


def test_history_is_bounded_to_the_most_recent_pairs_and_positives_reset_impressions():
    state = UserState()
    fold_served(state, ["a", "a", "c", "z"])
    fold_events(state, events([(i, 1.0, float(n), "tv") for n, i in enumerate("abcd")]), HALF_LIFE_DAYS, 2)
    assert sorted(state.pairs) == ["c", "d"]
    assert state.served == {"z": 1}  # a positive event on a served item resets its fatigue count
    fold_served(state, ["z"] * 3 + ["y"] * 2 + ["x"])
    bound(state, 2)
    assert state.served == {"z": 4, "y": 2}


def test_a_late_event_does_not_replace_the_newer_context():
    state = UserState()
    fold_events(state, events([("a", 1.0, 100.0, "mobile")]), HALF_LIFE_DAYS, 500)
    fold_events(state, events([("b", 1.0, 50.0, "tv")]), HALF_LIFE_DAYS, 500)
    assert (state.device, state.newest_ts) == ("mobile", 100.0)
    assert set(state.pairs) == {"a", "b"}


def test_the_stored_form_round_trips_and_another_format_is_refused_in_one_line():
    state = UserState()
    fold_events(
        state, events([("a", 1.5, 100.0, "mobile"), ("b", -2.0, 90.0, "mobile")]), HALF_LIFE_DAYS, 500
    )
    fold_served(state, ["c"])
    stored = state.encoded()
    assert stored[0] == STATE_FORMAT
    again = UserState.stored(stored, "/ck/scorer")
    assert again == state
    assert UserState.of(json.loads(state.json())) == state

    with pytest.raises(StateFormatError) as err:
        UserState.stored((1, stored[1]), "/ck/scorer")
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"scorer state at /ck/scorer was written by state format 1; this scorer needs {STATE_FORMAT}: "
        "run `recsys score --reset-state` to rebuild it from silver"
    )


def test_pairs_beyond_the_history_stay_as_ids_so_consumed_items_are_never_served_back():
    state = UserState()
    fold_events(state, events([(i, 1.0, float(n), "tv") for n, i in enumerate("abcd")]), HALF_LIFE_DAYS, 2, 3)
    assert sorted(state.pairs) == ["c", "d"]
    assert state.older == {"b": 1.0}  # the most recent of the evicted, up to max_seen in all
    fold_events(state, events([("b", 2.0, 10.0, "tv")]), HALF_LIFE_DAYS, 2, 3)
    assert sorted(state.pairs) == ["b", "d"] and state.pairs["b"] == (2.0, 10.0)  # a fresh pair
    assert state.older == {"c": 2.0}
    assert UserState.of(json.loads(state.json())) == state

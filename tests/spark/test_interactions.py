"""Interaction transforms: event weights, time decay and aggregation on inline rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from spark_jobs.contract.events import silver_schema
from spark_jobs.training.interactions import (
    EVENT_WEIGHTS,
    aggregate_interactions,
    build_interactions,
    user_context,
    with_event_weight,
    with_time_decay,
)
from spark_jobs.training.matrix import aggregate_pairs, build_matrix

pytestmark = pytest.mark.spark

REF = datetime(2024, 1, 31, tzinfo=UTC)


def event(n, etype, user="u1", item="i1", age_days=0.0, dwell=None, depth=None, value=None, device=None):
    ts = REF - timedelta(days=age_days)
    return (
        f"00000000-0000-0000-0000-{n:012d}",
        etype,
        user,
        item,
        None,
        ts,
        dwell,
        depth,
        value,
        (device, None, None, 12),
        1,
        ts.date(),
        ts,
    )


@pytest.fixture
def events(spark):
    rows = [
        event(1, "view"),
        event(2, "click"),
        event(3, "dwell", dwell=30_000),
        event(4, "dwell", dwell=600_000),
        event(5, "scroll", depth=0.5),
        event(6, "like"),
        event(7, "rating", value=5.0),
        event(8, "purchase"),
        event(9, "skip"),
        event(10, "dislike"),
        event(11, "rating"),
    ]
    return spark.createDataFrame(rows, schema=silver_schema())


def test_event_weights_follow_the_documented_order(events):
    got = {r["event_id"][-2:]: r["weight"] for r in with_event_weight(events).collect()}
    assert got["01"] == 1.0 and got["02"] == 2.0
    assert got["03"] == pytest.approx(1.0 + 3.0 * 0.5)  # half of full dwell
    assert got["04"] == pytest.approx(4.0)  # capped
    assert got["05"] == pytest.approx(1.0)  # 0.5 + depth 0.5
    assert got["06"] == 4.0 and got["07"] == 5.0 and got["08"] == 6.0
    assert got["09"] == EVENT_WEIGHTS["skip"] < 0 and got["10"] == EVENT_WEIGHTS["dislike"] < 0
    assert got["11"] == 3.0  # rating without value
    assert got["01"] < got["02"] < got["04"] <= got["06"] < got["08"]


def test_time_decay_halves_weight_per_half_life(spark):
    df = spark.createDataFrame(
        [event(1, "like", age_days=0), event(2, "like", age_days=30), event(3, "like", age_days=-2)],
        schema=silver_schema(),
    )
    out = with_time_decay(with_event_weight(df), REF, half_life_days=30.0).orderBy("event_id")
    assert [round(r["weight"], 6) for r in out.collect()] == [4.0, 2.0, 4.0]  # future -> age 0
    same = with_time_decay(with_event_weight(df), REF, half_life_days=0).orderBy("event_id")
    assert [r["weight"] for r in same.collect()] == [4.0, 4.0, 4.0]


def test_aggregate_sums_and_keeps_latest_time(spark):
    df = spark.createDataFrame(
        [
            event(1, "view", age_days=2),
            event(2, "click", age_days=1),
            event(3, "view", item="i2"),
            event(4, "dislike", user="u2"),
        ],
        schema=silver_schema(),
    )
    out = build_interactions(df, REF, half_life_days=0).toPandas().sort_values(["user_id", "item_id"])
    expected = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i1", "i2", "i1"],
            "strength": [3.0, 1.0, -2.0],
            "n_events": [2, 1, 1],
            "timestamp": [(REF - timedelta(days=1)).timestamp(), REF.timestamp(), REF.timestamp()],
        }
    )
    pd.testing.assert_frame_equal(out.reset_index(drop=True), expected, check_dtype=False)
    assert set(aggregate_interactions(with_event_weight(df)).columns) == {
        "user_id",
        "item_id",
        "strength",
        "n_events",
        "timestamp",
    }


def test_user_context_mode_device_and_mean_hour(spark):
    df = spark.createDataFrame(
        [event(1, "view", device="tv"), event(2, "view", device="tv"), event(3, "view", device="mobile")],
        schema=silver_schema(),
    )
    row = user_context(df).collect()[0]
    assert (row["user_id"], row["device"], row["hour_of_day"]) == ("u1", "tv", 12.0)


def test_missing_columns_are_named(spark):
    from spark_jobs.common.errors import DataFrameMissingColumnError

    with pytest.raises(DataFrameMissingColumnError, match="event_type"):
        with_event_weight(spark.createDataFrame([("u",)], "user_id string"))


def test_matrix_keeps_only_positive_pairs_and_widens_catalog():
    df = pd.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "item_id": ["x", "y", "x"],
            "strength": [2.0, -1.0, 1.0],
            "timestamp": [10.0, 20.0, 30.0],
        }
    )
    m = build_matrix(df, item_ids=["z", "x", "y"])
    assert list(m.item_ids) == ["z", "x", "y"]
    assert m.strength.toarray().tolist() == [[0.0, 2.0, 0.0], [0.0, 1.0, 0.0]]
    assert m.reference_ts == 30.0
    assert len(aggregate_pairs(df)) == 3  # the negative pair stays for ALS

"""Feature transforms on inline rows: exact decayed values, windows, last-N order, folds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common.config import FeatureSettings, load_config
from spark_jobs.common.errors import ConfigError, DataFrameMissingColumnError
from spark_jobs.contract.events import silver_schema
from spark_jobs.features.columns import BATCH_SESSIONS, ITEM_FEATURES_SCHEMA, USER_FEATURES_SCHEMA
from spark_jobs.features.transforms import (
    ctr,
    decay_factor,
    decayed_as_of,
    events_in_window,
    fold_item_features,
    fold_user_features,
    item_batch_features,
    user_batch_features,
    with_categories,
)
from tests.builders import silver_event

pytestmark = pytest.mark.spark

# Half-lives that make every decayed value an exact binary fraction.
SETTINGS = FeatureSettings(
    affinity_half_life_hours=24.0,
    popularity_half_life_hours=24.0,
    trending_half_life_hours=12.0,
    last_n=3,
    ctr_prior_clicks=1.0,
    ctr_prior_views=20.0,
)
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # the batch's newest event time
UPDATED = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
OLD_UPDATE = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
ITEMS_SCHEMA = "item_id string, categories array<string>"
BATCH_SCHEMA = T.StructType(
    [*USER_FEATURES_SCHEMA.fields, T.StructField(BATCH_SESSIONS, T.ArrayType(T.StringType()))]
)


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _events(spark, rows: list[tuple]):
    return spark.createDataFrame(rows, silver_schema())


def _user_row(user: str, **values: object) -> dict[str, object]:
    defaults: dict[str, object] = {
        "user_id": user,
        "n_events_7d": 0,
        "daily_events": {},
        "category_affinity": {},
        "last_items": [],
        "last_items_ts": [],
        "n_sessions": 0,
        "n_session_events": 0,
        "mean_events_per_session": None,
        "last_session_id": None,
        "device": None,
        "country": None,
        "decay_ts": T0,
        "updated_ts": UPDATED,
    }
    return {**defaults, **values}


def _frame(spark, rows: list[dict[str, object]], schema: T.StructType):
    return spark.createDataFrame([tuple(r.get(f) for f in schema.fieldNames()) for r in rows], schema)


def _collect(df, key: str) -> list[dict[str, object]]:
    return [r.asDict(recursive=True) for r in df.orderBy(key).collect()]


def test_decay_halves_every_half_life_and_readers_move_values_forward(spark) -> None:
    six_hours = timedelta(hours=6)
    row = spark.range(1).select(
        decay_factor(F.lit(T0), F.lit(T0), 6.0).alias("same_time"),
        decay_factor(F.lit(T0 - six_hours), F.lit(T0), 6.0).alias("one_half_life"),
        decay_factor(F.lit(T0 - 2 * six_hours), F.lit(T0), 6.0).alias("two_half_lives"),
        decay_factor(F.lit(T0 - timedelta(seconds=1)), F.lit(T0), 1 / 3600).alias("one_second"),
        decayed_as_of(F.lit(8.0), F.lit(T0), F.lit(T0 + 3 * six_hours), 6.0).alias("read_later"),
    )
    assert row.first().asDict() == {
        "same_time": 1.0,
        "one_half_life": 0.5,
        "two_half_lives": 0.25,
        "one_second": 0.5,
        "read_later": 1.0,
    }


def test_ctr_is_smoothed_towards_the_prior(spark) -> None:
    rows = spark.createDataFrame([(0, 0), (3, 10), (50, 100)], "clicks long, views long")
    values = [r[0] for r in rows.select(ctr(F.col("clicks"), F.col("views"), SETTINGS)).collect()]
    assert values == [1 / 20, 4 / 30, 51 / 120]


def test_events_in_window_counts_the_seven_days_ending_on_the_reference_day(spark) -> None:
    daily = {date(2026, 3, 10): 2, date(2026, 3, 4): 5, date(2026, 3, 3): 7, date(2026, 3, 11): 1}
    frame = spark.createDataFrame([(daily,)], "daily map<date,bigint>")
    assert frame.select(events_in_window(F.col("daily"), F.lit(T0))).first()[0] == 7


def test_with_categories_leaves_unknown_items_empty(spark) -> None:
    events = _events(spark, [silver_event("u1", "i1", "view", T0), silver_event("u1", "i9", "view", T0)])
    items = spark.createDataFrame([("i1", ["drama", "comedy"]), ("i2", ["horror"])], ITEMS_SCHEMA)
    rows = with_categories(events, items).select("item_id", "categories").orderBy("item_id").collect()
    assert [tuple(r) for r in rows] == [("i1", ["drama", "comedy"]), ("i9", [])]


def test_transforms_name_missing_columns(spark) -> None:
    events = _events(spark, [silver_event("u1", "i1", "view", T0)])
    items = spark.createDataFrame([("i1", ["drama"])], ITEMS_SCHEMA)
    with pytest.raises(DataFrameMissingColumnError, match="session_id"):
        user_batch_features(events.drop("session_id"), items, F.lit(T0), F.lit(UPDATED), SETTINGS)
    with pytest.raises(DataFrameMissingColumnError, match="categories"):
        with_categories(events, spark.createDataFrame([("i1",)], "item_id string"))


def test_user_batch_features_exact_row(spark) -> None:
    hour, day = timedelta(hours=1), timedelta(days=1)
    events = _events(
        spark,
        [
            silver_event("u1", "i1", "view", T0 - 2 * day, "s1", "mobile", "DE"),
            silver_event("u1", "i2", "click", T0 - day, "s1"),
            silver_event("u1", "i1", "like", T0, "s2", "desktop"),
            silver_event("u1", "i3", "skip", T0 - hour, "s2", "tv", "FR"),
            silver_event("u1", "i4", "view", T0 - 8 * day),  # outside the 7-day window; unknown item
            silver_event("u2", "i2", "dislike", T0 - 2 * hour),
        ],
    )
    items = spark.createDataFrame(
        [("i1", ["drama", "comedy"]), ("i2", ["drama"]), ("i3", ["horror"])], ITEMS_SCHEMA
    )
    batch = user_batch_features(events, items, F.lit(T0), F.lit(UPDATED), SETTINGS)
    assert batch.columns == [*USER_FEATURES_SCHEMA.fieldNames(), BATCH_SESSIONS]
    rows = _collect(batch.withColumn(BATCH_SESSIONS, F.sort_array(BATCH_SESSIONS)), "user_id")
    assert rows == [
        {
            "user_id": "u1",
            "last_event_ts": _naive(T0),
            "n_events": 5,
            "n_events_7d": 4,
            "daily_events": {date(2026, 3, 10): 2, date(2026, 3, 9): 1, date(2026, 3, 8): 1},
            # i1 two days ago (0.25) and now (1.0) split over two categories; i2 a day ago (0.5);
            # the skip adds nothing.
            "category_affinity": {"drama": 0.125 + 0.5 + 0.5, "comedy": 0.125 + 0.5},
            "last_items": ["i1", "i3", "i2"],
            "last_items_ts": [_naive(T0), _naive(T0 - hour), _naive(T0 - day)],
            "n_sessions": 2,
            "n_session_events": 4,
            "mean_events_per_session": 2.0,
            "last_session_id": "s2",
            "device": "desktop",
            "country": "FR",
            "decay_ts": _naive(T0),
            "updated_ts": _naive(UPDATED),
            BATCH_SESSIONS: ["s1", "s2"],
        },
        {
            **_user_row("u2"),
            "last_event_ts": _naive(T0 - 2 * hour),
            "n_events": 1,
            "n_events_7d": 1,
            "daily_events": {date(2026, 3, 10): 1},
            "last_items": ["i2"],
            "last_items_ts": [_naive(T0 - 2 * hour)],
            "decay_ts": _naive(T0),
            "updated_ts": _naive(UPDATED),
            BATCH_SESSIONS: [],
        },
    ]


def test_fold_user_features_decays_adds_and_merges(spark) -> None:
    hour, day = timedelta(hours=1), timedelta(days=1)
    current = _frame(
        spark,
        [
            _user_row(
                "u1",
                last_event_ts=T0 - day,
                n_events=10,
                n_events_7d=7,
                daily_events={date(2026, 3, 9): 3, date(2026, 3, 3): 4},
                category_affinity={"drama": 2.0, "horror": 1.0},
                last_items=["i1", "i2", "i5"],
                last_items_ts=[T0 - day, T0 - 30 * hour, T0 - 40 * hour],
                n_sessions=3,
                n_session_events=9,
                mean_events_per_session=3.0,
                last_session_id="s9",
                device="mobile",
                country="DE",
                decay_ts=T0 - day,
                updated_ts=OLD_UPDATE,
            ),
            _user_row("u3", last_event_ts=T0 - day, n_events=1, decay_ts=T0 - day, updated_ts=OLD_UPDATE),
        ],
        USER_FEATURES_SCHEMA,
    )
    batch = _frame(
        spark,
        [
            _user_row(
                "u1",
                last_event_ts=T0,
                n_events=2,
                n_events_7d=2,
                daily_events={date(2026, 3, 10): 2},
                category_affinity={"drama": 1.0, "comedy": 0.5},
                last_items=["i3", "i2"],
                last_items_ts=[T0, T0 - 2 * hour],
                n_sessions=2,
                n_session_events=2,
                mean_events_per_session=1.0,
                last_session_id="s10",
                country="FR",
                _batch_sessions=["s9", "s10"],
            ),
            _user_row("u4", last_event_ts=T0, n_events=1, n_events_7d=1, _batch_sessions=[]),
        ],
        BATCH_SCHEMA,
    )
    rows = _collect(fold_user_features(current, batch, SETTINGS), "user_id")
    assert rows == [
        {
            "user_id": "u1",
            "last_event_ts": _naive(T0),
            "n_events": 12,
            "n_events_7d": 5,
            "daily_events": {date(2026, 3, 9): 3, date(2026, 3, 10): 2},  # 3 March left the window
            "category_affinity": {"drama": 2.0 * 0.5 + 1.0, "horror": 0.5, "comedy": 0.5},
            "last_items": ["i3", "i2", "i1"],
            "last_items_ts": [_naive(T0), _naive(T0 - 2 * hour), _naive(T0 - day)],
            "n_sessions": 4,  # s9 continued into the batch: counted once
            "n_session_events": 11,
            "mean_events_per_session": 11 / 4,
            "last_session_id": "s10",
            "device": "mobile",  # the batch saw no device
            "country": "FR",
            "decay_ts": _naive(T0),
            "updated_ts": _naive(UPDATED),
        },
        {
            **_user_row("u4"),
            "last_event_ts": _naive(T0),
            "n_events": 1,
            "n_events_7d": 1,
            "decay_ts": _naive(T0),
            "updated_ts": _naive(UPDATED),
        },
    ]


def test_fold_of_a_late_batch_decays_the_batch_and_keeps_the_newer_state(spark) -> None:
    day = timedelta(days=1)
    current = _frame(
        spark,
        [
            _user_row(
                "u5",
                last_event_ts=T0,
                n_events=1,
                n_events_7d=1,
                daily_events={date(2026, 3, 10): 1},
                category_affinity={"drama": 1.0},
                last_items=["i6"],
                last_items_ts=[T0],
                n_sessions=1,
                n_session_events=1,
                last_session_id="s1",
                device="tv",
                updated_ts=OLD_UPDATE,
            )
        ],
        USER_FEATURES_SCHEMA,
    )
    late = _frame(
        spark,
        [
            _user_row(
                "u5",
                last_event_ts=T0 - day,
                n_events=1,
                n_events_7d=1,
                daily_events={date(2026, 3, 9): 1},
                category_affinity={"drama": 1.0},
                last_items=["i7"],
                last_items_ts=[T0 - day],
                n_sessions=1,
                n_session_events=1,
                last_session_id="s0",
                device="mobile",
                decay_ts=T0 - day,
                _batch_sessions=["s0"],
            )
        ],
        BATCH_SCHEMA,
    )
    row = _collect(fold_user_features(current, late, SETTINGS), "user_id")[0]
    assert {
        k: row[k] for k in ("n_events_7d", "category_affinity", "last_items", "device", "last_session_id")
    } == {
        "n_events_7d": 2,
        "category_affinity": {"drama": 1.0 + 0.5},
        "last_items": ["i6", "i7"],
        "device": "tv",
        "last_session_id": "s1",
    }
    assert (row["last_event_ts"], row["decay_ts"], row["n_sessions"]) == (_naive(T0), _naive(T0), 2)


def _sketch(spark, users: list[str]) -> bytes:
    frame = spark.createDataFrame([(u,) for u in users], "user_id string")
    return frame.agg(F.hll_sketch_agg("user_id", 12)).first()[0]


def test_item_batch_features_exact_row(spark) -> None:
    day = timedelta(days=1)
    events = _events(
        spark,
        [
            silver_event("u1", "i1", "view", T0),
            silver_event("u2", "i1", "view", T0 - day),
            silver_event("u1", "i1", "click", T0 - 2 * day),
            silver_event("u3", "i1", "dislike", T0),
            silver_event("u2", "i2", "click", T0 - day),
        ],
    )
    batch = item_batch_features(events, F.lit(T0), F.lit(UPDATED), SETTINGS)
    assert batch.columns == ITEM_FEATURES_SCHEMA.fieldNames()
    rows = _collect(batch.drop("users_sketch"), "item_id")
    assert rows == [
        {
            "item_id": "i1",
            "last_event_ts": _naive(T0),
            "n_events": 4,
            "n_users": 3,
            "popularity": 1.0 + 0.5 + 0.25,  # half-life one day; the dislike adds nothing
            "trending": 1.0 + 0.25 + 0.0625,  # half-life 12 hours
            "views": 2,
            "clicks": 1,
            "ctr": 2 / 22,
            "decay_ts": _naive(T0),
            "updated_ts": _naive(UPDATED),
        },
        {
            "item_id": "i2",
            "last_event_ts": _naive(T0 - day),
            "n_events": 1,
            "n_users": 1,
            "popularity": 0.5,
            "trending": 0.25,
            "views": 0,
            "clicks": 1,
            "ctr": 2 / 20,
            "decay_ts": _naive(T0),
            "updated_ts": _naive(UPDATED),
        },
    ]


def test_fold_item_features_decays_adds_and_unions_users(spark) -> None:
    day = timedelta(days=1)

    def item(item_id: str, **values: object) -> dict[str, object]:
        return {"item_id": item_id, "decay_ts": T0, "updated_ts": UPDATED, **values}

    current = _frame(
        spark,
        [
            item(
                "i1",
                last_event_ts=T0 - day,
                n_events=11,
                n_users=2,
                users_sketch=_sketch(spark, ["u1", "u2"]),
                popularity=4.0,
                trending=2.0,
                views=10,
                clicks=1,
                ctr=2 / 30,
                decay_ts=T0 - day,
                updated_ts=OLD_UPDATE,
            )
        ],
        ITEM_FEATURES_SCHEMA,
    )
    batch = _frame(
        spark,
        [
            item(
                "i1",
                last_event_ts=T0,
                n_events=2,
                n_users=2,
                users_sketch=_sketch(spark, ["u2", "u3"]),
                popularity=1.0,
                trending=1.0,
                views=1,
                clicks=1,
                ctr=2 / 21,
            ),
            item(
                "i9",
                last_event_ts=T0,
                n_events=1,
                n_users=1,
                users_sketch=_sketch(spark, ["u1"]),
                popularity=1.0,
                trending=1.0,
                views=1,
                clicks=0,
                ctr=1 / 21,
            ),
        ],
        ITEM_FEATURES_SCHEMA,
    )
    rows = _collect(fold_item_features(current, batch, SETTINGS).drop("users_sketch"), "item_id")
    assert rows == [
        {
            "item_id": "i1",
            "last_event_ts": _naive(T0),
            "n_events": 13,
            "n_users": 3,
            "popularity": 4.0 * 0.5 + 1.0,
            "trending": 2.0 * 0.25 + 1.0,
            "views": 11,
            "clicks": 2,
            "ctr": 3 / 31,
            "decay_ts": _naive(T0),
            "updated_ts": _naive(UPDATED),
        },
        {
            "item_id": "i9",
            "last_event_ts": _naive(T0),
            "n_events": 1,
            "n_users": 1,
            "popularity": 1.0,
            "trending": 1.0,
            "views": 1,
            "clicks": 0,
            "ctr": 1 / 21,
            "decay_ts": _naive(T0),
            "updated_ts": _naive(UPDATED),
        },
    ]


def test_feature_settings_come_from_the_environment() -> None:
    environ = {"RECSYS_FEATURES__TRENDING_HALF_LIFE_HOURS": "3", "RECSYS_FEATURES__LAST_N": "5"}
    settings = load_config("local", environ=environ).features
    assert (settings.trending_half_life_hours, settings.last_n) == (3.0, 5)
    with pytest.raises(ConfigError, match="trending_half_life_hours"):
        load_config("local", environ={"RECSYS_FEATURES__TRENDING_HALF_LIFE_HOURS": "0"})

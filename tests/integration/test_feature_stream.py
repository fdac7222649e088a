"""The feature stream on real Delta tables: exact rows, incremental folds, late events, replays."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from spark_jobs.common import names
from spark_jobs.common.config import Config, FeatureSettings
from spark_jobs.features import job
from spark_jobs.features.sinks import update_features_batch
from spark_jobs.ingest.tables import ensure_ingest_tables
from spark_jobs.produce.catalog import items_df, upsert_table
from tests.builders import silver_frame

pytestmark = [pytest.mark.integration, pytest.mark.spark]

# One half-life for everything, and event times 12 hours apart: every decayed value is exact.
SETTINGS = FeatureSettings(
    affinity_half_life_hours=12.0,
    popularity_half_life_hours=12.0,
    trending_half_life_hours=12.0,
    last_n=3,
    watermark="1 hour",
)
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=12)
H12 = timedelta(hours=12)
U1 = datetime(2026, 3, 11, 8, 0, tzinfo=UTC)
U2 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
U3 = datetime(2026, 3, 11, 10, 0, tzinfo=UTC)

FIRST = [
    ("u1", "i1", "view", T0 - 2 * H12, "s1", "mobile", "DE"),
    ("u1", "i1", "click", T0 - H12, "s1", None, None),
    ("u2", "i2", "view", T0, "s7", "tablet", None),
]
SECOND = [
    ("u1", "i2", "like", T1, "s1", "desktop", None),
    ("u1", "i3", "view", T1, "s2", None, None),  # i3 is not in the catalog: no categories
    ("u1", "i1", "view", T0 - 3 * H12, None, None, None),  # late: 35 hours behind the watermark
]


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _setup(spark, lakehouse: Config) -> Config:
    config = dataclasses.replace(lakehouse, features=SETTINGS)
    ensure_ingest_tables(spark, config)
    catalog = [
        {"item_id": "i1", "categories": ["drama", "comedy"]},
        {"item_id": "i2", "categories": ["drama"]},
    ]
    upsert_table(spark, config, names.ITEMS, items_df(spark, catalog), T0)
    return config


def _append(spark, config: Config, events: list[tuple]) -> None:
    silver_frame(spark, events).write.format("delta").mode("append").save(config.table_path(names.EVENTS))


def _rows(spark, config: Config, table: str, key: str) -> list[dict[str, object]]:
    frame = spark.read.format("delta").load(config.table_path(table)).drop("users_sketch")
    return [r.asDict(recursive=True) for r in frame.orderBy(key).collect()]


def _version(spark, config: Config, table: str) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, config.table_path(table)).history(1).first()["version"]


USERS_AFTER_FIRST = [
    {
        "user_id": "u1",
        "last_event_ts": _naive(T0 - H12),
        "n_events": 2,
        "n_events_7d": 2,
        "daily_events": {date(2026, 3, 9): 1, date(2026, 3, 10): 1},
        "category_affinity": {"drama": 0.125 + 0.25, "comedy": 0.125 + 0.25},
        "last_items": ["i1"],
        "last_items_ts": [_naive(T0 - H12)],
        "n_sessions": 1,
        "n_session_events": 2,
        "mean_events_per_session": 2.0,
        "last_session_id": "s1",
        "device": "mobile",
        "country": "DE",
        "decay_ts": _naive(T0),
        "updated_ts": _naive(U1),
    },
    {
        "user_id": "u2",
        "last_event_ts": _naive(T0),
        "n_events": 1,
        "n_events_7d": 1,
        "daily_events": {date(2026, 3, 10): 1},
        "category_affinity": {"drama": 1.0},
        "last_items": ["i2"],
        "last_items_ts": [_naive(T0)],
        "n_sessions": 1,
        "n_session_events": 1,
        "mean_events_per_session": 1.0,
        "last_session_id": "s7",
        "device": "tablet",
        "country": None,
        "decay_ts": _naive(T0),
        "updated_ts": _naive(U1),
    },
]


def _item(item_id: str, last: datetime, n: int, users: int, decayed: float, views: int, clicks: int, **rest):
    return {
        "item_id": item_id,
        "last_event_ts": _naive(last),
        "n_events": n,
        "n_users": users,
        "popularity": decayed,
        "trending": decayed,
        "views": views,
        "clicks": clicks,
        "ctr": (clicks + 1) / (views + 20),
        **rest,
    }


ITEMS_AFTER_FIRST = [
    _item("i1", T0 - H12, 2, 1, 0.25 + 0.5, 1, 1, decay_ts=_naive(T0), updated_ts=_naive(U1)),
    _item("i2", T0, 1, 1, 1.0, 1, 0, decay_ts=_naive(T0), updated_ts=_naive(U1)),
]


def test_features_fold_in_incrementally_late_events_included_replays_ignored(
    spark, fresh_lakehouse: Config
) -> None:
    config = _setup(spark, fresh_lakehouse)
    _append(spark, config, FIRST)

    counts = job.run_once(spark, config, clock=lambda: U1)

    assert counts == job.FeatureCounts(users=2, items=2, newest_event_ts=_naive(T0))
    assert _rows(spark, config, names.USER_FEATURES, names.USER_ID) == USERS_AFTER_FIRST
    assert _rows(spark, config, names.ITEM_FEATURES, names.ITEM_ID) == ITEMS_AFTER_FIRST

    _append(spark, config, SECOND)
    progress: list[str] = []
    job.run_once(spark, config, on_progress=progress.append, clock=lambda: U2)

    # The late event was behind the watermark (T0 - 1 h) when its batch ran, and still counts.
    assert any("watermark 2026-03-10T11:00:00.000Z" in line for line in progress), progress
    users = _rows(spark, config, names.USER_FEATURES, names.USER_ID)
    assert users == [
        {
            "user_id": "u1",
            "last_event_ts": _naive(T1),
            "n_events": 5,
            "n_events_7d": 5,
            "daily_events": {date(2026, 3, 9): 2, date(2026, 3, 10): 1, date(2026, 3, 11): 2},
            # stored values halve (12 h later); the like adds 1, the late view 2^-4 split in two
            "category_affinity": {"drama": 0.375 / 2 + 1.0 + 0.03125, "comedy": 0.375 / 2 + 0.03125},
            "last_items": ["i3", "i2", "i1"],  # same time: by item id, descending
            "last_items_ts": [_naive(T1), _naive(T1), _naive(T0 - H12)],
            "n_sessions": 2,  # s1 continued, s2 is new
            "n_session_events": 4,
            "mean_events_per_session": 2.0,
            "last_session_id": "s2",
            "device": "desktop",
            "country": "DE",
            "decay_ts": _naive(T1),
            "updated_ts": _naive(U2),
        },
        USERS_AFTER_FIRST[1],  # untouched
    ]
    items = _rows(spark, config, names.ITEM_FEATURES, names.ITEM_ID)
    at_t1 = {"decay_ts": _naive(T1), "updated_ts": _naive(U2)}
    assert items == [
        _item("i1", T0 - H12, 3, 1, 0.75 / 2 + 0.0625, 2, 1, **at_t1),
        _item("i2", T1, 2, 2, 0.5 + 1.0, 1, 1, **at_t1),  # u1's like counts as a click
        _item("i3", T1, 1, 1, 1.0, 1, 0, **at_t1),
    ]

    # The second batch (id 1) delivered again, as after a crash before the checkpoint commit.
    replay = silver_frame(spark, SECOND).select(*job.SOURCE_COLUMNS)
    versions = {t: _version(spark, config, t) for t in (names.USER_FEATURES, names.ITEM_FEATURES)}
    update_features_batch(replay, 1, config=config, clock=lambda: U3)
    assert _rows(spark, config, names.USER_FEATURES, names.USER_ID) == users
    assert _rows(spark, config, names.ITEM_FEATURES, names.ITEM_ID) == items
    assert {t: _version(spark, config, t) for t in versions} == versions
    # Under a new batch id the same rows would count again: the batch id is what guards them.
    update_features_batch(replay, 2, config=config, clock=lambda: U3)
    refolded = {r["user_id"]: r["n_events"] for r in _rows(spark, config, names.USER_FEATURES, names.USER_ID)}
    assert refolded == {"u1": 8, "u2": 1}


class Crash(RuntimeError):
    pass


def test_crash_after_write_before_commit_is_replayed_exactly_once(spark, fresh_lakehouse: Config) -> None:
    config = _setup(spark, fresh_lakehouse)
    _append(spark, config, FIRST)

    def write_then_crash(batch, batch_id: int) -> None:
        update_features_batch(batch, batch_id, config=config, clock=lambda: U1)
        raise Crash("killed after the feature writes")

    with pytest.raises(Exception, match="killed after the feature writes"):
        job.start(spark, config, once=True, sink=write_then_crash).awaitTermination()

    job.run_once(spark, config, clock=lambda: U2)  # batch 0 again: both MERGEs are skipped

    assert _rows(spark, config, names.USER_FEATURES, names.USER_ID) == USERS_AFTER_FIRST
    assert _rows(spark, config, names.ITEM_FEATURES, names.ITEM_ID) == ITEMS_AFTER_FIRST


def test_cli_registers_features_command() -> None:
    from spark_jobs.cli import features
    from spark_jobs.cli.main import build_parser

    args = build_parser().parse_args(["features", "--once"])
    assert (args.handler, args.once) == (features.run, True)

"""The GX suites on real Delta tables: good data passes, planted bad data fails by name."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from spark_jobs.common import names
from spark_jobs.common.config import Config, QualitySettings
from spark_jobs.common.delta import ensure_table
from spark_jobs.contract.events import silver_schema
from spark_jobs.ingest.tables import ensure_ingest_tables
from spark_jobs.quality import frames, job
from spark_jobs.quality.gx_runner import data_docs_index
from spark_jobs.quality.suites import load_suites

pytestmark = pytest.mark.spark

AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ARRIVED = datetime(2026, 3, 2, 11, 0)
SETTINGS = QualitySettings()
TOP_N = 3  # the serving suite checks lists of serving.top_n ranks


def _event(n: int, event_type: str = "click", user: str = "u1", **extra: object) -> tuple:
    fields = {
        "dwell_ms": None,
        "scroll_depth": None,
        "event_ts": datetime(2026, 3, 2, 10, 0),
        "schema_version": 1,
    }
    fields.update(extra)
    return (
        f"{n:08d}-0000-4000-8000-000000000000",
        event_type,
        user,
        f"i{n % 3}",
        "s1",
        fields["event_ts"],
        fields["dwell_ms"],
        fields["scroll_depth"],
        None,
        None,
        fields["schema_version"],
        date(2026, 3, 2),
        fields.get("ingest_ts", ARRIVED),
    )


def _write_events(spark, config: Config, rows: list[tuple]) -> None:
    ensure_ingest_tables(spark, config)
    spark.createDataFrame(rows, silver_schema()).write.format("delta").mode("append").save(
        config.table_path(names.EVENTS)
    )


def _short_lists(config: Config) -> Config:
    return dataclasses.replace(config, serving=dataclasses.replace(config.serving, top_n=TOP_N))


def _run(spark, config: Config, suite: str, run_id: str = "r1"):
    (outcome,) = job.run_quality(spark, _short_lists(config), run_id, AT, load_suites(only=[suite]), SETTINGS)
    return outcome


GOOD_EVENTS = [
    _event(1, "view"),
    _event(2, "dwell", dwell_ms=1200),
    _event(3, "scroll", scroll_depth=0.5, user="u2"),
    _event(4, "rating", user="u2"),
    _event(5, "click", ingest_ts=ARRIVED - timedelta(days=3)),  # before the window: not checked
]


def test_silver_suite_passes_on_good_events(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    _write_events(spark, config, GOOD_EVENTS)

    outcome = _run(spark, config, "silver_events")

    assert (outcome.status, outcome.failed_expectations) == ("passed", ())
    assert outcome.statistics["evaluated_expectations"] == 12.0
    job.raise_for_critical([outcome])  # does not raise
    index = data_docs_index(config.lakehouse_root)
    assert index is not None and index.is_file()


def test_silver_suite_names_each_planted_problem(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    bad = [
        _event(6, "hover"),
        _event(7, "dwell", dwell_ms=-5),
        _event(8, "scroll", scroll_depth=1.5),
        _event(9, "view", event_ts=datetime(2026, 3, 9, 0, 0)),  # a week after the check
        _event(10, "view", schema_version=2),
        _event(1, "view"),  # event_id 1 again
    ]
    _write_events(spark, config, GOOD_EVENTS + bad)

    outcome = _run(spark, config, "silver_events")

    assert outcome.status == "failed"
    assert outcome.failed_expectations == (
        "event_id_unique",
        "event_type_in_allowed_set",
        "event_ts_in_range",
        "dwell_ms_non_negative",
        "scroll_depth_in_unit_interval",
        "schema_version_supported",
    )
    with pytest.raises(job.QualitySuiteFailedError, match="silver_events: event_id_unique, event_type_in"):
        job.raise_for_critical([outcome])
    # Results are MERGEd on (run_id, suite): a rerun of r1 replaces its row.
    _run(spark, config, "silver_events")
    results = spark.read.format("delta").load(config.table_path(names.QUALITY_RESULTS)).collect()
    assert [
        (r.run_id, r.suite, r.success, r.status, r.critical, list(r.failed_expectations)) for r in results
    ] == [("r1", "silver_events", False, "failed", True, list(outcome.failed_expectations))]
    assert results[0].checked_at == AT.replace(tzinfo=None)


def test_empty_window_fails_and_missing_tables_are_skipped(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    outcomes = job.run_quality(
        spark, _short_lists(config), "r0", AT, load_suites(only=["serving", "user_features"]), SETTINGS
    )
    assert [(o.suite, o.status) for o in outcomes] == [("serving", "skipped"), ("user_features", "skipped")]

    _write_events(spark, config, [_event(5, ingest_ts=ARRIVED - timedelta(days=3))])
    outcome = _run(spark, config, "silver_events")
    assert outcome.failed_expectations == ("window_not_empty",)


def _recommendations(spark, config: Config, rows: list[tuple]) -> None:
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("user_id", T.StringType()),
            T.StructField("rank", T.IntegerType()),
            T.StructField("item_id", T.StringType()),
            T.StructField("score", T.DoubleType()),
            T.StructField("generated_at", T.TimestampType()),
        ]
    )
    ensure_table(spark, config, names.RECOMMENDATIONS, schema)
    spark.createDataFrame([(*r, ARRIVED) for r in rows], schema).write.format("delta").mode("append").save(
        config.table_path(names.RECOMMENDATIONS)
    )


def _items(spark, config: Config, ids: list[str]) -> None:
    from spark_jobs.produce.catalog import items_df, upsert_table

    upsert_table(
        spark,
        config,
        names.ITEMS,
        items_df(spark, [{"item_id": i, "categories": ["c"]} for i in ids]),
        ARRIVED,
    )


GOOD_RECS = [("u1", 1, "i1", 0.9), ("u1", 2, "i2", 0.8), ("u1", 3, "i3", 0.8)]


def test_recommendation_checks_summarise_each_user(spark) -> None:
    recs = spark.createDataFrame(
        [*GOOD_RECS, ("u2", 1, "i1", 0.5), ("u2", 2, "i1", 0.7), ("u2", 2, "zz", 0.1)],
        "user_id string, rank int, item_id string, score double",
    )
    items = spark.createDataFrame([("i1",), ("i2",), ("i3",)], "item_id string")
    rows = {r.user_id: r.asDict() for r in frames.recommendation_checks(recs, items).collect()}
    assert rows == {
        "u1": {
            "user_id": "u1",
            "n_ranks": 3,
            "min_rank": 1,
            "ranks_contiguous": True,
            "duplicate_items": 0,
            "scores_sorted": True,
            "null_items": 0,
            "unknown_items": 0,
        },
        "u2": {
            "user_id": "u2",
            "n_ranks": 3,
            "min_rank": 1,
            "ranks_contiguous": False,
            "duplicate_items": 1,
            "scores_sorted": False,
            "null_items": 0,
            "unknown_items": 1,
        },
    }


def test_serving_suite_passes_on_good_and_names_bad_lists(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    _items(spark, config, ["i1", "i2", "i3"])
    _recommendations(spark, config, GOOD_RECS)
    assert _run(spark, config, "serving", "good").failed_expectations == ()

    _recommendations(
        spark,
        config,
        [
            ("u2", 1, "i1", 0.5),
            ("u2", 2, "i1", 0.7),
            ("u2", 2, "zz", 0.1),  # dup item+rank, unsorted, unknown
            ("u3", 1, "i1", 0.9),
            ("u3", 2, "i2", 0.8),  # two ranks, not three
        ],
    )
    outcome = _run(spark, config, "serving", "bad")
    assert outcome.failed_expectations == (
        "exactly_top_n_ranks",
        "ranks_contiguous",
        "no_duplicate_items",
        "scores_sorted_by_rank",
        "items_exist_in_catalog",
    )

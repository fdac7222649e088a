"""Live quality of what was served, exact on a tiny exposure log: nDCG@k of each list, CTR of served items."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from pyspark.sql import types as T

from spark_jobs.drift import distributions as D

pytestmark = pytest.mark.spark

T0 = datetime(2026, 3, 2, 10, 0)
T1 = T0 + timedelta(hours=1)
G2, G3 = 1 / math.log2(3), 1 / math.log2(4)  # gains at ranks 2 and 3 (rank 1 gains 1)

SERVED = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField("generated_at", T.TimestampType()),
    ]
)
EVENTS = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("event_type", T.StringType()),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("value", T.DoubleType()),
    ]
)


@pytest.fixture()
def served(spark):
    rows = [
        ("u1", "a", 1, T0),
        ("u1", "b", 2, T0),
        ("u1", "c", 3, T0),
        ("u1", "d", 1, T1),  # u1's next list
        ("u1", "a", 2, T1),
        ("u2", "x", 1, T0),
        ("u2", "y", 2, T0),
        ("u3", "p", 1, T0),  # u3 likes nothing afterwards: no nDCG
    ]
    return spark.createDataFrame(rows, SERVED)


@pytest.fixture()
def events(spark):
    minute = timedelta(minutes=1)
    rows = [
        ("u1", "a", "view", T0 + minute / 2, None),
        ("u1", "b", "click", T0 + minute, None),  # liked between u1's lists
        ("u1", "c", "rating", T0 + 2 * minute, 3.0),  # a 3 is not "liked"
        ("u1", "a", "like", T1 + minute, None),  # liked after both lists
        ("u1", "z", "purchase", T1 + 2 * minute, None),  # liked, never served
        ("u1", "d", "view", T1 + 3 * minute, None),
        ("u2", "x", "view", T0 - minute, None),  # before the list was served
        ("u2", "x", "click", T0 - minute, None),
        ("u2", "y", "rating", T0 + 5 * minute, 5.0),
        ("u3", "p", "click", T0 - 10 * minute, None),
    ]
    return spark.createDataFrame(rows, EVENTS)


def _by_list(frame) -> list[tuple[str, datetime, float]]:
    return sorted((r.user_id, r.generated_at, r.ndcg) for r in frame.collect())


def test_list_ndcg_scores_each_list_against_what_its_user_liked_afterwards(served, events) -> None:
    rows = _by_list(D.list_ndcg(served, events))

    expected = [
        ("u1", T0, (1 + G2) / (1 + G2 + G3)),  # liked a, b, z after it; a at 1, b at 2
        ("u1", T1, G2 / (1 + G2)),  # b was liked before it: relevant a, z; a at 2
        ("u2", T0, G2),  # x clicked before the list; y rated 5 after, at 2
    ]
    assert [r[:2] for r in rows] == [e[:2] for e in expected]
    assert [r[2] for r in rows] == pytest.approx([e[2] for e in expected], abs=1e-12)

    mean = D.mean_ndcg(D.list_ndcg(served, events)).first()
    assert (mean["lists"], mean["ndcg"]) == (3, pytest.approx(sum(e[2] for e in expected) / 3, abs=1e-12))


def test_list_ndcg_cuts_the_list_at_k(served, events) -> None:
    rows = _by_list(D.list_ndcg(served, events, k=1))
    assert rows == [("u1", T0, 1.0), ("u1", T1, 0.0), ("u2", T0, 0.0)]


def test_click_through_counts_only_events_after_the_item_was_served(served, events) -> None:
    row = D.click_through(events, served).first()
    # views: u1/a (after T0), u1/d (after T1); clicks: u1/b click, u1/a like. u2/x came before.
    assert (row["impressions"], row["clicks"]) == (2, 2)


def test_drift_reads_live_quality_from_the_exposure_log(spark, fresh_lakehouse) -> None:
    from spark_jobs.common import names
    from spark_jobs.common.config import DriftSettings
    from spark_jobs.drift.job import run_drift
    from spark_jobs.serving.tables import LOG_SCHEMA, ensure_serving_tables
    from tests.drift_scenarios import AT, write_scenario

    config = fresh_lakehouse
    write_scenario(spark, config, drifted=False)  # u0 clicks i2 and likes i4 in both windows, views i0
    ensure_serving_tables(spark, config)
    at = AT.replace(tzinfo=None)
    log = [
        ("u0", rank, item, 1.0 / rank, "r", "als", "1", "champion", None, served_at, batch)
        for batch, served_at in enumerate((at - timedelta(days=4), at - timedelta(hours=3)))
        for rank, item in ((1, "i2"), (2, "i4"), (3, "i0"))
    ]
    spark.createDataFrame(log, LOG_SCHEMA).write.format("delta").mode("append").save(
        config.table_path(names.RECOMMENDATION_LOG)
    )

    report = run_drift(spark, config, "live", AT, DriftSettings(min_events=50), plot_dir=None)

    rows = {r.metric: r for r in report.rows}
    assert (rows["live_ndcg.relative_drop"].status, rows["live_ndcg.relative_drop"].statistic) == ("ok", 0.0)
    assert rows["live_ndcg.relative_drop"].detail == (
        "nDCG@10 reference 1.0000 (1 lists), current 1.0000 (1); recsys.recommendation_log"
    )
    assert (rows["live_ctr.relative_drop"].status, rows["live_ctr.relative_drop"].statistic) == ("ok", 0.0)
    assert rows["live_ctr.relative_drop"].detail == (
        "CTR reference 2.0000 (2 impressions), current 2.0000 (2); recsys.recommendation_log"
    )

"""The drift job on real Delta data: planted drift fires on the right metrics, clean data stays quiet."""

from __future__ import annotations

import pytest

from spark_jobs.common import names
from spark_jobs.common.config import Config, DriftSettings
from spark_jobs.drift.job import run_drift
from tests.drift_scenarios import AT, write_scenario

pytestmark = pytest.mark.spark

SETTINGS = DriftSettings(min_events=50)


def _statuses(report) -> dict[str, str]:
    return {r.metric: r.status for r in report.rows}


def test_planted_drift_is_detected_and_recorded(spark, fresh_lakehouse: Config, tmp_path) -> None:
    config = fresh_lakehouse
    write_scenario(spark, config, drifted=True)

    report = run_drift(spark, config, "r1", AT, SETTINGS, plot_dir=tmp_path / "plots")

    assert report.drifted
    assert _statuses(report) == {
        "item_popularity.psi": "drifted",
        "item_popularity.js": "drifted",
        "event_type_mix.psi": "drifted",
        "event_type_mix.js": "drifted",
        "category_mix.psi": "skipped",  # no recsys.items
        "category_mix.js": "skipped",
        "user_activity.psi": "ok",  # same users, same activity
        "user_activity.js": "ok",
        "champion_score.psi": "skipped",  # no serving table yet
        "champion_score.js": "skipped",
        "live_ctr.relative_drop": "skipped",
        "live_ndcg.relative_drop": "skipped",
    }
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "event_type_mix.png",
        "item_popularity.png",
        "user_activity.png",
    ]
    stored = spark.read.format("delta").load(config.table_path(names.DRIFT_REPORTS))
    assert stored.count() == 12
    # A rerun of the same run MERGEs onto its rows.
    run_drift(spark, config, "r1", AT, SETTINGS, plot_dir=None)
    assert stored.count() == 12
    assert {r.metric for r in stored.where("drifted").collect()} == {
        "item_popularity.psi",
        "item_popularity.js",
        "event_type_mix.psi",
        "event_type_mix.js",
    }


def test_same_distribution_is_not_drift_and_empty_windows_are_skipped(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    write_scenario(spark, config, drifted=False)

    report = run_drift(spark, config, "r2", AT, SETTINGS, plot_dir=None)
    assert not report.drifted
    assert {m: s for m, s in _statuses(report).items() if s != "skipped"} == {
        "item_popularity.psi": "ok",
        "item_popularity.js": "ok",
        "event_type_mix.psi": "ok",
        "event_type_mix.js": "ok",
        "user_activity.psi": "ok",
        "user_activity.js": "ok",
    }

    later = AT.replace(year=2027)  # both windows empty
    report = run_drift(spark, config, "r3", later, SETTINGS, plot_dir=None)
    assert not report.drifted
    assert set(_statuses(report).values()) == {"skipped"}
    assert "too little data: reference window has 0 events" in report.rows[0].detail

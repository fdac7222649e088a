"""OPTIMIZE / VACUUM over every table: existing ones are compacted and vacuumed, missing ones skipped."""

from __future__ import annotations

import pytest

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import UsageError
from spark_jobs.contract.events import silver_schema
from spark_jobs.ingest.tables import ensure_ingest_tables
from spark_jobs.maintenance.tables import (
    DONE,
    DRY_RUN,
    SKIPPED,
    check_retention,
    maintain_tables,
    zorder_columns,
)
from tests.drift_scenarios import scenario_rows

pytestmark = pytest.mark.spark


def test_zorder_columns_and_retention_floor() -> None:
    assert zorder_columns(["event_id", "item_id", "user_id"]) == ("user_id", "item_id")
    assert zorder_columns(["user_id", "rank"], partition_columns=["user_id"]) == ()
    assert zorder_columns(["run_id", "metric"]) == ()
    assert check_retention(168) == 168
    assert check_retention(0, force=True) == 0
    with pytest.raises(UsageError, match="below Delta's safe default"):
        check_retention(24)
    with pytest.raises(UsageError, match="negative"):
        check_retention(-1, force=True)


def test_every_existing_table_is_optimized_and_vacuumed(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    ensure_ingest_tables(spark, config)  # events_bronze, events, events_quarantine (empty)
    rows = [r for r in scenario_rows(drifted=False) if r[5].day == 27]  # reference events: one event_date
    for chunk in (rows[:40], rows[40:80], rows[80:]):  # three appends: three small files
        spark.createDataFrame(chunk, silver_schema()).coalesce(1).write.format("delta").mode("append").save(
            config.table_path(names.EVENTS)
        )
    events = (names.EVENTS,)

    dry = maintain_tables(spark, config, events, retain_hours=0, force=True, dry_run=True)
    assert [(o.operation, o.status, o.detail) for o in dry] == [
        ("optimize", DRY_RUN, "would optimize 3 files (Z-ORDER BY (user_id, item_id))"),
        ("vacuum", DRY_RUN, "would delete 0 files (retain 0 h)"),
    ]

    outcomes = maintain_tables(spark, config, retain_hours=0, force=True)
    by_table = {(o.table, o.operation): (o.status, o.detail) for o in outcomes}
    assert by_table[(names.EVENTS, "optimize")] == (DONE, "Z-ORDER BY (user_id, item_id): 3 files -> 1")
    assert by_table[(names.EVENTS, "vacuum")] == (DONE, "3 files deleted (retain 0 h)")
    assert by_table[(names.EVENTS_BRONZE, "optimize")] == (DONE, "compaction: 0 files -> 0")
    assert by_table[(names.EVENTS_QUARANTINE, "vacuum")] == (DONE, "0 files deleted (retain 0 h)")
    missing = set(names.ALL_TABLES) - {names.EVENTS, names.EVENTS_BRONZE, names.EVENTS_QUARANTINE}
    assert {o.table: (o.operation, o.status) for o in outcomes if o.status == SKIPPED} == {
        t: ("-", SKIPPED) for t in missing
    }
    assert len(outcomes) == len(missing) + 6
    assert spark.read.format("delta").load(config.table_path(names.EVENTS)).count() == len(rows)

    with pytest.raises(UsageError):
        maintain_tables(spark, config, events, retain_hours=1)  # no force: refused before any work

"""Event windows with and without planted drift, shared by the drift job and DAG tests.

``AT`` is the end of the current window. Reference events fall in the 7 days before the current
day; current events in the day before ``AT``. ``drifted=True`` changes the current window's
event-type mix and item popularity (purchases of new items), nothing else.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.contract.events import silver_schema
from spark_jobs.ingest.tables import ensure_ingest_tables

AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TYPES = ("view", "view", "click", "dwell", "like")


def scenario_rows(drifted: bool, per_window: int = 120, at: datetime = AT) -> list[tuple]:
    """Silver rows: ``per_window`` reference events and ``per_window`` current events before ``at``."""
    rows = []
    at = at.astimezone(UTC).replace(tzinfo=None)
    for n in range(per_window):
        rows.append(
            _row(n, TYPES[n % len(TYPES)], f"u{n % 12}", f"i{n % 10}", at - timedelta(days=3, minutes=n), at)
        )
    for n in range(per_window):
        if drifted:
            event_type, item = "purchase", f"new{n % 4}"
        else:
            event_type, item = TYPES[n % len(TYPES)], f"i{n % 10}"
        rows.append(
            _row(10_000 + n, event_type, f"u{n % 12}", item, at - timedelta(hours=2, minutes=n % 60), at)
        )
    return rows


def _row(n: int, event_type: str, user: str, item: str, ts: datetime, at: datetime) -> tuple:
    event_id = str(uuid.UUID(int=n + 1, version=4))
    ingest_ts = at - timedelta(hours=1)
    return (
        event_id,
        event_type,
        user,
        item,
        None,
        ts,
        None,
        None,
        None,
        None,
        1,
        date(ts.year, ts.month, ts.day),
        ingest_ts,
    )


def write_scenario(spark, config: Config, drifted: bool, at: datetime = AT) -> None:
    """Create the ingest tables under ``config``'s root and append the scenario's events."""
    ensure_ingest_tables(spark, config)
    (
        spark.createDataFrame(scenario_rows(drifted, at=at), silver_schema())
        .write.format("delta")
        .mode("append")
        .save(config.table_path(names.EVENTS))
    )

"""Rows the tests build again and again: silver events in ``silver_schema`` order."""

from __future__ import annotations

from datetime import datetime

from spark_jobs.contract.events import silver_schema


def silver_event(
    user: str,
    item: str,
    kind: str,
    at: datetime,
    session: str | None = None,
    device: str | None = None,
    country: str | None = None,
) -> tuple:
    """One validated event at naive-UTC ``at``; its id is derived from (user, item, kind, day-hour),
    so a test that writes the same event twice writes the same id (what dedup keys on)."""
    context = None if device is None and country is None else (device, country, None, None)
    return (
        f"{user}-{item}-{kind}-{at:%d%H}",
        kind,
        user,
        item,
        session,
        at,
        None,
        None,
        None,
        context,
        1,
        at.date(),
        at,
    )


def silver_frame(spark, events: list[tuple]):
    """``(user, item, kind, at, session, device, country)`` tuples as a silver DataFrame."""
    return spark.createDataFrame([silver_event(*event) for event in events], silver_schema())

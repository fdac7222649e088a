"""MovieLens ratings as silver events: the data the training tests (and the retrain DAG test) train on.

A subset of MovieLens 100k is small enough to train on in seconds and, unlike synthetic noise,
has enough signal for ALS + ranker to beat the popularity baseline, so the promotion gate passes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pandas as pd

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.contract.events import silver_schema

INGEST_TS = datetime(2024, 1, 1, tzinfo=UTC)


def rating_rows(ratings: pd.DataFrame, ingest_ts: datetime = INGEST_TS) -> list[tuple]:
    """One silver ``rating`` event per MovieLens rating (event time = the rating's timestamp)."""
    rows = []
    for r in ratings.itertuples(index=False):
        ts = datetime.fromtimestamp(int(r.timestamp), tz=UTC)
        rows.append(
            (
                str(uuid.UUID(int=len(rows) + 1)),
                "rating",
                str(r.user_id),
                str(r.item_id),
                None,
                ts,
                None,
                None,
                float(r.rating),
                ("desktop", "US", None, ts.hour),
                1,
                ts.date(),
                ingest_ts,
            )
        )
    return rows


def write_events(spark, config: Config, ratings: pd.DataFrame, ingest_ts: datetime = INGEST_TS) -> None:
    """Overwrite ``recsys.events`` under ``config``'s root with the ratings, and register it."""
    from spark_jobs.common.spark import register_tables

    frame = spark.createDataFrame(rating_rows(ratings, ingest_ts), schema=silver_schema())
    frame.write.format("delta").mode("overwrite").save(config.table_path(names.EVENTS))
    register_tables(spark, config)

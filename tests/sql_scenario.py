"""A tiny served-and-clicked scenario for the SQL views, shared by the Spark and JDBC tests.

Two lists were served (``T0``, then ``T1``): champion to u1 and u3, challenger to u2. Clicks
count only on an item the user was served, at or after it was first served to them:

- champion: u1 clicked i1 after T0 (yes), viewed i2 (not a click), clicked i3 before it was
  served at T1 (no); u3 clicked i2 twice after T1 (one click) and i1 it was never served (ignored).
  4 exposures (u1: i1 i2 i3, u3: i2; i1 served twice is one exposure), 2 clicks.
- challenger: u2 purchased i3 after T0 (yes), liked i4 before T1 (no), nothing on i5.
  3 exposures, 1 click.

Times are naive UTC (the sessions run in UTC).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table
from spark_jobs.contract.events import silver_schema
from spark_jobs.ingest.tables import ensure_ingest_tables
from spark_jobs.produce.catalog import ITEMS_SCHEMA
from spark_jobs.serving.tables import LOG_SCHEMA, RECOMMENDATIONS_SCHEMA, ensure_serving_tables

T0 = datetime(2026, 3, 1, 10, 0)
T1 = datetime(2026, 3, 1, 11, 0)
LAST_EVENT = datetime(2026, 3, 1, 9, 55)

ITEMS = [
    {"item_id": "i1", "title": "Alpha", "categories": ["drama"]},
    {"item_id": "i2", "title": "Beta", "categories": ["comedy", "drama"]},
    {"item_id": "i3", "title": "Gamma", "categories": ["news"]},
]
# user, rank, item, score, reason, source, model_version, variant
CURRENT = [
    ("u1", 1, "i1", 0.9, "popular in drama", "trending", "3", "champion"),
    ("u1", 2, "i3", 0.4, "because you watched Beta", "cooc", "3", "champion"),
    ("u2", 1, "i9", 0.7, "new for you", "als", "4", "challenger"),  # i9: not in recsys.items
]
# batch, generated_at, user, variant, items in rank order
SERVED = [
    (0, T0, "u1", "champion", ["i1", "i2"]),
    (0, T0, "u2", "challenger", ["i3", "i4"]),
    (1, T1, "u1", "champion", ["i1", "i3"]),
    (1, T1, "u3", "champion", ["i2"]),
    (1, T1, "u2", "challenger", ["i5", "i4"]),
]
# event_type, user, item, event_ts
EVENTS = [
    ("click", "u1", "i1", datetime(2026, 3, 1, 10, 30)),
    ("view", "u1", "i2", datetime(2026, 3, 1, 10, 10)),
    ("click", "u1", "i3", datetime(2026, 3, 1, 10, 45)),
    ("click", "u3", "i2", datetime(2026, 3, 1, 11, 30)),
    ("click", "u3", "i2", datetime(2026, 3, 1, 11, 40)),
    ("click", "u3", "i1", datetime(2026, 3, 1, 11, 50)),
    ("purchase", "u2", "i3", datetime(2026, 3, 1, 12, 0)),
    ("like", "u2", "i4", datetime(2026, 3, 1, 9, 0)),
]

# SELECT * FROM recsys.recommendations, ordered by user_id, rank.
RECOMMENDATION_ROWS = [(*row, LAST_EVENT, T1) for row in CURRENT]
# SELECT * FROM recsys.user_top_n, ordered by user_id, rank.
USER_TOP_N_ROWS = [
    ("u1", 1, "i1", "Alpha", ["drama"], 0.9, "popular in drama", "champion", "3", T1),
    ("u1", 2, "i3", "Gamma", ["news"], 0.4, "because you watched Beta", "champion", "3", T1),
    ("u2", 1, "i9", None, None, 0.7, "new for you", "challenger", "4", T1),
]
# SELECT * FROM recsys.ctr_by_variant ORDER BY variant: variant, users, exposures, clicks, ctr.
CTR_ROWS = [("challenger", 1, 3, 1, 1 / 3), ("champion", 2, 4, 2, 0.5)]


def write_current(spark: Any, config: Config) -> None:
    """``recsys.items`` and ``recsys.recommendations`` (the current lists, generated at T1)."""
    ensure_table(spark, config, names.ITEMS, ITEMS_SCHEMA)
    items = [{**item, "created_ts": T0, "source": "test"} for item in ITEMS]
    _append(spark, config, names.ITEMS, ITEMS_SCHEMA, items)
    ensure_serving_tables(spark, config)
    recs = [dict(zip(RECOMMENDATIONS_SCHEMA.fieldNames(), row, strict=True)) for row in RECOMMENDATION_ROWS]
    _append(spark, config, names.RECOMMENDATIONS, RECOMMENDATIONS_SCHEMA, recs)


def write_history(spark: Any, config: Config) -> None:
    """``recsys.recommendation_log`` (every list served) and ``recsys.events`` (silver)."""
    ensure_serving_tables(spark, config)
    log = [
        {
            names.USER_ID: user,
            names.RANK: rank,
            names.ITEM_ID: item,
            names.SCORE: 1.0 / rank,
            names.REASON: "test",
            "source": "als",
            names.MODEL_VERSION: "3" if variant == "champion" else "4",
            names.VARIANT: variant,
            "last_event_ts": LAST_EVENT,
            names.GENERATED_AT: generated_at,
            "batch_id": batch,
        }
        for batch, generated_at, user, variant, items in SERVED
        for rank, item in enumerate(items, start=1)
    ]
    _append(spark, config, names.RECOMMENDATION_LOG, LOG_SCHEMA, log)
    ensure_ingest_tables(spark, config)
    events = [
        {
            names.EVENT_ID: str(uuid.UUID(int=n + 1, version=4)),
            names.EVENT_TYPE: event_type,
            names.USER_ID: user,
            names.ITEM_ID: item,
            names.EVENT_TS: ts,
            names.SCHEMA_VERSION: 1,
            names.EVENT_DATE: date(ts.year, ts.month, ts.day),
            names.INGEST_TS: ts,
        }
        for n, (event_type, user, item, ts) in enumerate(EVENTS)
    ]
    _append(spark, config, names.EVENTS, silver_schema(), events)


def _append(spark: Any, config: Config, table: str, schema: T.StructType, rows: list[dict[str, Any]]) -> None:
    """Rows by column name; columns a row leaves out are null."""
    tuples = [tuple(row.get(name) for name in schema.fieldNames()) for row in rows]
    spark.createDataFrame(tuples, schema).write.format("delta").mode("append").save(config.table_path(table))

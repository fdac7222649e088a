"""The catalog tables `recsys.items` and `recsys.users`: schemas, DataFrames, idempotent upsert.

Rows come from the producers (``synthetic.item_rows``, ``movielens.read_items``, ...) as plain
dicts; keys outside the schema (``imdb_url``, ...) are ignored. The upsert MERGEs on the key and
only touches rows whose content changed, so loading the same catalog twice changes nothing,
``updated_ts`` included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common import delta as common_delta
from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import DataFrameMissingColumnError, RecsysError

UPDATED_TS = "updated_ts"

ITEMS_SCHEMA = T.StructType(
    [
        T.StructField(names.ITEM_ID, T.StringType(), nullable=False),
        T.StructField("title", T.StringType()),
        T.StructField("categories", T.ArrayType(T.StringType(), containsNull=False)),
        T.StructField("length_s", T.IntegerType()),
        T.StructField("created_ts", T.TimestampType()),
        T.StructField("source", T.StringType()),
        T.StructField(UPDATED_TS, T.TimestampType()),
    ]
)
USERS_SCHEMA = T.StructType(
    [
        T.StructField(names.USER_ID, T.StringType(), nullable=False),
        T.StructField("age_band", T.StringType()),
        T.StructField("gender", T.StringType()),
        T.StructField("occupation", T.StringType()),
        T.StructField("country", T.StringType()),
        T.StructField("consent_personalization", T.BooleanType()),
        T.StructField("consent_analytics", T.BooleanType()),
        T.StructField("created_ts", T.TimestampType()),
        T.StructField("source", T.StringType()),
        T.StructField(UPDATED_TS, T.TimestampType()),
    ]
)
KEYS = {names.ITEMS: names.ITEM_ID, names.USERS: names.USER_ID}
SCHEMAS = {names.ITEMS: ITEMS_SCHEMA, names.USERS: USERS_SCHEMA}


@dataclass(frozen=True)
class UpsertCounts:
    """What one MERGE did to one table."""

    table: str
    inserted: int
    updated: int


def items_df(spark: SparkSession, rows: Iterable[Mapping[str, Any]]) -> DataFrame:
    """Rows as a DataFrame with ``ITEMS_SCHEMA`` (``updated_ts`` null until upserted)."""
    return _rows_df(spark, rows, ITEMS_SCHEMA)


def users_df(spark: SparkSession, rows: Iterable[Mapping[str, Any]]) -> DataFrame:
    """Rows as a DataFrame with ``USERS_SCHEMA`` (``updated_ts`` null until upserted)."""
    return _rows_df(spark, rows, USERS_SCHEMA)


def upsert_catalog(
    spark: SparkSession,
    config: Config,
    items: DataFrame | None,
    users: DataFrame | None,
    now_ts: datetime,
) -> list[UpsertCounts]:
    """Create ``recsys.items`` / ``recsys.users`` if missing and MERGE the given rows into them.

    New rows are inserted and changed rows updated, both stamped ``updated_ts = now_ts``; rows
    equal to what the table holds are left alone. Either DataFrame may be None to skip it.
    ``now_ts`` must be timezone-aware: a naive one would be read in the JVM's zone.
    """
    if now_ts.tzinfo is None:
        raise ValueError(f"now_ts must be timezone-aware, got {now_ts!r}")
    results = []
    for table, frame in ((names.ITEMS, items), (names.USERS, users)):
        if frame is not None:
            results.append(upsert_table(spark, config, table, frame, now_ts))
    return results


def upsert_table(
    spark: SparkSession, config: Config, table: str, source: DataFrame, now_ts: datetime
) -> UpsertCounts:
    """MERGE ``source`` into one catalog table on its key; see ``upsert_catalog``."""
    if table not in SCHEMAS:
        raise ValueError(f"not a catalog table: {table!r} (expected one of {sorted(SCHEMAS)})")
    schema, key = SCHEMAS[table], KEYS[table]
    missing = [f for f in schema.fieldNames() if f != UPDATED_TS and f not in source.columns]
    if missing:
        raise DataFrameMissingColumnError(
            f"rows for {config.table(table)} lack column(s) {', '.join(missing)}",
            hint=f"build them with catalog.{table}_df so they carry the full schema",
        )
    target = ensure_table(spark, config, table)
    content = [f for f in schema.fieldNames() if f not in (key, UPDATED_TS)]
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in content)
    stamp = F.lit(now_ts).cast(T.TimestampType())
    values = {c: F.col(f"s.`{c}`") for c in [key, *content]}
    metrics = (
        target.alias("t")
        .merge(source.alias("s"), f"t.`{key}` = s.`{key}`")
        .whenMatchedUpdate(condition=changed, set={**values, UPDATED_TS: stamp})
        .whenNotMatchedInsert(values={**values, UPDATED_TS: stamp})
        .execute()
        .first()
    )
    return UpsertCounts(
        table=config.table(table),
        inserted=int(metrics["num_inserted_rows"]) if metrics else 0,
        updated=int(metrics["num_updated_rows"]) if metrics else 0,
    )


def ensure_table(spark: SparkSession, config: Config, table: str) -> DeltaTable:
    """The catalog table at its configured location, created empty if missing.

    Creation and registration go through ``common.delta.ensure_table``
    (``DeltaTable.createIfNotExists`` at ``config.table_path``, registered as
    ``config.table``), so a name left pointing at another lakehouse root is re-pointed. The
    table is then addressed by path: the location is its identity.
    """
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {config.database}")
    common_delta.ensure_table(spark, config, table, SCHEMAS[table])
    return DeltaTable.forPath(spark, config.table_path(table))


def _rows_df(spark: SparkSession, rows: Iterable[Mapping[str, Any]], schema: T.StructType) -> DataFrame:
    key = schema.fieldNames()[0]
    fields = schema.fieldNames()
    tuples = []
    for index, row in enumerate(rows):
        if row.get(key) is None:
            raise RecsysError(f"catalog row {index} has no {key}: {dict(row)!r}")
        tuples.append(tuple(row.get(f) for f in fields))
    duplicates = [k for k, n in Counter(t[0] for t in tuples).items() if n > 1]
    if duplicates:
        raise RecsysError(
            f"catalog rows repeat {key} {', '.join(map(str, duplicates[:5]))}",
            hint="each item/user must appear once per load (MERGE needs unique keys)",
        )
    return spark.createDataFrame(tuples, schema)

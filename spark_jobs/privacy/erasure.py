"""GDPR erasure ("right to be forgotten") across the lakehouse.

Contract
--------
``record_request``    appends a pending request (idempotent: one pending request per user).
``process_requests``  erases every pending request's user from every table that holds user ids,
                      physically removes the old files (VACUUM, retention 0), writes one audit
                      row per request and marks the requests done. The maintenance DAG calls it
                      through ``recsys forget --pending``; ``recsys forget --user ID --now`` calls
                      it for one user.

Which rows belong to a user is decided from a table's *columns*, not its name, so a new table
with a ``user_id`` column is covered without an edit here:

* a ``user_id`` column equal to the id (silver events, users, features, recommendations);
* Kafka record tables (``key``, string ``value``, ``topic``...: bronze and quarantine): the
  record key (producers key by user id) *or* the ``user_id`` inside the raw JSON value, so a
  record whose key was missing or wrong is still found.

Why VACUUM with retention 0: a Delta DELETE only writes new files and a log entry; the user's
rows stay in the old files, readable by time travel, until VACUUM removes files no longer
referenced. Retention 0 also removes files a *concurrent* writer has written but not committed
yet, which is why Delta guards it (``retentionDurationCheck``); the guard is lifted for that one
call only. Run erasure from the maintenance window, not while a backfill rewrites these tables.

Every step is idempotent, so a run that fails half way is repaired by running it again: deletes
of already-deleted rows delete nothing, a table with a DELETE after its last VACUUM is vacuumed
(``needs_vacuum``), and audit rows and request updates are MERGEs keyed on ``request_id``.

Not covered here: copies outside the Delta tables (Kafka's own retention, MLflow model
artifacts trained before the erasure, which the next retraining replaces), and min/max column statistics in
the Delta log's JSON entries, which expire with ``delta.logRetentionDuration`` (30 days by default).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import UsageError
from spark_jobs.common.spark import temporary_conf
from spark_jobs.privacy import tables as pt

RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"
LISTING_PARALLELISM_CONF = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
KAFKA_RECORD_COLUMNS = (
    names.KAFKA_KEY,
    names.KAFKA_VALUE,
    names.KAFKA_TOPIC,
    names.KAFKA_PARTITION,
    names.KAFKA_OFFSET,
)
_REQUEST_NAMESPACE = uuid.UUID("6f1d7a52-3c5e-4d8e-9a43-0b7f3e2f5a10")


@dataclass(frozen=True)
class ErasureResult:
    """What one ``process_requests`` run did."""

    request_ids: tuple[str, ...] = ()
    rows_deleted: dict[str, int] = field(default_factory=dict)
    tables_vacuumed: tuple[str, ...] = ()


# --- pure parts ---------------------------------------------------------------------------


def user_hash(user_id: str) -> str:
    """SHA-256 of a user id: what the audit trail keeps instead of the id."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def request_id(user_id: str, requested_at: datetime) -> str:
    """Deterministic id of a request, so recording the same request twice is one row."""
    return str(uuid.uuid5(_REQUEST_NAMESPACE, f"{user_id}|{requested_at.isoformat()}"))


def validate_user_id(user_id: str, max_length: int = 128) -> str:
    """The id, stripped; rejects empty or over-long ids before anything touches a table."""
    cleaned = (user_id or "").strip()
    if not cleaned:
        raise UsageError("--user needs a non-empty user id")
    if len(cleaned) > max_length:
        raise UsageError(f"user id is longer than {max_length} characters")
    return cleaned


def user_rows_predicate(schema: T.StructType, user_ids: Sequence[str]) -> Column | None:
    """The rows of a table with ``schema`` that belong to any of ``user_ids``; None if it holds none.

    Null-safe: a row whose key, value or user_id is null does not match (and is kept).
    """
    if not user_ids:
        return None
    ids = list(user_ids)
    fields = {f.name: f.dataType for f in schema.fields}
    parts: list[Column] = []
    if isinstance(fields.get(names.USER_ID), T.StringType):
        parts.append(F.col(names.USER_ID).isin(ids))
    if all(c in fields for c in KAFKA_RECORD_COLUMNS) and isinstance(fields[names.KAFKA_VALUE], T.StringType):
        parts.append(F.col(names.KAFKA_KEY).isin(ids))
        parts.append(F.get_json_object(F.col(names.KAFKA_VALUE), "$.user_id").isin(ids))
    if not parts:
        return None
    return F.coalesce(reduce(lambda a, b: a | b, parts), F.lit(False))


def request_rows(spark: SparkSession, user_ids: Iterable[str], requested_at: datetime) -> DataFrame:
    """Pending request rows for ``user_ids`` stamped ``requested_at``."""
    rows = [
        (request_id(u, requested_at), u, user_hash(u), requested_at, pt.STATUS_PENDING, None)
        for u in user_ids
    ]
    return spark.createDataFrame(rows, pt.REQUESTS_SCHEMA)


# --- I/O ----------------------------------------------------------------------------------


def erasure_targets(config: Config) -> tuple[str, ...]:
    """Tables erasure looks at: every lakehouse table except the erasure process's own."""
    return tuple(t for t in names.ALL_TABLES if t not in pt.PRIVACY_TABLES)


def record_request(spark: SparkSession, config: Config, user_id: str, requested_at: datetime) -> str:
    """Record an erasure request and return its id; a user with a pending request keeps that one."""
    from delta.tables import DeltaTable

    user_id = validate_user_id(user_id, config.ingest.max_id_length)
    pt.ensure_privacy_tables(spark, config)
    target = DeltaTable.forPath(spark, config.table_path(pt.ERASURE_REQUESTS))
    (
        target.alias("t")
        .merge(
            request_rows(spark, [user_id], requested_at).alias("s"),
            f"t.{names.USER_ID} = s.{names.USER_ID} AND t.{pt.STATUS} = '{pt.STATUS_PENDING}'",
        )
        .whenNotMatchedInsertAll()
        .execute()
    )
    row = (
        target.toDF()
        .where((F.col(names.USER_ID) == user_id) & (F.col(pt.STATUS) == pt.STATUS_PENDING))
        .select(pt.REQUEST_ID)
        .first()
    )
    return str(row[0])


def pending_requests(
    spark: SparkSession, config: Config, user_ids: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """``(request_id, user_id)`` of pending requests, optionally only for ``user_ids``."""
    pt.ensure_privacy_tables(spark, config)
    requests = spark.read.format("delta").load(config.table_path(pt.ERASURE_REQUESTS))
    pending = requests.where(F.col(pt.STATUS) == pt.STATUS_PENDING)
    if user_ids is not None:
        pending = pending.where(F.col(names.USER_ID).isin(list(user_ids)))
    rows = pending.select(pt.REQUEST_ID, names.USER_ID).orderBy(pt.REQUESTED_AT).collect()
    return [(r[0], r[1]) for r in rows]


def process_requests(
    spark: SparkSession,
    config: Config,
    now: datetime,
    user_ids: Sequence[str] | None = None,
) -> ErasureResult:
    """Erase the users of pending requests (all, or only ``user_ids``); see the module docstring."""
    requests = pending_requests(spark, config, user_ids)
    if not requests:
        return ErasureResult()
    ids = sorted({u for _, u in requests})
    deleted = delete_user_rows(spark, config, ids)
    vacuumed = tuple(
        t
        for t in erasure_targets(config)
        if deleted.get(t) or (_is_delta(spark, config, t) and needs_vacuum(spark, config.table_path(t)))
    )
    for table in vacuumed:
        purge_and_vacuum(spark, config.table_path(table))
    _write_audit(spark, config, requests, deleted, vacuumed, now)
    _mark_done(spark, config, [r for r, _ in requests], now)
    # The request rows held the raw ids until now; their old versions go the same way.
    purge_and_vacuum(spark, config.table_path(pt.ERASURE_REQUESTS))
    return ErasureResult(tuple(r for r, _ in requests), deleted, vacuumed)


def delete_user_rows(spark: SparkSession, config: Config, user_ids: Sequence[str]) -> dict[str, int]:
    """DELETE the users' rows from every target table; returns rows deleted per table."""
    from delta.tables import DeltaTable

    deleted: dict[str, int] = {}
    for table in erasure_targets(config):
        if not _is_delta(spark, config, table):
            continue
        delta = DeltaTable.forPath(spark, config.table_path(table))
        predicate = user_rows_predicate(delta.toDF().schema, user_ids)
        if predicate is None:
            continue
        count = delta.toDF().where(predicate).count()
        if count:
            delta.delete(predicate)
        deleted[table] = count
    return deleted


def needs_vacuum(spark: SparkSession, path: str, lookback: int = 50) -> bool:
    """Whether a DELETE (or REORG) committed after the table's last VACUUM: files to remove.

    This is how a rerun after a crash between DELETE and VACUUM still vacuums, while tables
    untouched by any erasure are not vacuumed (a full VACUUM lists every file of the table).
    """
    from delta.tables import DeltaTable

    operations = [
        r["operation"]
        for r in DeltaTable.forPath(spark, path).history(lookback).select("operation").collect()
    ]  # newest first
    for operation in operations:
        if operation == "VACUUM END":
            return False
        if operation in ("DELETE", "REORG"):
            return True
    return False


def purge_and_vacuum(spark: SparkSession, path: str) -> None:
    """Physically remove rows a DELETE left behind in old files (and deletion vectors).

    With deletion vectors a DELETE does not rewrite the file, so the file stays *referenced*
    and VACUUM alone would keep the erased rows on disk; ``REORG ... APPLY (PURGE)`` rewrites it.
    """
    from delta.tables import DeltaTable

    properties = DeltaTable.forPath(spark, path).detail().first()["properties"] or {}
    if str(properties.get("delta.enableDeletionVectors", "false")).lower() == "true":
        spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
    # Retention 0 is refused unless the check is off. VACUUM lists the table's files with the
    # partition-discovery parallelism (10,000 by default); bounded to the cores available.
    listing = str(max(2, spark.sparkContext.defaultParallelism))
    with temporary_conf(spark, {RETENTION_CHECK_CONF: "false", LISTING_PARALLELISM_CONF: listing}):
        DeltaTable.forPath(spark, path).vacuum(0.0)


def _write_audit(
    spark: SparkSession,
    config: Config,
    requests: Sequence[tuple[str, str]],
    deleted: dict[str, int],
    vacuumed: Sequence[str],
    now: datetime,
) -> None:
    from delta.tables import DeltaTable

    # Rows are counted per run, not per user: one DELETE serves every user of the run.
    rows = [(rid, user_hash(u), dict(deleted), list(vacuumed), now) for rid, u in requests]
    audit = spark.createDataFrame(rows, pt.AUDIT_SCHEMA)
    (
        DeltaTable.forPath(spark, config.table_path(pt.ERASURE_AUDIT))
        .alias("t")
        .merge(audit.alias("s"), f"t.{pt.REQUEST_ID} = s.{pt.REQUEST_ID}")
        .whenNotMatchedInsertAll()
        .execute()
    )


def _mark_done(spark: SparkSession, config: Config, request_ids: Sequence[str], now: datetime) -> None:
    from delta.tables import DeltaTable

    (
        DeltaTable.forPath(spark, config.table_path(pt.ERASURE_REQUESTS)).update(
            condition=F.col(pt.REQUEST_ID).isin(list(request_ids)),
            set={
                pt.STATUS: F.lit(pt.STATUS_DONE),
                pt.PROCESSED_AT: F.lit(now).cast(T.TimestampType()),
                names.USER_ID: F.lit(None).cast(T.StringType()),
            },
        )
    )


def _is_delta(spark: SparkSession, config: Config, table: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, config.table_path(table)))

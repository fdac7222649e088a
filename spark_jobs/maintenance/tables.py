"""OPTIMIZE (with Z-ORDER) and VACUUM of every lakehouse table that exists.

Streaming writes leave many small files: ``OPTIMIZE`` compacts them, Z-ordered by ``user_id`` /
``item_id`` where a table has them (the columns readers filter on), so file skipping works.
``VACUUM`` then removes files no table version within the retention references.

Why the retention floor: VACUUM deletes files that versions older than the retention still
reference, and files a concurrent writer has written but not yet committed. Below Delta's
default (168 h, ``delta.deletedFileRetentionDuration``) a running stream or a long reader can
lose files it needs, and time travel shrinks to less than a week; ``check_retention`` refuses it
unless forced (GDPR erasure vacuums with retention 0 on its own, ``spark_jobs.privacy``).

Each table is one outcome: a missing table is *skipped* (a stage that has not run yet), a failing
one is *failed* and the others still run. Both operations are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from pyspark.sql import SparkSession

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import UsageError
from spark_jobs.common.spark import temporary_conf
from spark_jobs.privacy.erasure import LISTING_PARALLELISM_CONF, RETENTION_CHECK_CONF

SAFE_RETENTION_HOURS = 168.0  # Delta's default retention: 7 days
ZORDER_CANDIDATES = (names.USER_ID, names.ITEM_ID)
OPTIMIZE, VACUUM = "optimize", "vacuum"
DONE, DRY_RUN, SKIPPED, FAILED = "done", "dry run", "skipped", "failed"


@dataclass(frozen=True)
class TableOutcome:
    """What one operation did to one table; ``detail`` is the line the summary prints."""

    table: str
    operation: str
    status: str
    detail: str = ""


def zorder_columns(columns: Sequence[str], partition_columns: Sequence[str] = ()) -> tuple[str, ...]:
    """The Z-ORDER columns of a table: ``user_id`` / ``item_id`` where present, never a partition
    column (Delta refuses those: partitioning already clusters them)."""
    return tuple(c for c in ZORDER_CANDIDATES if c in columns and c not in partition_columns)


def check_retention(hours: float, force: bool = False) -> float:
    """``hours`` when it is a safe VACUUM retention (>= 168), or below it with ``force``.

    Raises ``UsageError`` for a negative retention, or a short one without ``force``.
    """
    if hours < 0:
        raise UsageError(f"retention must not be negative, got {hours:g} hours")
    if hours < SAFE_RETENTION_HOURS and not force:
        raise UsageError(
            f"retention {hours:g} h is below Delta's safe default of {SAFE_RETENTION_HOURS:g} h: "
            "running streams and readers could lose files they still need",
            hint="use --retain-hours 168 or more, or --force if no job reads or writes the tables",
        )
    return hours


def maintain_tables(
    spark: SparkSession,
    config: Config,
    tables: Sequence[str] = names.ALL_TABLES,
    optimize: bool = True,
    vacuum: bool = True,
    retain_hours: float = SAFE_RETENTION_HOURS,
    force: bool = False,
    dry_run: bool = False,
) -> list[TableOutcome]:
    """OPTIMIZE then VACUUM each of ``tables`` that exists; one outcome per table and operation."""
    from delta.tables import DeltaTable

    if vacuum:
        check_retention(retain_hours, force)
    outcomes: list[TableOutcome] = []
    for table in tables:
        path = config.table_path(table)
        if not DeltaTable.isDeltaTable(spark, path):
            outcomes.append(TableOutcome(table, "-", SKIPPED, f"{config.table(table)} does not exist"))
            continue
        if optimize:
            outcomes.append(_attempt(table, OPTIMIZE, partial(optimize_table, spark, path, dry_run)))
        if vacuum:
            outcomes.append(
                _attempt(table, VACUUM, partial(vacuum_table, spark, path, retain_hours, dry_run))
            )
    return outcomes


def _attempt(table: str, operation: str, run: Callable[[], tuple[str, str]]) -> TableOutcome:
    """Run one operation; its failure becomes a *failed* outcome, so the other tables still run."""
    try:
        status, detail = run()
    except Exception as err:
        status, detail = FAILED, _first_line(err)
    return TableOutcome(table, operation, status, detail)


def optimize_table(spark: SparkSession, path: str, dry_run: bool = False) -> tuple[str, str]:
    """Compact the table's small files, Z-ordered where ``zorder_columns`` finds columns."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)
    detail = table.detail().first()
    columns = zorder_columns(table.toDF().columns, detail["partitionColumns"] or ())
    how = f"Z-ORDER BY ({', '.join(columns)})" if columns else "compaction"
    if dry_run:
        return DRY_RUN, f"would optimize {detail['numFiles']} files ({how})"
    builder = table.optimize()
    result = builder.executeZOrderBy(*columns) if columns else builder.executeCompaction()
    metrics = result.first()["metrics"]
    return DONE, f"{how}: {metrics['numFilesRemoved']} files -> {metrics['numFilesAdded']}"


def vacuum_table(
    spark: SparkSession, path: str, retain_hours: float, dry_run: bool = False
) -> tuple[str, str]:
    """VACUUM with ``retain_hours`` (checked by the caller); a dry run lists what would go."""
    listing = str(max(2, spark.sparkContext.defaultParallelism))
    conf = {LISTING_PARALLELISM_CONF: listing}
    if retain_hours < SAFE_RETENTION_HOURS:
        conf[RETENTION_CHECK_CONF] = "false"  # forced: check_retention let it through
    with temporary_conf(spark, conf):
        if dry_run:
            files = spark.sql(f"VACUUM delta.`{path}` RETAIN {retain_hours:g} HOURS DRY RUN").count()
            return DRY_RUN, f"would delete {files} files (retain {retain_hours:g} h)"
        from delta.tables import DeltaTable

        DeltaTable.forPath(spark, path).vacuum(retain_hours)
    return DONE, f"{_deleted_files(spark, path)} files deleted (retain {retain_hours:g} h)"


def _deleted_files(spark: SparkSession, path: str) -> str:
    """Files the last VACUUM removed, from its ``VACUUM END`` commit ("?" when not logged)."""
    from delta.tables import DeltaTable

    for row in DeltaTable.forPath(spark, path).history(10).select("operation", "operationMetrics").collect():
        if row["operation"] == "VACUUM END":
            return str((row["operationMetrics"] or {}).get("numDeletedFiles", "?"))
    return "?"


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:300]

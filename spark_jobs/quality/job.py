"""The quality job: build each suite's frame from Delta, run it, MERGE the results, gate.

``run_quality`` is the thin I/O shell around pure parts (``frames``, ``suites``); it returns the
outcomes and never raises for a failed suite: ``raise_for_critical`` does, so a caller decides
whether a failure stops it (the CLI and the DAGs do). Results are keyed ``(run_id, suite)`` and
MERGEd, so a retried task overwrites its own rows instead of adding more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config, QualitySettings
from spark_jobs.common.delta import ensure_table
from spark_jobs.common.errors import ConfigError, RecsysError
from spark_jobs.quality import frames
from spark_jobs.quality.gx_runner import SuiteOutcome, gx_context, run_suite
from spark_jobs.quality.suites import SuiteDefinition, expectations_dir, load_suites

QUALITY_RESULTS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), nullable=False),
        T.StructField("suite", T.StringType(), nullable=False),
        T.StructField("success", T.BooleanType()),  # null: skipped, its table does not exist yet
        T.StructField("status", T.StringType(), nullable=False),
        T.StructField("critical", T.BooleanType(), nullable=False),
        T.StructField("failed_expectations", T.ArrayType(T.StringType()), nullable=False),
        T.StructField("statistics", T.MapType(T.StringType(), T.DoubleType()), nullable=False),
        T.StructField("checked_at", T.TimestampType(), nullable=False),
    ]
)


class QualitySuiteFailedError(RecsysError):
    """A critical suite failed: the step that depends on the data must not run."""

    exit_code = 4


def suite_parameters(settings: QualitySettings, config: Config, checked_at: datetime) -> dict[str, Any]:
    """Values of the ``$PARAMETER`` placeholders in the suite files, for a run at ``checked_at``."""
    naive = _naive_utc(checked_at)
    return {
        "min_event_ts": _naive_utc(datetime.fromisoformat(settings.min_event_ts)),
        "max_event_ts": naive + timedelta(hours=config.ingest.max_future_skew_hours),
        "top_n": config.serving.top_n,
        "min_training_users": settings.min_training_users,
        "min_training_items": settings.min_training_items,
    }


def dataset_frame(
    spark: SparkSession,
    config: Config,
    dataset: str,
    checked_at: datetime,
    settings: QualitySettings,
) -> DataFrame | None:
    """The frame a suite's ``meta.dataset`` names; None when its source table does not exist."""

    def table(name: str) -> DataFrame | None:
        from delta.tables import DeltaTable

        path = config.table_path(name)
        return spark.read.format("delta").load(path) if DeltaTable.isDeltaTable(spark, path) else None

    if dataset == "silver_window":
        events = table(names.EVENTS)
        window = timedelta(hours=settings.window_hours)
        return None if events is None else frames.silver_window(events, _naive_utc(checked_at), window)
    if dataset == "training_interactions":
        return table(names.EVENTS)
    if dataset == "user_features":
        return table(names.USER_FEATURES)
    if dataset == "recommendation_checks":
        recs = table(names.RECOMMENDATIONS)
        return None if recs is None else frames.recommendation_checks(recs, table(names.ITEMS))
    raise ConfigError(f"unknown dataset {dataset!r}")


def run_quality(
    spark: SparkSession,
    config: Config,
    run_id: str,
    checked_at: datetime,
    suites: Sequence[SuiteDefinition] | None = None,
    settings: QualitySettings | None = None,
) -> list[SuiteOutcome]:
    """Run ``suites`` (default: every file in ``expectations/``) and MERGE their results."""
    settings = settings or config.quality
    suites = load_suites(expectations_dir(config)) if suites is None else suites
    parameters = suite_parameters(settings, config, checked_at)
    context = gx_context(config.lakehouse_root)
    outcomes = []
    for definition in suites:
        frame = dataset_frame(spark, config, definition.dataset, checked_at, settings)
        if frame is None:
            outcomes.append(SuiteOutcome(definition.name, definition.critical, None))
            continue
        outcomes.append(run_suite(context, definition, frame, parameters, run_id))
    write_results(spark, config, run_id, checked_at, outcomes)
    return outcomes


def results_frame(
    spark: SparkSession, run_id: str, checked_at: datetime, outcomes: Sequence[SuiteOutcome]
) -> DataFrame:
    """Outcomes as ``recsys.quality_results`` rows."""
    rows = [
        (
            run_id,
            o.suite,
            o.success,
            o.status,
            o.critical,
            list(o.failed_expectations),
            dict(o.statistics),
            _naive_utc(checked_at),
        )
        for o in outcomes
    ]
    return spark.createDataFrame(rows, QUALITY_RESULTS_SCHEMA)


def write_results(
    spark: SparkSession,
    config: Config,
    run_id: str,
    checked_at: datetime,
    outcomes: Sequence[SuiteOutcome],
) -> None:
    """MERGE on (run_id, suite): a rerun of the same run replaces its rows."""
    from delta.tables import DeltaTable

    ensure_table(spark, config, names.QUALITY_RESULTS, QUALITY_RESULTS_SCHEMA)
    if not outcomes:
        return
    (
        DeltaTable.forPath(spark, config.table_path(names.QUALITY_RESULTS))
        .alias("t")
        .merge(
            results_frame(spark, run_id, checked_at, outcomes).alias("s"),
            "t.run_id = s.run_id AND t.suite = s.suite",
        )
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


def raise_for_critical(outcomes: Sequence[SuiteOutcome]) -> None:
    """Raise ``QualitySuiteFailedError`` listing every failed expectation of critical suites."""
    failed = [o for o in outcomes if o.critical and o.success is False]
    if failed:
        detail = "; ".join(f"{o.suite}: {', '.join(o.failed_expectations) or '?'}" for o in failed)
        raise QualitySuiteFailedError(
            f"critical quality suite(s) failed: {detail}",
            hint="see recsys.quality_results and the data docs under <lakehouse>/_quality",
        )


def _naive_utc(ts: datetime) -> datetime:
    """Spark stores TIMESTAMP as UTC instants; naive UTC values round-trip unchanged (session tz UTC)."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts

"""``recsys drift``: drift report; exit code 0 = no drift, 3 = drift detected."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from spark_jobs.cli.quality import parse_time
from spark_jobs.common import console, names
from spark_jobs.common.config import get_config
from spark_jobs.common.errors import UsageError

EXIT_DRIFT = 3
EXIT_CLEAN = 0
# Databricks task value with the verdict, read by the bundle's condition task.
TASK_VALUE_DRIFTED = "drifted"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "drift",
        help="compare the current window with the reference; exit 3 on drift",
        description="PSI and JS divergence of item popularity, event-type mix, category mix, user "
        "activity and the champion's scores, plus live CTR, between a reference window (the "
        "champion's training window when recorded) and the current window. Rows go to "
        "recsys.drift_reports, plots under <lakehouse>/_drift/<run id>/. Exit 0: no drift; 3: drift.",
    )
    parser.add_argument("--run-id", help="key of this run's rows (default: manual__<time>)")
    parser.add_argument(
        "--at", type=parse_time, metavar="ISO_TIME", help="end of the current window (default: now)"
    )
    parser.add_argument(
        "--reference", type=_window, metavar="START/END", help="explicit reference window (ISO/ISO)"
    )
    parser.add_argument(
        "--current", type=_window, metavar="START/END", help="explicit current window (ISO/ISO)"
    )
    parser.add_argument(
        "--exit-on-drift",
        type=int,
        default=EXIT_DRIFT,
        metavar="CODE",
        help=f"exit code when drift is detected (default {EXIT_DRIFT})",
    )
    parser.add_argument(
        "--exit-on-clean",
        type=int,
        default=EXIT_CLEAN,
        metavar="CODE",
        help=f"exit code when there is no drift (default {EXIT_CLEAN}); Airflow maps one to 'skipped'",
    )
    parser.set_defaults(handler=run)


def _window(text: str) -> tuple[datetime, datetime]:
    start, sep, end = text.partition("/")
    if not sep:
        raise argparse.ArgumentTypeError("use START/END, e.g. 2026-01-01T00:00Z/2026-01-08T00:00Z")
    window = parse_time(start), parse_time(end)
    if window[0] >= window[1]:
        raise argparse.ArgumentTypeError("window START must be before END")
    return window


def run(args: argparse.Namespace) -> int:
    from spark_jobs.common.spark import build_session
    from spark_jobs.drift.job import Windows, default_windows, run_drift

    config = get_config()
    settings = config.drift
    at = args.at or (args.current[1] if args.current else datetime.now(UTC))
    run_id = args.run_id or f"manual__{at.isoformat()}"
    windows = None
    if args.reference or args.current:
        if not (args.reference and args.current):
            raise UsageError("--reference and --current go together")
        windows = Windows(*args.reference, *args.current, reference_source="command line")
    console.step(f"starting Spark ({config.spark.master or 'cluster'})")
    spark = build_session(config, app_name="recsys-drift")
    if windows is None:
        from spark_jobs.drift.job import champion_reference_window

        windows = default_windows(at, settings, champion_reference_window(config))
    console.step(
        f"reference [{windows.reference_start:%Y-%m-%d %H:%M}, {windows.reference_end:%Y-%m-%d %H:%M}) "
        f"({windows.reference_source}) vs current [{windows.current_start:%Y-%m-%d %H:%M}, "
        f"{windows.current_end:%Y-%m-%d %H:%M})"
    )
    report = run_drift(spark, config, run_id, at, settings, windows)
    console.summary(
        f"drift summary ({'DRIFT' if report.drifted else 'no drift'})",
        [
            *((r.metric, describe(r)) for r in report.rows),
            ("report", f"{config.table(names.DRIFT_REPORTS)} run_id={run_id}"),
        ],
    )
    publish_task_value(TASK_VALUE_DRIFTED, "true" if report.drifted else "false")
    return args.exit_on_drift if report.drifted else args.exit_on_clean


def describe(row) -> str:  # MetricRow -> one summary cell
    """``drifted 0.4123 (threshold 0.2)``, or ``skipped: <reason>``."""
    if row.statistic is None:
        return f"{row.status}: {row.detail}"
    return f"{row.status} {row.statistic:.4f} (threshold {row.threshold:g})"


def publish_task_value(key: str, value: str) -> bool:
    """On Databricks, expose ``key`` to later tasks (job task values); elsewhere a no-op.

    Exit codes fail a wheel task, so on a cluster the verdict travels as a task value and a
    condition task branches on it (infra/databricks/databricks.yml). Returns whether it was set.
    """
    if "DATABRICKS_RUNTIME_VERSION" not in os.environ:  # databricks-sdk is installed with mlflow
        return False
    from databricks.sdk.runtime import dbutils  # type: ignore[import-not-found]

    dbutils.jobs.taskValues.set(key=key, value=value)
    return True

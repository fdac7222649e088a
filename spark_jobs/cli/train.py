"""``recsys train [--once]``: train ALS + ranker on silver events, log and register in MLflow,
gate the challenger against the champion, print the metrics table.

Without ``--once`` the command retrains every ``--interval-min`` minutes while new events keep
arriving (the DAG runs it with ``--once``). ``--exit-on-kept CODE`` makes "the gate kept the
champion" an exit code, so a scheduler refreshes the served lists only when the champion changed
(the retrain DAG maps it to "skipped"); on Databricks the same signal is the task value
``promoted`` (infra/databricks/databricks.yml).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import TYPE_CHECKING

from spark_jobs.cli.drift import publish_task_value
from spark_jobs.common import console
from spark_jobs.common.config import get_config
from spark_jobs.common.errors import UsageError

if TYPE_CHECKING:
    from spark_jobs.registry.gate import GateDecision

# Databricks task value: whether the champion changed (the bundle's condition task reads it; a
# wheel task cannot signal through its exit code without failing).
TASK_VALUE_PROMOTED = "promoted"


def _train_once(spark, config, args: argparse.Namespace):  # -> TrainingReport
    from spark_jobs.training.als import DEFAULT_GRID, QUICK_GRID
    from spark_jobs.training.job import REPORT_COLUMNS, run_training
    from spark_jobs.training.pipeline import TrainSettings
    from spark_jobs.training.session import checkpoint_dir

    settings = TrainSettings(
        grid=QUICK_GRID if args.quick else DEFAULT_GRID, checkpoint_dir=checkpoint_dir(config)
    )
    report = run_training(
        spark,
        config,
        settings,
        half_life_days=args.half_life_days,
        register=not args.no_register,
        run_key=args.run_id,
    )
    cols = list(REPORT_COLUMNS)
    if not report.table.empty:
        print()
        print(console.render_table(cols, report.table[cols].itertuples(index=False)))
    if report.champion_table is not None:
        print("\nchampion on the same holdout:")
        print(console.render_table(cols, report.champion_table[cols].itertuples(index=False)))
    rows: list[tuple[str, object]] = [
        ("events", report.n_events),
        ("user-item pairs", report.n_interactions),
        ("mlflow run", report.run_id or "not logged"),
    ]
    registered = "by the run's first attempt" if report.rerun else "(challenger)"
    rows += [(f"registered {name}", f"version {v} {registered}") for name, v in report.versions.items()]
    if report.decision is not None:
        rows.append(("gate", "promoted to champion" if report.decision.promote else "champion kept"))
        rows += [("gate rule", r) for r in report.decision.reasons]
    rows += [(k, round(v, 1)) for k, v in report.timings.items()]
    rows += [("note", n) for n in report.notes]
    console.summary(
        "recsys train",
        rows,
        next_steps=[f"mlflow ui --backend-store-uri {config.tracking_uri}  # runs, models, aliases"],
    )
    return report


def _handle(args: argparse.Namespace) -> int:
    from spark_jobs.training.session import training_session

    logging.basicConfig(level=logging.WARNING, format="    %(message)s")
    if args.interval_min <= 0:
        raise UsageError("--interval-min must be positive")
    if args.run_id is not None and (not args.once or args.no_register or not args.run_id.strip()):
        raise UsageError("--run-id needs --once and a registry (not --no-register), and a non-empty id")
    if args.run_id is not None and "'" in args.run_id:
        raise UsageError(f"--run-id cannot contain a quote: {args.run_id!r}")
    if args.exit_on_kept is not None:
        if not args.once or args.no_register:
            raise UsageError("--exit-on-kept needs --once and a registry (not --no-register)")
        if not 1 <= args.exit_on_kept <= 255:
            raise UsageError(f"--exit-on-kept must be an exit code 1..255, got {args.exit_on_kept}")
    config = get_config()
    console.step("starting Spark")
    spark = training_session(config)
    report = _train_once(spark, config, args)
    if args.once:
        promoted = report.decision is not None and report.decision.promote
        publish_task_value(TASK_VALUE_PROMOTED, "true" if promoted else "false")
        return exit_code(report.decision, args.exit_on_kept)
    from pyspark.sql import functions as F

    from spark_jobs.common import names

    last_events = report.n_events
    while True:
        console.info(f"next check in {args.interval_min:g} min (Ctrl-C to stop)")
        time.sleep(args.interval_min * 60)
        count = spark.table(config.table(names.EVENTS)).agg(F.count(F.lit(1))).first()[0]
        if count != last_events:
            last_events = _train_once(spark, config, args).n_events


def exit_code(decision: GateDecision | None, exit_on_kept: int | None) -> int:
    """0, or ``exit_on_kept`` when it is set and the gate did not promote (the champion stays)."""
    if exit_on_kept is not None and (decision is None or not decision.promote):
        return exit_on_kept
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train ALS + XGBoost ranker on recsys.events; log, register and gate in MLflow",
        description="Train on silver events (+ items/users when present), evaluate on each user's "
        "latest 25%, register recsys_als/recsys_ranker as challenger, promote if the gate passes.",
    )
    parser.add_argument("--once", action="store_true", help="train once and exit")
    parser.add_argument(
        "--interval-min",
        type=float,
        default=60.0,
        help="without --once: minutes between checks for new events (default 60)",
    )
    parser.add_argument(
        "--half-life-days",
        type=float,
        default=90.0,
        help="time decay of interaction weights (default 90; 0 disables)",
    )
    parser.add_argument("--quick", action="store_true", help="small ALS grid (demos, tests)")
    parser.add_argument("--no-register", action="store_true", help="evaluate only; log nothing")
    parser.add_argument(
        "--exit-on-kept",
        type=int,
        metavar="CODE",
        help="with --once: exit with CODE when the gate kept the champion (0 when it promoted); "
        "Airflow maps it to 'skipped' so the scores are refreshed only for a new champion",
    )
    parser.add_argument(
        "--run-id",
        metavar="ID",
        help="with --once: the orchestrator's run id; versions are tagged with it, and a rerun of "
        "the same run (a retried task) registers nothing new and reports the first decision",
    )
    parser.set_defaults(handler=_handle)

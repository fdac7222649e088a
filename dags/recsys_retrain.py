"""
### recsys_retrain

Daily, and on demand (`recsys_drift_monitor` triggers it when the data drifts):
**quality gate -> train (ALS + ranker, registered as challenger) -> promotion gate ->
scorer refresh -> serving quality**.

* `quality_gate` submits `recsys quality` on silver events and the training interactions;
  a failing critical suite stops the run before anything reaches the registry.
* `train` runs `recsys train --once`: fits ALS and the XGBoost ranker on silver, logs to MLflow
  and registers the new versions of `recsys_als` / `recsys_ranker` as `challenger` (tagged with
  their training window, drift's reference); the promotion gate (model validation thresholds,
  code next to the training) moves `champion`. When the gate keeps the champion, the task ends
  *skipped* (`--exit-on-kept`), and so do the next two: nothing served changed. The versions are
  tagged with the run id (`--run-id`): a retry or a cleared rerun of the same run registers
  nothing new and reports the first attempt's decision.
* `refresh_scores` rescoring all active users with the new champion (`recsys score --once`) and
  `serving_quality` (the serving suite) make sure the table users read is complete and consistent.

Reruns are safe: runs are keyed on `run_id`, registrations and results are idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag
from recsys_tasks import DEFAULT_ARGS, EXIT_SKIP, INTERVAL_END, RUN_ID, spark_cli, spark_job


@dag(
    dag_id="recsys_retrain",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recsys", "training", "mlflow"],
    doc_md=__doc__,
    params={"reason": "schedule"},
)
def recsys_retrain() -> None:
    quality_gate = spark_job(
        "quality_gate",
        "quality",
        "--suite",
        "silver_events",
        "--suite",
        "training_interactions",
        "--run-id",
        RUN_ID,
        "--at",
        INTERVAL_END,
    )
    train = spark_cli(
        "train",
        "train",
        "--once",
        "--run-id",
        RUN_ID,
        "--exit-on-kept",
        str(EXIT_SKIP),
        skip_on_exit_code=EXIT_SKIP,
    )
    refresh_scores = spark_cli("refresh_scores", "score", "--once")
    serving_quality = spark_job(
        "serving_quality", "quality", "--suite", "serving", "--run-id", RUN_ID, "--at", INTERVAL_END
    )
    quality_gate >> train >> refresh_scores >> serving_quality


recsys_retrain()

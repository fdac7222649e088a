"""
### recsys_drift_monitor

Hourly guard of the live data: **quality gate -> drift check -> retrain when drifted**.

* `quality_gate` submits `recsys quality --suite silver_events` as a Spark job; a failing
  critical expectation fails the task (its log lists the failing expectations) and stops here.
* `drift_check` runs `recsys drift` for the hour ending at the run's data interval end. Exit
  codes are mapped for Airflow: drift -> success, no drift -> *skipped* (so is the trigger).
* `trigger_retrain` starts `recsys_retrain` with the drift run's id in its conf; one trigger per
  monitor run (a retry does not start a second retraining).

Every task is keyed on `run_id` / the data interval, so a rerun overwrites its own rows in
`recsys.quality_results` and `recsys.drift_reports`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag
from recsys_tasks import DEFAULT_ARGS, EXIT_SKIP, INTERVAL_END, RUN_ID, spark_cli, spark_job


@dag(
    dag_id="recsys_drift_monitor",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recsys", "monitoring", "drift", "quality"],
    doc_md=__doc__,
)
def recsys_drift_monitor() -> None:
    quality_gate = spark_job(
        "quality_gate", "quality", "--suite", "silver_events", "--run-id", RUN_ID, "--at", INTERVAL_END
    )
    drift_check = spark_cli(
        "drift_check",
        "drift",
        "--run-id",
        RUN_ID,
        "--at",
        INTERVAL_END,
        "--exit-on-drift",
        "0",
        "--exit-on-clean",
        str(EXIT_SKIP),
        skip_on_exit_code=EXIT_SKIP,
    )
    trigger_retrain = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id="recsys_retrain",
        trigger_run_id="drift__{{ run_id }}",
        conf={"reason": "drift", "drift_run_id": "{{ run_id }}"},
        skip_when_already_exists=True,
    )
    quality_gate >> drift_check >> trigger_retrain


recsys_drift_monitor()

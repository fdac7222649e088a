"""
### recsys_maintenance

Daily housekeeping of the lakehouse, in this order:

1. `process_erasures`: every pending GDPR erasure request (`recsys forget --pending`): the users'
   rows are deleted from every table holding them, those tables vacuumed with retention 0 and an
   audit row written. First, so no later step copies an erased row anywhere.
2. `optimize`: `OPTIMIZE ... ZORDER BY` on the tables read by user and item (compaction of the
   small files streaming writes).
3. `vacuum`: `VACUUM ... RETAIN 168 HOURS` (7 days: longer than any stream's or reader's
   longest transaction, so no file a live query needs is removed; time travel keeps a week).

One task per table (dynamic task mapping): a failure retries only its table.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag
from recsys_tasks import DEFAULT_ARGS, PROJECT_ROOT, RECSYS, spark_job, task_env

# The ingest tables: they exist as soon as ingest has run once (the tables of later stages join
# this list when a maintenance command that skips missing tables exists).
OPTIMIZE = {
    "events": "OPTIMIZE recsys.events ZORDER BY (user_id, item_id)",
    "events_bronze": "OPTIMIZE recsys.events_bronze",
    "events_quarantine": "OPTIMIZE recsys.events_quarantine",
}
VACUUM_TABLES = ("events_bronze", "events", "events_quarantine")
SAFE_RETENTION_HOURS = 168


@dag(
    dag_id="recsys_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recsys", "maintenance", "gdpr"],
    doc_md=__doc__,
)
def recsys_maintenance() -> None:
    process_erasures = spark_job("process_erasures", "forget", "--pending")
    optimize = BashOperator.partial(
        task_id="optimize", env=task_env(), append_env=True, cwd=str(PROJECT_ROOT)
    ).expand(bash_command=[f'{RECSYS} sql "{q}" --format csv' for q in OPTIMIZE.values()])
    vacuum = BashOperator.partial(
        task_id="vacuum", env=task_env(), append_env=True, cwd=str(PROJECT_ROOT)
    ).expand(
        bash_command=[
            f'{RECSYS} sql "VACUUM recsys.{t} RETAIN {SAFE_RETENTION_HOURS} HOURS" --format csv'
            for t in VACUUM_TABLES
        ]
    )
    process_erasures >> optimize >> vacuum


recsys_maintenance()

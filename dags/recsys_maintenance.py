"""
### recsys_maintenance

Daily housekeeping of the lakehouse, all through `recsys maintain` (the package decides which
tables exist and how each is maintained; this file only orders the steps):

1. `process_erasures`: every pending GDPR erasure request (`recsys forget --pending`): the users'
   rows are deleted from every table holding them, those tables vacuumed with retention 0 and an
   audit row written. First, so no later step copies an erased row anywhere.
2. `optimize`: `OPTIMIZE` of every table that exists, `ZORDER BY (user_id, item_id)` where the
   table has those columns (compaction of the small files streaming writes); missing tables
   (a stage that has not run yet) are skipped and listed in the task log.
3. `vacuum`: `VACUUM ... RETAIN 168 HOURS` of every table that exists (7 days, Delta's default:
   longer than any stream's or reader's longest transaction, so no file a live query needs is
   removed; time travel keeps a week). `recsys maintain` refuses less without `--force`.
4. `clean_leftovers`: checkpoint folders of streaming queries that no longer exist and drift plot
   folders (`<lakehouse>/_drift/<run>`) not written to in the 7 days before the run's data
   interval end; only under the configured roots, local roots only.

A failing table fails its step after the other tables were done; the retry redoes the step
(OPTIMIZE of a compacted table and VACUUM with nothing to delete are cheap no-ops).
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag
from recsys_tasks import DEFAULT_ARGS, INTERVAL_END, recsys_cli, spark_job

SAFE_RETENTION_HOURS = 168
LEFTOVER_DAYS = 7


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
    optimize = spark_job("optimize", "maintain", "--optimize")
    vacuum = spark_job("vacuum", "maintain", "--vacuum", "--retain-hours", str(SAFE_RETENTION_HOURS))
    clean_leftovers = recsys_cli(
        "clean_leftovers",
        "maintain",
        "--checkpoints",
        "--older-than-days",
        str(LEFTOVER_DAYS),
        "--at",
        INTERVAL_END,
    )
    process_erasures >> optimize >> vacuum
    process_erasures >> clean_leftovers


recsys_maintenance()

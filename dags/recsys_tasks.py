"""Operator factories shared by the recsys DAGs: how a task reaches the package, in one place.

DAG tasks never import the project's code into Airflow (Airflow lives in its own virtualenv,
``.venv-airflow``, because its pins conflict with the project's). They call it from outside:

* ``spark_job(...)``  a ``SparkSubmitOperator`` that submits the package's CLI entry point
  (``spark_jobs/cli/main.py``) with ``spark-submit``: the Spark jobs (quality, erasure).
* ``recsys_cli(...)`` a ``BashOperator`` running ``.venv/bin/recsys ...``: CLI calls whose exit
  code carries meaning (``recsys drift``) or that manage their own Spark session.

Everything that differs per machine comes from the environment, read when a DAG file is parsed
(no I/O): ``AIRFLOW_VAR_RECSYS_PROJECT_ROOT`` (the checkout), ``AIRFLOW_VAR_RECSYS_VENV`` (its virtualenv),
``AIRFLOW_VAR_RECSYS_SPARK_CONN_ID`` (Airflow connection giving the master, default ``spark_recsys``),
``AIRFLOW_VAR_RECSYS_SPARK_SUBMIT`` (the spark-submit binary, default the one pyspark ships in the venv).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator

PROJECT_ROOT = Path(os.environ.get("AIRFLOW_VAR_RECSYS_PROJECT_ROOT") or Path(__file__).resolve().parents[1])
VENV = Path(os.environ.get("AIRFLOW_VAR_RECSYS_VENV") or PROJECT_ROOT / ".venv")
RECSYS = str(VENV / "bin" / "recsys")
SPARK_SUBMIT = os.environ.get("AIRFLOW_VAR_RECSYS_SPARK_SUBMIT") or str(VENV / "bin" / "spark-submit")
SPARK_CONN_ID = os.environ.get("AIRFLOW_VAR_RECSYS_SPARK_CONN_ID", "spark_recsys")
CLI_APPLICATION = str(PROJECT_ROOT / "spark_jobs" / "cli" / "main.py")
# Delta + Kafka connector, resolved by spark-submit (the app cannot add packages once launched).
# Kept equal to spark_jobs.common.spark.PACKAGES; tests/unit/test_bundle.py checks it.
SPARK_PACKAGES = "io.delta:delta-spark_2.13:4.0.0,org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0"

# The end of the run's data interval: every task keys its work on it, never on "now".
INTERVAL_END = "{{ (data_interval_end or logical_date or dag_run.run_after).isoformat() }}"
RUN_ID = "{{ run_id }}"

DEFAULT_ARGS = {
    "owner": "recsys-data",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(hours=2),
}

EXIT_SKIP = 99  # the exit code BashOperator turns into "skipped"


def task_env() -> dict[str, str]:
    """What a task adds to the worker's environment: the project's interpreter for Spark.

    Only the additions: SparkSubmitHook and BashOperator (``append_env``) merge them into the
    worker's own environment at run time, so nothing of the parsing process is serialised.
    """
    python = str(VENV / "bin" / "python")
    return {"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python}


def spark_job(task_id: str, *args: str, **kwargs: object) -> SparkSubmitOperator:
    """Submit ``recsys <args>`` as a Spark application (client mode, master from the connection)."""
    return SparkSubmitOperator(
        task_id=task_id,
        application=CLI_APPLICATION,
        application_args=list(args),
        conn_id=SPARK_CONN_ID,
        spark_binary=SPARK_SUBMIT,
        packages=SPARK_PACKAGES,
        name=f"recsys-{task_id}",
        env_vars=task_env(),
        **kwargs,
    )


def recsys_cli(
    task_id: str, *args: str, skip_on_exit_code: int | None = None, **kwargs: object
) -> BashOperator:
    """Run ``.venv/bin/recsys <args>``; ``skip_on_exit_code`` turns that exit code into "skipped"."""
    command = " ".join([RECSYS, *(_quote(a) for a in args)])
    return BashOperator(
        task_id=task_id,
        bash_command=command,
        env=task_env(),
        append_env=True,
        cwd=str(PROJECT_ROOT),
        skip_on_exit_code=skip_on_exit_code,
        **kwargs,
    )


def _quote(arg: str) -> str:
    """Shell-quote an argument but leave Jinja templates to be rendered inside the quotes."""
    return "'" + arg.replace("'", "'\"'\"'") + "'"

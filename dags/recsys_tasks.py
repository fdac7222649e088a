"""Operator factories shared by the recsys DAGs: how a task reaches the package, in one place.

DAG tasks never import the project's code into Airflow (Airflow lives in its own virtualenv,
``.venv-airflow``, because its pins conflict with the project's). They call it from outside:

* ``spark_job(...)``  the Spark jobs (quality, erasure, maintenance): the package's spark-submit
  entry point (``infra/spark/recsys_submit.py``) submitted with ``spark-submit``
  (``SparkSubmitOperator``), or, when ``AIRFLOW_VAR_RECSYS_ENV=cluster``, run on Databricks as a
  ``spark_python_task`` with the project's wheel installed (``DatabricksSubmitRunOperator``). Same
  entry point, same arguments.
* ``spark_cli(...)``  Spark steps whose exit code carries meaning (``recsys drift``, ``recsys train
  --exit-on-kept``) or that manage their own Spark session (``recsys score --once``): a
  ``recsys_cli`` where Airflow runs, except with ``AIRFLOW_VAR_RECSYS_ENV=spark_cluster``, where
  they are submitted like every Spark step (spark-submit in client mode exits with the job's code,
  which maps to "skipped" the same way).
* ``recsys_cli(...)`` a ``BashOperator`` running ``.venv/bin/recsys ...`` where Airflow runs.

Everything that differs per machine comes from the environment (Airflow reads ``AIRFLOW_VAR_*``
as Variables too), read when a DAG file is parsed (no I/O):

* ``AIRFLOW_VAR_RECSYS_PROJECT_ROOT`` (the checkout), ``AIRFLOW_VAR_RECSYS_VENV`` (its virtualenv),
  ``AIRFLOW_VAR_RECSYS_SPARK_CONN_ID`` (Airflow connection giving the master, default ``spark_recsys``),
  ``AIRFLOW_VAR_RECSYS_SPARK_SUBMIT`` (the spark-submit binary, default the one pyspark ships in the venv).
* ``AIRFLOW_VAR_RECSYS_ENV``: ``local`` (default: the batch jobs spark-submitted, training, drift
  and the score refresh where Airflow runs), ``spark_cluster`` (every Spark step spark-submitted to
  the connection's master: a standalone cluster such as ``recsys stack up --spark``'s, YARN or
  Kubernetes, client deploy mode) or ``cluster`` (Databricks), and for ``cluster``:
  ``AIRFLOW_VAR_RECSYS_DATABRICKS_CLUSTER_ID`` (an existing all-purpose cluster; its environment
  must set ``RECSYS_ENV=cluster`` and ``RECSYS_HOME``) or
  ``AIRFLOW_VAR_RECSYS_DATABRICKS_NEW_CLUSTER`` (a job cluster's ``new_cluster`` JSON, as in the
  Jobs API; ``RECSYS_ENV=cluster`` is added to its ``spark_env_vars``), one of them required;
  ``AIRFLOW_VAR_RECSYS_DATABRICKS_CONN_ID`` (default ``databricks_default``),
  ``AIRFLOW_VAR_RECSYS_DATABRICKS_PYTHON_FILE`` (a copy of ``spark_jobs/cli/main.py`` in DBFS or the
  workspace) and ``AIRFLOW_VAR_RECSYS_DATABRICKS_WHEEL`` (the project's wheel, ``pip wheel .``).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException, AirflowSkipException
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context

PROJECT_ROOT = Path(os.environ.get("AIRFLOW_VAR_RECSYS_PROJECT_ROOT") or Path(__file__).resolve().parents[1])
VENV = Path(os.environ.get("AIRFLOW_VAR_RECSYS_VENV") or PROJECT_ROOT / ".venv")
RECSYS = str(VENV / "bin" / "recsys")
SPARK_SUBMIT = os.environ.get("AIRFLOW_VAR_RECSYS_SPARK_SUBMIT") or str(VENV / "bin" / "spark-submit")
SPARK_CONN_ID = os.environ.get("AIRFLOW_VAR_RECSYS_SPARK_CONN_ID", "spark_recsys")
# spark-submit runs a file (no -m): this one calls spark_jobs.cli.main.main with its arguments.
CLI_APPLICATION = str(PROJECT_ROOT / "infra" / "spark" / "recsys_submit.py")
# Delta + Kafka connector, resolved by spark-submit (the app cannot add packages once launched).
# Kept equal to spark_jobs.common.spark.PACKAGES; tests/unit/test_bundle.py checks it.
SPARK_PACKAGES = "io.delta:delta-spark_2.13:4.0.0,org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0"

# Where the Spark jobs run: "local" (spark-submit to the master of SPARK_CONN_ID; the steps of
# spark_cli where Airflow runs), "spark_cluster" (every Spark step spark-submitted to that master)
# or "cluster" (Databricks).
ENVIRONMENTS = ("local", "spark_cluster", "cluster")
RECSYS_ENV = os.environ.get("AIRFLOW_VAR_RECSYS_ENV") or "local"
DATABRICKS_CONN_ID = os.environ.get("AIRFLOW_VAR_RECSYS_DATABRICKS_CONN_ID") or "databricks_default"
DATABRICKS_CLUSTER_ID = os.environ.get("AIRFLOW_VAR_RECSYS_DATABRICKS_CLUSTER_ID", "")
DATABRICKS_NEW_CLUSTER = os.environ.get("AIRFLOW_VAR_RECSYS_DATABRICKS_NEW_CLUSTER", "")
DATABRICKS_PYTHON_FILE = os.environ.get("AIRFLOW_VAR_RECSYS_DATABRICKS_PYTHON_FILE") or "dbfs:/recsys/main.py"
DATABRICKS_WHEEL = (
    os.environ.get("AIRFLOW_VAR_RECSYS_DATABRICKS_WHEEL")
    or "dbfs:/recsys/recsys_lakehouse-0.1.0-py3-none-any.whl"
)

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


class RecsysSparkSubmitOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` that ends *skipped* when the job exits with ``skip_on_exit_code``,
    as ``BashOperator`` does: in client mode spark-submit exits with the Python driver's code."""

    def __init__(self, *, skip_on_exit_code: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skip_on_exit_code = skip_on_exit_code

    def execute(self, context: Context) -> None:
        try:
            super().execute(context)
        except AirflowException:
            submitted = getattr(self._hook, "_submit_sp", None)  # the spark-submit process
            code = getattr(submitted, "returncode", None)
            if self.skip_on_exit_code is not None and code == self.skip_on_exit_code:
                raise AirflowSkipException(f"recsys exited with {code}: skipping") from None
            raise


def spark_job(task_id: str, *args: str, **kwargs: Any) -> BaseOperator:
    """Run ``recsys <args>`` as a Spark application: on Databricks when ``RECSYS_ENV`` is
    ``cluster``, else submitted with spark-submit (client mode, master from the connection)."""
    if RECSYS_ENV == "cluster":
        return databricks_job(task_id, *args, **kwargs)
    return spark_submit_job(task_id, *args, **kwargs)


def spark_cli(
    task_id: str, *args: str, skip_on_exit_code: int | None = None, **kwargs: Any
) -> BaseOperator:
    """``recsys <args>`` where Airflow runs (``recsys_cli``), or, when ``RECSYS_ENV`` is
    ``spark_cluster``, submitted to the connection's master; the exit code means the same."""
    if RECSYS_ENV == "spark_cluster":
        return spark_submit_job(task_id, *args, skip_on_exit_code=skip_on_exit_code, **kwargs)
    _check_env()
    return recsys_cli(task_id, *args, skip_on_exit_code=skip_on_exit_code, **kwargs)


def spark_submit_job(
    task_id: str, *args: str, skip_on_exit_code: int | None = None, **kwargs: Any
) -> BaseOperator:
    """``recsys <args>`` submitted with spark-submit: the entry script, the Delta/Kafka packages,
    the master (and deploy mode) of the Spark connection, the project's Python for driver and
    executors."""
    _check_env()
    if skip_on_exit_code is not None:
        kwargs["skip_on_exit_code"] = skip_on_exit_code
    operator = SparkSubmitOperator if skip_on_exit_code is None else RecsysSparkSubmitOperator
    return operator(
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


def _check_env() -> None:
    if RECSYS_ENV not in ENVIRONMENTS:
        raise ValueError(f"AIRFLOW_VAR_RECSYS_ENV={RECSYS_ENV!r}: use one of {', '.join(ENVIRONMENTS)}")


def databricks_cluster() -> dict[str, Any]:
    """The cluster part of a Databricks run: the configured existing cluster, else a job cluster.

    Raises ``ValueError`` (an import error the DAG list shows) when neither is configured.
    """
    if DATABRICKS_CLUSTER_ID:
        return {"existing_cluster_id": DATABRICKS_CLUSTER_ID}
    if not DATABRICKS_NEW_CLUSTER:
        raise ValueError(
            "AIRFLOW_VAR_RECSYS_ENV=cluster needs AIRFLOW_VAR_RECSYS_DATABRICKS_CLUSTER_ID or "
            "AIRFLOW_VAR_RECSYS_DATABRICKS_NEW_CLUSTER (new_cluster JSON)"
        )
    try:
        cluster = json.loads(DATABRICKS_NEW_CLUSTER)
    except ValueError as err:
        raise ValueError(f"AIRFLOW_VAR_RECSYS_DATABRICKS_NEW_CLUSTER is not JSON: {err}") from None
    if not isinstance(cluster, dict):
        raise ValueError("AIRFLOW_VAR_RECSYS_DATABRICKS_NEW_CLUSTER must be a JSON object")
    cluster["spark_env_vars"] = {"RECSYS_ENV": "cluster", **cluster.get("spark_env_vars", {})}
    return {"new_cluster": cluster}


def databricks_job(task_id: str, *args: str, **kwargs: Any) -> BaseOperator:
    """``recsys <args>`` on Databricks: ``main.py`` as a ``spark_python_task``, the wheel as its library.

    The provider is imported here, not at the top: the local environment does not need it.
    """
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    return DatabricksSubmitRunOperator(
        task_id=task_id,
        databricks_conn_id=DATABRICKS_CONN_ID,
        run_name=f"recsys-{task_id}",
        spark_python_task={"python_file": DATABRICKS_PYTHON_FILE, "parameters": list(args)},
        libraries=[{"whl": DATABRICKS_WHEEL}],
        **databricks_cluster(),
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

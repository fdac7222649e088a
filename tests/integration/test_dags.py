"""The Airflow DAGs: they import cleanly, follow the house rules, and really run.

Airflow lives in its own virtualenv (``.venv-airflow``, built by ``infra/airflow/setup.sh`` when
missing) with a temporary SQLite Airflow home; the DAGs' tasks call the project's CLI and
spark-submit against a temporary lakehouse, exactly as on a developer machine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from spark_jobs.common import names
from spark_jobs.common.config import Config
from tests.drift_scenarios import AT, write_scenario
from tests.training_events import write_events

pytestmark = [pytest.mark.airflow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = ROOT / ".venv-airflow"
DAG_IDS = {"recsys_drift_monitor", "recsys_retrain", "recsys_maintenance"}

DAGBAG_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])  # the scheduler puts the DAGs folder on sys.path the same way
from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {
        d.dag_id: {
            "tags": sorted(d.tags), "catchup": d.catchup, "doc_md": bool(d.doc_md),
            "schedule": str(d.timetable.summary),
            "tasks": {
                t.task_id: {
                    "retries": t.retries,
                    "owner": t.owner,
                    "operator": type(t).__name__,
                    "upstream": sorted(t.upstream_task_ids),
                    **{
                        k: getattr(t, k)
                        for k in (
                            "spark_python_task", "libraries", "existing_cluster_id", "new_cluster",
                            "application", "application_args", "skip_on_exit_code", "bash_command",
                        )
                        if hasattr(t, k)
                    },
                }
                for t in d.tasks
            },
        }
        for d in bag.dags.values()
    },
}))
"""
SPARK_TASKS = {  # (dag, task) -> the recsys arguments its Spark job runs with
    ("recsys_drift_monitor", "quality_gate"): ["quality", "--suite", "silver_events"],
    ("recsys_retrain", "quality_gate"): [
        "quality",
        "--suite",
        "silver_events",
        "--suite",
        "training_interactions",
    ],
    ("recsys_retrain", "serving_quality"): ["quality", "--suite", "serving"],
    ("recsys_maintenance", "process_erasures"): ["forget", "--pending"],
    ("recsys_maintenance", "optimize"): ["maintain", "--optimize"],
    ("recsys_maintenance", "vacuum"): ["maintain", "--vacuum", "--retain-hours", "168"],
}
KEYED_ON_RUN = ["--run-id", "{{ run_id }}", "--at"]  # quality tasks add these (and the interval end)


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of an initialised Airflow: venv built if missing, fresh SQLite home migrated."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "AIRFLOW"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AIRFLOW_CONN_SPARK_RECSYS=json.dumps({"conn_type": "spark", "host": "local[2]"}),
        AIRFLOW_VAR_RECSYS_PROJECT_ROOT=str(ROOT),
        PYTHONPATH=str(ROOT / "dags"),  # what the dag processor does with the bundle root
    )
    setup = subprocess.run(
        ["bash", str(ROOT / "infra" / "airflow" / "setup.sh")],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert setup.returncode == 0, setup.stderr[-3000:]
    return env


def _airflow(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "airflow"), *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _dagbag(env: dict[str, str]) -> dict:
    result = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", DAGBAG_SCRIPT, str(ROOT / "dags")],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dagbag_imports_and_house_rules(airflow_env: dict[str, str]) -> None:
    bag = _dagbag(airflow_env)
    assert bag["errors"] == {}
    assert set(bag["dags"]) == DAG_IDS
    for dag_id, dag in bag["dags"].items():
        assert "recsys" in dag["tags"], dag_id
        assert dag["catchup"] is False, dag_id
        assert dag["doc_md"], dag_id
        for task_id, task in dag["tasks"].items():
            assert task["retries"] >= 1, (dag_id, task_id)
            assert task["owner"] == "recsys-data", (dag_id, task_id)
    assert bag["dags"]["recsys_drift_monitor"]["tasks"].keys() == {
        "quality_gate",
        "drift_check",
        "trigger_retrain",
    }
    assert bag["dags"]["recsys_retrain"]["tasks"].keys() == {
        "quality_gate",
        "train",
        "refresh_scores",
        "serving_quality",
    }
    assert bag["dags"]["recsys_maintenance"]["tasks"].keys() == {
        "process_erasures",
        "optimize",
        "vacuum",
        "clean_leftovers",
    }
    for dag_id, task_id in SPARK_TASKS:  # locally, Spark jobs go through spark-submit
        assert bag["dags"][dag_id]["tasks"][task_id]["operator"] == "SparkSubmitOperator", (dag_id, task_id)
    # train is keyed on the Airflow run: a retried or cleared attempt passes the same run id, and
    # run_training then registers nothing new (tests/integration/test_training.py shows that).
    train = bag["dags"]["recsys_retrain"]["tasks"]["train"]
    assert (train["operator"], train["skip_on_exit_code"]) == ("BashOperator", [99])
    assert train["bash_command"].endswith(
        "/bin/recsys 'train' '--once' '--run-id' '{{ run_id }}' '--exit-on-kept' '99'"
    ), train["bash_command"]


def test_spark_jobs_run_on_databricks_in_the_cluster_environment(airflow_env: dict[str, str]) -> None:
    cluster = {
        "spark_version": "17.3.x-scala2.13",
        "num_workers": 2,
        "spark_env_vars": {"RECSYS_HOME": "dbfs:/r"},
    }
    env = {
        **airflow_env,
        "AIRFLOW_VAR_RECSYS_ENV": "cluster",
        "AIRFLOW_VAR_RECSYS_DATABRICKS_NEW_CLUSTER": json.dumps(cluster),
        "AIRFLOW_VAR_RECSYS_DATABRICKS_PYTHON_FILE": "dbfs:/recsys/main.py",
        "AIRFLOW_VAR_RECSYS_DATABRICKS_WHEEL": "dbfs:/recsys/recsys_lakehouse-0.1.0-py3-none-any.whl",
    }

    bag = _dagbag(env)

    assert bag["errors"] == {}
    for (dag_id, task_id), args in SPARK_TASKS.items():
        task = bag["dags"][dag_id]["tasks"][task_id]
        assert task["operator"] == "DatabricksSubmitRunOperator", (dag_id, task_id)
        assert task["spark_python_task"]["python_file"] == "dbfs:/recsys/main.py"
        parameters = task["spark_python_task"]["parameters"]
        expected = [*args, *KEYED_ON_RUN] if args[0] == "quality" else args
        assert parameters[: len(expected)] == expected, (dag_id, task_id)
        assert len(parameters) == len(expected) + (1 if args[0] == "quality" else 0)
        assert task["libraries"] == [{"whl": "dbfs:/recsys/recsys_lakehouse-0.1.0-py3-none-any.whl"}]
        assert task["new_cluster"] == {
            **cluster,
            "spark_env_vars": {"RECSYS_ENV": "cluster", "RECSYS_HOME": "dbfs:/r"},
        }
        assert task["existing_cluster_id"] is None
    # Tasks whose exit code means something stay where Airflow runs.
    assert bag["dags"]["recsys_retrain"]["tasks"]["train"]["operator"] == "BashOperator"
    assert bag["dags"]["recsys_drift_monitor"]["tasks"]["drift_check"]["operator"] == "BashOperator"

    # An existing cluster wins over a job cluster; neither is an import error that says what to set.
    existing = _dagbag({**env, "AIRFLOW_VAR_RECSYS_DATABRICKS_CLUSTER_ID": "0101-abc"})
    task = existing["dags"]["recsys_maintenance"]["tasks"]["optimize"]
    assert (task["existing_cluster_id"], task["new_cluster"]) == ("0101-abc", None)
    broken = _dagbag({k: v for k, v in env.items() if k != "AIRFLOW_VAR_RECSYS_DATABRICKS_NEW_CLUSTER"})
    assert broken["errors"] and all(
        "AIRFLOW_VAR_RECSYS_DATABRICKS_CLUSTER_ID" in e for e in broken["errors"].values()
    )


def test_every_spark_step_is_submitted_in_the_spark_cluster_environment(airflow_env: dict[str, str]) -> None:
    bag = _dagbag({**airflow_env, "AIRFLOW_VAR_RECSYS_ENV": "spark_cluster"})

    assert bag["errors"] == {}
    submitted = {
        **SPARK_TASKS,
        # Run where Airflow runs in the other environments; submitted here, exit codes kept.
        ("recsys_retrain", "train"): ["train", "--once", "--run-id", "{{ run_id }}", "--exit-on-kept", "99"],
        ("recsys_retrain", "refresh_scores"): ["score", "--once"],
        ("recsys_drift_monitor", "drift_check"): ["drift", "--run-id", "{{ run_id }}", "--at"],
    }
    for (dag_id, task_id), args in submitted.items():
        task = bag["dags"][dag_id]["tasks"][task_id]
        assert task["operator"].endswith("SparkSubmitOperator"), (dag_id, task_id)
        assert task["application"] == str(ROOT / "infra" / "spark" / "recsys_submit.py")
        assert task["application_args"][: len(args)] == args, (dag_id, task_id)
    for dag_id, task_id in [("recsys_retrain", "train"), ("recsys_drift_monitor", "drift_check")]:
        task = bag["dags"][dag_id]["tasks"][task_id]
        assert (task["operator"], task["skip_on_exit_code"]) == ("RecsysSparkSubmitOperator", 99)
    # File housekeeping is no Spark step: it stays where Airflow runs.
    assert bag["dags"]["recsys_maintenance"]["tasks"]["clean_leftovers"]["operator"] == "BashOperator"


BUNDLE = ROOT / "infra" / "databricks" / "databricks.yml"
# The same values in each platform's template language (Airflow / Databricks).
TEMPLATES = {
    "{{ run_id }}": "RUN_ID",
    "{{ (data_interval_end or logical_date or dag_run.run_after).isoformat() }}": "RUN_TIME",
    "{{job.run_id}}": "RUN_ID",
    "{{job.trigger.time.iso_datetime}}": "RUN_TIME",
}
# How a step says "skip what follows" differs by platform (Airflow: an exit code; Databricks: a
# task value read by a condition task), so these flags are not part of what must agree.
EXIT_FLAGS = ("--exit-on-kept", "--exit-on-drift", "--exit-on-clean")
LOCAL_ONLY = {"clean_leftovers"}  # folders under a local lakehouse root: no Databricks step


def _normalised(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in EXIT_FLAGS:
            skip = True
        else:
            out.append(TEMPLATES.get(arg, arg))
    return out


def _bundle_graph(job: dict) -> dict[str, tuple[list[str] | None, set[str]]]:
    """task -> (recsys arguments or None, upstream work tasks), condition tasks looked through."""
    tasks = {t["task_key"]: t for t in job["tasks"]}

    def upstream(key: str) -> set[str]:
        found: set[str] = set()
        for dep in tasks[key].get("depends_on", []):
            parent = dep["task_key"]
            found |= upstream(parent) if "condition_task" in tasks[parent] else {parent}
        return found

    return {
        key: (
            _normalised(task["python_wheel_task"]["parameters"]) if "python_wheel_task" in task else None,
            upstream(key),
        )
        for key, task in tasks.items()
        if "condition_task" not in task
    }


def test_the_databricks_bundle_runs_the_dags_steps_with_the_same_arguments_and_order(
    airflow_env: dict[str, str],
) -> None:
    import yaml

    bag = _dagbag({**airflow_env, "AIRFLOW_VAR_RECSYS_ENV": "spark_cluster"})
    jobs = yaml.safe_load(BUNDLE.read_text(encoding="utf-8"))["resources"]["jobs"]
    for dag_id in DAG_IDS:
        dag = {
            task_id: (
                _normalised(task["application_args"]) if "application_args" in task else None,
                set(task["upstream"]) - LOCAL_ONLY,
            )
            for task_id, task in bag["dags"][dag_id]["tasks"].items()
            if task_id not in LOCAL_ONLY
        }
        assert _bundle_graph(jobs[dag_id]) == dag, dag_id


def _lakehouse_env(airflow_env: dict[str, str], config: Config) -> dict[str, str]:
    return {
        **airflow_env,
        "RECSYS_HOME": config.lakehouse_root,
        "RECSYS_SPARK_MASTER": "local[2]",
        "RECSYS_SPARK__SHUFFLE_PARTITIONS": "2",
        "RECSYS_SPARK__UI_ENABLED": "false",
        "RECSYS_SPARK__DRIVER_MEMORY": "1g",
        "RECSYS_DRIFT__MIN_EVENTS": "50",
    }


def _task_states(airflow_env: dict[str, str], dag_id: str) -> tuple[str, dict[str, str]]:
    db = Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        rows = conn.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
        ).fetchall()
    return run_id, dict(rows)


def _triggered_runs(airflow_env: dict[str, str]) -> list[tuple[str, str]]:
    db = Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT run_id, conf FROM dag_run WHERE dag_id = 'recsys_retrain'").fetchall()


def _drifted_metrics(spark, config: Config, run_id: str) -> set[str]:
    reports = spark.read.format("delta").load(config.table_path(names.DRIFT_REPORTS))
    return {r.metric for r in reports.where(f"run_id = '{run_id}' AND drifted").collect()}


def test_drift_monitor_triggers_retraining_on_planted_drift(
    spark, fresh_lakehouse: Config, airflow_env: dict[str, str]
) -> None:
    config = fresh_lakehouse
    write_scenario(spark, config, drifted=True, at=AT)
    before = _triggered_runs(airflow_env)

    result = _airflow(
        _lakehouse_env(airflow_env, config), "dags", "test", "recsys_drift_monitor", AT.isoformat()
    )

    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    run_id, states = _task_states(airflow_env, "recsys_drift_monitor")
    assert states == {"quality_gate": "success", "drift_check": "success", "trigger_retrain": "success"}
    triggered = [r for r in _triggered_runs(airflow_env) if r not in before]
    assert [r for r, _ in triggered] == [f"drift__{run_id}"]
    assert _drifted_metrics(spark, config, run_id) == {
        "item_popularity.psi",
        "item_popularity.js",
        "event_type_mix.psi",
        "event_type_mix.js",
    }


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_drift_monitor_submits_its_spark_steps_to_the_local_spark_cluster(
    spark, fresh_lakehouse: Config, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """Without drift the monitor stays quiet: nothing triggered, drift_check skipped by its exit
    code. Run in ``spark_cluster``: quality and drift are spark-submitted to a real standalone
    cluster (``recsys stack up --spark``'s code)."""
    from spark_jobs.stack.spark_cluster import LocalSparkCluster
    from tests.integration.test_spark_cluster import cluster_config

    config = fresh_lakehouse
    at = AT + timedelta(days=3)  # a logical date no other run of these tests uses
    write_scenario(spark, config, drifted=False, at=at)
    before = _triggered_runs(airflow_env)
    cluster = LocalSparkCluster(cluster_config(tmp_path / "cluster"))
    port = cluster.master_url.rsplit(":", 1)[1]
    env = {
        **_lakehouse_env(airflow_env, config),  # RECSYS_SPARK_MASTER stays local[2]: spark-submit's wins
        "AIRFLOW_VAR_RECSYS_ENV": "spark_cluster",
        "AIRFLOW_CONN_SPARK_RECSYS": json.dumps(
            {"conn_type": "spark", "host": "spark://127.0.0.1", "port": int(port)}
        ),
    }
    try:
        cluster.start(timeout_s=240)

        result = _airflow(env, "dags", "test", "recsys_drift_monitor", at.isoformat(), timeout=1500)

        assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
        run_id, states = _task_states(airflow_env, "recsys_drift_monitor")
        assert states == {"quality_gate": "success", "drift_check": "skipped", "trigger_retrain": "skipped"}
        assert _triggered_runs(airflow_env) == before
        # Two applications ran on the cluster, each with an executor on both workers.
        state = cluster.state()
        assert state is not None
        apps = [app["id"] for app in state["completedapps"] if app["state"] == "FINISHED"]
        assert len(apps) == 2, state["completedapps"]
        for worker in ("worker-1", "worker-2"):
            ran = {d.name for d in (cluster.work_dir / worker).iterdir()}
            assert ran == set(apps), worker
    finally:
        cluster.stop()
    quality = spark.read.format("delta").load(config.table_path(names.QUALITY_RESULTS))
    assert [(r.run_id, r.suite, r.status) for r in quality.collect()] == [(run_id, "silver_events", "passed")]
    assert _drifted_metrics(spark, config, run_id) == set()


@pytest.mark.slow
@pytest.mark.timeout(2400)  # four Spark applications in a row
def test_retrain_trains_promotes_and_refreshes_the_scores(
    spark, fresh_lakehouse: Config, airflow_env: dict[str, str], movielens_dir: Path
) -> None:
    import mlflow

    from spark_jobs.evaluation import movielens

    config = fresh_lakehouse
    at = AT + timedelta(days=2)  # a logical date no other run of these tests uses
    ratings = movielens.load_ratings(movielens_dir)
    # Arrived an hour before the run (the silver quality suite judges the last day's arrivals);
    # real MovieLens signal, so the first challenger beats popularity and becomes the champion.
    write_events(spark, config, ratings.loc[ratings["user_id"].astype(int) <= 80], at - timedelta(hours=1))

    result = _airflow(
        _lakehouse_env(airflow_env, config), "dags", "test", "recsys_retrain", at.isoformat(), timeout=2100
    )

    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    _, states = _task_states(airflow_env, "recsys_retrain")
    assert states == {
        "quality_gate": "success",
        "train": "success",  # promoted: exit 0, not the "champion kept" code
        "refresh_scores": "success",
        "serving_quality": "success",
    }
    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    for model in (names.MODEL_ALS, names.MODEL_RANKER):
        champion = client.get_model_version_by_alias(model, names.ALIAS_CHAMPION)
        assert str(champion.version) == "1"
        assert {"train_window_start", "train_window_end"} <= set(champion.tags)
    recs = spark.read.format("delta").load(config.table_path(names.RECOMMENDATIONS))
    served = recs.groupBy("user_id").count().collect()
    assert served, "refresh_scores wrote no recommendations"
    assert {r.user_id for r in served} <= {str(u) for u in range(1, 81)}
    assert {r.model_version for r in recs.select("model_version").distinct().collect()} == {
        "als:v1+ranker:v1"
    }

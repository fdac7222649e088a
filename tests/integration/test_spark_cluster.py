"""The local Spark standalone cluster (``recsys stack up --spark``) really runs the project's jobs.

The cluster is the project's own (``LocalSparkCluster``) on free ports; the jobs are separate
processes with ``RECSYS_SPARK__MASTER`` pointing at it (a JVM hosts one SparkContext, so the
shared ``spark`` fixture cannot be used). What ran where is read from Spark's own status APIs: the
master's JSON and the driver's REST API (``/api/v1/applications/<id>/allexecutors``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from spark_jobs.common import names
from spark_jobs.common.config import Config, load_config
from spark_jobs.stack.ports import free_port, port_is_free
from spark_jobs.stack.spark_cluster import LocalSparkCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the synthetic history ends here, whatever the clock says

# Both jobs end by asking their own application's REST API what every executor did.
ALL_EXECUTORS = """
import json, time, urllib.request

def all_executors(sc):
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/allexecutors"
    for attempt in range(5):  # a busy machine can keep the UI from answering for a while
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return json.load(response)
        except OSError:
            if attempt == 4:
                raise
            time.sleep(5)
"""

# Synthetic silver history, then `recsys train` (the CLI's own entry point), in one driver, so
# the application's REST API can still be asked what its executors did when training is done.
TRAIN_JOB = (
    ALL_EXECUTORS
    + """
import json, sys, urllib.request
from spark_jobs.cli.main import main
from spark_jobs.common.config import get_config
from spark_jobs.common.spark import build_session
from spark_jobs.produce.silver import arrow_enabled, write_history

config = get_config()
spark = build_session(config, app_name="recsys-cluster-test")
sc = spark.sparkContext
probe = sc.parallelize(range(8), 8).map(
    lambda _: (sys.executable, __import__("spark_jobs").__file__)
).distinct().collect()
with arrow_enabled(spark):
    write_history(spark, config, n_users=150, n_items=80, n_events=3000, end_ms=int(sys.argv[1]))
code = main(["train", "--once", "--quick"])
executors = all_executors(sc)
print("RESULT " + json.dumps({"app": sc.applicationId, "probe": probe, "executors": executors}))
sys.exit(code)
"""
)

# N rows with distinct ids in many slow tasks (about a second each), written to one Delta table.
SLOW_WRITE_JOB = (
    ALL_EXECUTORS
    + """
import json, sys, time, urllib.request
from pyspark.sql import functions as F
from spark_jobs.common.config import get_config
from spark_jobs.common.spark import build_session

rows, tasks, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
spark = build_session(get_config(), app_name="recsys-cluster-kill")
sc = spark.sparkContext
print("UI " + json.dumps({"url": sc.uiWebUrl, "app": sc.applicationId}), flush=True)

def slowly(batches):
    for batch in batches:
        time.sleep(1.0)
        yield batch

(
    spark.range(0, rows, numPartitions=tasks)
    .mapInPandas(slowly, "id long")
    .withColumn("payload", F.sha2(F.col("id").cast("string"), 256))
    .write.format("delta").save(path)
)
print("RESULT " + json.dumps({"executors": all_executors(sc)}), flush=True)
"""
)


def cluster_config(root: Path) -> Config:
    """A local config for a two-worker cluster on free ports (the UI port has the two after it
    free, for the workers' UIs), with its stack state under ``root``. Shared with the DAG tests."""
    while True:
        ui_port = free_port()
        if port_is_free(ui_port + 1) and port_is_free(ui_port + 2):
            break
    return load_config(
        "local",
        overrides={
            "lakehouse_root": str(root),
            "spark": {"cluster_port": free_port(), "cluster_ui_port": ui_port, "cluster_workers": 2},
        },
        environ={},
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSparkCluster]:
    """A master and two one-core workers of the project's own code, stopped at the end."""
    local = LocalSparkCluster(cluster_config(tmp_path_factory.mktemp("cluster_lakehouse")))
    try:
        local.start(timeout_s=240)
        yield local
    finally:
        local.stop()


def _job_env(cluster: LocalSparkCluster, lakehouse: Path) -> dict[str, str]:
    """The caller's environment with only the lakehouse root and the master set."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "PYSPARK_", "SPARK_", "MLFLOW_"))
    }
    empty_toml = lakehouse.parent / "empty.toml"
    empty_toml.write_text("")
    env.update(
        RECSYS_CONFIG=str(empty_toml),  # not the checkout's recsys.toml, if there is one
        RECSYS_HOME=str(lakehouse),
        RECSYS_SPARK__MASTER=cluster.master_url,
    )
    return env


def _result(stdout: str, tag: str = "RESULT") -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith(tag + " ")]
    assert lines, f"no {tag} line in the job's output:\n{stdout[-3000:]}"
    return json.loads(lines[-1].removeprefix(tag + " "))


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _worker_executors(executors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in executors if e["id"] != "driver"}


def test_train_runs_on_the_workers_executors(cluster: LocalSparkCluster, tmp_path: Path) -> None:
    lakehouse = tmp_path / "lakehouse"

    job = subprocess.run(
        [sys.executable, "-c", TRAIN_JOB, str(END_MS)],
        env=_job_env(cluster, lakehouse),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    print(job.stdout)  # the train summary (timings), shown by pytest -s or on failure
    assert job.returncode == 0, (job.stdout + job.stderr)[-5000:]
    assert "registered recsys_als" in job.stdout, job.stdout[-3000:]
    result = _result(job.stdout)
    # Executors ran this interpreter and imported this checkout's package.
    assert result["probe"] == [[sys.executable, str(ROOT / "spark_jobs" / "__init__.py")]]
    # One executor per worker, both on 127.0.0.1, and both did part of the work.
    executors = _worker_executors(result["executors"])
    assert len(executors) == 2, result["executors"]
    for executor in executors.values():
        assert executor["hostPort"].startswith("127.0.0.1:"), executor
        assert executor["completedTasks"] > 0, executor
        assert executor["failedTasks"] == 0, executor
    # The master saw the application through to the end, on our two workers.
    # (The master hears of the driver's exit a moment after the process ends: wait for it.)
    deadline = time.monotonic() + 60
    while True:
        state = cluster.state()
        assert state is not None
        completed = {app["id"]: app["state"] for app in state["completedapps"]}
        if result["app"] in completed or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert completed.get(result["app"]) == "FINISHED", state["completedapps"]
    assert cluster.alive_workers(state) == ["worker-1", "worker-2"]
    # The model really went into the registry of this lakehouse.
    import mlflow

    uri = f"sqlite:///{lakehouse}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    for model in (names.MODEL_ALS, names.MODEL_RANKER):
        assert [str(v.version) for v in client.search_model_versions(f"name = '{model}'")] == ["1"]


def _delta_table(path: Path) -> tuple[list[tuple[int, str]], list[tuple[str, int]]]:
    """A Delta table read from its log without Spark: its rows (the files added and not removed
    since), and each commit's operation with the number of files it added."""
    live: set[str] = set()
    commits = []
    for commit in sorted((path / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text().splitlines()]
        for action in actions:
            if "add" in action:
                live.add(action["add"]["path"])
            elif "remove" in action:
                live.discard(action["remove"]["path"])
        operation = next(a["commitInfo"]["operation"] for a in actions if "commitInfo" in a)
        commits.append((operation, sum("add" in a for a in actions)))
    rows = []
    for name in live:
        table = pq.read_table(path / name, columns=["id", "payload"])
        rows += list(zip(table["id"].to_pylist(), table["payload"].to_pylist(), strict=True))
    return sorted(rows), commits


def test_a_job_survives_a_killed_worker_without_lost_or_duplicate_rows(
    cluster: LocalSparkCluster, tmp_path: Path
) -> None:
    import hashlib

    rows, tasks = 6000, 24
    table = tmp_path / "ids"
    victim = cluster.status().workers[0]
    assert victim.running and victim.pid is not None
    err_file = tmp_path / "job.err"
    with err_file.open("w") as err_sink:
        job = subprocess.Popen(
            [sys.executable, "-c", SLOW_WRITE_JOB, str(rows), str(tasks), str(table)],
            env=_job_env(cluster, tmp_path / "lakehouse"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err_sink,  # a file: Spark's warnings must not fill a pipe nobody reads yet
            text=True,
        )
    try:
        assert job.stdout is not None
        first = job.stdout.readline()
        assert first.startswith("UI "), first + err_file.read_text()[-3000:]
        ui = json.loads(first.removeprefix("UI "))
        # Kill the worker while its executor is busy and the job is under way, not done.
        deadline = time.monotonic() + 240
        while True:
            assert time.monotonic() < deadline, "the job never had tasks running on both executors"
            assert job.poll() is None, "the job ended before the kill"
            try:
                executors = _worker_executors(
                    _get_json(f"{ui['url']}/api/v1/applications/{ui['app']}/executors")
                )
            except OSError:
                executors = {}
            done = sum(e["completedTasks"] for e in executors.values())
            if len(executors) == 2 and all(e["activeTasks"] > 0 for e in executors.values()) and done >= 2:
                break
            time.sleep(0.5)
        assert done < tasks - 4, "too late: the job was nearly done"
        os.kill(victim.pid, signal.SIGKILL)
        out, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()

    assert job.returncode == 0, (out + err_file.read_text())[-5000:]
    executors = _worker_executors(_result(out)["executors"])
    lost = [e for e in executors.values() if not e["isActive"]]
    assert len(lost) == 1, executors  # the killed worker's executor
    assert cluster.alive_workers() == ["worker-2"]
    assert cluster.status().workers[0].running is False
    # Exactly the rows written, once each: the write committed one file per task, none of the
    # attempts that died with the worker (auto compaction may rewrite them afterwards).
    written, commits = _delta_table(table)
    assert commits[0] == ("WRITE", tasks)
    assert [operation for operation, _ in commits[1:]] in ([], ["OPTIMIZE"])
    assert written == [(i, hashlib.sha256(str(i).encode()).hexdigest()) for i in range(rows)]

    # `start` is idempotent and brings back only what is missing.
    master_pid = cluster.status().master.pid
    cluster.start(timeout_s=180)
    assert cluster.alive_workers() == ["worker-1", "worker-2"]
    assert cluster.status().master.pid == master_pid

"""Scorer throughput in ``--once`` mode: how many users per second ``recsys score --once`` re-ranks.

Set-up (not timed): a synthetic world written straight into the lakehouse under
``<lakehouse_root>/_bench/scorer`` (catalog upsert + silver events, no Kafka), and one training
run with the quick ALS grid that registers the champion in a private MLflow registry.

Timed: ``spark_jobs.serving.job.refresh_all`` in the session ``recsys score`` builds, once as a
warm-up on a few users (JIT, model loading) and then on every active user. The full pass
includes reading the state from silver and loading the models, as the command does.

Figures: ``users_per_s`` (users / seconds of scoring and writing, the rate ``recsys score``
prints), ``users_per_s_end_to_end`` (users / wall time of the whole call, state load included),
``users``, ``rows``, ``seconds``, ``score_s``, ``load_s``, ``train_s``, and the sizes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from benchmarks._world import bench_config, prepare_lakehouse, session
from spark_jobs.common import console, names
from spark_jobs.common.config import Config

QUICK = {"n_users": 2_000, "n_items": 500, "n_events": 60_000}
FULL = {"n_users": 20_000, "n_items": 2_000, "n_events": 600_000}
WARMUP_USERS = 20


def run(config: Config, quick: bool = False, log: TextIO = sys.stdout) -> dict[str, Any]:
    from spark_jobs.serving import job

    sizes = QUICK if quick else FULL
    root = Path(config.lakehouse_root) / "_bench" / "scorer"
    shutil.rmtree(root, ignore_errors=True)
    bench = bench_config(config, root)
    with contextlib.redirect_stdout(log):  # training prints progress; --json keeps stdout clean
        console.step(
            f"synthetic lakehouse: {sizes['n_users']:,} users, {sizes['n_items']:,} items, "
            f"{sizes['n_events']:,} events"
        )
        spark = session(bench, "recsys-bench-scorer")
        prepared = prepare_lakehouse(spark, bench, **sizes, end_ms=int(time.time() * 1000))

        console.step(f"warm-up: refresh_all on {WARMUP_USERS} users")
        users = sorted({u.user_id for u in prepared.history.world.users})[:WARMUP_USERS]
        job.refresh_all(spark, bench, users=users)

        console.step("timed: refresh_all on every active user (recsys score --once)")
        load_start = os.getloadavg()[0]
        started = time.perf_counter()
        scorer = job.refresh_all(spark, bench)
        seconds = time.perf_counter() - started
        load_end = os.getloadavg()[0]
        stats = scorer.stats
        served = (
            spark.read.format("delta").load(bench.table_path(names.RECOMMENDATIONS)).count()
            if stats.users_scored
            else 0
        )
        console.info(
            f"{stats.users_scored:,} users, {stats.rows_written:,} rows in {seconds:.1f}s "
            f"(scoring and writing {stats.seconds:.1f}s)"
        )
    if stats.users_scored == 0:
        raise RuntimeError("refresh_all scored no user: the benchmark measured nothing")
    shutil.rmtree(root, ignore_errors=True)
    return {
        "users_per_s": round(stats.users_scored / stats.seconds, 1),
        "users_per_s_end_to_end": round(stats.users_scored / seconds, 1),
        "users": stats.users_scored,
        "rows": stats.rows_written,
        "serving_table_rows": served,
        "seconds": round(seconds, 2),
        "score_s": round(stats.seconds, 2),
        "load_s": round(seconds - stats.seconds, 2),
        "train_s": round(prepared.train_s, 1),
        "write_history_s": round(prepared.write_s, 1),
        "model_versions": ",".join(sorted(stats.model_versions)),
        "champion_forced": prepared.forced,
        "gate": "; ".join(prepared.gate_reasons),
        "n_users": sizes["n_users"],
        "n_items": sizes["n_items"],
        "n_events": prepared.history.events,
        "top_n": bench.serving.top_n,
        "chunk_users": bench.serving.chunk_users,
        "load_avg_1m_start": round(load_start, 1),
        "load_avg_1m_end": round(load_end, 1),
        "cpus": os.cpu_count(),
        "spark_master": bench.spark.master,
    }

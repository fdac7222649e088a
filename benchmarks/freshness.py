"""End-to-end freshness: from an event's send time to a re-ranked list that accounts for it.

The whole live path runs at once on the local stack, as in production:

* its own Kafka broker (``LocalKafka``) on free ports under ``<lakehouse_root>/_bench/freshness``,
  so the command needs no ``recsys stack up``;
* a lakehouse primed with a synthetic history (straight into silver) and a champion trained
  with the quick ALS grid, in a private MLflow registry;
* one Spark session running the ingest stream (``start_ingest``: Kafka -> bronze + silver +
  quarantine, processing-time trigger) and the scorer stream (``serving.job.start_stream``);
* a producer in its own process (so it does not compete with the scorer for the driver's GIL)
  sending the same world's synthetic traffic at ``RATE`` events/s for ``duration_s``, each event
  stamped with its send time (``event_ts`` = wall clock at send).

Freshness per (user, scorer batch) = ``generated_at - last_event_ts`` in
``recsys.recommendation_log`` (both UTC), for lists whose newest event was sent after the
warm-up. Figures: ``p50_s``, ``p95_s``, ``max_s``, ``events_per_s`` (achieved produce rate),
``scored_lists``, the trigger intervals, and where the time goes:

* per event (each event matched to the first list of its user that accounts for it):
  ``event_p50_s`` / ``event_p95_s`` to ``generated_at``, and ``bronze_p50_s``, ``silver_p50_s``,
  ``visible_p50_s`` / ``visible_p95_s``: when the Delta files holding the event in bronze, in
  silver, and its list in the exposure log were committed (Delta commit timestamps of the commits
  that added them), i.e. when a reader could first see them;
* per query (``recentProgress``): median / p95 batch duration and median rows per batch of
  bronze, silver and the scorer, and the scorer's users per batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import queue
import shutil
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote

import numpy as np
import pandas as pd

from benchmarks._world import SEED, bench_config, prepare_lakehouse, session
from spark_jobs.common import console, names
from spark_jobs.common.config import Config

RATE = 1_000.0
QUICK = {"n_users": 2_000, "n_items": 500, "n_events": 30_000, "duration_s": 60.0, "warmup_s": 10.0}
FULL = {"n_users": 20_000, "n_items": 2_000, "n_events": 300_000, "duration_s": 180.0, "warmup_s": 20.0}
WARMUP_EVENTS = 2_000  # sent and scored before the clock starts: every query compiles its plans
DRAIN_S = 600.0  # after the producer stops: how long the pipeline may take to catch up
POLL_S = 2.0
PRODUCER_READY_S = 300.0
PIPELINE_WARMUP_S = 600.0
TARGET_P95_S = 5.0
PROGRESS_KEPT = "5000"


def run(config: Config, quick: bool = False, log: TextIO = sys.stdout) -> dict[str, Any]:
    from spark_jobs.stack.kafka import LocalKafka
    from spark_jobs.stack.ports import free_port

    sizes = QUICK if quick else FULL
    root = Path(config.lakehouse_root) / "_bench" / "freshness"
    shutil.rmtree(root, ignore_errors=True)
    broker_port, controller_port = free_port(), free_port()
    bench = bench_config(config, root)
    bench = dataclasses.replace(
        bench,
        kafka=dataclasses.replace(
            bench.kafka,
            bootstrap_servers=f"localhost:{broker_port}",
            broker_port=broker_port,
            controller_port=controller_port,
            topic=f"bench.freshness.{time.strftime('%Y%m%d%H%M%S')}",
            starting_offsets="earliest",
        ),
    )
    broker = LocalKafka(bench)
    with contextlib.redirect_stdout(log):  # training prints progress; --json keeps stdout clean
        console.step(f"starting a Kafka broker on localhost:{broker_port}")
        broker.start()
        try:
            figures = _measure(bench, sizes, log)
        finally:
            broker.stop()
    shutil.rmtree(root, ignore_errors=True)
    return figures


@dataclasses.dataclass
class _Live:
    """What the live part of the run produced (inputs to the figures)."""

    produced: dict[str, Any]
    window: tuple[pd.Timestamp, pd.Timestamp]  # event times whose lists are measured
    scorer: Any  # the scorer stream's BatchScorer
    progress: dict[str, dict[int, dict[str, Any]]]  # query name -> batch id -> progress
    warmup_s: float
    drained_after: float | None
    load: tuple[float, float]  # 1-minute load average when the clock started and at the end


def _measure(config: Config, sizes: dict[str, Any], log: TextIO) -> dict[str, Any]:
    console.step(
        f"lakehouse: {sizes['n_users']:,} users, {sizes['n_items']:,} items, "
        f"{sizes['n_events']:,} events of history + a champion"
    )
    spark = session(config, "recsys-bench-freshness")
    spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", PROGRESS_KEPT)
    prepared = prepare_lakehouse(
        spark,
        config,
        n_users=sizes["n_users"],
        n_items=sizes["n_items"],
        n_events=sizes["n_events"],
        end_ms=int(time.time() * 1000) - 60_000,
    )
    live = _live(spark, config, sizes, prepared.history.anchor_ms)
    produced, stats = live.produced, live.scorer.stats
    figures = {
        **_freshness(spark, config, live.window),
        "events_per_s": round(produced["events_per_s"], 1),
        "target_events_per_s": RATE,
        "events_sent": produced["sent"],
        "events_failed": produced["failed"],
        "producer_max_lag_s": round(produced["max_lag_s"], 3),
        "duration_s": sizes["duration_s"],
        "warmup_s": sizes["warmup_s"],
        "pipeline_warmup_s": round(live.warmup_s, 1),
        "drained": live.drained_after is not None,
        "drain_s": round(live.drained_after, 1) if live.drained_after is not None else None,
        "ingest_trigger": config.ingest.trigger_interval,
        "scorer_trigger": config.serving.trigger_interval,
        "kafka_partitions": config.kafka.partitions,
        "scorer_batches": stats.batches,
        "scorer_events": stats.events,
        "scorer_users_scored": stats.users_scored,
        "scorer_busy_s": round(stats.seconds, 1),
        "scorer_read_s": round(stats.read_s, 1),
        "scorer_score_s": round(stats.score_s, 1),
        "scorer_write_s": round(stats.write_s, 1),
        "model_versions": ",".join(sorted(stats.model_versions)),
        "champion_forced": prepared.forced,
        "train_s": round(prepared.train_s, 1),
        "n_users": sizes["n_users"],
        "n_items": sizes["n_items"],
        "history_events": prepared.history.events,
        "target_p95_s": TARGET_P95_S,
        "load_avg_1m_start": round(live.load[0], 1),
        "load_avg_1m_end": round(live.load[1], 1),
        "cpus": os.cpu_count(),
        "spark_master": config.spark.master,
    }
    figures["target_met"] = figures["p95_s"] is not None and figures["p95_s"] <= TARGET_P95_S
    for name, batches in live.progress.items():
        figures.update(_batch_figures(_short(name), list(batches.values())))
    return figures


def _live(spark: Any, config: Config, sizes: dict[str, Any], anchor_ms: int) -> _Live:
    """Streams up, producer warmed up, the timed traffic, the drain; streams and producer stopped."""
    from spark_jobs.ingest import job as ingest
    from spark_jobs.serving import job as serving

    console.step(f"producer: warming up the generator ({RATE:,.0f} events/s of traffic)")
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    producer = ctx.Process(
        target=produce_live,
        args=(config, sizes["n_users"], sizes["n_items"], SEED, anchor_ms, RATE),
        kwargs={
            "duration_s": sizes["duration_s"],
            "warmup_events": WARMUP_EVENTS,
            "ready": ready,
            "go": go,
            "results": results,
        },
        name="freshness-producer",
        daemon=True,
    )
    producer.start()
    queries: list[Any] = []
    progress: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        console.step(
            f"starting the streams: ingest every {config.ingest.trigger_interval}, "
            f"scorer every {config.serving.trigger_interval}"
        )
        scorer_query, scorer = serving.start_stream(spark, config)
        queries = [
            scorer_query,
            ingest.start_ingest(spark, config, once=False),
        ]
        progress = {q.name: {} for q in queries}
        if not ready.wait(PRODUCER_READY_S):
            raise RuntimeError(f"the producer was not ready within {PRODUCER_READY_S:.0f}s")
        console.step(f"warm-up: {WARMUP_EVENTS:,} events through ingest and scorer")
        warmup_s = _wait_for_scorer(queries, progress, scorer, WARMUP_EVENTS, PIPELINE_WARMUP_S)
        if warmup_s is None:
            raise RuntimeError(f"the warm-up events were not scored within {PIPELINE_WARMUP_S:.0f}s")
        console.info(f"warm-up events scored after {warmup_s:.0f}s")

        console.step(f"producing for {sizes['duration_s']:.0f}s (first {sizes['warmup_s']:.0f}s are warm-up)")
        load_start = os.getloadavg()[0]
        go.set()
        t0 = datetime.now(UTC)
        produced = _await_producer(queries, progress, producer, results, sizes["duration_s"])
        console.info(f"sent {produced['sent']:,} events at {produced['events_per_s']:,.0f}/s")

        console.step(f"draining (up to {DRAIN_S:.0f}s)")
        drained_after = _wait_for_scorer(queries, progress, scorer, WARMUP_EVENTS + produced["sent"], DRAIN_S)
        load_end = os.getloadavg()[0]
    finally:
        for q in queries:
            with contextlib.suppress(Exception):
                q.stop()
        producer.join(timeout=10)
        if producer.is_alive():
            producer.terminate()
    for q in queries:
        with contextlib.suppress(RuntimeError):
            _poll([q], progress)
    window = (
        pd.Timestamp(t0) + pd.Timedelta(seconds=sizes["warmup_s"]),
        pd.Timestamp(datetime.fromtimestamp(produced["ended_at"], UTC)),
    )
    return _Live(produced, window, scorer, progress, warmup_s, drained_after, (load_start, load_end))


def _await_producer(
    queries: list[Any],
    progress: dict[str, dict[int, dict[str, Any]]],
    producer: Any,
    results: Any,
    duration_s: float,
) -> dict[str, Any]:
    """The producer's report, watching the queries meanwhile."""
    deadline = time.monotonic() + duration_s + PRODUCER_READY_S
    while True:
        _poll(queries, progress)
        try:
            return dict(results.get(timeout=POLL_S))
        except queue.Empty:
            if not producer.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the producer died or hung without reporting") from None


# --- the producer (a separate process) ----------------------------------------------------------


def produce_live(
    config: Config,
    n_users: int,
    n_items: int,
    seed: int,
    anchor_ms: int,
    rate: float,
    *,
    duration_s: float,
    warmup_events: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Send the world's synthetic traffic at ``rate`` events/s for ``duration_s``, each event
    stamped with its send time; puts a dict of counts and the achieved rate on ``results``.

    First ``warmup_events`` are sent at once (so every query downstream runs a real batch before
    the clock starts) and the generator is warmed up (its sessions simulated up to now); then
    ``ready`` is set, and the timed sending starts when ``go`` is set.
    """
    from itertools import islice

    from spark_jobs.produce.kafka_sink import KafkaSink, ensure_topic, message_key
    from spark_jobs.produce.pacing import pace_rate
    from spark_jobs.produce.synthetic import build_world, generate_events

    world = build_world(n_users, n_items, seed, anchor_ms)
    events = generate_events(world, None, int(time.time() * 1000), events_per_s=rate)
    first = next(events)
    ensure_topic(config)
    with KafkaSink.from_config(config) as sink:
        for event in [first, *islice(events, warmup_events - 1)]:
            event[names.EVENT_TS] = _iso_now()
            sink.send(message_key(event), event)
        sink.flush()
        ready.set()
        go.wait()
        started = time.monotonic()
        deadline = started + duration_s
        max_lag = 0.0
        for index, event in enumerate(pace_rate(events, rate)):
            now = time.monotonic()
            if now >= deadline:
                break
            max_lag = max(max_lag, now - (started + index / rate))
            event[names.EVENT_TS] = _iso_now()
            sink.send(message_key(event), event)
        ended = time.monotonic()
        stats = sink.flush()
    results.put(
        {
            "sent": stats.sent - warmup_events,
            "failed": stats.failed,
            "events_per_s": (stats.submitted - warmup_events) / (ended - started),
            "ended_at": time.time(),
            "max_lag_s": max_lag,
        }
    )


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --- watching the queries ---------------------------------------------------------------------


def _as_dict(progress: Any) -> dict[str, Any]:
    return progress if isinstance(progress, dict) else json.loads(progress.json)


def _poll(queries: Iterable[Any], progress: dict[str, dict[int, dict[str, Any]]]) -> None:
    """Keep every finished micro-batch's progress; fail fast when a query died."""
    for q in queries:
        if not q.isActive and q.exception() is not None:
            raise RuntimeError(f"streaming query {q.name} failed: {q.exception()}")
        for p in q.recentProgress:
            entry = _as_dict(p)
            progress[q.name][int(entry["batchId"])] = entry


def _wait_for_scorer(
    queries: list[Any],
    progress: dict[str, dict[int, dict[str, Any]]],
    scorer: Any,
    events: int,
    timeout_s: float,
) -> float | None:
    """Seconds until the scorer has seen ``events`` events, or None after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        _poll(queries, progress)
        if scorer.stats.events >= events:
            return time.monotonic() - started
        time.sleep(POLL_S)
    return None


# --- figures ----------------------------------------------------------------------------------


def _quantiles(seconds: pd.Series, prefix: str = "") -> dict[str, float | None]:
    values = seconds.dropna().to_numpy(dtype=float)
    if values.size == 0:
        return {f"{prefix}p50_s": None, f"{prefix}p95_s": None, f"{prefix}max_s": None}
    return {
        f"{prefix}p50_s": round(float(np.percentile(values, 50)), 3),
        f"{prefix}p95_s": round(float(np.percentile(values, 95)), 3),
        f"{prefix}max_s": round(float(values.max()), 3),
    }


def _rows_with_commit_time(spark: Any, path: str, columns: list[str]) -> pd.DataFrame:
    """Every row a Delta table ever received, with the time of the commit that added it
    (``written``): when a reader could first see it.

    Read from the data files of the commits that changed data, not from the current snapshot:
    auto-compaction rewrites small files later (``dataChange: false``), and a rewritten file's
    time would date its rows too late. Nothing is vacuumed during the run, so those files exist.
    """
    from pyspark.sql import functions as F

    if "://" in path:
        raise ValueError(f"the freshness benchmark reads Delta logs on local disk, not {path}")
    added = _data_commits(Path(path) / "_delta_log")
    if not added:
        return pd.DataFrame({**{c: [] for c in columns}, "written": pd.Series(dtype="datetime64[ns]")})
    files = [f"{path}/{unquote(name)}" for name in added]
    frame = (
        spark.read.parquet(*files).select(*columns, F.col("_metadata.file_path").alias("_file")).toPandas()
    )
    names_ = frame.pop("_file").map(lambda f: unquote(f).rsplit("/", 1)[-1])
    by_name = {unquote(name).rsplit("/", 1)[-1]: ms for name, ms in added.items()}
    frame["written"] = pd.to_datetime(names_.map(by_name), unit="ms")
    return frame


def _data_commits(log_dir: Path) -> dict[str, int]:
    """``data file path -> commit timestamp (epoch ms)`` for every file a commit added with
    ``dataChange: true`` (appends, MERGE inserts), from the JSON commits of ``_delta_log``."""
    added: dict[str, int] = {}
    for commit in sorted(log_dir.glob("*.json")):
        stamp, paths = None, []
        for line in commit.read_text(encoding="utf-8").splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                stamp = int(action["commitInfo"]["timestamp"])
            elif "add" in action and action["add"].get("dataChange", True):
                paths.append(action["add"]["path"])
        if stamp is None:
            stamp = int(commit.stat().st_mtime * 1000)
        added.update(dict.fromkeys(paths, stamp))
    return added


def _freshness(spark: Any, config: Config, window: tuple[pd.Timestamp, pd.Timestamp]) -> dict[str, Any]:
    from spark_jobs.serving.tables import BATCH_ID, LAST_EVENT_TS

    start, end = (t.tz_convert(None) for t in window)  # Spark hands back naive UTC
    served = _rows_with_commit_time(
        spark,
        config.table_path(names.RECOMMENDATION_LOG),
        [names.USER_ID, BATCH_ID, LAST_EVENT_TS, names.GENERATED_AT],
    )
    lists = served.groupby([names.USER_ID, BATCH_ID], as_index=False).agg(
        last_event_ts=(LAST_EVENT_TS, "max"),
        generated_at=(names.GENERATED_AT, "max"),
        written=("written", "max"),
    )
    lists = lists.loc[lists[LAST_EVENT_TS].between(start, end)]
    per_list = (lists[names.GENERATED_AT] - lists[LAST_EVENT_TS]).dt.total_seconds()
    figures: dict[str, Any] = {**_quantiles(per_list), "scored_lists": len(lists)}
    figures["scored_users"] = int(lists[names.USER_ID].nunique())
    figures.update(_quantiles((lists["written"] - lists[LAST_EVENT_TS]).dt.total_seconds(), "list_visible_"))

    events = _rows_with_commit_time(spark, config.table_path(names.EVENTS), [names.USER_ID, names.EVENT_TS])
    events = events.loc[events[names.EVENT_TS].between(start, end)]
    bronze = _rows_with_commit_time(spark, config.table_path(names.EVENTS_BRONZE), [names.KAFKA_TS])
    bronze = bronze.loc[bronze[names.KAFKA_TS].between(start, end)]
    matched = pd.merge_asof(
        events.sort_values(names.EVENT_TS).rename(columns={"written": "in_silver"}),
        lists.sort_values(LAST_EVENT_TS),
        left_on=names.EVENT_TS,
        right_on=LAST_EVENT_TS,
        by=names.USER_ID,
        direction="forward",
    )
    since = matched[names.EVENT_TS]
    figures.update(
        {
            "events_in_window": len(events),
            "events_unscored": int(matched[names.GENERATED_AT].isna().sum()),
            **_pick(
                _quantiles((matched[names.GENERATED_AT] - since).dt.total_seconds(), "event_"), "p50", "p95"
            ),
            "bronze_p50_s": _median((bronze["written"] - bronze[names.KAFKA_TS]).dt.total_seconds()),
            "silver_p50_s": _median((matched["in_silver"] - since).dt.total_seconds()),
            **_pick(_quantiles((matched["written"] - since).dt.total_seconds(), "visible_"), "p50", "p95"),
        }
    )
    return figures


def _pick(figures: dict[str, Any], *keep: str) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if any(f"_{q}_s" in k for q in keep)}


def _median(seconds: pd.Series) -> float | None:
    values = seconds.dropna()
    return round(float(values.median()), 3) if not values.empty else None


def _short(query_name: str) -> str:
    return {
        names.QUERY_INGEST: "ingest",
        names.QUERY_SCORER: "scorer",
    }.get(query_name, query_name)


def _batch_figures(prefix: str, batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / p95 batch duration and median input rows of the batches that had input."""
    busy = [b for b in batches if b.get("numInputRows", 0) > 0]
    if not busy:
        return {f"{prefix}_batches": 0}
    total = np.array([b["durationMs"].get("triggerExecution", 0) for b in busy], dtype=float) / 1000
    add = np.array([b["durationMs"].get("addBatch", 0) for b in busy], dtype=float) / 1000
    rows = np.array([b["numInputRows"] for b in busy], dtype=float)
    return {
        f"{prefix}_batches": len(busy),
        f"{prefix}_batch_p50_s": round(float(np.median(total)), 3),
        f"{prefix}_batch_p95_s": round(float(np.percentile(total, 95)), 3),
        f"{prefix}_add_batch_p50_s": round(float(np.median(add)), 3),
        f"{prefix}_rows_per_batch_p50": int(np.median(rows)),
    }

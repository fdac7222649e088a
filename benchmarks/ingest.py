"""Ingest throughput: our validated Kafka -> bronze + silver/quarantine path vs a plain passthrough.

Every side reads the same topic of synthetic events (1% malformed, 1% duplicates) in the same
Spark session, drained with ``availableNow``, into its own lakehouse:

* baseline: Kafka -> Delta append of the raw records (no parsing, no validation, no dedup);
* ours: ``spark_jobs.ingest.job.run_once``, the one-query live path (bronze append + validation
  + MERGE dedup + quarantine from one cached micro-batch);
* staged: the staged pair (``start_bronze``, then ``start_silver`` over bronze), the path
  ``recsys ingest --from-bronze`` uses, which was the live path before.

A small warm-up of every side runs first so none pays the JVM's JIT and class loading.
Figures: ``events_per_s`` (ours), ``baseline_events_per_s``, ``ratio`` = ours / baseline,
``staged_events_per_s``, ``staged_ratio`` and ``speedup_vs_staged`` = ours / staged.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from spark_jobs.common import console
from spark_jobs.common.config import Config
from spark_jobs.ingest import job

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 100_000
WARMUP_EVENTS = 20_000
MAX_OFFSETS_PER_TRIGGER = 250_000
SEED = 42


def run(config: Config, quick: bool = False, log: TextIO = sys.stdout) -> dict[str, Any]:
    from spark_jobs.common.spark import build_session

    n_events = QUICK_EVENTS if quick else FULL_EVENTS
    root = Path(config.lakehouse_root) / "_bench" / "ingest"
    shutil.rmtree(root, ignore_errors=True)
    stamp = time.strftime("%Y%m%d%H%M%S")
    warm = _bench_config(config, root / "warmup", f"bench.ingest.warmup.{stamp}")
    main = _bench_config(config, root / "main", f"bench.ingest.{stamp}")
    staged = _bench_config(config, root / "staged", main.kafka.topic)

    console.step(f"producing {WARMUP_EVENTS:,} warm-up and {n_events:,} measured events", stream=log)
    _produce(warm, WARMUP_EVENTS, log)
    produced_per_s = _produce(main, n_events, log)

    spark = build_session(main, app_name="recsys-bench-ingest", extra_conf={"spark.ui.enabled": "false"})
    console.step("warm-up", stream=log)
    _passthrough(spark, warm)
    job.run_once(spark, warm)
    _staged(spark, _bench_config(config, root / "warmup-staged", warm.kafka.topic))

    console.step("baseline: Kafka -> Delta passthrough", stream=log)
    baseline_s = _passthrough(spark, main)
    console.step("ours: Kafka -> bronze + silver + quarantine (one query)", stream=log)
    started = time.perf_counter()
    counts = job.run_once(spark, main)
    ours_s = time.perf_counter() - started
    console.step("staged: Kafka -> bronze, then bronze -> silver + quarantine", stream=log)
    staged_s, bronze_s = _staged(spark, staged)
    for side in (main, staged):
        got = job.table_counts(spark, side)
        if got != counts or got.bronze != n_events:
            raise RuntimeError(f"{side.lakehouse_root}: {got}, {n_events:,} were produced")

    shutil.rmtree(root, ignore_errors=True)
    return {
        "events": n_events,
        "events_per_s": round(n_events / ours_s, 1),
        "baseline_events_per_s": round(n_events / baseline_s, 1),
        "ratio": round(baseline_s / ours_s, 3),
        "staged_events_per_s": round(n_events / staged_s, 1),
        "staged_ratio": round(baseline_s / staged_s, 3),
        "speedup_vs_staged": round(staged_s / ours_s, 2),
        "ours_s": round(ours_s, 2),
        "staged_s": round(staged_s, 2),
        "staged_bronze_s": round(bronze_s, 2),
        "staged_silver_s": round(staged_s - bronze_s, 2),
        "baseline_s": round(baseline_s, 2),
        "silver_rows": counts.silver,
        "quarantine_rows": counts.quarantine,
        "duplicates_dropped": counts.duplicates,
        "producer_events_per_s": round(produced_per_s, 1),
        "kafka_partitions": main.kafka.partitions,
        "max_offsets_per_trigger": MAX_OFFSETS_PER_TRIGGER,
        "spark_master": main.spark.master,
    }


def _staged(spark: Any, config: Config) -> tuple[float, float]:
    """The staged pair, drained one after the other; returns (seconds in all, seconds of bronze)."""
    started = time.perf_counter()
    job.start_bronze(spark, config, once=True).awaitTermination()
    bronze_s = time.perf_counter() - started
    job.start_silver(spark, config, once=True).awaitTermination()
    return time.perf_counter() - started, bronze_s


def _bench_config(config: Config, root: Path, topic: str) -> Config:
    return dataclasses.replace(
        config,
        lakehouse_root=str(root),
        checkpoint_root=str(root / "_checkpoints"),
        kafka=dataclasses.replace(config.kafka, topic=topic, max_offsets_per_trigger=MAX_OFFSETS_PER_TRIGGER),
    )


def _produce(config: Config, n_events: int, log: TextIO) -> float:
    """Send ``n_events`` synthetic records; returns the producer's events/s."""
    from spark_jobs.contract.events import Limits
    from spark_jobs.produce.kafka_sink import KafkaSink, message_key
    from spark_jobs.produce.synthetic import build_world, generate_records, history_start_ms
    from spark_jobs.stack.kafka import LocalKafka

    LocalKafka(config).ensure_topic(config.kafka.topic, config.kafka.partitions)
    end_ms = int(time.time() * 1000)
    start_ms = history_start_ms(end_ms, n_events)
    world = build_world(2_000, 1_000, SEED, start_ms)
    progress = console.Progress(f"produced to {config.kafka.topic}", total=n_events, every_s=5)
    records = generate_records(
        world,
        n_events,
        start_ms,
        bad_fraction=0.01,
        duplicate_fraction=0.01,
        seed=SEED,
        limits=Limits.from_config(config),
    )
    with KafkaSink.from_config(config) as sink:
        for record, _kind in records:
            sink.send(message_key(record), record)
            progress.advance()
    console.info(f"{n_events:,} events at {progress.rate():,.0f}/s", stream=log)
    return progress.rate()


def _passthrough(spark: Any, config: Config) -> float:
    """Plain Kafka -> Delta append of the raw records; returns seconds to drain the topic."""
    path = f"{config.lakehouse_root}/passthrough"
    started = time.perf_counter()
    (
        job.kafka_source(spark, config)
        .selectExpr(
            "CAST(key AS STRING) AS key",
            "CAST(value AS STRING) AS value",
            "topic",
            "partition",
            "offset",
            "timestamp",
        )
        .writeStream.format("delta")
        .option("checkpointLocation", config.checkpoint("passthrough"))
        .trigger(availableNow=True)
        .start(path)
        .awaitTermination()
    )
    elapsed = time.perf_counter() - started
    rows = spark.read.format("delta").load(path).count()
    if rows == 0:
        raise RuntimeError(f"passthrough read nothing from {config.kafka.topic}")
    return elapsed

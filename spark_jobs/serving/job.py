"""The scorer job: silver events -> fresh top-N per touched user in ``recsys.recommendations``.

The stream (``start_stream``) reads silver and the exposure log as Delta streams and groups them
by a hash bucket of the user id into ``UserStateProcessor`` (``transformWithStateInPandas`` on the
RocksDB state store, one map entry per user): each user's bounded history, context and
impressions live in the query's state, on the executors, checkpointed with the query. Every
micro-batch emits the state of the users it touched; the named ``foreachBatch`` sink
(``ScorerSink``) scores them on the executors with the broadcast item snapshot and models, and
writes their lists (MERGE + exposure log) under the query's id and the batch id as Delta
transaction identity.

The checkpoint is never deleted: a restart resumes after the last committed batch, and a batch
that was cut short is replayed from the state as it was before it (Spark restores the state
version), so every event counts once and its user's list is written once. Only the first start
reads history: it seeds the state from silver and the exposure log (``user_states``) at recorded
versions and streams what comes after; the item snapshot is saved beside the checkpoint at every
rebuild, so a restart reads that instead of silver. The checkpoint records the state format;
another format is refused with the command that rebuilds it (``recsys score --reset-state``).

``refresh_all`` is ``recsys score --once``: the same states built from silver by a batch job, the
same scoring and writes. The driver holds models and the item snapshot, nothing per user.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.common import names
from spark_jobs.common.clock import Clock, utc_now
from spark_jobs.common.config import Config
from spark_jobs.common.delta import compact_every, query_id, streaming_session
from spark_jobs.common.errors import RecsysError
from spark_jobs.common.spark import temporary_conf
from spark_jobs.serving.distributed import HAS_PROFILE, PROFILE_COUNTRY, BatchRequest, Counters, score_states
from spark_jobs.serving.models import ModelStore
from spark_jobs.serving.sinks import write_lists
from spark_jobs.serving.snapshot import ItemSnapshot, build_snapshot
from spark_jobs.serving.state import PROFILE_COLUMNS
from spark_jobs.serving.tables import ensure_serving_tables
from spark_jobs.serving.user_state import (
    BUCKET,
    N_EVENTS,
    NEWEST_TS,
    OUTPUT_SCHEMA,
    STATE_FORMAT,
    UserStateProcessor,
    check_format,
    event_inputs,
    served_inputs,
    user_states,
    with_bucket,
)

log = logging.getLogger(__name__)

STATE_STORE_CONF = "spark.sql.streaming.stateStore.providerClass"
ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
NO_DATA_BATCHES_CONF = "spark.sql.streaming.noDataMicroBatches.enabled"
FORMAT_FILE = "recsys_state_format.json"  # beside Spark's files: state format, versions seeded at
SNAPSHOT_FILE = "recsys_item_snapshot.pkl"  # the latest item snapshot: a restart reads only this
CATALOG_COLUMNS = (names.ITEM_ID, "title", "categories", "length_s", "created_ts")


class ScorerInputError(RecsysError):
    """The lakehouse has nothing the scorer can serve from."""


@dataclass
class BatchStats:
    """What the scorer did so far; the CLI prints it, benchmarks read it."""

    batches: int = 0
    events: int = 0
    users_scored: int = 0
    rows_written: int = 0
    unknown_item_events: int = 0
    seconds: float = 0.0
    # Where ``seconds`` went: the state update (the stream's stateful step, materialised with the
    # batch's summary), scoring on the executors, writing (MERGE + exposure log).
    read_s: float = 0.0
    score_s: float = 0.0
    write_s: float = 0.0
    snapshot_refreshes: int = 0
    model_versions: set[str] = field(default_factory=set)


# --- reading (item-sized inputs and the lakehouse's tables) -----------------------------------


def _exists(spark: SparkSession, config: Config, table: str) -> bool:
    return bool(spark.catalog.tableExists(config.table(table)))


def silver(spark: SparkSession, config: Config, version: int | None = None) -> DataFrame:
    """Silver events (at ``version`` when given); a clear error when there is no silver yet."""
    if not _exists(spark, config, names.EVENTS):
        raise ScorerInputError(
            f"table {config.table(names.EVENTS)} does not exist",
            hint="produce and ingest events first (recsys ingest --once)",
        )
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(config.table_path(names.EVENTS))


def table_version(spark: SparkSession, path: str) -> int:
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])


def read_catalog(spark: SparkSession, config: Config) -> Any:
    """``recsys.items`` (item-sized) as pandas, or None without a catalog."""
    if not _exists(spark, config, names.ITEMS):
        return None
    df = spark.table(config.table(names.ITEMS))
    return df.select(*[c for c in CATALOG_COLUMNS if c in df.columns]).toPandas()


def read_snapshot(spark: SparkSession, config: Config, events: DataFrame | None = None) -> ItemSnapshot:
    """The item snapshot of silver and the catalog (Spark jobs; item-sized results only)."""
    events = events if events is not None else silver(spark, config)
    return build_snapshot(events, read_catalog(spark, config), config.serving.half_life_days)


def with_profiles(spark: SparkSession, config: Config, states: DataFrame) -> DataFrame:
    """State rows joined with their ``recsys.users`` profile (a per-user join on the executors)."""
    if not _exists(spark, config, names.USERS):
        return states.withColumn(HAS_PROFILE, F.lit(False))
    users = spark.table(config.table(names.USERS))
    cols = [c for c in PROFILE_COLUMNS if c in users.columns]
    profiles = users.select(names.USER_ID, *cols, F.lit(True).alias(HAS_PROFILE)).dropDuplicates(
        [names.USER_ID]
    )
    # The user's latest context has its own ``country``: the profile's is renamed so both stay.
    profile = profiles.withColumnRenamed("country", PROFILE_COUNTRY) if "country" in cols else profiles
    return states.join(profile, names.USER_ID, "left")


# --- scoring and writing ------------------------------------------------------------------------


class ItemSnapshots:
    """The broadcast item snapshot, rebuilt in the background every ``sources_refresh_batches``
    batches (and soon after an item the snapshot does not know shows up), so no micro-batch
    waits for the Spark jobs that rebuild it. With a ``cache`` path each rebuild is saved there
    (item-sized), so a restarted stream starts from it instead of reading silver."""

    def __init__(
        self, spark: SparkSession, config: Config, snapshot: ItemSnapshot, cache: str | None = None
    ) -> None:
        self.spark = spark
        self.config = config
        self.cache = cache
        self.current = spark.sparkContext.broadcast(snapshot)
        self.since = 0
        self._ready: ItemSnapshot | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.refreshes = 0

    def latest(self) -> Any:
        """The broadcast to score with: a finished rebuild replaces the previous one."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            old, self.current = self.current, self.spark.sparkContext.broadcast(ready)
            old.unpersist()
            self.refreshes += 1
        return self.current

    def tick(self, unknown_items: bool) -> None:
        """Count a batch; start a rebuild when one is due and none is running."""
        self.since += 1
        due = self.since >= self.config.serving.sources_refresh_batches or unknown_items
        if due and (self._thread is None or not self._thread.is_alive()):
            self.since = 0
            self._thread = threading.Thread(target=self._rebuild, name="recsys-snapshot", daemon=True)
            self._thread.start()

    def _rebuild(self) -> None:
        try:
            snapshot = read_snapshot(self.spark, self.config)
            if self.cache is not None:
                save_snapshot(self.spark, self.cache, snapshot)
        except Exception as err:  # keep serving the previous snapshot; the next tick retries
            log.warning("item snapshot rebuild failed, keeping the previous one: %s", err)
            return
        with self._lock:
            self._ready = snapshot


class Scorer:
    """Scores state rows and writes their lists; the stream's sink and ``--once`` share it."""

    def __init__(self, config: Config, store: ModelStore, snapshots: ItemSnapshots, clock: Clock = utc_now):
        self.config = config
        self.store = store
        self.snapshots = snapshots
        self.clock = clock
        self.stats = BatchStats()
        self._models: Any = None

    def models(self, spark: SparkSession) -> Any:
        """The broadcast ``ModelSet``, replaced when an alias moved."""
        if self.store.refresh() or self._models is None:
            if self._models is not None:
                log.info("models changed: %s", self.store.serving().labels)
                self._models.unpersist()
            self._models = spark.sparkContext.broadcast(self.store.serving())
        return self._models

    def score_and_write(
        self, spark: SparkSession, states: DataFrame, users: int, now_ts: float, app_id: str, version: int
    ) -> int:
        """Score ``users`` state rows on the executors and write their lists under ``version``;
        returns the events of unknown items they held (``BATCH_ITEMS``)."""
        snapshot = self.snapshots.latest()
        counters = Counters.create(spark.sparkContext)
        request = BatchRequest(now_ts, self.clock(), self.config.serving, self.config.serving.half_life_days)
        parallelism = max(1, spark.sparkContext.defaultParallelism)
        slices = max(1, min(parallelism, -(-users // max(self.config.serving.chunk_users, 1))))
        joined = with_profiles(spark, self.config, states).coalesce(slices)
        started = time.perf_counter()
        scored = score_states(joined, snapshot, self.models(spark), request, counters).localCheckpoint(
            eager=True
        )
        scored_at = time.perf_counter()
        write_lists(spark, self.config, scored, app_id, version)
        self.stats.score_s += scored_at - started
        self.stats.write_s += time.perf_counter() - scored_at
        self.stats.users_scored += users
        self.stats.rows_written += int(counters.rows.value)
        self.stats.unknown_item_events += int(counters.unknown_item_events.value)
        self.stats.model_versions.update(counters.model_versions.value)
        return int(counters.unknown_item_events.value)


class ScorerSink(Scorer):
    """The named ``foreachBatch`` sink of the scorer stream: the touched users' updated states in,
    their lists out. Its writes are idempotent per (query id, batch id)."""

    def __init__(self, config: Config, store: ModelStore, snapshots: ItemSnapshots, clock: Clock = utc_now):
        super().__init__(config, store, snapshots, clock)
        self.app_id = "pending"
        self.last_batch_id = -1

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        spark = streaming_session(batch)
        states = batch.persist()
        try:
            summary = states.agg(
                F.count(F.lit(1)).alias("users"),
                F.sum(N_EVENTS).alias("events"),
                F.max(NEWEST_TS).alias("now"),
            ).first()
            users, events = int(summary["users"]), int(summary["events"] or 0)
            self.stats.read_s += time.perf_counter() - started
            unknown = 0
            if users:
                unknown = self.score_and_write(
                    spark, states, users, float(summary["now"]), self.app_id, batch_id
                )
                tables = [
                    self.config.table_path(t) for t in (names.RECOMMENDATIONS, names.RECOMMENDATION_LOG)
                ]
                compact_every(spark, tables, batch_id, self.config.spark.stream_compact_every)
        finally:
            states.unpersist()
        self.snapshots.tick(unknown_items=unknown > 0)
        self.stats.snapshot_refreshes = self.snapshots.refreshes
        self.last_batch_id = batch_id
        self.stats.batches += 1
        self.stats.events += events
        self.stats.seconds += time.perf_counter() - started


# --- the checkpoint's state format ----------------------------------------------------------------


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath  # type: ignore[attr-defined]


def _has_offsets(spark: SparkSession, checkpoint: str) -> bool:
    fs, path = _fs(spark, f"{checkpoint}/offsets")
    return bool(fs.exists(path)) and len(fs.listStatus(path)) > 0


def _record(spark: SparkSession, checkpoint: str) -> dict[str, int] | None:
    """What the scorer wrote beside Spark's files: its state format and the silver and exposure
    log versions the state was seeded at (None when there is no record)."""
    fs, path = _fs(spark, f"{checkpoint}/{FORMAT_FILE}")
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        return {k: int(v) for k, v in json.loads(reader.readLine()).items()}
    finally:
        stream.close()


def _write_record(spark: SparkSession, checkpoint: str, record: dict[str, int]) -> None:
    fs, path = _fs(spark, f"{checkpoint}/{FORMAT_FILE}")
    out = fs.create(path, True)
    try:
        out.write(json.dumps(record).encode() + b"\n")
    finally:
        out.close()


def state_format(spark: SparkSession, checkpoint: str) -> int | None:
    """The state format of the stream that ran in ``checkpoint`` (None: none has run there yet).

    A checkpoint with offsets but no record is the driver-side scorer's (format 1).
    """
    if not _has_offsets(spark, checkpoint):
        return None
    record = _record(spark, checkpoint)
    return 1 if record is None else record["state_format"]


def seed_record(spark: SparkSession, config: Config, checkpoint: str) -> dict[str, int]:
    """The silver and exposure log versions the state is seeded at and its number of buckets:
    recorded by the first start and reused until a batch commits, so a first start that dies
    before its first batch is seeded again at the same versions and the stream still scores
    everything after them."""
    record = _record(spark, checkpoint)
    if record is None or record.get("state_format") != STATE_FORMAT:
        record = {
            "state_format": STATE_FORMAT,
            "silver_version": table_version(spark, config.table_path(names.EVENTS)),
            "log_version": table_version(spark, config.table_path(names.RECOMMENDATION_LOG)),
            "state_buckets": max(1, config.serving.state_buckets),
        }
        _write_record(spark, checkpoint, record)
    return record


def save_snapshot(spark: SparkSession, path: str, snapshot: ItemSnapshot) -> None:
    """Write the item snapshot (item-sized) where a restart finds it; replaced atomically."""
    fs, target = _fs(spark, path)
    _, partial = _fs(spark, f"{path}.partial")
    out = fs.create(partial, True)
    try:
        out.write(pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        out.close()
    fs.delete(target, False)
    fs.rename(partial, target)


def load_snapshot(spark: SparkSession, path: str) -> ItemSnapshot | None:
    """The saved item snapshot, or None when there is none or it no longer loads (e.g. written
    by another version of the package): the caller rebuilds it."""
    fs, source = _fs(spark, path)
    if not fs.exists(source):
        return None
    stream = fs.open(source)
    try:
        snapshot = pickle.loads(bytes(stream.readAllBytes()))
    except Exception as err:
        log.warning("saved item snapshot at %s does not load (%s): rebuilding it from silver", path, err)
        return None
    finally:
        stream.close()
    return snapshot if isinstance(snapshot, ItemSnapshot) else None


def reset_state(spark: SparkSession, config: Config) -> bool:
    """Delete the scorer's checkpoint (its state included); the next start seeds it from silver.
    True when there was one."""
    fs, path = _fs(spark, config.checkpoint(names.QUERY_SCORER))
    return bool(fs.exists(path)) and bool(fs.delete(path, True))


# --- the two modes ------------------------------------------------------------------------------


def prepare(spark: SparkSession, config: Config) -> ModelStore:
    """Tables and models: what both modes need before scoring."""
    from spark_jobs.common.spark import register_tables

    register_tables(spark, config)
    ensure_serving_tables(spark, config)
    store = ModelStore(config)
    store.refresh(force=True)
    return store


def exposure_log(spark: SparkSession, config: Config, version: int | None = None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(config.table_path(names.RECOMMENDATION_LOG))


def refresh_all(
    spark: SparkSession, config: Config, clock: Clock = utc_now, users: list[str] | None = None
) -> Scorer:
    """``--once``: score every active user (or ``users``; one without events is a cold start)
    from states built from silver by a batch job."""
    store = prepare(spark, config)
    events = silver(spark, config)
    scorer = Scorer(config, store, ItemSnapshots(spark, config, read_snapshot(spark, config, events)), clock)
    started = time.perf_counter()
    serving = config.serving
    states = user_states(
        events,
        exposure_log(spark, config),
        serving.half_life_days,
        serving.max_history,
        serving.max_seen_items,
    )
    if users is not None:
        wanted = spark.createDataFrame([(u,) for u in dict.fromkeys(users)], f"{names.USER_ID} string")
        states = wanted.join(states, names.USER_ID, "left")
    else:
        newest = states.agg(F.max(NEWEST_TS)).first()[0]
        cutoff = (newest or 0.0) - serving.active_days * 86_400.0
        states = states.where(F.col(NEWEST_TS) >= F.lit(cutoff))
    states = states.persist()
    try:
        summary = states.agg(F.count(F.lit(1)).alias("users"), F.max(NEWEST_TS).alias("now")).first()
        scorer.stats.read_s = time.perf_counter() - started
        n_users = int(summary["users"])
        now_ts = (
            float(summary["now"])
            if summary["now"] is not None
            else scorer.snapshots.current.value.reference_ts
        )
        if n_users:
            # Every run is its own transaction identity: a second --once must write, not look like a replay.
            scorer.score_and_write(spark, states, n_users, now_ts, f"once-{uuid.uuid4().hex}", version=0)
    finally:
        states.unpersist()
    scorer.stats.seconds = time.perf_counter() - started
    scorer.stats.batches = 1
    return scorer


def start_stream(
    spark: SparkSession, config: Config, once: bool = False, clock: Clock = utc_now
) -> tuple[StreamingQuery, ScorerSink]:
    """Start (or resume) the scorer stream over silver and the exposure log.

    ``once`` drains what arrived since (availableNow) and stops; tests and benchmarks use it.
    Raises ``StateFormatError`` when the checkpoint holds another state format.
    """
    store = prepare(spark, config)
    checkpoint = config.checkpoint(names.QUERY_SCORER)
    found = state_format(spark, checkpoint)
    if found is not None:
        check_format(found, checkpoint)
    events_path = config.table_path(names.EVENTS)
    log_path = config.table_path(names.RECOMMENDATION_LOG)
    silver(spark, config)  # a clear error when there is no silver yet
    initial = None
    starts = {events_path: "latest", log_path: "latest"}  # ignored on a restart: the checkpoint wins
    snapshot_path = f"{checkpoint}/{SNAPSHOT_FILE}"
    record = _record(spark, checkpoint) or {}
    if found is None:
        record = seed_record(spark, config, checkpoint)
        event_version, log_version = record["silver_version"], record["log_version"]
        serving = config.serving
        initial = user_states(
            silver(spark, config, event_version),
            exposure_log(spark, config, log_version),
            serving.half_life_days,
            serving.max_history,
            serving.max_seen_items,
        )
        snapshot = read_snapshot(spark, config, silver(spark, config, event_version))
        save_snapshot(spark, snapshot_path, snapshot)
        starts = {events_path: str(event_version + 1), log_path: str(log_version + 1)}
        # Delta refuses a starting version that does not exist yet: "latest" when none came since.
        starts = {
            path: ("latest" if table_version(spark, path) < int(v) else v) for path, v in starts.items()
        }
    else:
        snapshot = load_snapshot(spark, snapshot_path) or read_snapshot(spark, config)
    snapshots = ItemSnapshots(spark, config, snapshot, cache=snapshot_path)
    sink = ScorerSink(config, store, snapshots, clock)

    def stream(path: str) -> DataFrame:
        return (
            spark.readStream.format("delta")
            .option("startingVersion", starts[path])
            .option("skipChangeCommits", "true")
            .load(path)
        )

    # The grouping is part of the state's layout: the number of buckets the state was seeded with.
    buckets = int(record.get("state_buckets", config.serving.state_buckets))
    inputs = with_bucket(
        event_inputs(stream(events_path)).unionByName(served_inputs(stream(log_path))), buckets
    )
    processor = UserStateProcessor(
        config.serving.half_life_days, config.serving.max_history, config.serving.max_seen_items, checkpoint
    )
    states = inputs.groupBy(BUCKET).transformWithStateInPandas(
        statefulProcessor=processor,
        outputStructType=OUTPUT_SCHEMA,
        outputMode="Update",
        timeMode="None",
        initialState=with_bucket(initial, buckets).groupBy(BUCKET) if initial is not None else None,
    )

    def score_micro_batch(batch: DataFrame, batch_id: int) -> None:
        if sink.app_id == "pending":
            sink.app_id = f"{names.QUERY_SCORER}:{query_id(batch.sparkSession, checkpoint)}"
        sink(batch, batch_id)

    writer = (
        states.writeStream.queryName(names.QUERY_SCORER)
        .option("checkpointLocation", checkpoint)
        .foreachBatch(score_micro_batch)
    )
    writer = (
        writer.trigger(availableNow=True)
        if once
        else writer.trigger(processingTime=config.serving.trigger_interval)
    )
    # The query's own settings (it copies the session's when it starts): RocksDB for its state,
    # recorded in the checkpoint; and no "no-data" batches, which the stateful step would
    # otherwise ask for after every batch, each one a pass of the sink with nothing to score.
    query_conf = {STATE_STORE_CONF: ROCKSDB_PROVIDER, NO_DATA_BATCHES_CONF: "false"}
    with temporary_conf(spark, query_conf):
        return writer.start(), sink


def with_serving(config: Config, **changes: object) -> Config:
    """``config`` with some ``serving`` settings replaced (tests, benchmarks, CLI flags)."""
    return dataclasses.replace(config, serving=dataclasses.replace(config.serving, **changes))

"""The scorer job: silver events -> fresh top-N per active user in ``recsys.recommendations``.

``load_state`` reads the lakehouse once (events -> decayed interactions, items, users, context,
impressions); ``BatchScorer`` is the named ``foreachBatch`` sink that folds a micro-batch into the
state, re-scores the users it touched and writes their lists; ``refresh_all`` is ``--once``.

The state is rebuilt from silver at every start, so the stream starts at the silver version the
state was read at, with a fresh checkpoint each time (a checkpoint would only replay events the
state already holds). Writes carry the query's id and batch id as Delta transaction identity.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import compact_every, query_id, streaming_session
from spark_jobs.common.errors import RecsysError
from spark_jobs.serving.models import ModelStore
from spark_jobs.serving.scorer import ScoringRequest, score_users
from spark_jobs.serving.sinks import write_lists
from spark_jobs.serving.state import CREATED_TS, ServingState, empty_pairs
from spark_jobs.serving.tables import ensure_serving_tables
from spark_jobs.training.columns import CATEGORIES, STRENGTH, TIMESTAMP
from spark_jobs.training.interactions import WEIGHT, with_event_weight, with_time_decay

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ITEM_COLUMNS = (names.ITEM_ID, "title", CATEGORIES, "length_s", "created_ts")
USER_COLUMNS = (names.USER_ID, "age_band", "gender", "occupation", "country", "consent_personalization")
POSITIVE = "positive"


class ScorerInputError(RecsysError):
    """The lakehouse has nothing the scorer can serve from."""


def utc_now() -> datetime:
    """The batch's ``generated_at`` stamp (I/O layer only; transforms take it as an argument)."""
    return datetime.now(UTC)


@dataclass
class BatchStats:
    """What the scorer did so far; the CLI prints it, benchmarks read it."""

    batches: int = 0
    events: int = 0
    users_scored: int = 0
    rows_written: int = 0
    unknown_item_events: int = 0
    seconds: float = 0.0
    # Where ``seconds`` went: reading the micro-batch's events and folding them into the state,
    # scoring (fold-in, candidates, ranker, rules, reasons), writing (MERGE + exposure log).
    read_s: float = 0.0
    score_s: float = 0.0
    write_s: float = 0.0
    skipped_replays: int = 0
    model_versions: set[str] = field(default_factory=set)


# --- reading ------------------------------------------------------------------------------------


def _exists(spark: SparkSession, config: Config, table: str) -> bool:
    return bool(spark.catalog.tableExists(config.table(table)))


def event_rows(events: DataFrame, reference: datetime, half_life_days: float) -> DataFrame:
    """Silver events -> one row per event with its decayed weight and context (pure transform)."""
    ctx = names.CONTEXT
    return (
        events.transform(with_event_weight)
        .transform(lambda df: with_time_decay(df, reference, half_life_days))
        .select(
            names.USER_ID,
            names.ITEM_ID,
            F.col(WEIGHT).alias(STRENGTH),
            F.col(names.EVENT_TS).cast("double").alias(TIMESTAMP),
            F.col(names.EVENT_TS).alias("event_ts"),
            F.col(f"{ctx}.device").alias("device"),
            F.col(f"{ctx}.hour_of_day").alias("hour_of_day"),
            F.col(f"{ctx}.country").alias("country"),
        )
    )


def split_events(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Series]:
    """Event rows -> (pair contributions, latest context per user, positive events, newest time
    per user). Pure pandas, shared by the initial load and every micro-batch."""
    pairs = rows.groupby([names.USER_ID, names.ITEM_ID], sort=False, as_index=False).agg(
        **{STRENGTH: (STRENGTH, "sum"), TIMESTAMP: (TIMESTAMP, "max")}
    )
    ordered = rows.sort_values(TIMESTAMP, kind="stable")
    latest = (
        ordered.groupby(names.USER_ID).tail(1).set_index(names.USER_ID)[["device", "hour_of_day", "country"]]
    )
    positives = rows.loc[rows[STRENGTH] > 0, [names.USER_ID, "country", names.ITEM_ID, TIMESTAMP]]
    newest = rows.groupby(names.USER_ID)["event_ts"].max()
    return pairs.loc[pairs[STRENGTH] != 0], latest, positives, newest


def read_items(spark: SparkSession, config: Config) -> pd.DataFrame:
    if not _exists(spark, config, names.ITEMS):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ITEM_COLUMNS})
    df = spark.table(config.table(names.ITEMS))
    cols = [c for c in ITEM_COLUMNS if c in df.columns]
    items = df.select(*cols).toPandas()
    for col in ITEM_COLUMNS:
        if col not in items.columns:
            items[col] = None
    items[CATEGORIES] = items[CATEGORIES].map(lambda c: list(c) if c is not None else [])
    items[CREATED_TS] = (
        pd.to_datetime(items[CREATED_TS])
        .map(lambda t: t.timestamp() if pd.notna(t) else np.nan)
        .astype(float)
    )
    return items


def read_users(spark: SparkSession, config: Config) -> pd.DataFrame:
    if not _exists(spark, config, names.USERS):
        return pd.DataFrame({names.USER_ID: pd.Series(dtype=object)})
    df = spark.table(config.table(names.USERS))
    return df.select(*[c for c in USER_COLUMNS if c in df.columns]).toPandas()


def with_catalog_items(items: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The catalog plus items seen in events but missing from ``recsys.items`` (no metadata)."""
    known = set(items[names.ITEM_ID].astype(str))
    extra = sorted(set(pairs[names.ITEM_ID]) - known)
    if not extra:
        return items
    add = pd.DataFrame({names.ITEM_ID: extra, CATEGORIES: [[] for _ in extra], CREATED_TS: np.nan})
    return pd.concat([items, add], ignore_index=True)


def load_state(spark: SparkSession, config: Config) -> tuple[ServingState, int]:
    """The serving state from the lakehouse, and the silver version it was read at."""
    from delta.tables import DeltaTable

    if not _exists(spark, config, names.EVENTS):
        raise ScorerInputError(
            f"table {config.table(names.EVENTS)} does not exist",
            hint="produce and ingest events first (recsys ingest --once)",
        )
    path = config.table_path(names.EVENTS)
    version = int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])
    events = spark.read.format("delta").option("versionAsOf", version).load(path)
    newest = events.agg(F.max(names.EVENT_TS)).first()[0]
    reference = newest or datetime(1970, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    rows = event_rows(events, reference, config.serving.half_life_days).toPandas()
    pairs, latest, positives, _ = (
        split_events(rows) if not rows.empty else (empty_pairs(), pd.DataFrame(), pd.DataFrame(), None)
    )
    items = with_catalog_items(read_items(spark, config), pairs)
    state = ServingState(
        pairs=pairs if not pairs.empty else empty_pairs(),
        items=items,
        users=read_users(spark, config),
        context=latest if not latest.empty else pd.DataFrame(columns=["device", "hour_of_day", "country"]),
        country_events=positives
        if not positives.empty
        else pd.DataFrame(columns=["country", names.ITEM_ID, TIMESTAMP]),
        reference_ts=reference.replace(tzinfo=UTC).timestamp(),
        impressions=read_impressions(spark, config),
    )
    state.refresh()
    return state, version


def read_impressions(spark: SparkSession, config: Config) -> dict[tuple[str, str], int]:
    """How often each (user, item) was served, from the exposure log (fatigue rule)."""
    if not _exists(spark, config, names.RECOMMENDATION_LOG):
        return {}
    counts = (
        spark.table(config.table(names.RECOMMENDATION_LOG))
        .select(names.USER_ID, names.ITEM_ID, "batch_id", names.GENERATED_AT)
        .distinct()
        .groupBy(names.USER_ID, names.ITEM_ID)
        .count()
        .toPandas()
    )
    return {(u, i): int(n) for u, i, n in counts.itertuples(index=False)}


# --- scoring and writing ------------------------------------------------------------------------


class BatchScorer:
    """The named ``foreachBatch`` sink of the scorer stream (also driven directly by ``--once``)."""

    def __init__(
        self, config: Config, state: ServingState, store: ModelStore, app_id: str, clock: Clock = utc_now
    ) -> None:
        self.config = config
        self.state = state
        self.store = store
        self.app_id = app_id
        self.clock = clock
        self.stats = BatchStats()
        self.last_batch_id = -1

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if batch_id <= self.last_batch_id:  # a replay of a batch this process already applied
            self.stats.skipped_replays += 1
            return
        started = time.perf_counter()
        reference = datetime.fromtimestamp(self.state.reference_ts, UTC).replace(tzinfo=None)
        rows = event_rows(batch, reference, self.config.serving.half_life_days).toPandas()
        if not rows.empty:
            self.apply_events(rows)
        self.stats.read_s += time.perf_counter() - started
        if not rows.empty:
            users = rows[names.USER_ID].unique().tolist()
            spark = streaming_session(batch)
            self.score_and_write(spark, users, self._newest(rows), batch_id)
            tables = [self.config.table_path(t) for t in (names.RECOMMENDATIONS, names.RECOMMENDATION_LOG)]
            compact_every(spark, tables, batch_id, self.config.spark.stream_compact_every)
        self.last_batch_id = batch_id
        self.stats.batches += 1
        self.stats.events += len(rows)
        self.stats.seconds += time.perf_counter() - started

    @staticmethod
    def _newest(rows: pd.DataFrame) -> pd.Series:
        return rows.groupby(names.USER_ID)["event_ts"].max()

    def apply_events(self, rows: pd.DataFrame) -> None:
        """Fold a batch's events into the state (pairs, context, impressions reset, sources)."""
        pairs, latest, positives, _ = split_events(rows)
        unknown = ~rows[names.ITEM_ID].isin(set(self.state.items[names.ITEM_ID]))
        self.stats.unknown_item_events += int(unknown.sum())
        self.state.add_pairs(pairs)
        self.state.add_context(latest, positives)
        self.state.forget_impressions(positives)
        self.state.batches_since_refresh += 1
        if unknown.any() or self.state.batches_since_refresh >= self.config.serving.sources_refresh_batches:
            self.state.items = with_catalog_items(self.state.items, self.state.pairs)
            self.state.refresh()

    def score_and_write(
        self, spark: SparkSession, users: list[str], newest: pd.Series, version: int
    ) -> pd.DataFrame:
        """Score ``users`` and write their lists (MERGE + exposure log) under ``version``.

        ``spark`` is the micro-batch's own session in the stream (``batch.sparkSession``): the
        transaction identity of the MERGE is a session setting and must not leak into other
        queries of the same application.
        """
        if self.store.refresh():
            log.info("models changed: %s", {v: m.label for v, m in self.store.models.items()})
        if not users:
            return pd.DataFrame()
        now_ts = float(pd.Timestamp(newest.max()).tz_localize(UTC).timestamp())
        request = ScoringRequest(users, now_ts, self.clock(), newest)
        started = time.perf_counter()
        recs = score_users(self.state, self.store, request, self.config.serving)
        scored = time.perf_counter()
        if not recs.empty:
            write_lists(spark, self.config, recs, self.app_id, version)
            self.state.add_impressions(recs)
        self.stats.score_s += scored - started
        self.stats.write_s += time.perf_counter() - scored
        self.stats.users_scored += len(users)
        self.stats.rows_written += len(recs)
        self.stats.model_versions.update(
            recs[names.MODEL_VERSION].unique().tolist() if not recs.empty else []
        )
        return recs


def active_users(state: ServingState, active_days: float) -> tuple[list[str], pd.Series]:
    """Users with an event in the last ``active_days`` of data, and their newest event time."""
    if state.pairs.empty:
        return [], pd.Series(dtype="datetime64[ns]")
    newest = state.pairs.groupby(names.USER_ID)[TIMESTAMP].max()
    cutoff = float(newest.max()) - active_days * 86_400.0
    active = newest.loc[newest >= cutoff].sort_index()
    times = pd.to_datetime(active, unit="s")
    return active.index.tolist(), times


def prepare(spark: SparkSession, config: Config) -> tuple[ServingState, int, ModelStore]:
    """Tables, state and models: what both modes need before scoring."""
    from spark_jobs.common.spark import register_tables

    register_tables(spark, config)
    ensure_serving_tables(spark, config)
    state, version = load_state(spark, config)
    store = ModelStore(config)
    store.refresh(force=True)
    return state, version, store


def refresh_all(
    spark: SparkSession, config: Config, clock: Clock = utc_now, users: list[str] | None = None
) -> BatchScorer:
    """``--once``: score every active user (or ``users``) from a freshly loaded state."""
    state, version, store = prepare(spark, config)
    # Every run is its own transaction identity: a second --once must write, not look like a replay.
    scorer = BatchScorer(config, state, store, app_id=f"once-v{version}-{uuid.uuid4().hex}", clock=clock)
    wanted, newest = active_users(state, config.serving.active_days)
    if users is not None:
        all_newest = state.pairs.groupby(names.USER_ID)[TIMESTAMP].max()
        wanted = list(dict.fromkeys(users))
        newest = pd.to_datetime(all_newest.reindex(wanted), unit="s")
    started = time.perf_counter()
    scorer.score_and_write(spark, wanted, newest, version=0)
    scorer.stats.seconds = time.perf_counter() - started
    scorer.stats.batches = 1
    return scorer


def start_stream(
    spark: SparkSession, config: Config, once: bool = False, clock: Clock = utc_now
) -> tuple[StreamingQuery, BatchScorer]:
    """Start the scorer stream over silver, from the version the state was loaded at.

    ``once`` drains what arrived since (availableNow) and stops; tests and benchmarks use it.
    """
    state, version, store = prepare(spark, config)
    checkpoint = config.checkpoint(names.QUERY_SCORER)
    if "://" not in checkpoint:
        shutil.rmtree(checkpoint, ignore_errors=True)
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    # The state holds silver up to ``version``: stream what came after it ("latest" when nothing
    # has, since Delta refuses a starting version that does not exist yet).
    from delta.tables import DeltaTable

    path = config.table_path(names.EVENTS)
    current = int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])
    source = (
        spark.readStream.format("delta")
        .option("startingVersion", "latest" if current == version else str(version + 1))
        .option("skipChangeCommits", "true")
        .load(path)
    )
    scorer = BatchScorer(config, state, store, app_id="pending", clock=clock)

    def score_micro_batch(batch: DataFrame, batch_id: int) -> None:
        if scorer.app_id == "pending":
            scorer.app_id = f"{names.QUERY_SCORER}:{query_id(batch.sparkSession, checkpoint)}"
        scorer(batch, batch_id)

    writer = (
        source.writeStream.queryName(names.QUERY_SCORER)
        .option("checkpointLocation", checkpoint)
        .foreachBatch(score_micro_batch)
    )
    writer = (
        writer.trigger(availableNow=True)
        if once
        else writer.trigger(processingTime=config.serving.trigger_interval)
    )
    return writer.start(), scorer


def with_serving(config: Config, **changes: object) -> Config:
    """``config`` with some ``serving`` settings replaced (tests, benchmarks, CLI flags)."""
    return dataclasses.replace(config, serving=dataclasses.replace(config.serving, **changes))

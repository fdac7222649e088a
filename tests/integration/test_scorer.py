"""The streaming scorer against real Delta tables and a real MLflow registry.

One lakehouse for the module: MovieLens users 1..60 as silver events, the MovieLens catalog in
``recsys.items`` plus one brand-new item, and a small champion trained by ``run_training``. The
scorer runs as a real Delta stream over silver with its state in the checkpoint, which the tests
of the module share in order: a later test's stream resumes where the previous one stopped.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.common.spark import register_tables
from spark_jobs.contract.events import silver_schema
from spark_jobs.evaluation import movielens
from spark_jobs.produce import catalog
from spark_jobs.produce.movielens import read_items
from spark_jobs.serving import job
from spark_jobs.serving.distributed import BatchRequest, score_states
from spark_jobs.serving.scorer import NEW_HERE, SOURCE_NEW, ScoringRequest, score_users
from spark_jobs.serving.sinks import pad_ranks
from spark_jobs.serving.state import ServingState
from spark_jobs.serving.user_state import (
    BATCH_ITEMS,
    N_EVENTS,
    NEWEST_TS,
    OUTPUT_SCHEMA,
    STATE_FORMAT,
    StateFormatError,
    user_states,
)
from spark_jobs.training.als import AlsParams
from spark_jobs.training.interactions import event_weight
from spark_jobs.training.job import run_training
from spark_jobs.training.pipeline import TrainSettings

pytestmark = [pytest.mark.spark, pytest.mark.integration]

SETTINGS = TrainSettings(grid=(AlsParams(rank=16, reg_param=0.3, alpha=1.0, max_iter=5),))
FIXED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NEW_ITEM = "new-doc-1"


def clock() -> datetime:
    return FIXED


def silver_rows(
    events: list[tuple[str, str, str, datetime, float | None]], country: str = "US"
) -> list[tuple]:
    """(user, item, event_type, ts, value) -> silver rows with fresh event ids."""
    rows = []
    for user, item, event_type, ts, value in events:
        rows.append(
            (
                str(uuid.uuid4()),
                event_type,
                user,
                item,
                None,
                ts.replace(tzinfo=None),
                None,
                None,
                value,
                ("desktop", country, None, ts.hour),
                1,
                ts.date(),
                ts.replace(tzinfo=None),
            )
        )
    return rows


def append_silver(spark, config, rows: list[tuple]) -> None:
    spark.createDataFrame(rows, schema=silver_schema()).write.format("delta").mode("append").save(
        config.table_path(names.EVENTS)
    )


@pytest.fixture(scope="module")
def lakehouse(spark, config, tmp_path_factory, movielens_dir: Path):
    root = tmp_path_factory.mktemp("scorer") / "lakehouse"
    cfg = dataclasses.replace(config, lakehouse_root=str(root), checkpoint_root=str(root / "_checkpoints"))
    for table in names.ALL_TABLES:
        spark.sql(f"DROP TABLE IF EXISTS {cfg.table(table)}")
    ratings = movielens.load_ratings(movielens_dir)
    ratings = ratings.loc[ratings["user_id"].astype(int) <= 60]
    events = [
        (
            str(r.user_id),
            str(r.item_id),
            "rating",
            datetime.fromtimestamp(int(r.timestamp), tz=UTC),
            float(r.rating),
        )
        for r in ratings.itertuples(index=False)
    ]
    append_silver(spark, cfg, silver_rows(events))
    newest = max(e[3] for e in events)
    items = read_items(movielens_dir)
    items.append(
        {
            "item_id": NEW_ITEM,
            "title": "A brand new documentary",
            "categories": ["Documentary"],
            "length_s": 300,
            "created_ts": newest - timedelta(days=1),
            "source": "test",
        }
    )
    for row in items:
        row.pop("imdb_url", None)
    catalog.upsert_catalog(spark, cfg, catalog.items_df(spark, items), None, FIXED)
    register_tables(spark, cfg)
    report = run_training(spark, cfg, SETTINGS)
    assert report.decision is not None and report.decision.promote
    return cfg, newest


def scored_batch(spark, config, user: str) -> int:
    """The scorer stream's batch id of the user's latest list in the exposure log."""
    log = spark.read.format("delta").load(config.table_path(names.RECOMMENDATION_LOG))
    return int(log.where(F.col(names.USER_ID) == user).agg(F.max("batch_id")).first()[0])


def recommendations(spark, config) -> pd.DataFrame:
    return (
        spark.read.format("delta")
        .load(config.table_path(names.RECOMMENDATIONS))
        .toPandas()
        .sort_values([names.USER_ID, names.RANK])
        .reset_index(drop=True)
    )


def test_once_scores_every_active_user_with_rules_and_reasons(spark, lakehouse):
    config, _ = lakehouse
    scorer = job.refresh_all(spark, config, clock=clock)
    recs = recommendations(spark, config)
    users = set(recs[names.USER_ID])
    assert scorer.stats.users_scored == len(users) > 0
    top_n = config.serving.top_n
    assert recs.groupby(names.USER_ID).size().eq(top_n).all()
    assert (
        recs.groupby(names.USER_ID)[names.RANK].apply(lambda r: sorted(r) == list(range(1, top_n + 1))).all()
    )
    assert not recs.duplicated([names.USER_ID, names.ITEM_ID]).any()
    assert recs[names.REASON].str.len().gt(0).all()
    assert set(recs[names.MODEL_VERSION]) == {"als:v1+ranker:v1"}
    assert recs[names.GENERATED_AT].eq(pd.Timestamp(FIXED).tz_localize(None)).all()
    # Seen-item filter holds on every row.
    seen = spark.table(config.table(names.EVENTS)).select(names.USER_ID, names.ITEM_ID).distinct().toPandas()
    clash = recs.merge(seen, on=[names.USER_ID, names.ITEM_ID])
    assert clash.empty
    # Category cap holds on every list.
    items = spark.table(config.table(names.ITEMS)).select(names.ITEM_ID, "categories").toPandas()
    primary = items.set_index(names.ITEM_ID)["categories"].map(lambda c: c[0] if len(c) else None)
    per_cat = recs.assign(cat=recs[names.ITEM_ID].map(primary)).groupby([names.USER_ID, "cat"]).size()
    assert per_cat.max() <= config.serving.max_per_category
    # The new item (metadata only, nobody clicked it) reaches users who like its category...
    assert (recs[names.ITEM_ID] == NEW_ITEM).any()
    assert (recs.loc[recs[names.ITEM_ID] == NEW_ITEM, "source"] == SOURCE_NEW).all()
    assert recs.loc[recs[names.ITEM_ID] == NEW_ITEM, names.REASON].str.startswith("new in Documentary").all()
    # ... and most rows explain themselves by the user's own history.
    assert recs[names.REASON].str.startswith("because you watched").mean() > 0.5
    log = spark.read.format("delta").load(config.table_path(names.RECOMMENDATION_LOG)).count()
    assert log == len(recs)


def test_stream_moves_a_user_toward_a_new_category_and_replay_changes_nothing(spark, lakehouse):
    config, newest = lakehouse
    items = spark.table(config.table(names.ITEMS)).select(names.ITEM_ID, "categories").toPandas()
    items = items.set_index(names.ITEM_ID)["categories"]
    events = spark.table(config.table(names.EVENTS)).select(names.USER_ID, names.ITEM_ID).toPandas()
    # The lightest user, and a big category they never touched.
    user = events.groupby(names.USER_ID).size().sort_values(kind="stable").index[0]
    history = set(events.loc[events[names.USER_ID] == user, names.ITEM_ID])
    sizes = items.explode().value_counts()
    touched = {c for i in history for c in items.get(i, [])}
    category = next(c for c in sizes.index if c not in touched and sizes[c] >= 30)
    popular = events[names.ITEM_ID].value_counts()
    job.refresh_all(spark, config, clock=clock, users=[user])
    before = recommendations(spark, config)
    before_user = before.loc[before[names.USER_ID] == user]
    # The category's most popular items that are not on the list yet: liking an item on the list
    # would only remove it (consumed items are never recommended back) and lower the share.
    listed = set(before_user[names.ITEM_ID])
    in_category = [
        i for i in popular.index if category in items.get(i, []) and i not in history and i not in listed
    ][:8]
    assert len(in_category) == 8

    query, scorer = job.start_stream(spark, config, clock=clock)
    try:
        query.processAllAvailable()  # nothing new yet: no user re-scored
        assert scorer.stats.users_scored == 0
        clicks = [
            (user, i, "like", newest + timedelta(minutes=n + 1), None) for n, i in enumerate(in_category)
        ]
        click_rows = silver_rows(clicks)
        append_silver(spark, config, click_rows)
        query.processAllAvailable()
    finally:
        query.stop()
    assert scorer.stats.users_scored == 1
    after = recommendations(spark, config)
    after_user = after.loc[after[names.USER_ID] == user]
    assert set(after_user[names.ITEM_ID]) != set(before_user[names.ITEM_ID])
    liked_titles = set(
        spark.table(config.table(names.ITEMS))
        .where(F.col(names.ITEM_ID).isin(in_category))
        .toPandas()["title"]
    )
    because = after_user[names.REASON].str.removeprefix("because you watched ")
    assert because.isin(liked_titles).any(), after_user[names.REASON].tolist()
    assert after_user[names.ITEM_ID].isin(in_category).sum() == 0  # liked items are never recommended back
    # Other users' rows are untouched by the user's batch.
    pd.testing.assert_frame_equal(
        before.loc[before[names.USER_ID] != user].reset_index(drop=True),
        after.loc[after[names.USER_ID] != user].reset_index(drop=True),
    )
    # Replaying the micro-batch that scored the user (same batch id: the user's state rows as the
    # stream emitted them) changes nothing: Delta skips both writes by their transaction identity.
    version = spark.sql(f"DESCRIBE HISTORY delta.`{config.table_path(names.RECOMMENDATIONS)}`").first()[
        "version"
    ]
    replayed = scored_batch(spark, config, user)
    states = user_states(
        spark.table(config.table(names.EVENTS)).where(F.col(names.USER_ID) == user),
        None,
        config.serving.half_life_days,
        config.serving.max_history,
    )
    batch = states.withColumn(N_EVENTS, F.lit(len(click_rows)).cast("long")).withColumn(
        BATCH_ITEMS, F.lit(json.dumps(in_category))
    )
    scorer(batch.select(*OUTPUT_SCHEMA.fieldNames()), replayed)
    again = recommendations(spark, config)
    pd.testing.assert_frame_equal(after, again)
    latest = spark.sql(f"DESCRIBE HISTORY delta.`{config.table_path(names.RECOMMENDATIONS)}`").first()[
        "version"
    ]
    assert latest == version


def test_cold_start_user_gets_trending_in_country_with_reasons(spark, lakehouse):
    config, newest = lakehouse
    # A new user whose only event is a skip: no positive history -> cold path, country-aware.
    events = [("cold-1", "50", "skip", newest + timedelta(hours=1), None)]
    append_silver(spark, config, silver_rows(events, country="US"))
    # And a user with no state at all (no event yet): a cold start whose reasons say so.
    scorer = job.refresh_all(spark, config, clock=clock, users=["cold-1", "nobody-1"])
    recs = recommendations(spark, config)
    cold = recs.loc[recs[names.USER_ID] == "cold-1"]
    assert len(cold) == config.serving.top_n
    assert "50" not in set(cold[names.ITEM_ID])  # the skipped item is not served
    assert cold[names.REASON].isin({"trending in US", "trending now", "popular now"}).all()
    assert (cold[names.REASON] == "trending in US").any()
    nobody = recs.loc[recs[names.USER_ID] == "nobody-1"]
    assert len(nobody) == config.serving.top_n and nobody["last_event_ts"].isna().all()
    reasons = nobody[names.REASON].str.removesuffix(NEW_HERE)
    assert nobody[names.REASON].str.endswith(NEW_HERE).all()
    assert reasons.isin({"trending now", "popular now"}).all(), nobody[names.REASON].tolist()
    assert scorer.stats.users_scored == 2


# --- bad input -------------------------------------------------------------------------------


def test_unknown_users_and_items_and_an_empty_batch_are_served_not_raised(spark, lakehouse):
    config, newest = lakehouse
    # A user nobody has seen, on an item the catalog does not know, through the real stream. The
    # stream resumes from its checkpoint: the cold user's skip (appended while it was down) is
    # scored first, and nothing from before it.
    stranger = [("stranger-1", "not-in-catalog", "click", newest + timedelta(hours=2), None)]
    query, scorer = job.start_stream(spark, config, clock=clock)
    try:
        query.processAllAvailable()
        assert scorer.stats.users_scored == 1 and scorer.stats.unknown_item_events == 0
        append_silver(spark, config, silver_rows(stranger))
        query.processAllAvailable()
    finally:
        query.stop()
    assert scorer.stats.unknown_item_events == 1
    assert scorer.stats.users_scored == 2
    cold = recommendations(spark, config).query(f"{names.USER_ID} == 'cold-1'")
    assert cold["last_event_ts"].eq(pd.Timestamp(newest + timedelta(hours=1)).tz_localize(None)).all()
    recs = recommendations(spark, config)
    mine = recs.loc[recs[names.USER_ID] == "stranger-1"]
    assert mine[names.RANK].tolist() == list(range(1, config.serving.top_n + 1))
    assert "not-in-catalog" not in set(mine[names.ITEM_ID])  # consumed: never served back
    assert mine[names.REASON].map(lambda r: isinstance(r, str) and r != "").all()

    # An empty micro-batch is a batch: counted, nothing written, no new table version.
    def version() -> int:
        path = config.table_path(names.RECOMMENDATIONS)
        return int(spark.sql(f"DESCRIBE HISTORY delta.`{path}`").first()["version"])

    before, batches = version(), scorer.stats.batches
    scorer(spark.createDataFrame([], schema=OUTPUT_SCHEMA), scorer.last_batch_id + 1)
    assert scorer.stats.batches == batches + 1 and scorer.stats.users_scored == 2
    assert version() == before


def test_broken_champion_keeps_the_last_good_model_and_no_champion_serves_popularity(
    spark, lakehouse, tmp_path: Path
):
    import mlflow

    from spark_jobs.serving.models import ModelStore

    config, _ = lakehouse
    store = ModelStore(config)
    store.refresh(force=True)
    good = store.model(names.VARIANT_CHAMPION).label
    assert good == "als:v1+ranker:v1"

    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    broken = client.create_model_version(names.MODEL_ALS, source=str(tmp_path / "no-such-model"))
    client.set_registered_model_alias(names.MODEL_ALS, names.ALIAS_CHAMPION, broken.version)
    try:
        assert store.refresh(force=True) is False  # nothing new is served
        assert store.model(names.VARIANT_CHAMPION).label == good
        said = [m for m in store.messages if f"{names.MODEL_ALS} v{broken.version}" in m]
        assert said and f"could not be loaded: still serving {good}" in said[0], store.messages
        # A scorer started now, with only the broken champion to load, serves popularity and says so.
        fresh = ModelStore(config)
        fresh.refresh(force=True)
        assert fresh.model(names.VARIANT_CHAMPION).label == "popularity"
        assert any("still serving popularity" in m for m in fresh.messages), fresh.messages
    finally:
        client.set_registered_model_alias(names.MODEL_ALS, names.ALIAS_CHAMPION, "1")

    # An empty registry (first run): popularity, said once.
    empty = dataclasses.replace(
        config, mlflow=dataclasses.replace(config.mlflow, tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}")
    )
    nothing = ModelStore(empty)
    nothing.refresh(force=True)
    assert nothing.model(names.VARIANT_CHAMPION).label == "popularity"
    assert nothing.messages == ["no champion model registered: serving popularity"]


# --- distribution, crashes, state format ---------------------------------------------------------


def test_the_distributed_scorer_gives_the_lists_of_one_in_memory_call(spark, lakehouse):
    """Users split over tasks and small chunks get the rows one ``score_users`` call over all of
    them gives, from inputs computed straight from silver with pandas (no state transform)."""
    config, _ = lakehouse
    cfg = job.with_serving(config, chunk_users=7, max_history=100_000)
    half_life = cfg.serving.half_life_days
    store = job.prepare(spark, cfg)
    events = spark.table(cfg.table(names.EVENTS))
    snapshot = job.read_snapshot(spark, cfg, events)
    exposures = job.exposure_log(spark, cfg)
    states = user_states(events, exposures, half_life, cfg.serving.max_history)
    now_ts = float(states.agg(F.max(NEWEST_TS)).first()[0])
    request = BatchRequest(now_ts, FIXED, cfg.serving, half_life)
    sc = spark.sparkContext
    distributed = score_states(
        job.with_profiles(spark, cfg, states).repartition(3, names.USER_ID),
        sc.broadcast(snapshot),
        sc.broadcast(store.serving()),
        request,
    ).toPandas()

    rows = events.select(
        names.USER_ID,
        names.ITEM_ID,
        event_weight().alias("w"),
        F.col(names.EVENT_TS).cast("double").alias("ts"),
        F.col("context.device").alias("device"),
        F.col("context.hour_of_day").alias("hour_of_day"),
        F.col("context.country").alias("country"),
    ).toPandas()
    rows["s"] = rows["w"] * 0.5 ** (np.maximum(now_ts - rows["ts"], 0.0) / (half_life * 86_400.0))
    pairs = rows.groupby([names.USER_ID, names.ITEM_ID], as_index=False).agg(
        strength=("s", "sum"), timestamp=("ts", "max")
    )
    pairs = pairs.loc[pairs["strength"] != 0].reset_index(drop=True)
    latest = rows.sort_values("ts", kind="stable").groupby(names.USER_ID).tail(1).set_index(names.USER_ID)
    served = exposures.select(names.USER_ID, names.ITEM_ID, F.col("last_event_ts").cast("double")).toPandas()
    last_positive = rows.loc[rows["w"] > 0].groupby([names.USER_ID, names.ITEM_ID])["ts"].max()
    at = served.set_index([names.USER_ID, names.ITEM_ID]).index.map(lambda k: last_positive.get(k, -np.inf))
    at = np.asarray(at, dtype=float)
    counted = served.loc[(served["last_event_ts"].to_numpy() >= at) | np.isneginf(at)]
    impressions = {k: int(n) for k, n in counted.groupby([names.USER_ID, names.ITEM_ID]).size().items()}
    state = ServingState(
        snapshot,
        pairs,
        pd.DataFrame({names.USER_ID: pd.Series(dtype=object)}),
        latest[["device", "hour_of_day", "country"]],
        impressions,
    ).with_reference(now_ts)
    users = sorted(latest.index)
    newest = pd.to_datetime(latest["ts"], unit="s")
    in_memory = pad_ranks(
        score_users(state, store.serving(), ScoringRequest(users, now_ts, FIXED, newest), cfg.serving),
        cfg.serving.top_n,
    )

    def canonical(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.sort_values([names.USER_ID, names.RANK]).reset_index(drop=True)
        out[names.RANK] = out[names.RANK].astype("int64")
        for col in ("last_event_ts", names.GENERATED_AT):
            stamps = pd.to_datetime(out[col])
            out[col] = (stamps.dt.tz_convert(None) if stamps.dt.tz is not None else stamps).astype(
                "datetime64[us]"
            )
        return out

    assert len(distributed) == len(users) * cfg.serving.top_n
    # Scores are float32 (ALS fold-in, the ranker): BLAS sums a chunk of 7 users in another order
    # than one call over everyone, so a score may differ in its last bit. Items, ranks, reasons
    # and every other column must be identical.
    pd.testing.assert_frame_equal(canonical(distributed), canonical(in_memory), check_exact=False, rtol=1e-6)


def _statestore_values(spark, checkpoint: str) -> dict[str, dict]:
    """user -> their stored state document, read back with Spark's state data source."""
    stored = spark.read.format("statestore").option("stateVarName", "users").load(checkpoint).collect()
    return {row["user_map_key"][0]: json.loads(bytes(row["user_map_value"]["state"])) for row in stored}


def test_a_scorer_killed_around_its_writes_resumes_and_counts_every_event_once(
    spark, lakehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from pyspark.errors import StreamingQueryException

    config, newest = lakehouse
    cfg = dataclasses.replace(config, checkpoint_root=str(tmp_path / "checkpoints"))
    checkpoint = cfg.checkpoint(names.QUERY_SCORER)
    t0 = newest + timedelta(days=1)
    query, _ = job.start_stream(spark, cfg, clock=clock)  # first start: the state is seeded from silver
    try:
        append_silver(spark, cfg, silver_rows([("4", "50", "view", t0 - timedelta(minutes=1), None)]))
        query.processAllAvailable()  # a committed batch: from now on the checkpoint is the state
    finally:
        query.stop()

    # From here on no start may read the history: no seeding, no snapshot built from silver.
    def read_history(*args, **kwargs):
        raise AssertionError("a restarted scorer read the history")

    monkeypatch.setattr(job, "user_states", read_history)
    monkeypatch.setattr(job, "read_snapshot", read_history)
    write = job.write_lists

    def killed_before_writing(*args, **kwargs):
        raise RuntimeError("killed after the state commit, before the writes")

    def killed_after_writing(*args, **kwargs):
        write(*args, **kwargs)
        raise RuntimeError("killed after the writes, before the batch committed")

    # New users (no history, so only this stream serves them), each event on its own item.
    u1, u2, u3 = (f"crash-{uuid.uuid4().hex[:8]}" for _ in range(3))
    first = [
        (u1, "50", "like", t0, None),
        (u1, "181", "click", t0 + timedelta(minutes=1), None),
        (u2, "50", "like", t0 + timedelta(minutes=2), None),
    ]
    for crash in (killed_before_writing, killed_after_writing):
        monkeypatch.setattr(job, "write_lists", crash)
        query, _ = job.start_stream(spark, cfg, clock=clock)
        try:
            if crash is killed_before_writing:
                append_silver(spark, cfg, silver_rows(first))
            with pytest.raises(StreamingQueryException):
                query.processAllAvailable()
        finally:
            query.stop()
    monkeypatch.setattr(job, "write_lists", write)
    query, sink = job.start_stream(spark, cfg, clock=clock)
    try:
        query.processAllAvailable()  # the batch cut short twice, replayed once more
        append_silver(spark, cfg, silver_rows([(u3, "50", "like", t0 + timedelta(minutes=3), None)]))
        query.processAllAvailable()
    finally:
        query.stop()

    # Only the replayed batch's users and the new one were scored: nothing from before the last
    # committed offset.
    assert sink.stats.users_scored == 3
    newest_of = {
        u1: t0 + timedelta(minutes=1),
        u2: t0 + timedelta(minutes=2),
        u3: t0 + timedelta(minutes=3),
    }
    recs = recommendations(spark, cfg)
    log = spark.read.format("delta").load(cfg.table_path(names.RECOMMENDATION_LOG)).toPandas()
    for user, ts in newest_of.items():
        mine = recs.loc[recs[names.USER_ID] == user]
        assert len(mine) == cfg.serving.top_n
        assert mine["last_event_ts"].eq(pd.Timestamp(ts).tz_localize(None)).all(), user
        # One list in the exposure log, from one batch, however often that batch ran.
        served = log.loc[log[names.USER_ID] == user]
        assert served["batch_id"].nunique() == 1 and len(served) == cfg.serving.top_n, served
    # Each event is in the state exactly once: a like weighs 4, a click 2 (stored as of itself).
    stored = _statestore_values(spark, checkpoint)
    pairs = {u: dict(zip(stored[u]["items"], stored[u]["values"], strict=True)) for u in (u1, u2, u3)}
    assert pairs == {u1: {"50": 4.0, "181": 2.0}, u2: {"50": 4.0}, u3: {"50": 4.0}}


def test_a_state_written_by_another_scorer_version_is_refused_with_the_fix(spark, lakehouse, tmp_path: Path):
    config, _ = lakehouse
    cfg = dataclasses.replace(config, checkpoint_root=str(tmp_path / "checkpoints"))
    checkpoint = Path(cfg.checkpoint(names.QUERY_SCORER))
    # The driver-side scorer's checkpoint: offsets of a plain Delta stream, no state format record.
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "0").write_text("v1\n{}\n")
    fix = "run `recsys score --reset-state` to rebuild it from silver"
    with pytest.raises(StateFormatError) as err:
        job.start_stream(spark, cfg)
    assert str(err.value) == (
        f"scorer state at {checkpoint} was written by state format 1; this scorer needs {STATE_FORMAT}: {fix}"
    )
    (checkpoint / job.FORMAT_FILE).write_text(json.dumps({"state_format": STATE_FORMAT + 1}) + "\n")
    with pytest.raises(StateFormatError, match=f"written by state format {STATE_FORMAT + 1};"):
        job.start_stream(spark, cfg)
    assert spark.streams.active == [] or all(q.name != names.QUERY_SCORER for q in spark.streams.active)
    assert job.reset_state(spark, cfg) is True
    assert job.state_format(spark, str(checkpoint)) is None

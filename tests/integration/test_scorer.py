"""The streaming scorer against real Delta tables and a real MLflow registry.

One lakehouse for the module: MovieLens users 1..60 as silver events, the MovieLens catalog in
``recsys.items`` plus one brand-new item, and a small champion trained by ``run_training``. The
scorer runs as a real Delta stream (availableNow) over silver.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from spark_jobs.serving.scorer import SOURCE_NEW
from spark_jobs.training.als import AlsParams
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
    # Not the category's very top items: those may already be on the list, and liking them would
    # only remove them from it (consumed items are never recommended back).
    in_category = [i for i in popular.index if category in items.get(i, []) and i not in history][5:13]
    job.refresh_all(spark, config, clock=clock, users=[user])
    before = recommendations(spark, config)
    before_user = before.loc[before[names.USER_ID] == user]

    def share(frame: pd.DataFrame) -> float:
        return float(frame[names.ITEM_ID].map(lambda i: category in items.get(i, [])).mean())

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
    assert share(after_user) >= share(before_user), after_user
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
    # Replaying the last micro-batch (same batch id) changes nothing.
    version = spark.sql(f"DESCRIBE HISTORY delta.`{config.table_path(names.RECOMMENDATIONS)}`").first()[
        "version"
    ]
    batch = spark.createDataFrame(click_rows, schema=silver_schema())
    replayed = scorer.last_batch_id
    scorer.last_batch_id = -1  # as if the process had forgotten it applied the batch
    scorer(batch, replayed)
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
    scorer = job.refresh_all(spark, config, clock=clock, users=["cold-1"])
    recs = recommendations(spark, config)
    cold = recs.loc[recs[names.USER_ID] == "cold-1"]
    assert len(cold) == config.serving.top_n
    assert "50" not in set(cold[names.ITEM_ID])  # the skipped item is not served
    assert cold[names.REASON].isin({"trending in US", "trending now", "popular now"}).all()
    assert (cold[names.REASON] == "trending in US").any()
    assert scorer.stats.users_scored == 1


# --- bad input -------------------------------------------------------------------------------


def test_unknown_users_and_items_and_an_empty_batch_are_served_not_raised(spark, lakehouse):
    config, newest = lakehouse
    # A user nobody has seen, on an item the catalog does not know, through the real stream.
    stranger = [("stranger-1", "not-in-catalog", "click", newest + timedelta(hours=2), None)]
    query, scorer = job.start_stream(spark, config, clock=clock)
    try:
        query.processAllAvailable()
        append_silver(spark, config, silver_rows(stranger))
        query.processAllAvailable()
    finally:
        query.stop()
    assert scorer.stats.unknown_item_events == 1
    assert scorer.stats.users_scored == 1
    recs = recommendations(spark, config)
    mine = recs.loc[recs[names.USER_ID] == "stranger-1"]
    assert mine[names.RANK].tolist() == list(range(1, config.serving.top_n + 1))
    assert "not-in-catalog" not in set(mine[names.ITEM_ID])  # consumed: never served back
    assert mine[names.REASON].map(lambda r: isinstance(r, str) and r != "").all()

    # An empty micro-batch is a batch: counted, nothing written, no new table version.
    def version() -> int:
        path = config.table_path(names.RECOMMENDATIONS)
        return int(spark.sql(f"DESCRIBE HISTORY delta.`{path}`").first()["version"])

    before = version()
    scorer(spark.createDataFrame([], schema=silver_schema()), scorer.last_batch_id + 1)
    assert scorer.stats.batches == 2 and scorer.stats.users_scored == 1
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

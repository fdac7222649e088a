"""A small end-to-end training run: silver events in a temp lakehouse -> ALS + ranker ->
MLflow (real SQLite store) -> aliases and the promotion gate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from spark_jobs.common import names
from spark_jobs.drift.job import champion_reference_window
from spark_jobs.evaluation import movielens
from spark_jobs.training.als import AlsParams
from spark_jobs.training.job import TrainingDataError, run_training
from spark_jobs.training.pipeline import TrainSettings
from tests.training_events import write_events

pytestmark = [pytest.mark.spark, pytest.mark.integration]

SETTINGS = TrainSettings(grid=(AlsParams(rank=16, reg_param=0.3, alpha=1.0, max_iter=5),))


def alias_version(client, model: str, alias: str) -> str:
    return str(client.get_model_version_by_alias(model, alias).version)


def test_train_registers_both_models_and_gates_champion(spark, fresh_lakehouse, movielens_dir: Path):
    config = fresh_lakehouse
    with pytest.raises(TrainingDataError, match="does not exist"):
        run_training(spark, config, SETTINGS)
    ratings = movielens.load_ratings(movielens_dir)
    ratings = ratings.loc[ratings["user_id"].astype(int) <= 80]
    write_events(spark, config, ratings)

    first = run_training(spark, config, SETTINGS)
    assert set(first.table["model"]) == {"popularity", "als", "hybrid"}
    hybrid = first.table.set_index("model").loc["hybrid"]
    popularity = first.table.set_index("model").loc["popularity"]
    assert first.notes == [], first.notes  # no fallback: ALS, the ranker and the refit all ran
    assert hybrid["served_by"] == "hybrid"
    assert hybrid["ndcg"] > popularity["ndcg"]
    assert first.versions == {names.MODEL_ALS: "1", names.MODEL_RANKER: "1"}
    assert first.decision is not None and first.decision.promote
    assert first.champion_table is None

    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    for model in (names.MODEL_ALS, names.MODEL_RANKER):
        assert alias_version(client, model, names.ALIAS_CHALLENGER) == "1"
        assert alias_version(client, model, names.ALIAS_CHAMPION) == "1"
    # Both versions carry the events' time window; drift reads the champion's back unchanged.
    window = tuple(
        datetime.fromtimestamp(int(t), tz=UTC)
        for t in (ratings["timestamp"].min(), ratings["timestamp"].max())
    )
    for model in (names.MODEL_ALS, names.MODEL_RANKER):
        tags = client.get_model_version(model, "1").tags
        assert (tags["train_window_start"], tags["train_window_end"]) == tuple(t.isoformat() for t in window)
    assert champion_reference_window(config) == window
    run = client.get_run(first.run_id)
    assert config.artifact_root in run.info.artifact_uri  # not ./mlruns of the cwd
    assert run.data.metrics["hybrid_ndcg"] == pytest.approx(hybrid["ndcg"])
    assert run.data.tags["gate_promote"] == "True"
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert {"plots/ndcg_at_k.png", "plots/feature_importance.png"} <= artifacts

    ranker_info = mlflow.models.get_model_info(f"models:/{names.MODEL_RANKER}/1")
    assert ranker_info.signature is not None and ranker_info.saved_input_example_info is not None
    als = mlflow.pyfunc.load_model(f"models:/{names.MODEL_ALS}@{names.ALIAS_CHAMPION}")
    recs = als.predict(pd.DataFrame({"user_id": ["1", "2"]}), params={"k": 5})
    assert recs.groupby("user_id").size().to_dict() == {"1": 5, "2": 5}
    # The factors of version 1 are tables too: one vector per trained user and per catalog item.
    user_factors = spark.table(config.table(names.USER_FACTORS)).where("model_version = '1'")
    item_factors = spark.table(config.table(names.ITEM_FACTORS)).where("model_version = '1'")
    trained_users = user_factors.select("user_id").distinct().count()
    assert trained_users == user_factors.count() == ratings["user_id"].nunique()
    # Items: those of the training part (no catalog table here), each once.
    item_ids = [r.item_id for r in item_factors.select("item_id").collect()]
    assert len(item_ids) == len(set(item_ids)) and set(item_ids) <= set(ratings["item_id"].astype(str))
    assert len(item_ids) > 0.8 * ratings["item_id"].nunique()
    assert {len(r.factors) for r in user_factors.limit(5).collect()} == {SETTINGS.grid[0].rank}

    # Same data again, as an orchestrator run: the challenger equals the champion on the same
    # holdout -> promoted; its versions are tagged with the run once the gate judged them.
    key = "scheduled__2026-03-02T00:00:00+00:00"
    second = run_training(spark, config, SETTINGS, run_key=key)
    assert second.versions == {names.MODEL_ALS: "2", names.MODEL_RANKER: "2"}
    assert second.champion_table is not None
    assert second.champion_table["ndcg"].iloc[0] == pytest.approx(hybrid["ndcg"], rel=0.05)
    assert second.decision is not None and second.decision.promote
    for model in (names.MODEL_ALS, names.MODEL_RANKER):
        assert alias_version(client, model, names.ALIAS_CHALLENGER) == "2"
        assert alias_version(client, model, names.ALIAS_CHAMPION) == "2"

    # A rerun of the same run (a retried or cleared task) registers nothing new and reports the
    # first decision.
    rerun = run_training(spark, config, SETTINGS, run_key=key)
    assert rerun.versions == second.versions and rerun.run_id is None and rerun.table.empty and rerun.rerun
    assert rerun.decision is not None and rerun.decision.promote
    assert rerun.decision.reasons[0].startswith(f"run {key} already trained")
    for model in (names.MODEL_ALS, names.MODEL_RANKER):
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{model}'"))
        assert versions == [1, 2]
        assert client.get_model_version(model, "2").tags["orchestrator_run_id"] == key
        assert "orchestrator_run_id" not in client.get_model_version(model, "1").tags
        assert alias_version(client, model, names.ALIAS_CHAMPION) == "2"

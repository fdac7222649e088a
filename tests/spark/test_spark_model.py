"""Per-user work on the executors gives the same rows as the in-memory recommender over everyone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.testing import assertDataFrameEqual

from spark_jobs.evaluation.metrics import ranking_metrics
from spark_jobs.features.item_sources import PairStats
from spark_jobs.training.als import AlsFactors, AlsParams
from spark_jobs.training.candidates import build_sources
from spark_jobs.training.features import FEATURE_COLUMNS, build_candidates, user_side_features
from spark_jobs.training.matrix import build_matrix
from spark_jobs.training.pipeline import TrainedRecommender, TrainSettings
from spark_jobs.training.ranker import Accelerator, RankerParams, fit_ranker
from spark_jobs.training.spark_model import ItemModel, SparkRecommender

pytestmark = pytest.mark.spark


def _frame(spark, rows: pd.DataFrame, schema):
    """Expected rows as Spark would give them: missing values are nulls, not NaN."""
    return spark.createDataFrame(rows.astype(object).where(rows.notna(), None), schema)

RANK = 4
SETTINGS = TrainSettings()


def _world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """40 users over 30 items with a taste each, some skips (negative), a side profile, and
    labels: three unseen items of each user's taste."""
    rng = np.random.default_rng(7)
    rows, labels = [], []
    for u in range(40):
        taste = u % 3
        seen = set(rng.choice(30, size=rng.integers(4, 12), replace=False).tolist())
        for i in sorted(seen):
            strength = float(rng.integers(1, 5)) if i % 3 == taste else -0.5
            rows.append((f"u{u}", f"i{i}", strength, 1_000_000.0 + u * 3600 + i * 60))
        unseen = [i for i in range(30) if i % 3 == taste and i not in seen]
        labels += [(f"u{u}", f"i{i}") for i in unseen[:3]]
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id", "strength", "timestamp"])
    profile = pd.DataFrame({"user_id": [f"u{u}" for u in range(40)], "age": [20 + u for u in range(40)]})
    return pairs, profile, pd.DataFrame(labels, columns=["user_id", "item_id"]), rng.normal(size=(30, RANK))


def _models(spark):
    pairs, profile, labels, item_vectors = _world()
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(30)], "categories": [[f"c{i % 4}"] for i in range(30)]}
    )
    matrix = build_matrix(pairs, item_ids=items["item_id"].to_numpy())
    sources = build_sources(matrix, items=items)
    user_vectors = np.random.default_rng(3).normal(size=(matrix.n_users, RANK)).astype(np.float32)
    item_f = item_vectors[[int(i[1:]) for i in matrix.item_ids]].astype(np.float32)
    factors = AlsFactors(matrix.user_ids, matrix.item_ids, user_vectors, item_f, AlsParams(rank=RANK))
    side = user_side_features(profile)
    whole = TrainedRecommender(matrix, sources, factors, None, side, settings=SETTINGS)
    cands = build_candidates(matrix, sources, factors, side=side, labels=labels)
    ranker = fit_ranker(
        cands, RankerParams(n_estimators=5, early_stopping_rounds=0), Accelerator("cpu", "pandas", "test")
    )
    whole.ranker = ranker
    stats = PairStats(matrix.reference_ts, matrix.n_users, int(matrix.strength.nnz))
    item_model = ItemModel(matrix.item_ids, sources, stats, item_f, factors.params, ranker, SETTINGS)
    user_factors = spark.createDataFrame(
        pd.DataFrame(
            {"user_id": matrix.user_ids.astype(str), "factors": [list(map(float, v)) for v in user_vectors]}
        )
    )
    side_df = spark.createDataFrame(side.reset_index().astype({"user_id": str}))
    spread = SparkRecommender(item_model, spark.createDataFrame(pairs).repartition(3), user_factors, side_df)
    return pairs, labels, whole, spread


@pytest.mark.parametrize("model", ["popularity", "als", "hybrid"])
def test_recommendations_on_executors_equal_the_in_memory_lists(spark, model: str) -> None:
    pairs, _, whole, spread = _models(spark)
    users = [*sorted(pairs["user_id"].unique()), "stranger"]
    expected = whole.recommend(5, model, users)
    wanted = spark.createDataFrame(pd.DataFrame({"user_id": users}))

    got = spread.recommend(5, model, wanted)

    assert len(expected) == 41 * 5
    assertDataFrameEqual(
        got, spark.createDataFrame(expected.astype({"rank": "int32"}), got.schema), rtol=1e-6
    )


def test_candidates_and_labels_on_executors_equal_the_in_memory_ones(spark) -> None:
    _, labels, whole, spread = _models(spark)
    users = spark.createDataFrame(labels[["user_id"]].drop_duplicates())
    expected = build_candidates(
        whole.matrix,
        whole.sources,
        whole.factors,
        sorted(labels["user_id"].unique()),
        whole.side,
        labels=labels,
    )

    got = spread.candidates(users, spark.createDataFrame(labels))

    columns = ["user_id", "item_id", *FEATURE_COLUMNS, "label"]
    assertDataFrameEqual(got, _frame(spark, expected[columns], got.schema), rtol=1e-6)


def test_evaluation_on_executors_equals_the_pandas_metrics(spark) -> None:
    _, truth, whole, spread = _models(spark)
    users = sorted(truth["user_id"].unique())

    table, curve = spread.evaluate(spark.createDataFrame(truth), 5, ks=(1, 5))

    for model in ("popularity", "als", "hybrid"):
        want = ranking_metrics(whole.recommend(5, model, users), truth, 5)
        row = table.set_index("model").loc[model]
        assert {m: row[m] for m in want} == pytest.approx(want)
        at_one = curve.loc[(curve["model"] == model) & (curve["k"] == 1)].iloc[0]
        assert at_one["ndcg"] == pytest.approx(
            ranking_metrics(whole.recommend(5, model, users), truth, 1)["ndcg"]
        )

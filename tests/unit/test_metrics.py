"""Ranking metrics against values computed by hand (binary relevance, see metrics docstring)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from spark_jobs.evaluation.metrics import (
    catalog_coverage,
    intra_list_diversity,
    per_user_metrics,
    ranking_metrics,
)
from spark_jobs.evaluation.splits import random_split, temporal_split

pytestmark = pytest.mark.unit

D2, D3, D4 = 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(5)


def recs(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


def truth(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


@pytest.fixture
def case() -> tuple[pd.DataFrame, pd.DataFrame]:
    # u1: hits at ranks 1 and 3 of 4, 3 relevant; u2: one hit at rank 2, 1 relevant;
    # u3: relevant items but no recommendations at all (must count as zeros).
    r = recs([("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4), ("u2", "x", 1), ("u2", "y", 2)])
    t = truth([("u1", "a"), ("u1", "c"), ("u1", "z"), ("u2", "y"), ("u3", "q")])
    return r, t


def test_per_user_values_match_hand_computation(case):
    r, t = case
    table = per_user_metrics(r, t, k=4).set_index("user_id")
    u1 = table.loc["u1"]
    assert u1["hits"] == 2
    assert u1["precision"] == pytest.approx(2 / 4)
    assert u1["recall"] == pytest.approx(2 / 3)
    assert u1["ndcg"] == pytest.approx((1 + D3) / (1 + D2 + D3))
    assert u1["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    u2 = table.loc["u2"]
    assert u2["ndcg"] == pytest.approx(D2 / 1.0)
    assert u2["map"] == pytest.approx((1 / 2) / 1)
    assert u2["precision"] == pytest.approx(1 / 4)
    u3 = table.loc["u3"]
    assert (u3[["hits", "ndcg", "precision", "recall", "map"]] == 0).all()


def test_macro_average_over_users_with_relevant_items(case):
    r, t = case
    m = ranking_metrics(r, t, k=4)
    assert m["precision"] == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    assert m["recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["ndcg"] == pytest.approx(((1 + D3) / (1 + D2 + D3) + D2 + 0) / 3)


def test_cutoff_ignores_ranks_beyond_k(case):
    r, t = case
    m = per_user_metrics(r, t, k=2).set_index("user_id")
    assert m.loc["u1", "hits"] == 1  # "c" at rank 3 no longer counts
    assert m.loc["u1", "ndcg"] == pytest.approx(1 / (1 + D2))  # ideal: min(k, 3) = 2 hits
    assert m.loc["u1", "map"] == pytest.approx(1 / 2)


def test_rank_is_derived_from_score_when_absent():
    r = pd.DataFrame({"user_id": ["u", "u", "u"], "item_id": ["a", "b", "c"], "score": [0.1, 0.9, 0.5]})
    t = truth([("u", "b")])
    assert ranking_metrics(r, t, k=1)["precision"] == 1.0


def test_perfect_list_scores_one():
    r = recs([("u", "a", 1), ("u", "b", 2)])
    m = ranking_metrics(r, truth([("u", "a"), ("u", "b")]), k=2)
    assert m == pytest.approx({"ndcg": 1.0, "precision": 1.0, "recall": 1.0, "map": 1.0})


def test_coverage_and_diversity():
    r = recs([("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 1), ("u2", "c", 2)])
    assert catalog_coverage(r, catalog_size=6, k=2) == pytest.approx(3 / 6)
    cats = {"a": ["x"], "b": ["x", "y"], "c": ["z"]}
    # u1: 1 - |{x}|/|{x,y}| = 0.5; u2: disjoint -> 1.0
    assert intra_list_diversity(r, cats, k=2) == pytest.approx(0.75)
    assert math.isnan(intra_list_diversity(r, {}, k=2))


def test_missing_column_is_named():
    from spark_jobs.common.errors import DataFrameMissingColumnError

    with pytest.raises(DataFrameMissingColumnError, match="item_id"):
        ranking_metrics(recs([("u", "a", 1)]), pd.DataFrame({"user_id": ["u"]}))


def test_random_split_is_per_user_seeded_and_disjoint():
    df = pd.DataFrame(
        {"user_id": ["u"] * 8 + ["v"] * 4 + ["w"], "item_id": list("abcdefghabcda"), "timestamp": range(13)}
    )
    train, test = random_split(df, 0.25, seed=1)
    assert test.groupby("user_id").size().to_dict() == {"u": 2, "v": 1}  # w (1 row) stays in train
    assert len(train) + len(test) == len(df)
    again, _ = random_split(df, 0.25, seed=1)
    pd.testing.assert_frame_equal(train, again)


def test_temporal_split_holds_out_latest_rows():
    df = pd.DataFrame({"user_id": ["u"] * 4, "item_id": list("abcd"), "timestamp": [4, 1, 3, 2]})
    _, test = temporal_split(df, 0.25)
    assert test["item_id"].tolist() == ["a"]

"""``recsys offline`` on MovieLens-format CSVs written in tmp: output contract, quality sanity,
and bad inputs (clear errors or the documented fallback)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from spark_jobs.cli.main import main
from spark_jobs.cli.offline import run_offline
from spark_jobs.common.errors import RecsysError, UsageError
from spark_jobs.evaluation import movielens
from spark_jobs.evaluation.metrics import ranking_metrics
from spark_jobs.evaluation.splits import random_split
from spark_jobs.training.als import AlsParams
from spark_jobs.training.offline_io import OfflineInputError

TINY_GRID = (AlsParams(rank=16, reg_param=0.3, alpha=1.0, max_iter=5),)
K = 10


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ml_subset(movielens_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """120 users of MovieLens 100k split 75/25 per user; train and items as contract CSVs."""
    folder = tmp_path_factory.mktemp("offline")
    ratings = movielens.load_ratings(movielens_dir)
    ratings = ratings.loc[ratings["user_id"].astype(int) <= 120]
    train, test = random_split(ratings, 0.25, seed=7)
    train_csv = folder / "train.csv"
    train[["user_id", "item_id", "rating", "timestamp"]].to_csv(train_csv, index=False)
    items = movielens.load_items(movielens_dir)
    items_csv = folder / "items.csv"
    items.assign(genres=items["categories"].map("|".join))[["item_id", "title", "genres"]].to_csv(
        items_csv, index=False
    )
    return folder, train, test, train_csv, items_csv


def check_contract(out: Path, train: pd.DataFrame, k: int) -> pd.DataFrame:
    recs = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert set(recs["user_id"]) == set(train["user_id"].astype(str))
    for _, group in recs.groupby("user_id"):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert len(group) == k
        assert group["score"].is_monotonic_decreasing
        assert group["item_id"].is_unique
    owned = set(zip(train["user_id"].astype(str), train["item_id"].astype(str), strict=True))
    assert not any((u, i) in owned for u, i in zip(recs["user_id"], recs["item_id"], strict=True))
    return recs


@pytest.mark.spark
@pytest.mark.integration
def test_hybrid_and_als_beat_popularity_on_held_out_ratings(spark, config, ml_subset):
    folder, train, test, train_csv, items_csv = ml_subset
    scores = {}
    for model in ("popularity", "als", "hybrid"):
        out = folder / f"{model}.csv"
        result = run_offline(train_csv, out, K, model, items_csv, config=config, grid=TINY_GRID)
        assert result.served_by == model
        recs = check_contract(out, train, K)
        scores[model] = ranking_metrics(recs, test, K)["ndcg"]
    assert scores["als"] > scores["popularity"]
    assert scores["hybrid"] > scores["popularity"]


def test_cli_writes_popularity_for_tiny_file_with_odd_values(tmp_path, capsys):
    train = write(
        tmp_path / "t.csv",
        "user_id,item_id,rating,timestamp,extra\n"
        "1,a,5,100,x\n1,b,,200,x\n2,a,NaN,150,x\n2,c,-1,,x\n,z,2,1,x\n",
    )
    out = tmp_path / "out.csv"
    code = main(["offline", "--train", str(train), "--k", "5", "--out", str(out), "--model", "hybrid"])
    assert code == 0
    text = capsys.readouterr().out
    assert "popularity fallback" in text and "ignored column(s): extra" in text
    recs = pd.read_csv(out, dtype=str)
    # user 1 owns a, b; user 2 owns a and c (c rated -1 still counts as owned)
    assert recs.loc[recs["user_id"] == "1", "item_id"].tolist() == ["c"]
    assert recs.loc[recs["user_id"] == "2", "item_id"].tolist() == ["b"]


def test_rating_and_timestamp_columns_are_optional(tmp_path):
    train = write(tmp_path / "t.csv", "user_id,item_id\nu1,a\nu2,a\nu2,b\nu3,c\n")
    out = tmp_path / "out.csv"
    result = run_offline(train, out, 2, "popularity")
    recs = pd.read_csv(out, dtype=str)
    assert result.rows == len(recs) == 5
    assert recs.loc[recs["user_id"] == "u1", "item_id"].tolist() == ["b", "c"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("user_id,item_id,rating\n", "no interactions"),
        ("user,item\n1,2\n", "lacks column(s) ['user_id', 'item_id']"),
        ("item_id,rating\n1,2\n", "lacks column(s) ['user_id']"),
    ],
)
def test_bad_train_files_fail_with_a_clear_message(tmp_path, content, message):
    train = write(tmp_path / "t.csv", content)
    with pytest.raises(
        OfflineInputError,
        match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)").replace("]", r"\]"),
    ):
        run_offline(train, tmp_path / "o.csv", 5, "popularity")


def test_bad_arguments_and_files(tmp_path, capsys):
    train = write(tmp_path / "t.csv", "user_id,item_id\n1,a\n")
    with pytest.raises(UsageError, match="--k"):
        run_offline(train, tmp_path / "o.csv", 0, "popularity")
    with pytest.raises(RecsysError, match="does not exist"):
        run_offline(tmp_path / "missing.csv", tmp_path / "o.csv", 5, "popularity")
    items = write(tmp_path / "i.csv", "id,title\n1,x\n")
    with pytest.raises(OfflineInputError, match="lacks column 'item_id'"):
        run_offline(train, tmp_path / "o.csv", 5, "popularity", items)
    assert (
        main(
            [
                "offline",
                "--train",
                str(tmp_path / "missing.csv"),
                "--k",
                "5",
                "--out",
                str(tmp_path / "o.csv"),
            ]
        )
        == 2
    )
    assert "error:" in capsys.readouterr().err


def test_items_widen_the_catalog_for_a_single_user(tmp_path):
    train = write(tmp_path / "t.csv", "user_id,item_id,rating\n1,a,4\n")
    items = write(tmp_path / "i.csv", "item_id,title,genres\na,A,Drama\nb,B,Drama|War\nc,C,\n")
    out = tmp_path / "o.csv"
    result = run_offline(train, out, 5, "als", items)
    assert result.served_by == "popularity"
    assert sorted(pd.read_csv(out, dtype=str)["item_id"]) == ["b", "c"]

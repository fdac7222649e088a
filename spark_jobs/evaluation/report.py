"""Side-by-side evaluation of popularity, ALS and the hybrid on one train/test split, and plots.

``evaluate_split`` trains on ``train`` only (the pipeline carves its own validation data from
it), recommends top-K for every test user with training items excluded, and measures against
``test``; the per-user work runs on Spark's executors (``SparkRecommender.evaluate``). Plots are
written to files (matplotlib's Agg backend, no display needed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from spark_jobs.training.columns import CATEGORIES, DEFAULT_K, ITEM_ID, STRENGTH, TIMESTAMP, USER_ID
from spark_jobs.training.pipeline import TrainSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from spark_jobs.training.spark_model import SparkRecommender

CURVE_KS = (1, 3, 5, 10, 20, 50)


def item_categories(items: pd.DataFrame | None) -> dict[str, frozenset[str]]:
    """``item_id -> categories`` of the catalog items that have any (for list diversity)."""
    if items is None or CATEGORIES not in items.columns:
        return {}
    return {
        str(i): frozenset(str(c) for c in cats)
        for i, cats in zip(items[ITEM_ID], items[CATEGORIES], strict=True)
        if cats is not None and not isinstance(cats, float) and len(cats)
    }


def pairs_from_pandas(spark: SparkSession, frame: pd.DataFrame) -> DataFrame:
    """A pandas interaction frame (user_id, item_id[, strength, timestamp]) as a Spark DataFrame
    with the column types training reads."""
    from pyspark.sql import types as T

    cols = {USER_ID: frame[USER_ID].astype(str), ITEM_ID: frame[ITEM_ID].astype(str)}
    fields = [T.StructField(USER_ID, T.StringType()), T.StructField(ITEM_ID, T.StringType())]
    for name in (STRENGTH, TIMESTAMP):
        if name in frame.columns:
            cols[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
            fields.append(T.StructField(name, T.DoubleType()))
    return spark.createDataFrame(pd.DataFrame(cols), T.StructType(fields))


def evaluate_split(
    spark: SparkSession,
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    settings: TrainSettings = TrainSettings(),
    models: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, SparkRecommender, pd.DataFrame]:
    """Train on ``train``, evaluate all models on ``test``; returns (table, model, nDCG@K curves).

    ``users`` (profiles) feed the ranker's user-side features. The frames are files' worth of
    data (MovieLens, a user's CSV); training and scoring themselves run on Spark.
    """
    from spark_jobs.features.user_side import user_side_features
    from spark_jobs.training.columns import STRATEGIES
    from spark_jobs.training.trainer import train_on_spark

    side = None
    if users is not None and not users.empty:
        side = user_side_features(spark.createDataFrame(users.astype({USER_ID: str})), None)
    started = time.perf_counter()
    model = train_on_spark(pairs_from_pandas(spark, train), items, side, settings)
    train_s = time.perf_counter() - started
    truth = test.loc[test[STRENGTH] > 0] if STRENGTH in test.columns else test
    truth_df = pairs_from_pandas(spark, truth[[USER_ID, ITEM_ID]])
    categories = item_categories(items)
    table, curve = model.evaluate(truth_df, settings.k, models or STRATEGIES, CURVE_KS, categories)
    table["train_s"] = train_s
    return table, model, curve


def plot_curves(curve: pd.DataFrame, path: str | Path, metric: str = "ndcg") -> Path:
    """Line plot of ``metric``@K per model, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, part in curve.groupby("model"):
        ax.plot(part["k"], part[metric], marker="o", label=str(name))
    ax.set_xlabel("K")
    ax.set_ylabel(f"{metric}@K")
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_bars(
    table: pd.DataFrame, path: str | Path, metrics: Sequence[str] = ("ndcg", "precision", "recall", "map")
) -> Path:
    """Grouped bars of the headline metrics per model (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    frame = table.set_index("model")[list(metrics)]
    frame.T.plot.bar(ax=ax, rot=0)
    ax.set_ylabel(f"@{DEFAULT_K}")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_importance(importance: pd.Series, path: str | Path, top: int = 20) -> Path:
    """Horizontal bars of the ranker's feature importance (gain), PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    importance.head(top)[::-1].plot.barh(ax=ax)
    ax.set_xlabel("gain")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

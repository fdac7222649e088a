"""Side-by-side evaluation of popularity, ALS and the hybrid on one train/test split, and plots.

``evaluate_split`` trains on ``train`` only (the pipeline carves its own validation data from
it), recommends top-K for every test user with training items excluded, and measures against
``test``. Plots are written to files (matplotlib's Agg backend, no display needed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from spark_jobs.evaluation.metrics import (
    catalog_coverage,
    intra_list_diversity,
    metrics_at_ks,
    ranking_metrics,
)
from spark_jobs.training.columns import CATEGORIES, DEFAULT_K, ITEM_ID, MODELS, STRENGTH, USER_ID
from spark_jobs.training.pipeline import TrainedRecommender, TrainSettings, train_recommender

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CURVE_KS = (1, 3, 5, 10, 20, 50)


def evaluate_recommender(
    model: TrainedRecommender,
    test: pd.DataFrame,
    items: pd.DataFrame | None = None,
    k: int = DEFAULT_K,
    models: Sequence[str] = MODELS,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Metrics table (one row per model) and the top-``max(CURVE_KS)`` lists used for curves."""
    truth = test.loc[test[STRENGTH] > 0] if STRENGTH in test.columns else test
    truth = truth.assign(**{USER_ID: truth[USER_ID].astype(str), ITEM_ID: truth[ITEM_ID].astype(str)})
    users = sorted(truth[USER_ID].unique())
    cats: Mapping[str, list[str]] = {}
    if items is not None and CATEGORIES in items.columns:
        cats = dict(zip(items[ITEM_ID].astype(str), items[CATEGORIES], strict=True))
    rows, lists = [], {}
    depth = max(*CURVE_KS, k)
    for name in models:
        started = time.perf_counter()
        recs = model.recommend(depth, name, users)
        seconds = time.perf_counter() - started
        lists[name] = recs
        row = {
            "model": name,
            "served_by": model.resolve_model(name),
            **ranking_metrics(recs, truth, k),
            "coverage": catalog_coverage(recs, model.matrix.n_items, k),
            "diversity": intra_list_diversity(recs, cats, k) if cats else float("nan"),
            "recommend_s": seconds,
        }
        rows.append(row)
    return pd.DataFrame(rows), lists


def evaluate_split(
    spark: SparkSession,
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    settings: TrainSettings = TrainSettings(),
) -> tuple[pd.DataFrame, TrainedRecommender, dict[str, pd.DataFrame]]:
    """Train on ``train``, evaluate all models on ``test``; returns (table, model, top lists)."""
    started = time.perf_counter()
    model = train_recommender(spark, train, items, users, settings=settings)
    train_s = time.perf_counter() - started
    table, lists = evaluate_recommender(model, test, items, settings.k)
    table["train_s"] = train_s
    return table, model, lists


def curves(
    lists: Mapping[str, pd.DataFrame], test: pd.DataFrame, ks: Sequence[int] = CURVE_KS
) -> pd.DataFrame:
    """nDCG/precision/recall/MAP at several K for every model (long frame with ``model``)."""
    truth = test.assign(**{USER_ID: test[USER_ID].astype(str), ITEM_ID: test[ITEM_ID].astype(str)})
    return pd.concat(
        [metrics_at_ks(recs, truth, ks).assign(model=name) for name, recs in lists.items()], ignore_index=True
    )


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

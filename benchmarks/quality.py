"""Recommendation quality on MovieLens 100k: popularity vs ALS vs hybrid, two protocols.

Protocol (the Microsoft Recommenders benchmark table's): per-user random 75/25 split (seeded),
top-10, items seen in training excluded, binary relevance (every held-out rating is relevant);
averaged over seeds 42, 43, 44. Plus the temporal protocol (each user's last 25%), seed 42.
Hyperparameters are chosen inside ``train_recommender`` on validation data carved from each
split's training part; the test part is only read to score the final lists.

``run(config, quick)`` returns flat figures (``random_hybrid_ndcg_mean``,
``random_als_ndcg_seed42``, ``temporal_hybrid_ndcg``, ``bar_*`` booleans, timings) and writes
``benchmarks/results/quality/`` (per-seed CSV, JSON, plots).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from spark_jobs.common import console
from spark_jobs.common.config import Config, project_root
from spark_jobs.evaluation import movielens
from spark_jobs.evaluation.report import evaluate_split, plot_bars, plot_curves, plot_importance
from spark_jobs.evaluation.splits import RANDOM, TEMPORAL, split
from spark_jobs.training.als import DEFAULT_GRID, QUICK_GRID
from spark_jobs.training.columns import STRATEGIES
from spark_jobs.training.pipeline import TrainSettings
from spark_jobs.training.session import checkpoint_dir, training_session

SEEDS = (42, 43, 44)
QUICK_SEEDS = (42,)
METRICS = ("ndcg", "precision", "recall", "map", "coverage", "diversity")
# The bar of issue 3 (nDCG@10 / P@10 on the random protocol, mean over seeds).
BAR_ALS_NDCG = 0.45
BAR_HYBRID_NDCG = 0.48
BAR_HYBRID_PRECISION = 0.42


def results_dir() -> Path:
    path = project_root() / "benchmarks" / "results" / "quality"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(config: Config, quick: bool = False, log: TextIO | None = None) -> dict[str, Any]:
    """Train and evaluate every model on each split; return the figures (see module docstring).

    Progress goes to ``log`` (stderr under ``recsys bench --json``), never into the figures.
    """
    logging.getLogger("spark_jobs").setLevel(logging.INFO)
    folder = config.movielens_dir
    ratings = movielens.load_ratings(folder)
    items, users = movielens.load_items(folder), movielens.load_users(folder)
    spark = training_session(config, app_name="recsys-bench-quality")
    out_dir = results_dir()
    seeds = QUICK_SEEDS if quick else SEEDS
    grid = QUICK_GRID if quick else DEFAULT_GRID
    runs = [(RANDOM, seed) for seed in seeds] + [(TEMPORAL, SEEDS[0])]
    tables, figures = [], {}
    started = time.perf_counter()
    for protocol, seed in runs:
        console.step(f"{protocol} split, seed {seed}", stream=log)
        train, test = split(ratings, protocol, 0.25, seed)
        settings = TrainSettings(carve=protocol, grid=grid, seed=seed, checkpoint_dir=checkpoint_dir(config))
        table, model, curve = evaluate_split(spark, train, test, items, users, settings)
        table = table.assign(
            protocol=protocol,
            seed=seed,
            als_rank=model.items.params.rank if model.items.params else None,
            als_reg=model.items.params.reg_param if model.items.params else None,
            als_alpha=model.items.params.alpha if model.items.params else None,
            **{k: v for k, v in model.timings.items()},
            **{k: v for k, v in model.metrics.items()},
        )
        console.info(
            stream=log,
            message="\n"
            + table[["model", "ndcg", "precision", "recall", "map", "coverage"]].to_string(
                index=False, float_format="%.4f"
            ),
        )
        tables.append(table)
        tag = f"{protocol}_seed{seed}"
        plot_curves(curve, out_dir / f"ndcg_curve_{tag}.png")
        if model.ranker is not None:
            plot_importance(model.ranker.feature_importance(), out_dir / f"importance_{tag}.png")
        for name in STRATEGIES:
            row = table.loc[table["model"] == name].iloc[0]
            for metric in METRICS:
                key = f"{protocol}_{name}_{metric}" + (f"_seed{seed}" if protocol == RANDOM else "")
                figures[key] = float(row[metric])
        for key in ("als_search_s", "als_fit_s", "ranker_fit_s", "candidate_recall"):
            if key in table.columns:
                figures[f"{tag}_{key}"] = float(table[key].iloc[0])
        figures[f"{tag}_train_s"] = float(table["train_s"].iloc[0])
        figures[f"{tag}_als_params"] = (
            f"rank={model.items.params.rank} reg={model.items.params.reg_param} "
            f"alpha={model.items.params.alpha}"
            if model.items.params
            else "none"
        )
    all_rows = pd.concat(tables, ignore_index=True)
    all_rows.to_csv(out_dir / "per_run.csv", index=False)
    random_rows = all_rows.loc[all_rows["protocol"] == RANDOM]
    means = random_rows.groupby("model")[list(METRICS)].mean()
    for name in STRATEGIES:
        for metric in METRICS:
            figures[f"random_{name}_{metric}_mean"] = float(means.loc[name, metric])
    plot_bars(means.reset_index(), out_dir / "random_mean_bars.png")
    temporal = all_rows.loc[all_rows["protocol"] == TEMPORAL].set_index("model")
    figures["seeds"] = ",".join(map(str, seeds))
    figures["bar_als_ndcg_ok"] = figures["random_als_ndcg_mean"] >= BAR_ALS_NDCG
    figures["bar_hybrid_ndcg_ok"] = figures["random_hybrid_ndcg_mean"] >= BAR_HYBRID_NDCG
    figures["bar_hybrid_precision_ok"] = figures["random_hybrid_precision_mean"] >= BAR_HYBRID_PRECISION
    figures["hybrid_beats_als_random"] = figures["random_hybrid_ndcg_mean"] > figures["random_als_ndcg_mean"]
    figures["hybrid_beats_als_temporal"] = bool(temporal.loc["hybrid", "ndcg"] > temporal.loc["als", "ndcg"])
    figures["total_s"] = time.perf_counter() - started
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    return figures


if __name__ == "__main__":
    import sys

    from spark_jobs.common.config import load_config

    result = run(load_config(), quick="--quick" in sys.argv)
    print(json.dumps(result, indent=2, default=str))

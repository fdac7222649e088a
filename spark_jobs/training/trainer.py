"""Training on Spark's executors: ALS search, the ranker's examples and fit, the final refit.

The same discipline as before, now on DataFrames:

1. the training pairs are split per user (``carve`` protocol) into a *history* and a *label* part;
2. every ALS grid point is fitted on the history (Spark ALS on the DataFrame) and judged on the
   label part by the executors (``SparkRecommender.evaluate``);
3. the ranker's examples are the candidates of (a bounded sample of) the label users, built from
   the history only and labelled by the label part, and ``SparkXGBRanker`` fits it;
4. ALS is refitted on all training pairs, whose item sources are what serving uses.

Only item-sized results reach the driver: the catalog order, the sources, item factors, the
ranker. Too little data degrades to a documented fallback (popularity, or ALS without a ranker)
and says so in ``notes``; small data never raises.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.evaluation.splits import split_frame
from spark_jobs.features.item_sources import item_sources, item_universe, pair_stats
from spark_jobs.training.als import AlsParams, FrameFactors, fit_als_frame
from spark_jobs.training.columns import ITEM_ID, LABEL, STRATEGY_ALS, STRENGTH, TIMESTAMP, USER_ID
from spark_jobs.training.pipeline import (
    MIN_ITEMS_FOR_ALS,
    MIN_LABEL_USERS_FOR_RANKER,
    MIN_USERS_FOR_ALS,
    TrainSettings,
    prepare_items,
)
from spark_jobs.training.ranker import fit_ranker_spark
from spark_jobs.training.spark_model import ItemModel, SparkRecommender

log = logging.getLogger(__name__)


def pairs_frame(pairs: DataFrame) -> DataFrame:
    """``user_id, item_id, strength, timestamp`` with the types every step expects."""
    cols = set(pairs.columns)
    return pairs.select(
        F.col(USER_ID).cast("string").alias(USER_ID),
        F.col(ITEM_ID).cast("string").alias(ITEM_ID),
        F.col(STRENGTH).cast("double").alias(STRENGTH),
        (F.col(TIMESTAMP).cast("double") if TIMESTAMP in cols else F.lit(None).cast("double")).alias(
            TIMESTAMP
        ),
    )


def sample_users(frame: DataFrame, limit: int, seed: int) -> DataFrame:
    """At most about ``limit`` distinct users of ``frame``, chosen by a seeded hash of the id (no
    list of users on the driver); all of them when there are fewer."""
    users = frame.select(USER_ID).distinct()
    n = users.count()
    if n <= limit:
        return users
    share = int(limit / n * 1_000_000)
    return users.where(F.pmod(F.xxhash64(USER_ID, F.lit(seed)), F.lit(1_000_000)) < share)


def item_model(pairs: DataFrame, item_ids, items: pd.DataFrame | None, settings: TrainSettings) -> ItemModel:
    stats = pair_stats(pairs)
    return ItemModel(item_ids, item_sources(pairs, item_ids, items, stats), stats, settings=settings)


def with_factors(model: SparkRecommender, factors: FrameFactors) -> SparkRecommender:
    items = dataclasses.replace(model.items, item_factors=factors.item_factors, params=factors.params)
    return dataclasses.replace(model, items=items, user_factors=factors.user_factors)


def popularity_on_spark(
    pairs: DataFrame, items: pd.DataFrame | None = None, settings: TrainSettings = TrainSettings()
) -> SparkRecommender:
    """The fallback recommender: most-interacted items, ties by trend (no ALS, no ranker)."""
    pairs = pairs_frame(pairs).cache()
    items = prepare_items(items)
    item_ids = item_universe(pairs, None if items is None else list(items[ITEM_ID]))
    return SparkRecommender(item_model(pairs, item_ids, items, settings), pairs)


def train_on_spark(
    pairs: DataFrame,
    items: pd.DataFrame | None = None,
    side: DataFrame | None = None,
    settings: TrainSettings = TrainSettings(),
) -> SparkRecommender:
    """Popularity, ALS and the hybrid trained on ``pairs`` (user_id, item_id, strength[,
    timestamp]: one row per pair, as ``build_interactions`` gives them).

    ``items`` (item_id, categories; item-sized) widens the catalog and feeds content features;
    ``side`` (user_id + side feature columns) feeds user-side features.
    """
    pairs = pairs_frame(pairs).cache()
    items = prepare_items(items)
    catalog = None if items is None else list(items[ITEM_ID])
    started = time.perf_counter()
    item_ids = item_universe(pairs, catalog)
    result = SparkRecommender(item_model(pairs, item_ids, items, settings), pairs, None, side)
    result.timings["prepare_s"] = time.perf_counter() - started
    counts = (
        pairs.where(F.col(STRENGTH) > 0)
        .agg(F.countDistinct(USER_ID).alias("u"), F.countDistinct(ITEM_ID).alias("i"))
        .first()
    )
    n_users, n_items = (int(counts["u"]), int(counts["i"])) if counts else (0, 0)
    if n_users < MIN_USERS_FOR_ALS or n_items < MIN_ITEMS_FOR_ALS:
        result.notes.append(
            f"too little data for ALS ({n_users} users, {n_items} items with positive interactions): "
            "popularity only"
        )
        return result
    try:
        _fit_models(result, items, settings)
    except AlsFitError as err:  # Spark ALS on degenerate data (singular systems): documented fallback
        log.warning("ALS failed", exc_info=True)
        result.user_factors = None
        result.items = dataclasses.replace(result.items, item_factors=None, params=None, ranker=None)
        result.notes.append(f"ALS failed on this data: {err}; popularity only")
    for note in result.notes:
        log.warning(note)
    return result


def _fit_models(result: SparkRecommender, items: pd.DataFrame | None, settings: TrainSettings) -> None:
    """ALS search on history -> label, ranker on history features, ALS refit on everything."""
    history, label = split_frame(result.pairs, settings.carve, settings.validation_ratio, settings.seed)
    label = label.where(F.col(STRENGTH) > 0)
    item_ids = result.items.item_ids
    params = settings.grid[0] if settings.grid else AlsParams()
    best: FrameFactors | None = None
    hist_model = SparkRecommender(item_model(history, item_ids, items, settings), history, None, result.side)
    if label.limit(1).count() == 0:
        result.notes.append(
            "no user has enough interactions for a validation split: "
            f"default ALS parameters {params}, no ranker"
        )
    else:
        started = time.perf_counter()
        best, result.search = _search(hist_model, label, settings)
        params = best.params
        result.timings["als_search_s"] = time.perf_counter() - started
        result.metrics["als_val_ndcg"] = float(result.search["val_ndcg"].max())

    if settings.train_ranker and best is not None:
        _train_ranker(result, with_factors(hist_model, best), label, settings)

    started = time.perf_counter()
    final = _fit_als(result.pairs, item_ids, params, settings)
    trained = with_factors(result, final)
    result.items, result.user_factors = trained.items, trained.user_factors
    result.timings["als_fit_s"] = time.perf_counter() - started


class AlsFitError(RuntimeError):
    """Spark's ALS refused the data (a singular system on degenerate input). Only this falls back
    to popularity: any other failure (the ranker, a lost executor, a bug) stops the run."""


def _fit_als(
    pairs: DataFrame, item_ids: np.ndarray, params: AlsParams, settings: TrainSettings
) -> FrameFactors:
    try:
        return fit_als_frame(pairs, item_ids, params, settings.checkpoint_dir)
    except (Py4JJavaError, PySparkException) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AlsFitError(f"{type(err).__name__}: {first_line[:300]}") from err


def _search(
    hist_model: SparkRecommender, label: DataFrame, settings: TrainSettings
) -> tuple[FrameFactors, pd.DataFrame]:
    """Fit every grid point on the history; keep the best nDCG@k on the label part."""
    if not settings.grid:
        raise ValueError("the ALS grid is empty")
    rows, best, best_score = [], None, -1.0
    for params in settings.grid:
        factors = _fit_als(hist_model.pairs, hist_model.items.item_ids, params, settings)
        fitted = with_factors(hist_model, factors)
        table, _ = fitted.evaluate(label, settings.k, (STRATEGY_ALS,), (settings.k,))
        ndcg = float(table["ndcg"].iloc[0])
        metrics = {f"val_{m}": float(table[m].iloc[0]) for m in ("ndcg", "precision", "recall", "map")}
        rows.append({**params.as_dict(), **metrics, "fit_s": factors.fit_seconds})
        log.info("ALS %s: validation nDCG@%d %.4f", params, settings.k, ndcg)
        if ndcg > best_score:
            best, best_score = factors, ndcg
    assert best is not None
    return best, pd.DataFrame(rows)


def _train_ranker(
    result: SparkRecommender, hist_model: SparkRecommender, label: DataFrame, settings: TrainSettings
) -> None:
    """Fit the ranker on history-only features and label-part targets (in place on ``result``)."""
    known = hist_model.pairs.select(USER_ID).distinct()
    label = label.join(known, USER_ID, "left_semi")
    users = sample_users(label, settings.max_ranker_users, settings.seed)
    n_users = users.count()
    if n_users < MIN_LABEL_USERS_FOR_RANKER:
        result.notes.append(f"only {n_users} users with label rows: no ranker")
        return
    started = time.perf_counter()
    cands = hist_model.candidates(users, label.join(users, USER_ID, "left_semi")).cache()
    try:
        result.metrics["candidate_recall"] = candidate_recall(cands, label.join(users, USER_ID, "left_semi"))
        result.metrics["ranker_examples"] = float(cands.count())
        result.timings["ranker_features_s"] = time.perf_counter() - started
        try:
            ranker = fit_ranker_spark(cands, settings.ranker)
        except ValueError as err:
            result.notes.append(f"ranker not trained: {err}")
            return
    finally:
        cands.unpersist()
    result.items = dataclasses.replace(result.items, ranker=ranker)
    result.timings["ranker_fit_s"] = ranker.fit_seconds
    result.metrics.update(ranker.metrics)


def candidate_recall(candidates: DataFrame, labels: DataFrame) -> float:
    """Mean share of each labelled user's label items that made it into their candidate set."""
    found = candidates.where(F.col(LABEL) == 1).groupBy(USER_ID).agg(F.count(F.lit(1)).alias("hit"))
    wanted = labels.groupBy(USER_ID).agg(F.countDistinct(ITEM_ID).alias("n"))
    row = (
        wanted.join(found, USER_ID, "left")
        .agg(F.avg(F.coalesce(F.col("hit"), F.lit(0)) / F.col("n")).alias("recall"))
        .first()
    )
    return float(row["recall"]) if row is not None and row["recall"] is not None else float("nan")

"""Spark MLlib implicit ALS: fitting, factor export, top-K scoring and a small validation search.

Spark fits the factors (the product's ALS: ``implicitPrefs=True``, strengths as confidences,
negative strengths as confident "no"); the factors are then copied into numpy, because scoring a
user against the whole catalog and masking the items they already have is one matrix product
there, and the same factors are what the registry stores and the scorer loads. The search fits
each grid point on a training set and judges it on a validation set carved out of that training
set by the caller: evaluation splits never reach this module.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from spark_jobs.training.columns import DEFAULT_K, ITEM_ID, SCORE, SEED, USER_ID
from spark_jobs.training.matrix import InteractionMatrix

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlsParams:
    """Hyperparameters of Spark's implicit ALS. ``reg_param`` is Spark's (scaled per row count)."""

    rank: int = 64
    reg_param: float = 0.3
    alpha: float = 1.0
    max_iter: int = 15
    seed: int = SEED

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


# Chosen to bracket what works for implicit ALS on rating-like strengths; the search picks one on
# validation data. Small on purpose: each point is a full Spark fit.
DEFAULT_GRID: tuple[AlsParams, ...] = tuple(
    AlsParams(rank=r, reg_param=g, alpha=a)
    for r, g, a in (
        (64, 0.3, 1.0),
        (32, 0.3, 1.0),
        (64, 1.0, 0.5),
    )
)
QUICK_GRID: tuple[AlsParams, ...] = (AlsParams(rank=64, reg_param=0.3),)


@dataclass
class AlsFactors:
    """Fitted factors aligned with an ``InteractionMatrix``'s ids (zero rows for unseen ids)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    params: AlsParams
    fit_seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        """Factor rows of ``user_ids`` (zeros for users the model never saw)."""
        index = {u: i for i, u in enumerate(self.user_ids)}
        rows = np.zeros((len(user_ids), self.user_factors.shape[1]), dtype=np.float32)
        for pos, user in enumerate(user_ids):
            idx = index.get(str(user))
            if idx is not None:
                rows[pos] = self.user_factors[idx]
        return rows

    def aligned_items(self, item_ids: Sequence[str]) -> np.ndarray:
        """Item factor matrix in the order of ``item_ids`` (zeros for items the model never saw)."""
        index = {u: i for i, u in enumerate(self.item_ids)}
        out = np.zeros((len(item_ids), self.item_factors.shape[1]), dtype=np.float32)
        for pos, item in enumerate(item_ids):
            idx = index.get(str(item))
            if idx is not None:
                out[pos] = self.item_factors[idx]
        return out


def fit_als(
    spark: SparkSession,
    matrix: InteractionMatrix,
    params: AlsParams = AlsParams(),
    num_blocks: int = 2,
    checkpoint_dir: str | None = None,
) -> AlsFactors:
    """Fit Spark implicit ALS on ``matrix.pairs`` (all aggregated pairs, negatives included).

    ``checkpoint_dir`` (when given) is set on the context so long runs cut the lineage every 10
    iterations (Spark's default ``checkpointInterval``).
    """
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import types as T

    if matrix.pairs.empty:
        raise ValueError("cannot fit ALS on an empty interaction set")
    if checkpoint_dir:
        spark.sparkContext.setCheckpointDir(checkpoint_dir)
    elif spark.sparkContext.getCheckpointDir() is None:
        # Without checkpoints the iteration lineage can overflow the JVM stack (seen at 15
        # iterations on a busy machine); a throwaway folder is better than a crash.
        fallback = tempfile.mkdtemp(prefix="recsys-als-checkpoints-")
        log.warning("no checkpoint dir configured; ALS checkpoints go to %s", fallback)
        spark.sparkContext.setCheckpointDir(fallback)
    schema = T.StructType(
        [
            T.StructField("u", T.IntegerType(), False),
            T.StructField("i", T.IntegerType(), False),
            T.StructField("r", T.FloatType(), False),
        ]
    )
    pairs = matrix.pairs
    rows = list(
        zip(
            pairs["_u"].astype(int).tolist(),
            pairs["_i"].astype(int).tolist(),
            pairs["strength"].astype(float).tolist(),
            strict=True,
        )
    )
    frame = spark.createDataFrame(rows, schema=schema).repartition(num_blocks)
    als = ALS(
        rank=params.rank,
        regParam=params.reg_param,
        alpha=params.alpha,
        maxIter=params.max_iter,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="r",
        seed=params.seed,
        numUserBlocks=num_blocks,
        numItemBlocks=num_blocks,
        coldStartStrategy="drop",
    )
    started = time.perf_counter()
    model = als.fit(frame)
    users = np.zeros((matrix.n_users, params.rank), dtype=np.float32)
    items = np.zeros((matrix.n_items, params.rank), dtype=np.float32)
    for row in model.userFactors.collect():
        users[row["id"]] = row["features"]
    for row in model.itemFactors.collect():
        items[row["id"]] = row["features"]
    seconds = time.perf_counter() - started
    log.info("ALS %s fitted in %.1fs", params, seconds)
    return AlsFactors(matrix.user_ids, matrix.item_ids, users, items, params, seconds)


def masked_scores(
    user_rows: np.ndarray, item_factors: np.ndarray, seen: sparse.csr_matrix | None
) -> np.ndarray:
    """Dense ``users x items`` scores with already-seen items set to ``-inf``."""
    scores = user_rows @ item_factors.T
    if seen is not None:
        coo = seen.tocoo()
        scores[coo.row, coo.col] = -np.inf
    return scores


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best finite scores per row, best first (-1 pads short rows)."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    finite = np.isfinite(np.take_along_axis(scores, top, axis=1))
    return np.where(finite, top, -1)


def recommend_from_scores(
    scores: np.ndarray, user_ids: Sequence[str], item_ids: np.ndarray, k: int = DEFAULT_K
) -> pd.DataFrame:
    """Long frame ``user_id, item_id, score, rank`` of the top-``k`` finite scores per user."""
    top = top_k_indices(scores, k)
    rows_u, cols = np.nonzero(top >= 0)
    idx = top[rows_u, cols]
    return pd.DataFrame(
        {
            USER_ID: np.asarray(user_ids, dtype=object)[rows_u],
            ITEM_ID: item_ids[idx],
            SCORE: scores[rows_u, idx].astype(float),
            "rank": cols + 1,
        }
    )


def recommend_als(
    factors: AlsFactors, matrix: InteractionMatrix, k: int = DEFAULT_K, users: Sequence[str] | None = None
) -> pd.DataFrame:
    """Top-``k`` ALS recommendations for ``users`` (default: all in ``matrix``), seen items excluded."""
    user_list = list(matrix.user_ids if users is None else users)
    u_index = matrix.user_index()
    rows = [u_index[u] for u in user_list]
    item_f = factors.aligned_items(matrix.item_ids)
    scores = masked_scores(factors.user_rows(user_list), item_f, matrix.strength[rows])
    return recommend_from_scores(scores, user_list, matrix.item_ids, k)


@dataclass
class SearchResult:
    """Outcome of ``search_als``: the winner, its factors, and one row per grid point."""

    best: AlsParams
    factors: AlsFactors
    table: pd.DataFrame


def search_als(
    spark: SparkSession,
    train: InteractionMatrix,
    validation: pd.DataFrame,
    grid: Sequence[AlsParams] = DEFAULT_GRID,
    k: int = DEFAULT_K,
    checkpoint_dir: str | None = None,
) -> SearchResult:
    """Fit every grid point on ``train`` and keep the best nDCG@k on ``validation``.

    ``validation`` (``user_id, item_id``) must be carved from training data by the caller.
    The winner's factors are returned too: the ranker reuses them for its training candidates.
    """
    from spark_jobs.evaluation.metrics import ranking_metrics

    if not grid:
        raise ValueError("the ALS grid is empty")
    users = sorted(set(validation[USER_ID].astype(str)) & set(train.user_ids))
    rows, best_score, best = [], -1.0, None
    for params in grid:
        factors = fit_als(spark, train, params, checkpoint_dir=checkpoint_dir)
        recs = recommend_als(factors, train, k, users)
        metrics = ranking_metrics(recs, validation, k)
        rows.append(
            {**params.as_dict(), **{f"val_{m}": v for m, v in metrics.items()}, "fit_s": factors.fit_seconds}
        )
        log.info("ALS %s: validation nDCG@%d %.4f", params, k, metrics["ndcg"])
        if metrics["ndcg"] > best_score:
            best_score, best = metrics["ndcg"], factors
    assert best is not None
    best.extra["val_ndcg"] = best_score
    return SearchResult(best.params, best, pd.DataFrame(rows))

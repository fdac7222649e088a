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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from spark_jobs.training.columns import DEFAULT_K, ITEM_ID, SCORE, SEED, USER_ID
from spark_jobs.training.matrix import InteractionMatrix

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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
# One point for demos and tests: the one the search picks on MovieLens (seeds 42, 43). Rank 64
# overfits small, sparse data such as the demo's synthetic world (about 6 training pairs a user).
QUICK_GRID: tuple[AlsParams, ...] = (AlsParams(rank=32, reg_param=0.3),)


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


def als_estimator(params: AlsParams, blocks: int) -> Any:
    """Spark's implicit ALS over integer columns ``u``, ``i`` and confidence ``r``."""
    from pyspark.ml.recommendation import ALS

    return ALS(
        rank=params.rank,
        regParam=params.reg_param,
        alpha=params.alpha,
        maxIter=params.max_iter,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="r",
        seed=params.seed,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        coldStartStrategy="drop",
    )


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
    from pyspark.sql import types as T

    if matrix.pairs.empty:
        raise ValueError("cannot fit ALS on an empty interaction set")
    _ensure_checkpoint_dir(spark, checkpoint_dir)
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
    als = als_estimator(params, num_blocks)
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
class FrameFactors:
    """ALS fitted on a DataFrame: item factors in memory (item-sized), user vectors as a DataFrame."""

    item_factors: np.ndarray  # aligned with the ``item_ids`` the fit was given
    user_factors: DataFrame  # user_id, factors (array<float>)
    params: AlsParams
    fit_seconds: float


def fit_als_frame(
    pairs: DataFrame,
    item_ids: np.ndarray,
    params: AlsParams = AlsParams(),
    checkpoint_dir: str | None = None,
) -> FrameFactors:
    """Fit Spark implicit ALS on ``pairs`` (user_id, item_id, strength; negatives included).

    Users get dense integer ids from ``zipWithIndex`` over the sorted user ids on the executors;
    items their position in ``item_ids`` through a broadcast lookup. Only the item factors are
    collected; the user vectors stay a DataFrame.
    """
    from pyspark.sql import functions as F

    from spark_jobs.features.item_sources import with_item_index

    spark = pairs.sparkSession
    _ensure_checkpoint_dir(spark, checkpoint_dir)
    blocks = max(2, spark.sparkContext.defaultParallelism)
    # Sorted before numbering, so a recomputed partition numbers every user the same way: the
    # ids joined to the ratings and to the fitted vectors must agree.
    users = (
        pairs.select(USER_ID)
        .distinct()
        .orderBy(USER_ID)
        .rdd.map(lambda r: r[0])
        .zipWithIndex()
        .toDF([USER_ID, "_u"])
        .withColumn("_u", F.col("_u").cast("int"))
        .cache()
    )
    ratings = (
        with_item_index(pairs, item_ids)
        .join(users, USER_ID)
        .select(F.col("_u").alias("u"), F.col("_i").alias("i"), F.col("strength").cast("float").alias("r"))
    )
    als = als_estimator(params, blocks)
    started = time.perf_counter()
    model = als.fit(ratings)
    items = np.zeros((len(item_ids), params.rank), dtype=np.float32)
    for row in model.itemFactors.collect():
        items[row["id"]] = row["features"]
    user_factors = model.userFactors.join(users, F.col("id") == F.col("_u")).select(
        USER_ID, F.col("features").alias("factors")
    )
    seconds = time.perf_counter() - started
    log.info("ALS %s fitted in %.1fs", params, seconds)
    return FrameFactors(items, user_factors, params, seconds)


def _ensure_checkpoint_dir(spark: SparkSession, checkpoint_dir: str | None) -> None:
    """Long ALS runs cut their lineage every 10 iterations; without a checkpoint folder the
    lineage can overflow the JVM stack (seen at 15 iterations on a busy machine)."""
    if checkpoint_dir:
        spark.sparkContext.setCheckpointDir(checkpoint_dir)
    elif spark.sparkContext.getCheckpointDir() is None:
        fallback = tempfile.mkdtemp(prefix="recsys-als-checkpoints-")
        log.warning("no checkpoint dir configured; ALS checkpoints go to %s", fallback)
        spark.sparkContext.setCheckpointDir(fallback)

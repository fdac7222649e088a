"""Training speed on MovieLens 100k: Spark ALS vs the ``implicit`` library, ranker CPU vs GPU.

Same data (seed-42 per-user random 75% training part, strength = rating), same hyperparameters
(rank, iterations, alpha; ``implicit``'s regularisation is not scaled by row counts as Spark's
is, so its nDCG is reported for information, not as a tuned competitor), same process. Figures:

* ``spark_als_fit_s``, ``implicit_als_fit_s``, ``ratio`` (= Spark / implicit);
* ``spark_als_ndcg``, ``implicit_als_ndcg`` on the split's test part (top-10);
* ``ranker_cpu_fit_s`` and, on a machine with CUDA (+ cuDF), ``ranker_gpu_fit_s``; ``ranker_device``
  records what ran;
* full run only: ``end_to_end_s`` of ``train_on_spark`` (ALS search + ranker + refit).
"""

from __future__ import annotations

import logging
import time
from typing import Any, TextIO

import numpy as np

from spark_jobs.common import console
from spark_jobs.common.config import Config
from spark_jobs.evaluation import movielens
from spark_jobs.evaluation.metrics import ranking_metrics
from spark_jobs.evaluation.report import pairs_from_pandas
from spark_jobs.evaluation.splits import random_split
from spark_jobs.training.als import (
    AlsFactors,
    AlsParams,
    fit_als,
    recommend_als,
)
from spark_jobs.training.candidates import build_sources
from spark_jobs.training.columns import SEED, STRENGTH
from spark_jobs.training.features import build_candidates, user_side_features
from spark_jobs.training.matrix import aggregate_pairs, build_matrix
from spark_jobs.training.pipeline import TrainSettings
from spark_jobs.training.ranker import Accelerator, detect_accelerator, fit_ranker
from spark_jobs.training.session import checkpoint_dir, training_session
from spark_jobs.training.trainer import train_on_spark

PARAMS = AlsParams(rank=64, reg_param=0.3, alpha=1.0, max_iter=15)


def _implicit_fit(matrix: Any, params: AlsParams, threads: int = 2) -> tuple[AlsFactors, float]:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.rank,
            regularization=params.reg_param,
            alpha=params.alpha,
            iterations=params.max_iter,
            random_state=params.seed,
            num_threads=threads,
        )
        started = time.perf_counter()
        model.fit(matrix.strength.tocsr(), show_progress=False)
        seconds = time.perf_counter() - started
    factors = AlsFactors(
        matrix.user_ids,
        matrix.item_ids,
        np.asarray(model.user_factors, dtype=np.float32),
        np.asarray(model.item_factors, dtype=np.float32),
        params,
        seconds,
    )
    return factors, seconds


def run(config: Config, quick: bool = False, log: TextIO | None = None) -> dict[str, Any]:
    """Time both ALS implementations and the ranker; see the module docstring for the figures."""
    logging.getLogger("spark_jobs").setLevel(logging.WARNING)
    folder = config.movielens_dir
    ratings = movielens.load_ratings(folder)
    items, users = movielens.load_items(folder), movielens.load_users(folder)
    train, test = random_split(ratings, 0.25, SEED)
    params = AlsParams(
        rank=PARAMS.rank,
        reg_param=PARAMS.reg_param,
        alpha=PARAMS.alpha,
        max_iter=5 if quick else PARAMS.max_iter,
    )
    spark = training_session(config, app_name="recsys-bench-training")
    spark.sparkContext.setCheckpointDir(checkpoint_dir(config))
    matrix = build_matrix(train, item_ids=items["item_id"].to_numpy())
    figures: dict[str, Any] = {
        "als_rank": params.rank,
        "als_iterations": params.max_iter,
        "train_pairs": int(matrix.strength.nnz),
    }

    console.step("Spark ALS fit", stream=log)
    fit_als(spark, matrix, AlsParams(rank=8, max_iter=1))  # warm the JVM path once, untimed
    spark_factors = fit_als(spark, matrix, params)
    figures["spark_als_fit_s"] = spark_factors.fit_seconds
    console.step("implicit ALS fit", stream=log)
    implicit_factors, implicit_s = _implicit_fit(matrix, params)
    figures["implicit_als_fit_s"] = implicit_s
    figures["ratio"] = spark_factors.fit_seconds / max(implicit_s, 1e-9)
    figures["spark_als_ndcg"] = ranking_metrics(recommend_als(spark_factors, matrix, 10), test)["ndcg"]
    figures["implicit_als_ndcg"] = ranking_metrics(recommend_als(implicit_factors, matrix, 10), test)["ndcg"]

    console.step("ranker fit (CPU, then GPU when present)", stream=log)
    history, label = random_split(aggregate_pairs(train), 0.2, SEED)
    hist_matrix = build_matrix(history, item_ids=matrix.item_ids)
    hist_factors = fit_als(spark, hist_matrix, params)
    cands = build_candidates(
        hist_matrix,
        build_sources(hist_matrix, items=items),
        hist_factors,
        sorted(set(label["user_id"])),
        user_side_features(users),
        labels=label.loc[label[STRENGTH] > 0],
    )
    figures["ranker_rows"] = len(cands)
    cpu = fit_ranker(cands, accelerator=Accelerator("cpu", "pandas", "benchmark: forced CPU"))
    figures["ranker_cpu_fit_s"] = cpu.fit_seconds
    accel = detect_accelerator()
    figures["ranker_device"] = f"{accel.device}/{accel.dataframe} ({accel.reason})"
    if accel.device == "cuda":
        gpu = fit_ranker(cands, accelerator=accel)
        figures["ranker_gpu_fit_s"] = gpu.fit_seconds
        figures["ranker_gpu_speedup"] = cpu.fit_seconds / max(gpu.fit_seconds, 1e-9)

    if not quick:
        console.step("end-to-end training on Spark (ALS search + ranker + refit)", stream=log)
        started = time.perf_counter()
        train_on_spark(pairs_from_pandas(spark, train), items, settings=TrainSettings(carve="random"))
        figures["end_to_end_s"] = time.perf_counter() - started
    return figures

"""``recsys offline``: train on a CSV of interactions, write top-K recommendations to a CSV.

No Kafka, no tables: the way anyone checks recommendation quality on data of their own with their
own split and metric code (contract in ARCHITECTURE.md). The work is ``run_offline``; the CLI
handler only parses arguments and prints the summary.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from spark_jobs.common import console
from spark_jobs.common.config import Config
from spark_jobs.common.errors import UsageError
from spark_jobs.evaluation.splits import PROTOCOLS, RANDOM
from spark_jobs.training.als import DEFAULT_GRID, AlsParams
from spark_jobs.training.columns import (
    SEED,
    STRATEGIES,
    STRATEGY_HYBRID,
    STRATEGY_POPULARITY,
    STRENGTH,
    USER_ID,
)
from spark_jobs.training.offline_io import (
    exclude_owned,
    read_items,
    read_train,
    write_recommendations,
)

if TYPE_CHECKING:
    from spark_jobs.training.spark_model import SparkRecommender

MAX_K = 10_000


@dataclass
class OfflineResult:
    """What ``run_offline`` did, for the summary and for tests."""

    rows: int
    users: int
    requested_model: str
    served_by: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)


def run_offline(
    train_path: str | Path,
    out_path: str | Path,
    k: int,
    model: str = STRATEGY_HYBRID,
    items_path: str | Path | None = None,
    carve: str = RANDOM,
    seed: int = SEED,
    config: Config | None = None,
    grid: tuple[AlsParams, ...] | None = None,
) -> OfflineResult:
    """Train ``model`` on ``train_path`` only and write top-``k`` per user to ``out_path``.

    Falls back to popularity (and says so in ``notes``) when the data cannot support ALS.
    ``config`` (default: the environment's) places Spark's checkpoints; ``grid`` overrides the
    ALS search grid (tests use a tiny one).
    """
    if not 1 <= k <= MAX_K:
        raise UsageError(f"--k must be between 1 and {MAX_K}, got {k}")
    if model not in STRATEGIES:
        raise UsageError(f"--model must be one of {', '.join(STRATEGIES)}, got {model!r}")
    if carve not in PROTOCOLS:
        raise UsageError(f"--carve must be one of {', '.join(PROTOCOLS)}, got {carve!r}")
    started = time.perf_counter()
    console.step(f"reading {train_path}")
    train = read_train(train_path)
    items = read_items(items_path) if items_path else None
    notes = []
    if train.ignored_columns:
        notes.append(f"ignored column(s): {', '.join(train.ignored_columns)}")
    if train.defaulted_ratings:
        notes.append(f"{train.defaulted_ratings} empty/invalid rating(s) read as 1.0")
    if train.non_positive:
        notes.append(f"{train.non_positive} rating(s) <= 0: excluded, not used as positives")
    if train.dropped_rows:
        notes.append(f"{train.dropped_rows} row(s) without user_id or item_id dropped")
    interactions = train.interactions
    n_users = interactions[USER_ID].nunique()
    console.info(
        f"{len(interactions):,} interactions, {n_users:,} users, {interactions['item_id'].nunique():,} items"
    )

    recommender = _train(interactions, items, model, carve, seed, config, grid)
    notes += recommender.notes
    served = recommender.resolve_model(model)
    if served != model:
        notes.append(f"{model} not available on this data: served by {served}")
    owned_extra = int(
        interactions.loc[interactions[STRENGTH] <= 0].groupby(USER_ID).size().max()
        if (interactions[STRENGTH] <= 0).any()
        else 0
    )
    console.step(f"recommending top-{k} with {served}")
    # The output file holds every user's list, so its rows come to this process in any case.
    recs = recommender.recommend(k + owned_extra, model).toPandas()
    recs = exclude_owned(recs, interactions, k)
    rows = write_recommendations(recs, out_path)
    short = n_users - recs[USER_ID].nunique()
    if short:
        notes.append(f"{short} user(s) already have every catalog item: no rows for them")
    facts: dict[str, object] = dict(recommender.metrics)
    params = recommender.items.params
    if params is not None and recommender.has_als:
        facts["als_params"] = f"rank={params.rank} reg={params.reg_param} alpha={params.alpha}"
    return OfflineResult(rows, n_users, model, served, time.perf_counter() - started, notes, facts)


def _train(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    model: str,
    carve: str,
    seed: int,
    config: Config | None,
    grid: tuple[AlsParams, ...] | None,
) -> SparkRecommender:
    from spark_jobs.common.config import get_config
    from spark_jobs.evaluation.report import pairs_from_pandas
    from spark_jobs.training.pipeline import MIN_USERS_FOR_ALS, TrainSettings
    from spark_jobs.training.session import checkpoint_dir, training_session
    from spark_jobs.training.trainer import popularity_on_spark, train_on_spark

    config = config or get_config()
    console.step("starting Spark")
    spark = training_session(config, app_name="recsys-offline")
    positive = interactions.loc[interactions[STRENGTH] > 0]
    if model == STRATEGY_POPULARITY or positive.empty or positive[USER_ID].nunique() < MIN_USERS_FOR_ALS:
        # Nothing positive to count: every item scores 0 and ties fall back to catalog order.
        counted = interactions.assign(**{STRENGTH: 1.0}) if positive.empty else interactions
        base = popularity_on_spark(pairs_from_pandas(spark, counted), items)
        if model != STRATEGY_POPULARITY:
            base.notes.append(
                f"fewer than {MIN_USERS_FOR_ALS} users with positive interactions: popularity fallback"
            )
        return base
    console.step(f"training {model} on Spark (validation carved from --train: {carve})")
    settings = TrainSettings(
        grid=grid or DEFAULT_GRID,
        carve=carve,
        seed=seed,
        train_ranker=model == STRATEGY_HYBRID,
        checkpoint_dir=checkpoint_dir(config),
    )
    return train_on_spark(pairs_from_pandas(spark, interactions), items, settings=settings)


def _handle(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="    %(message)s")
    result = run_offline(args.train, args.out, args.k, args.model, args.items, args.carve, args.seed)
    rows: list[tuple[str, object]] = [
        ("train file", args.train),
        ("model", f"{result.requested_model} (served by {result.served_by})"),
        ("users", result.users),
        ("rows written", result.rows),
        ("output", args.out),
        ("seconds", round(result.seconds, 1)),
    ]
    rows += [(k, v) for k, v in result.facts.items()]
    rows += [("note", n) for n in result.notes]
    console.summary("recsys offline", rows)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "offline",
        help="train on a CSV of interactions and write top-K recommendations to a CSV",
        description=(
            "Train on --train only and write top-K recommendations for every user in it, "
            "excluding items the user already has there. Validation data is carved from --train."
        ),
    )
    parser.add_argument(
        "--train",
        required=True,
        metavar="FILE",
        help="CSV with header user_id,item_id,rating,timestamp (rating/timestamp optional)",
    )
    parser.add_argument("--items", metavar="FILE", help="optional CSV item_id,title,genres (| separated)")
    parser.add_argument("--k", required=True, type=int, help="recommendations per user")
    parser.add_argument("--out", required=True, metavar="FILE", help="output CSV user_id,rank,item_id,score")
    parser.add_argument(
        "--model",
        default=STRATEGY_HYBRID,
        choices=STRATEGIES,
        help="popularity, als, or hybrid (ALS candidates + XGBoost ranker; default)",
    )
    parser.add_argument(
        "--carve",
        default=RANDOM,
        choices=PROTOCOLS,
        help="how the internal validation split is carved from --train (default random)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    parser.set_defaults(handler=_handle)

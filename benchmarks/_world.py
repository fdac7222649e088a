"""Shared set-up of the serving benchmarks and the realtime notebook: a lakehouse with a champion.

``bench_config`` points a configuration at a private root (its own tables, checkpoints, MLflow
registry and, for the broker, stack folder) so a benchmark never touches the user's lakehouse
or registry. ``prepare_lakehouse`` writes a synthetic history straight into silver
(``spark_jobs.produce.silver``, ``write_silver`` alone) and trains a champion with the quick ALS
grid, exactly as ``recsys train --once --quick`` would.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spark_jobs.common import console, names
from spark_jobs.common.config import Config

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from pyspark.sql import SparkSession

    from spark_jobs.produce.silver import SyntheticHistory
    from spark_jobs.training.als import AlsParams

SEED = 42
SESSION_CONF = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}


@dataclass(frozen=True)
class Lakehouse:
    """A prepared lakehouse: its history, the champion's label and what set-up cost."""

    history: SyntheticHistory
    champion: str  # ``model_version`` the scorer serves, e.g. ``als:v1+ranker:v1``
    forced: bool  # True when the gate kept popularity and the benchmark promoted anyway
    gate_reasons: tuple[str, ...]
    write_s: float
    train_s: float


def bench_config(config: Config, root: Path, **serving: Any) -> Config:
    """``config`` with everything under ``root``: tables, checkpoints, MLflow, local stack.

    The MLflow URIs are cleared so they derive from ``root`` (a benchmark must never register
    models in, or move the aliases of, the real registry). ``serving`` replaces serving settings.
    """
    return dataclasses.replace(
        config,
        lakehouse_root=str(root),
        checkpoint_root=str(root / "_checkpoints"),
        mlflow=dataclasses.replace(config.mlflow, tracking_uri="", artifact_root=""),
        serving=dataclasses.replace(config.serving, **serving),
    )


def session(config: Config, app_name: str) -> SparkSession:
    """The project's session for ``config`` (as ``recsys score`` builds it), UI off."""
    from spark_jobs.common.spark import build_session

    return build_session(config, app_name=app_name, extra_conf=SESSION_CONF)


def prepare_lakehouse(
    spark: SparkSession,
    config: Config,
    *,
    n_users: int,
    n_items: int,
    n_events: int,
    end_ms: int,
    seed: int = SEED,
    grid: Sequence[AlsParams] | None = None,
    force_champion: bool = True,
) -> Lakehouse:
    """Synthetic catalog + silver history ending at ``end_ms``, then one quick training run.

    With ``force_champion`` a challenger the gate did not promote (synthetic data can lose to
    popularity on a small holdout) is made champion anyway, so the scorer serves a trained model;
    ``Lakehouse.forced`` says so and the callers report it. ``grid`` defaults to ``QUICK_GRID``.
    """
    import mlflow

    from spark_jobs.produce.silver import arrow_enabled
    from spark_jobs.registry.gate import GateDecision, apply_decision
    from spark_jobs.registry.store import setup_tracking
    from spark_jobs.training.als import QUICK_GRID
    from spark_jobs.training.job import run_training
    from spark_jobs.training.pipeline import TrainSettings
    from spark_jobs.training.session import checkpoint_dir

    history, write_s = write_silver(
        spark, config, n_users=n_users, n_items=n_items, n_events=n_events, end_ms=end_ms, seed=seed
    )

    started = time.perf_counter()
    settings = TrainSettings(grid=tuple(grid or QUICK_GRID), checkpoint_dir=checkpoint_dir(config))
    with arrow_enabled(spark):  # as ``training_session`` runs it
        report = run_training(spark, config, settings)
    train_s = time.perf_counter() - started
    promoted = report.decision is not None and report.decision.promote
    reasons = report.decision.reasons if report.decision is not None else ()
    forced = False
    if not promoted and force_champion and report.versions:
        setup_tracking(config)
        apply_decision(mlflow.MlflowClient(), GateDecision(True, ("forced by benchmark",)), report.versions)
        forced = True
    label = "+".join(f"{_short(name)}:v{v}" for name, v in sorted(report.versions.items()))
    console.info(f"champion {label}{' (forced)' if forced else ''}, trained in {train_s:.0f}s")
    return Lakehouse(history, label, forced, tuple(reasons), write_s, train_s)


def write_silver(
    spark: SparkSession,
    config: Config,
    *,
    n_users: int,
    n_items: int,
    n_events: int,
    end_ms: int,
    seed: int = SEED,
) -> tuple[SyntheticHistory, float]:
    """Synthetic catalog + silver history ending at ``end_ms``, registered by name; and its seconds.

    The set-up half of ``prepare_lakehouse``, on its own for benchmarks that then train through
    the ``recsys`` commands (``benchmarks/scale.py``) instead of in-process.
    """
    from spark_jobs.common.spark import register_tables
    from spark_jobs.produce.silver import write_history

    started = time.perf_counter()
    history = write_history(
        spark, config, n_users=n_users, n_items=n_items, n_events=n_events, end_ms=end_ms, seed=seed
    )
    register_tables(spark, config)
    write_s = time.perf_counter() - started
    console.info(f"{history.events:,} silver events, {n_users:,} users, {n_items:,} items ({write_s:.0f}s)")
    return history, write_s


def _short(model_name: str) -> str:
    return {names.MODEL_ALS: "als", names.MODEL_RANKER: "ranker"}.get(model_name, model_name)


def untouched_category(
    spark: SparkSession, config: Config, user_id: str, n_items: int = 8
) -> tuple[str, list[str]]:
    """A category ``user_id`` never touched, and its ``n_items`` most popular items in silver.

    Chooses the largest such category, so there are enough items to move the list toward.
    """
    from pyspark.sql import functions as F

    categories = _item_categories(spark, config)
    events = spark.table(config.table(names.EVENTS))
    mine = {r[0] for r in events.where(F.col(names.USER_ID) == user_id).select(names.ITEM_ID).collect()}
    touched = {c for item in mine for c in categories.get(item, [])}
    sizes = categories.explode().value_counts()
    fresh = [c for c in sizes.index if c not in touched]
    if not fresh:
        raise ValueError(f"user {user_id} has touched every category")
    category = str(fresh[0])
    return category, popular_in_category(spark, config, category, n_items, exclude=mine)


def popular_in_category(
    spark: SparkSession, config: Config, category: str, n_items: int, exclude: set[str] | None = None
) -> list[str]:
    """The ``n_items`` items of ``category`` with the most events in silver (ties by item id)."""
    from pyspark.sql import functions as F

    categories = _item_categories(spark, config)
    popular = (
        spark.table(config.table(names.EVENTS))
        .groupBy(names.ITEM_ID)
        .count()
        .orderBy(F.desc("count"), names.ITEM_ID)
        .toPandas()
    )
    skip = exclude or set()
    return [i for i in popular[names.ITEM_ID] if category in categories.get(i, []) and i not in skip][
        :n_items
    ]


def _item_categories(spark: SparkSession, config: Config) -> pd.Series:
    items = spark.table(config.table(names.ITEMS)).select(names.ITEM_ID, "categories").toPandas()
    return items.set_index(names.ITEM_ID)["categories"].map(list)


def demo_user(spark: SparkSession, config: Config, min_items: int = 5) -> str:
    """A consenting user with a short history (at least ``min_items`` distinct items): the kind
    of user a handful of new events visibly moves."""
    from pyspark.sql import functions as F

    users = spark.table(config.table(names.USERS)).where(F.col("consent_personalization"))
    counts = (
        spark.table(config.table(names.EVENTS))
        .groupBy(names.USER_ID)
        .agg(F.countDistinct(names.ITEM_ID).alias("n"))
        .where(F.col("n") >= min_items)
        .join(users.select(names.USER_ID), names.USER_ID)
        .orderBy("n", names.USER_ID)
        .first()
    )
    if counts is None:
        raise ValueError(f"no consenting user with {min_items} or more items in {config.table(names.EVENTS)}")
    return str(counts[names.USER_ID])


def user_list(spark: SparkSession, config: Config, user_id: str) -> pd.DataFrame:
    """One user's current top-N from ``recsys.recommendations`` with item titles and categories."""
    from pyspark.sql import functions as F

    items = spark.table(config.table(names.ITEMS)).select(names.ITEM_ID, "title", "categories")
    return (
        spark.read.format("delta")
        .load(config.table_path(names.RECOMMENDATIONS))
        .where(F.col(names.USER_ID) == user_id)
        .join(items, names.ITEM_ID, "left")
        .select(names.RANK, names.ITEM_ID, "title", "categories", names.REASON, "source", names.SCORE)
        .orderBy(names.RANK)
        .toPandas()
    )


def item_titles(spark: SparkSession, config: Config, item_ids: list[str]) -> dict[str, str]:
    """``item_id -> title`` for the given items (those in ``recsys.items``)."""
    from pyspark.sql import functions as F

    rows = (
        spark.table(config.table(names.ITEMS))
        .where(F.col(names.ITEM_ID).isin(list(item_ids)))
        .select(names.ITEM_ID, "title")
        .collect()
    )
    return {r[names.ITEM_ID]: r["title"] for r in rows}

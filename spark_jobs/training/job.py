"""The training job: silver events (+ items, users) -> models -> MLflow registry -> gate.

Thin on purpose: reading tables, the pure transforms (``interactions``), training
(``pipeline``), evaluation (``evaluation.report``), logging (``registry``) and the decision
(``gate``) live in their own modules. The evaluation holdout is each user's latest 25% of
interactions (temporal protocol); the registered models are the ones trained without it, so the
metrics logged next to them are the metrics they have. The champion is scored on the same holdout
before the gate decides.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from spark_jobs.common import console, names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import RecsysError
from spark_jobs.evaluation.report import item_categories, plot_bars, plot_curves, plot_importance
from spark_jobs.evaluation.splits import TEMPORAL, split_frame
from spark_jobs.features.user_side import user_side_features
from spark_jobs.registry.gate import GateDecision, apply_decision, decide, mark_challengers
from spark_jobs.training.columns import (
    CATEGORIES,
    ITEM_ID,
    STRATEGY_HYBRID,
    STRATEGY_POPULARITY,
    STRENGTH,
    USER_ID,
)
from spark_jobs.training.interactions import DEFAULT_HALF_LIFE_DAYS, build_interactions, user_context
from spark_jobs.training.pipeline import TrainSettings
from spark_jobs.training.spark_model import SparkRecommender
from spark_jobs.training.trainer import sample_users, train_on_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
# The columns of ``TrainingReport.table`` people read (one row per model on the holdout).
REPORT_COLUMNS = ("model", "served_by", "ndcg", "precision", "recall", "map", "coverage", "diversity")

HOLDOUT_RATIO = 0.25
USER_PROFILE_COLUMNS = ("age", "age_band", "gender", "occupation", "country")


class TrainingDataError(RecsysError):
    """The lakehouse holds no (or not enough) events to train on."""


@dataclass
class TrainingInputs:
    """What training reads: per-user data as DataFrames, the catalog (item-sized) in memory."""

    interactions: DataFrame  # user_id, item_id, strength, n_events, timestamp: one row per pair
    items: pd.DataFrame | None
    side: DataFrame | None  # user_id + the ranker's user-side features
    n_events: int
    reference_ts: Any  # the newest event time read: the end of the training window
    first_ts: Any  # the oldest: its start


@dataclass
class TrainingReport:
    """What one training run did; the CLI prints it, tests assert on it."""

    table: pd.DataFrame
    run_id: str | None
    versions: dict[str, str]
    decision: GateDecision | None
    champion_table: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    n_events: int = 0
    n_interactions: int = 0
    rerun: bool = False  # an earlier attempt of the same orchestrator run did the work


def _gate(
    client: Any,
    run_id: str,
    versions: dict[str, str],
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    baseline: dict[str, float],
    run_key: str | None,
) -> GateDecision:
    """New versions become the challenger; the gate decides and moves ``champion``; the run and
    (with ``run_key``) the versions record that they were judged."""
    from spark_jobs.registry import store as registry

    mark_challengers(client, versions)
    decision = decide(challenger, champion, baseline)
    moved = apply_decision(client, decision, versions)
    client.set_tag(run_id, "gate_promote", str(decision.promote))
    client.set_tag(run_id, "gate_reasons", "; ".join(decision.reasons)[:5000])
    if run_key:
        registry.tag_versions(client, versions, {registry.TAG_RUN: run_key})
    log.info("gate: promote=%s (%s); moved %s", decision.promote, decision.reasons, moved)
    return decision


def _earlier_attempt(config: Config, run_key: str) -> TrainingReport | None:
    """The report of an earlier attempt of ``run_key`` that registered and gated its versions."""
    import mlflow

    from spark_jobs.registry import store as registry

    registry.setup_tracking(config)
    client = mlflow.MlflowClient()
    versions = registry.versions_for_run(client, run_key)
    if not versions:
        return None
    promoted = registry.champion_versions(client) == versions
    described = ", ".join(f"{name} v{v}" for name, v in sorted(versions.items()))
    reason = f"run {run_key} already trained {described}: " + (
        "they are the champion" if promoted else "the champion was kept"
    )
    console.info(reason)
    return TrainingReport(
        pd.DataFrame(columns=REPORT_COLUMNS),
        None,
        versions,
        GateDecision(promote=promoted, reasons=(reason,)),
        None,
        notes=[f"nothing retrained: {reason}"],
        rerun=True,
    )


def _table_exists(spark: SparkSession, config: Config, table: str) -> bool:
    return bool(spark.catalog.tableExists(config.table(table)))


def load_inputs(
    spark: SparkSession, config: Config, half_life_days: float = DEFAULT_HALF_LIFE_DAYS
) -> TrainingInputs:
    """Silver events (required) and items/users (when present) as training inputs; nothing that
    grows with users or events is collected."""
    from pyspark.sql import functions as F

    from spark_jobs.common.spark import register_tables

    register_tables(spark, config)
    if not _table_exists(spark, config, names.EVENTS):
        raise TrainingDataError(
            f"table {config.table(names.EVENTS)} does not exist",
            hint="produce and ingest events first (recsys ingest --once)",
        )
    events = spark.table(config.table(names.EVENTS))
    stats = events.agg(
        F.count(F.lit(1)).alias("n"), F.min(names.EVENT_TS).alias("first"), F.max(names.EVENT_TS).alias("ref")
    ).first()
    if stats is None or not stats["n"]:
        raise TrainingDataError(
            f"table {config.table(names.EVENTS)} is empty",
            hint="produce and ingest events first (recsys ingest --once)",
        )
    interactions = build_interactions(events, stats["ref"], half_life_days)
    items = None
    if _table_exists(spark, config, names.ITEMS):
        item_df = spark.table(config.table(names.ITEMS))
        cols = [c for c in (ITEM_ID, CATEGORIES) if c in item_df.columns]
        items = item_df.select(*cols).toPandas()  # the catalog: item-sized
        if CATEGORIES in items.columns:
            items[CATEGORIES] = items[CATEGORIES].map(lambda c: list(c) if c is not None else [])
    users = None
    if _table_exists(spark, config, names.USERS):
        user_df = spark.table(config.table(names.USERS))
        users = user_df.select(USER_ID, *(c for c in USER_PROFILE_COLUMNS if c in user_df.columns))
    side = user_side_features(users, user_context(events))
    return TrainingInputs(interactions, items, side, int(stats["n"]), stats["ref"], stats["first"])


def _headline(table: pd.DataFrame, model: str) -> dict[str, float]:
    row = table.loc[table["model"] == model].iloc[0]
    return {m: float(row[m]) for m in ("ndcg", "precision", "recall", "map", "coverage")}


@dataclass
class Holdout:
    """The evaluation split: training pairs and the (sampled) users' held-out relevant items."""

    train: DataFrame
    truth: DataFrame
    n_pairs: int
    categories: dict[str, frozenset[str]]


@dataclass
class Validation:
    """The challenger's metrics on the holdout, and the nDCG@K curves plotted next to them."""

    table: pd.DataFrame
    curve: pd.DataFrame
    served: str  # the model that answers for the hybrid (fallback chain)
    headline: dict[str, float]
    seconds: float


def read_step(settings: TrainSettings, inputs: TrainingInputs) -> Holdout:
    """Pairs -> (training pairs, held-out truth): each user's latest 25% held out, evaluation
    bounded to a seeded sample of ``settings.max_eval_users`` users."""
    from pyspark.sql import functions as F

    pairs = inputs.interactions.cache()
    n_pairs = pairs.count()
    console.info(f"{inputs.n_events:,} events -> {n_pairs:,} user-item pairs")
    train, holdout = split_frame(pairs, TEMPORAL, HOLDOUT_RATIO, settings.seed)
    if train.limit(1).count() == 0:
        raise TrainingDataError("no interactions left for training after the holdout split")
    truth = holdout.where(F.col(STRENGTH) > 0)
    sample = sample_users(truth, settings.max_eval_users, settings.seed)
    truth = truth.join(sample, USER_ID, "left_semi").select(USER_ID, ITEM_ID).cache()
    return Holdout(train, truth, n_pairs, item_categories(inputs.items))


def validate_step(model: SparkRecommender, holdout: Holdout, settings: TrainSettings) -> Validation:
    """Every model of the challenger on the holdout (per-user work on the executors)."""
    started = time.perf_counter()
    table, curve = model.evaluate(holdout.truth, settings.k, categories=holdout.categories)
    served = model.resolve_model(STRATEGY_HYBRID)
    return Validation(table, curve, served, _headline(table, served), time.perf_counter() - started)


def _champion_metrics(
    spark: SparkSession, config: Config, client: Any, model: SparkRecommender, holdout: Holdout, k: int
) -> tuple[pd.DataFrame | None, dict[str, float] | None]:
    """The current champion scored on the same holdout (None when there is none to load)."""
    from spark_jobs.registry import store as registry
    from spark_jobs.training.factor_tables import user_factors_of

    held = registry.champion_versions(client).get(names.MODEL_ALS)
    champion = registry.load_champion(client, model, user_factors_of(spark, config, held) if held else None)
    if champion is None:
        return None, None
    table, _ = champion.evaluate(
        holdout.truth, k, models=(champion.resolve_model(STRATEGY_HYBRID),), categories=holdout.categories
    )
    return table, _headline(table, table["model"].iloc[0])


def _plots(model: SparkRecommender, validation: Validation, folder: Path) -> dict[str, Path]:
    plots = {
        "ndcg_curve": plot_curves(validation.curve, folder / "ndcg_at_k.png"),
        "models": plot_bars(validation.table, folder / "models.png"),
    }
    if model.ranker is not None:
        plots["importance"] = plot_importance(
            model.ranker.feature_importance(), folder / "feature_importance.png"
        )
    return plots


def register_step(
    spark: SparkSession,
    config: Config,
    model: SparkRecommender,
    inputs: TrainingInputs,
    holdout: Holdout,
    validation: Validation,
    params: dict[str, Any],
    timings: dict[str, float],
    run_key: str | None,
) -> tuple[str, dict[str, str], GateDecision, pd.DataFrame | None]:
    """Log and register the challenger, write its factor tables, score the champion on the same
    holdout and let the gate decide: (run id, versions, decision, champion's table)."""
    import mlflow

    from spark_jobs.registry import store as registry
    from spark_jobs.training.factor_tables import write_factors

    registry.setup_tracking(config)
    client = mlflow.MlflowClient()
    champion_table, champion_metrics = _champion_metrics(spark, config, client, model, holdout, params["k"])
    table = validation.table
    metrics = {
        f"{row['model']}_{m}": row[m]
        for _, row in table.iterrows()
        for m in ("ndcg", "precision", "recall", "map", "coverage", "diversity")
    }
    metrics.update({f"test_{m}": v for m, v in validation.headline.items()})
    metrics.update({**model.metrics, **timings, **model.timings})
    with tempfile.TemporaryDirectory() as tmp:
        logged = registry.log_training_run(
            model,
            metrics,
            params,
            _plots(model, validation, Path(tmp)),
            {"metrics": table, "als_search": model.search},
            # The events' window (the holdout is carved out of it): what drift compares with.
            version_tags=registry.window_tags(inputs.first_ts, inputs.reference_ts),
        )
    if names.MODEL_ALS in logged.versions:
        write_factors(spark, config, model, logged.versions[names.MODEL_ALS], inputs.reference_ts)
    baseline = _headline(table, STRATEGY_POPULARITY)
    decision = _gate(
        client, logged.run_id, logged.versions, validation.headline, champion_metrics, baseline, run_key
    )
    return logged.run_id, logged.versions, decision, champion_table


def run_training(
    spark: SparkSession,
    config: Config,
    settings: TrainSettings = TrainSettings(),
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    register: bool = True,
    run_key: str | None = None,
) -> TrainingReport:
    """One training run end to end: read, fit, validate, register (see module docstring).
    Raises ``TrainingDataError`` when there is nothing to train on.

    ``run_key`` is the orchestrator's run id: the versions a run registers are tagged with it
    once the gate has judged them, and a rerun of the same run (a retried or cleared task)
    reports that first decision instead of registering new versions.
    """
    if register and run_key:
        earlier = _earlier_attempt(config, run_key)
        if earlier is not None:
            return earlier
    timings: dict[str, float] = {}
    started = time.perf_counter()
    console.step("reading events")
    inputs = load_inputs(spark, config, half_life_days)
    holdout = read_step(settings, inputs)
    timings["read_s"] = time.perf_counter() - started

    console.step("training on the executors (ALS search, ranker, refit)")
    started = time.perf_counter()
    model = train_on_spark(holdout.train, inputs.items, inputs.side, settings)
    timings["train_s"] = time.perf_counter() - started

    console.step("evaluating on the holdout (each user's latest 25%)")
    validation = validate_step(model, holdout, settings)
    timings["evaluate_s"] = validation.seconds

    run_id, versions, decision, champion_table = None, {}, None, None
    if register:
        console.step("logging to MLflow and registering models")
        params = {
            "served_model": validation.served,
            "n_events": inputs.n_events,
            "n_pairs": holdout.n_pairs,
            "half_life_days": half_life_days,
            "carve": settings.carve,
            "holdout": f"temporal {HOLDOUT_RATIO}",
            "reference_ts": str(inputs.reference_ts),
            "k": settings.k,
        }
        run_id, versions, decision, champion_table = register_step(
            spark, config, model, inputs, holdout, validation, params, timings, run_key
        )
    timings["total_s"] = sum(v for k, v in timings.items() if k != "total_s")
    return TrainingReport(
        validation.table,
        run_id,
        versions,
        decision,
        champion_table,
        model.notes,
        {**timings, **model.timings},
        inputs.n_events,
        holdout.n_pairs,
    )

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
from spark_jobs.evaluation.report import curves, evaluate_recommender, plot_bars, plot_curves, plot_importance
from spark_jobs.evaluation.splits import TEMPORAL, split
from spark_jobs.training.columns import (
    CATEGORIES,
    ITEM_ID,
    MODEL_HYBRID,
    MODEL_POPULARITY,
    USER_ID,
)
from spark_jobs.training.gate import GateDecision, apply_decision, decide, mark_challengers
from spark_jobs.training.interactions import DEFAULT_HALF_LIFE_DAYS, build_interactions, user_context
from spark_jobs.training.matrix import aggregate_pairs
from spark_jobs.training.pipeline import TrainSettings, train_recommender

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
# The columns of ``TrainingReport.table`` people read (one row per model on the holdout).
REPORT_COLUMNS = ("model", "served_by", "ndcg", "precision", "recall", "map", "coverage", "diversity")

HOLDOUT_RATIO = 0.25
USER_PROFILE_COLUMNS = ("age", "age_band", "gender", "occupation", "country")


class TrainingDataError(RecsysError):
    """The lakehouse holds no (or not enough) events to train on."""


@dataclass
class TrainingInputs:
    interactions: pd.DataFrame
    items: pd.DataFrame | None
    users: pd.DataFrame | None
    context: pd.DataFrame | None
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
    from spark_jobs.training import registry

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

    from spark_jobs.training import registry

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
    """Read silver events (required) and items/users (when present) into training frames."""
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
    interactions = build_interactions(events, stats["ref"], half_life_days).toPandas()
    items = None
    if _table_exists(spark, config, names.ITEMS):
        item_df = spark.table(config.table(names.ITEMS))
        cols = [c for c in (ITEM_ID, CATEGORIES) if c in item_df.columns]
        items = item_df.select(*cols).toPandas()
        if CATEGORIES in items.columns:
            items[CATEGORIES] = items[CATEGORIES].map(lambda c: list(c) if c is not None else [])
    users = None
    if _table_exists(spark, config, names.USERS):
        user_df = spark.table(config.table(names.USERS))
        cols = [USER_ID, *(c for c in USER_PROFILE_COLUMNS if c in user_df.columns)]
        users = user_df.select(*cols).toPandas()
    context = user_context(events).toPandas()
    return TrainingInputs(interactions, items, users, context, int(stats["n"]), stats["ref"], stats["first"])


def _headline(table: pd.DataFrame, model: str) -> dict[str, float]:
    row = table.loc[table["model"] == model].iloc[0]
    return {m: float(row[m]) for m in ("ndcg", "precision", "recall", "map", "coverage")}


def run_training(
    spark: SparkSession,
    config: Config,
    settings: TrainSettings = TrainSettings(),
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    register: bool = True,
    run_key: str | None = None,
) -> TrainingReport:
    """One training run end to end (see module docstring). Raises ``TrainingDataError`` when
    there is nothing to train on.

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
    timings["read_s"] = time.perf_counter() - started
    pairs = aggregate_pairs(inputs.interactions)
    console.info(f"{inputs.n_events:,} events -> {len(pairs):,} user-item pairs")
    train, holdout = split(pairs, TEMPORAL, HOLDOUT_RATIO, settings.seed)
    if train.empty:
        raise TrainingDataError("no interactions left for training after the holdout split")

    console.step("training (ALS search, ranker, refit)")
    started = time.perf_counter()
    model = train_recommender(spark, train, inputs.items, inputs.users, inputs.context, settings)
    timings["train_s"] = time.perf_counter() - started
    console.step("evaluating on the holdout (each user's latest 25%)")
    table, lists = evaluate_recommender(model, holdout, inputs.items, settings.k)
    best = model.resolve_model(MODEL_HYBRID)
    challenger_metrics = _headline(table, best)

    run_id, versions, decision, champion_table = None, {}, None, None
    if register:
        import mlflow

        from spark_jobs.training import registry

        console.step("logging to MLflow and registering models")
        registry.setup_tracking(config)
        client = mlflow.MlflowClient()
        champion = registry.load_champion(client, model)
        champion_metrics = None
        if champion is not None:
            champion_table, _ = evaluate_recommender(
                champion, holdout, inputs.items, settings.k, models=(champion.resolve_model(MODEL_HYBRID),)
            )
            champion_metrics = _headline(champion_table, champion_table["model"].iloc[0])
        with tempfile.TemporaryDirectory() as tmp:
            plots = {
                "ndcg_curve": plot_curves(curves(lists, holdout), Path(tmp) / "ndcg_at_k.png"),
                "models": plot_bars(table, Path(tmp) / "models.png"),
            }
            if model.ranker is not None:
                plots["importance"] = plot_importance(
                    model.ranker.feature_importance(), Path(tmp) / "feature_importance.png"
                )
            metrics = {
                f"{row['model']}_{m}": row[m]
                for _, row in table.iterrows()
                for m in ("ndcg", "precision", "recall", "map", "coverage", "diversity")
            }
            metrics.update({f"test_{m}": v for m, v in challenger_metrics.items()})
            metrics.update(model.metrics)
            metrics.update(timings)
            metrics.update(model.timings)
            params = {
                "served_model": best,
                "n_events": inputs.n_events,
                "n_train_pairs": len(train),
                "n_holdout_pairs": len(holdout),
                "half_life_days": half_life_days,
                "carve": settings.carve,
                "holdout": f"temporal {HOLDOUT_RATIO}",
                "reference_ts": str(inputs.reference_ts),
            }
            logged = registry.log_training_run(
                model,
                metrics,
                params,
                plots,
                {"metrics": table, "als_search": model.search},
                # The events' window (the holdout is carved out of it): what drift compares with.
                version_tags=registry.window_tags(inputs.first_ts, inputs.reference_ts),
            )
        run_id, versions = logged.run_id, logged.versions
        baseline = _headline(table, MODEL_POPULARITY)
        decision = _gate(client, run_id, versions, challenger_metrics, champion_metrics, baseline, run_key)
    timings["total_s"] = sum(v for k, v in timings.items() if k != "total_s")
    return TrainingReport(
        table,
        run_id,
        versions,
        decision,
        champion_table,
        model.notes,
        {**timings, **model.timings},
        inputs.n_events,
        len(pairs),
    )

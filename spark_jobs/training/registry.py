"""MLflow: tracking setup, logging a training run, registering ``recsys_als`` / ``recsys_ranker``,
and loading the current champion back so the gate can score it on today's evaluation data.

Tracking and registry default to SQLite under the lakehouse root with local artifacts
(``Config.tracking_uri`` / ``Config.artifact_root``). ALS is stored as a pyfunc over its numpy
factors (no Spark needed to serve it); the ranker with MLflow's XGBoost flavour. Both carry a
signature and an input example. Pip requirements are given explicitly so logging does not spend
minutes inferring them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.training.als import AlsFactors, AlsParams, recommend_from_scores
from spark_jobs.training.columns import DEFAULT_K, USER_ID
from spark_jobs.training.features import FEATURE_COLUMNS
from spark_jobs.training.pipeline import TrainedRecommender
from spark_jobs.training.ranker import RankerModel, RankerParams, detect_accelerator

log = logging.getLogger(__name__)

FACTORS_ARTIFACT = "factors"
# Model version tags with the event-time window a version was trained on; drift compares the live
# data with it (spark_jobs.drift.job.champion_reference_window).
TAG_WINDOW_START = "train_window_start"
TAG_WINDOW_END = "train_window_end"
# The orchestrator run (Airflow run_id, Databricks job run) whose training registered a version,
# set once the gate has judged it: a rerun of that run finds it and registers nothing new.
TAG_RUN = "orchestrator_run_id"
PIP_REQUIREMENTS = ("mlflow==3.6.0", "numpy<2.3", "pandas<3", "xgboost==3.1.2", "scikit-learn<1.8")


def setup_tracking(config: Config) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id."""
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)
    experiment = mlflow.get_experiment_by_name(config.mlflow.experiment)
    if experiment is None:
        if "://" not in config.artifact_root:
            Path(config.artifact_root).mkdir(parents=True, exist_ok=True)
        experiment_id = mlflow.create_experiment(
            config.mlflow.experiment, artifact_location=config.artifact_root
        )
    else:
        experiment_id = experiment.experiment_id
    # Runs (and the models logged in them) go to this experiment, never to "Default", whose
    # artifact location would be relative to the working directory.
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


class AlsRecommenderModel(mlflow.pyfunc.PythonModel):
    """pyfunc over ALS factors: input ``user_id`` rows, output top-``k`` ``user_id, item_id,
    score, rank`` (param ``k``). Unknown users get no rows; the scorer adds fallbacks."""

    def __init__(self) -> None:
        self.factors: AlsFactors | None = None

    def load_context(self, context: Any) -> None:
        self.factors = load_factors(context.artifacts[FACTORS_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        assert self.factors is not None
        k = int((params or {}).get("k", DEFAULT_K))
        users = [str(u) for u in model_input[USER_ID]]
        known = set(self.factors.user_ids)
        users = [u for u in users if u in known]
        scores = self.factors.user_rows(users) @ self.factors.item_factors.T
        return recommend_from_scores(scores, users, self.factors.item_ids, k)


def save_factors(factors: AlsFactors, path: Path) -> Path:
    np.savez_compressed(
        path,
        user_ids=factors.user_ids.astype(str),
        item_ids=factors.item_ids.astype(str),
        user_factors=factors.user_factors,
        item_factors=factors.item_factors,
        params=np.array([json.dumps(dataclasses.asdict(factors.params))]),
    )
    return path


def load_factors(path: str | Path) -> AlsFactors:
    data = np.load(path, allow_pickle=False)
    params = AlsParams(**json.loads(str(data["params"][0])))
    return AlsFactors(
        data["user_ids"].astype(object),
        data["item_ids"].astype(object),
        data["user_factors"],
        data["item_factors"],
        params,
    )


@dataclass
class LoggedRun:
    """The MLflow run and the registered versions it produced (``{model_name: version}``)."""

    run_id: str
    versions: dict[str, str] = field(default_factory=dict)


def log_training_run(
    model: TrainedRecommender,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    plots: Mapping[str, Path] = {},
    tables: Mapping[str, pd.DataFrame] = {},
    register: bool = True,
    version_tags: Mapping[str, str] = {},
) -> LoggedRun:
    """Log one training run (params, metrics, plots, tables, both models) and register them.

    ``version_tags`` go on every registered version (``window_tags``: the training window).
    Call ``setup_tracking`` first. Non-finite metrics are skipped (MLflow rejects NaN in SQLite).
    """
    accel = detect_accelerator()
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_params({"ranker_device": accel.device, "ranker_dataframe": accel.dataframe})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(float(v))})
        for path in plots.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        for name, table in tables.items():
            mlflow.log_table(table, artifact_file=f"tables/{name}.json")
        versions: dict[str, str] = {}
        if model.factors is not None:
            versions.update(_log_als(model.factors, register))
        if model.ranker is not None:
            versions.update(_log_ranker(model.ranker, model, register))
        tag_versions(mlflow.MlflowClient(), versions, version_tags)
        return LoggedRun(run.info.run_id, versions)


def _log_als(factors: AlsFactors, register: bool) -> dict[str, str]:
    mlflow.log_params({f"als_{k}": v for k, v in factors.params.as_dict().items()})
    with tempfile.TemporaryDirectory() as tmp:
        path = save_factors(factors, Path(tmp) / "factors.npz")
        example = pd.DataFrame({USER_ID: [str(u) for u in factors.user_ids[:3]]})
        wrapper = AlsRecommenderModel()
        wrapper.factors = factors
        output = wrapper.predict(None, example, {"k": DEFAULT_K})
        signature = mlflow.models.infer_signature(example, output, params={"k": DEFAULT_K})
        info = mlflow.pyfunc.log_model(
            name="als",
            python_model=AlsRecommenderModel(),
            artifacts={FACTORS_ARTIFACT: str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=list(PIP_REQUIREMENTS),
            registered_model_name=names.MODEL_ALS if register else None,
        )
    return {names.MODEL_ALS: str(info.registered_model_version)} if register else {}


def _log_ranker(ranker: RankerModel, model: TrainedRecommender, register: bool) -> dict[str, str]:
    import mlflow.xgboost

    mlflow.log_params({f"ranker_{k}": v for k, v in ranker.params.as_dict().items()})
    mlflow.log_metric("ranker_best_iteration", ranker.best_iteration)
    example = _feature_example(model)
    signature = mlflow.models.infer_signature(example, ranker.score(example))
    ranker.booster.set_params(device="cpu")
    info = mlflow.xgboost.log_model(
        ranker.booster,
        name="ranker",
        signature=signature,
        input_example=example,
        pip_requirements=list(PIP_REQUIREMENTS),
        registered_model_name=names.MODEL_RANKER if register else None,
    )
    return {names.MODEL_RANKER: str(info.registered_model_version)} if register else {}


def _feature_example(model: TrainedRecommender) -> pd.DataFrame:
    from spark_jobs.training.features import build_candidates

    users = list(model.matrix.user_ids[:2])
    cands = build_candidates(
        model.matrix, model.sources, model.factors, users, model.side, config=model.settings.candidates
    )
    return cands[list(FEATURE_COLUMNS)].head(5).astype(np.float32)


def window_tags(start: datetime, end: datetime) -> dict[str, str]:
    """The training window as version tags, ISO-8601 in UTC with an explicit offset.

    Naive timestamps are taken as the process's local time, which is how PySpark returns
    ``TimestampType`` values from ``collect``; the offset makes the tags mean the same instants
    to every reader (``window_from_tags``), whatever its zone.
    """
    return {
        TAG_WINDOW_START: start.astimezone(UTC).isoformat(),
        TAG_WINDOW_END: end.astimezone(UTC).isoformat(),
    }


def window_from_tags(tags: Mapping[str, str]) -> tuple[datetime, datetime] | None:
    """``(start, end)`` (UTC-aware) from a version's tags; None when absent or unreadable.

    A tag without an offset (written by hand) is read as UTC.
    """
    start, end = tags.get(TAG_WINDOW_START), tags.get(TAG_WINDOW_END)
    if not start or not end:
        return None
    try:
        window = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None
    return _utc(window[0]), _utc(window[1])


def tag_versions(client: Any, versions: Mapping[str, str], tags: Mapping[str, str]) -> None:
    """Set ``tags`` on every ``{model_name: version}`` (idempotent: a tag is overwritten)."""
    for model_name, version in versions.items():
        for key, value in tags.items():
            client.set_model_version_tag(model_name, str(version), key, value)


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def champion_versions(client: Any, alias: str = names.ALIAS_CHAMPION) -> dict[str, str]:
    """``{model_name: version}`` of the models that carry ``alias`` (empty when none)."""
    from mlflow.exceptions import MlflowException

    found = {}
    for model_name in (names.MODEL_ALS, names.MODEL_RANKER):
        try:
            found[model_name] = str(client.get_model_version_by_alias(model_name, alias).version)
        except MlflowException:
            continue
    return found


def versions_for_run(client: Any, run_key: str) -> dict[str, str]:
    """``{model_name: version}`` an earlier attempt of orchestrator run ``run_key`` registered and
    gated (empty when none did)."""
    if "'" in run_key:
        raise ValueError(f"a run id cannot contain a quote: {run_key!r}")
    found = {}
    for model_name in (names.MODEL_ALS, names.MODEL_RANKER):
        hits = client.search_model_versions(f"name = '{model_name}' and tags.{TAG_RUN} = '{run_key}'")
        if hits:
            found[model_name] = str(max(int(h.version) for h in hits))
    return found


def load_champion(client: Any, current: TrainedRecommender) -> TrainedRecommender | None:
    """The champion's models on top of ``current``'s interactions and sources, ready to be scored
    on the same evaluation data as the challenger; None when there is no usable champion."""
    import mlflow.xgboost

    versions = champion_versions(client)
    if names.MODEL_ALS not in versions:
        return None
    try:
        als = mlflow.pyfunc.load_model(f"models:/{names.MODEL_ALS}@{names.ALIAS_CHAMPION}")
        factors = als.unwrap_python_model().factors
        ranker = None
        if names.MODEL_RANKER in versions:
            booster = mlflow.xgboost.load_model(f"models:/{names.MODEL_RANKER}@{names.ALIAS_CHAMPION}")
            ranker = RankerModel(booster, RankerParams(), detect_accelerator(), 0.0, 0)
    except Exception as err:  # a champion we cannot load must not block training
        log.warning("champion could not be loaded (%s): treated as absent", err)
        return None
    return dataclasses.replace(current, factors=factors, ranker=ranker, notes=[])

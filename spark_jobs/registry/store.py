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
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.training.als import AlsFactors, AlsParams, recommend_from_scores
from spark_jobs.training.columns import DEFAULT_K, USER_ID
from spark_jobs.training.features import FEATURE_COLUMNS
from spark_jobs.training.ranker import RankerModel, RankerParams, detect_accelerator
from spark_jobs.training.spark_model import SparkRecommender

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

FACTORS_ARTIFACT = "factors"
# User vectors, written by the executors as Parquet files (the driver never holds them all).
USER_FACTORS_ARTIFACT = "user_factors"
# Model version tags with the event-time window a version was trained on; drift compares the live
# data with it (spark_jobs.drift.job.champion_reference_window).
TAG_WINDOW_START = "train_window_start"
TAG_WINDOW_END = "train_window_end"
# The orchestrator run (Airflow run_id, Databricks job run) whose training registered a version,
# set once the gate has judged it: a rerun of that run finds it and registers nothing new.
TAG_RUN = "orchestrator_run_id"
# Written by mlflow.set_tracking_uri / set_registry_uri into os.environ (see setup_tracking).
_MLFLOW_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
PIP_REQUIREMENTS = ("mlflow==3.6.0", "numpy<2.3", "pandas<3", "xgboost==3.1.2", "scikit-learn<1.8")


def setup_tracking(config: Config) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the process environment,
    which ``load_config`` reads as the user's choice: a later config in this process (a test, a
    notebook with a second lakehouse) would silently inherit this store. The environment is put
    back as it was; MLflow keeps the URI in its own state.
    """
    before = {var: os.environ.get(var) for var in _MLFLOW_URI_VARS}
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)
    for var, value in before.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
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
    score, rank`` (param ``k``). Unknown users get no rows; the scorer adds fallbacks.

    Loading reads the item factors only; the vectors of the requested users are read from the
    ``user_factors`` Parquet artifact on each call (filtered by user), so a model of millions of
    users loads in the memory of its catalog.
    """

    def __init__(self) -> None:
        self.factors: AlsFactors | None = None
        self.user_path: str | None = None

    def load_context(self, context: Any) -> None:
        self.factors = load_factors(context.artifacts[FACTORS_ARTIFACT])
        self.user_path = context.artifacts.get(USER_FACTORS_ARTIFACT)

    def user_vectors(self, users: list[str]) -> tuple[list[str], np.ndarray]:
        """The requested users that have a vector, and their vectors (rows in that order)."""
        assert self.factors is not None
        if self.user_path is None:  # versions logged before user vectors moved out of the npz
            known = {u: n for n, u in enumerate(self.factors.user_ids)}
            found = [u for u in users if u in known]
            return found, self.factors.user_factors[[known[u] for u in found]]
        import pyarrow.dataset as ds

        table = ds.dataset(self.user_path, format="parquet").to_table(filter=ds.field(USER_ID).isin(users))
        vectors = dict(
            zip(table.column(USER_ID).to_pylist(), table.column("factors").to_pylist(), strict=True)
        )
        found = [u for u in users if u in vectors]
        rank = self.factors.item_factors.shape[1]
        return found, np.asarray([vectors[u] for u in found], dtype=np.float32).reshape(len(found), rank)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        assert self.factors is not None
        k = int((params or {}).get("k", DEFAULT_K))
        users, vectors = self.user_vectors([str(u) for u in model_input[USER_ID]])
        scores = vectors @ self.factors.item_factors.T
        return recommend_from_scores(scores, users, self.factors.item_ids, k)


def save_factors(item_ids: np.ndarray, item_factors: np.ndarray, params: AlsParams, path: Path) -> Path:
    """The item half of an ALS model (item-sized) as one npz file."""
    np.savez_compressed(
        path,
        user_ids=np.array([], dtype=str),
        item_ids=item_ids.astype(str),
        user_factors=np.zeros((0, item_factors.shape[1]), dtype=np.float32),
        item_factors=item_factors,
        params=np.array([json.dumps(dataclasses.asdict(params))]),
    )
    return path


def load_factors(path: str | Path) -> AlsFactors:
    """Item factors and parameters (and, for versions logged before 2026-12, the user vectors)."""
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
    model: SparkRecommender,
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
    accel = model.ranker.accelerator if model.ranker is not None else detect_accelerator()
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        device = {"ranker_device": accel.device, "ranker_dataframe": accel.dataframe}
        mlflow.log_params(device)
        mlflow.set_tags({**device, "ranker_accelerator_reason": accel.reason})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(float(v))})
        for path in plots.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        for name, table in tables.items():
            mlflow.log_table(table, artifact_file=f"tables/{name}.json")
        versions: dict[str, str] = {}
        if model.has_als:
            versions.update(_log_als(model, register))
        if model.ranker is not None:
            versions.update(_log_ranker(model.ranker, model, register))
        tag_versions(mlflow.MlflowClient(), versions, version_tags)
        return LoggedRun(run.info.run_id, versions)


def _log_als(model: SparkRecommender, register: bool) -> dict[str, str]:
    items = model.items
    assert items.item_factors is not None and items.params is not None and model.user_factors is not None
    mlflow.log_params({f"als_{k}": v for k, v in items.params.as_dict().items()})
    with tempfile.TemporaryDirectory() as tmp:
        path = save_factors(items.item_ids, items.item_factors, items.params, Path(tmp) / "factors.npz")
        user_dir = Path(tmp) / USER_FACTORS_ARTIFACT
        model.user_factors.write.mode("overwrite").parquet(str(user_dir))
        example = model.user_factors.select(USER_ID).limit(3).toPandas()
        wrapper = AlsRecommenderModel()
        wrapper.factors, wrapper.user_path = load_factors(path), str(user_dir)
        output = wrapper.predict(None, example, {"k": DEFAULT_K})
        signature = mlflow.models.infer_signature(example, output, params={"k": DEFAULT_K})
        info = mlflow.pyfunc.log_model(
            name="als",
            python_model=AlsRecommenderModel(),
            artifacts={FACTORS_ARTIFACT: str(path), USER_FACTORS_ARTIFACT: str(user_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=list(PIP_REQUIREMENTS),
            registered_model_name=names.MODEL_ALS if register else None,
        )
    return {names.MODEL_ALS: str(info.registered_model_version)} if register else {}


def _log_ranker(ranker: RankerModel, model: SparkRecommender, register: bool) -> dict[str, str]:
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


def _feature_example(model: SparkRecommender) -> pd.DataFrame:
    users = model.pairs.select(USER_ID).distinct().limit(2)
    cands = model.candidates(users).limit(5).toPandas()
    return cands[list(FEATURE_COLUMNS)].astype(np.float32)


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


def load_champion(
    client: Any, current: SparkRecommender, user_factors: DataFrame | None
) -> SparkRecommender | None:
    """The champion's models on top of ``current``'s training pairs and sources, ready to be
    scored on the same evaluation data as the challenger; None when there is no usable champion.

    ``user_factors`` (user_id, factors) are the champion's user vectors (``recsys.user_factors``
    of its version); users it never saw get no vector, as when it serves them before a retrain.
    """
    import mlflow.xgboost

    versions = champion_versions(client)
    if names.MODEL_ALS not in versions:
        return None
    try:
        als = mlflow.pyfunc.load_model(f"models:/{names.MODEL_ALS}@{names.ALIAS_CHAMPION}")
        wrapper = als.unwrap_python_model()
        factors: AlsFactors = wrapper.factors
        ranker = None
        if names.MODEL_RANKER in versions:
            booster = mlflow.xgboost.load_model(f"models:/{names.MODEL_RANKER}@{names.ALIAS_CHAMPION}")
            ranker = RankerModel(booster, RankerParams(), detect_accelerator(), 0.0, 0)
    except Exception as err:  # a champion we cannot load must not block training
        log.warning("champion could not be loaded (%s): treated as absent", err)
        return None
    if user_factors is None and len(factors.user_ids):  # a version logged with its users in the npz
        spark = current.pairs.sparkSession
        legacy = pd.DataFrame(
            {USER_ID: factors.user_ids.astype(str), "factors": [v.tolist() for v in factors.user_factors]}
        )
        user_factors = spark.createDataFrame(legacy)
    if user_factors is None:
        log.warning("champion %s has no user vectors: treated as absent", versions)
        return None
    items = dataclasses.replace(
        current.items,
        item_factors=factors.aligned_items(current.items.item_ids),
        params=factors.params,
        ranker=ranker,
    )
    return dataclasses.replace(current, items=items, user_factors=user_factors, notes=[])

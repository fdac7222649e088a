"""The models the scorer serves: champion and challenger from the MLflow registry, with fallbacks.

Loaded once on the driver and reloaded only when an alias moves (checked at most every
``check_every_s``); ``ModelStore.serving()`` is the picklable ``ModelSet`` the scorer broadcasts to
the executors, replaced when a model changes. Only what serving reads is kept: the ALS item
factors and parameters (user vectors are folded in from the user's own pairs) and the ranker.
A version that cannot be loaded never stops serving: the scorer keeps the last good one, or falls
back to popularity when there never was one, and says so. A ranker trained on a different feature
set is refused outright (``ModelContractError``): scoring it would silently produce garbage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import RecsysError
from spark_jobs.serving.foldin import gram
from spark_jobs.training.als import AlsFactors
from spark_jobs.training.features import FEATURE_COLUMNS
from spark_jobs.training.ranker import RankerModel, RankerParams, detect_accelerator

log = logging.getLogger(__name__)

POPULARITY_VERSION = "popularity"
ALIASES = {names.VARIANT_CHAMPION: names.ALIAS_CHAMPION, names.VARIANT_CHALLENGER: names.ALIAS_CHALLENGER}


class ModelContractError(RecsysError):
    """The registered ranker expects other features than this scorer computes."""


@dataclass
class ServingModel:
    """One variant's models; ``factors is None`` means popularity-only serving."""

    versions: dict[str, str] = field(default_factory=dict)  # {registered model name: version}
    factors: AlsFactors | None = None
    yty: np.ndarray | None = None
    ranker: RankerModel | None = None

    @property
    def label(self) -> str:
        """``model_version`` column value: ``als:v3+ranker:v3``, or ``popularity``."""
        if self.factors is None:
            return POPULARITY_VERSION
        parts = [f"als:v{self.versions.get(names.MODEL_ALS, '?')}"]
        if self.ranker is not None:
            parts.append(f"ranker:v{self.versions.get(names.MODEL_RANKER, '?')}")
        return "+".join(parts)


def check_features(ranker: Any, model_name: str, version: str) -> None:
    """Refuse a booster whose feature names differ from ``FEATURE_COLUMNS`` (order included)."""
    booster = ranker.get_booster() if hasattr(ranker, "get_booster") else ranker
    expected = list(FEATURE_COLUMNS)
    got = list(booster.feature_names or [])
    if got != expected:
        missing = [c for c in expected if c not in got]
        extra = [c for c in got if c not in expected]
        raise ModelContractError(
            f"{model_name} v{version} was trained on a different feature set than this scorer computes "
            f"(missing {missing or 'none'}, unexpected {extra or 'none'}"
            + (", order differs" if not missing and not extra else "")
            + ")",
            hint="retrain with this version of the package (recsys train --once), "
            "or run the scorer version the model was trained with",
        )


@dataclass(frozen=True)
class ModelSet:
    """The models of every variant at one moment: what scoring reads, on the driver or shipped
    to the executors in a broadcast."""

    models: dict[str, ServingModel]

    def model(self, variant: str) -> ServingModel:
        """The model serving ``variant``; the challenger falls back to the champion when absent."""
        chosen = self.models.get(variant)
        if chosen is None or (variant != names.VARIANT_CHAMPION and chosen.factors is None):
            return self.models[names.VARIANT_CHAMPION]
        return chosen

    @property
    def has_challenger(self) -> bool:
        """A challenger worth an A/B split: loaded, and not the champion's own versions."""
        challenger, champion = self.models[names.VARIANT_CHALLENGER], self.models[names.VARIANT_CHAMPION]
        return challenger.factors is not None and challenger.versions != champion.versions

    @property
    def labels(self) -> dict[str, str]:
        """``model_version`` of each variant as it is served."""
        return {variant: self.model(variant).label for variant in self.models}


class ModelStore:
    """Champion and challenger, kept in sync with the registry's aliases."""

    def __init__(self, config: Config, check_every_s: float = 5.0) -> None:
        import mlflow

        from spark_jobs.registry.store import setup_tracking

        setup_tracking(config)
        self.client = mlflow.MlflowClient()
        self.check_every_s = check_every_s
        self.models: dict[str, ServingModel] = {v: ServingModel() for v in ALIASES}
        self.messages: list[str] = []
        self._checked_at = -np.inf

    def serving(self) -> ModelSet:
        """What is served now, as one picklable value (the scorer broadcasts it)."""
        return ModelSet(dict(self.models))

    def model(self, variant: str) -> ServingModel:
        return self.serving().model(variant)

    @property
    def has_challenger(self) -> bool:
        return self.serving().has_challenger

    def refresh(self, force: bool = False) -> bool:
        """Reload any variant whose alias moved; True when something changed. Messages explain
        fallbacks (``self.messages``, also logged)."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.check_every_s:
            return False
        self._checked_at = now
        changed = False
        for variant, alias in ALIASES.items():
            wanted = self._alias_versions(alias)
            current = self.models[variant]
            if not wanted and variant == names.VARIANT_CHAMPION and current.factors is None:
                self._say(f"no {alias} model registered: serving popularity")
            if wanted == current.versions:
                continue
            if not wanted:
                if current.factors is not None and variant == names.VARIANT_CHALLENGER:
                    self.models[variant] = ServingModel()
                    changed = True
                continue
            loaded = self._load(alias, wanted)
            if loaded is None:
                keep = current.label if current.factors is not None else "popularity"
                self._say(f"{alias} {_describe(wanted)} could not be loaded: still serving {keep}")
                continue
            self.models[variant] = loaded
            changed = True
            log.info("serving %s for %s", loaded.label, variant)
        return changed

    def _alias_versions(self, alias: str) -> dict[str, str]:
        from spark_jobs.registry.store import champion_versions

        try:
            return champion_versions(self.client, alias)
        except Exception as err:  # registry unreachable: keep serving what is loaded
            self._say(f"model registry unreachable ({type(err).__name__}): keeping loaded models")
            return {}

    def _load(self, alias: str, versions: dict[str, str]) -> ServingModel | None:
        import mlflow
        import mlflow.xgboost

        if names.MODEL_ALS not in versions:
            return None
        try:
            als = mlflow.pyfunc.load_model(f"models:/{names.MODEL_ALS}/{versions[names.MODEL_ALS]}")
            factors = item_factors(als.unwrap_python_model().factors)
        except Exception as err:
            log.warning("%s %s failed to load: %s", alias, names.MODEL_ALS, err)
            return None
        ranker = None
        if names.MODEL_RANKER in versions:
            version = versions[names.MODEL_RANKER]
            try:
                booster = mlflow.xgboost.load_model(f"models:/{names.MODEL_RANKER}/{version}")
            except Exception as err:
                self._say(f"{alias} {names.MODEL_RANKER} v{version} failed to load ({err}): ALS only")
                booster = None
            if booster is not None:
                check_features(booster, names.MODEL_RANKER, version)
                ranker = RankerModel(booster, self._ranker_params(version), detect_accelerator(), 0.0, 0)
        return ServingModel(dict(versions), factors, gram(factors.item_factors), ranker)

    def _ranker_params(self, version: str) -> RankerParams:
        """The ranker's ``base_margin`` as logged with its run (scores depend on it)."""
        try:
            run_id = self.client.get_model_version(names.MODEL_RANKER, version).run_id
            logged = self.client.get_run(run_id).data.params.get("ranker_base_margin")
            return RankerParams(base_margin=float(logged)) if logged is not None else RankerParams()
        except Exception:
            return RankerParams()

    def _say(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)
            log.warning(message)


def item_factors(factors: AlsFactors) -> AlsFactors:
    """The item half of a model's factors: serving folds user vectors in from the user's own
    pairs, so user vectors (user-sized) are never kept or shipped."""
    rank = factors.item_factors.shape[1]
    return AlsFactors(
        np.array([], dtype=object),
        np.asarray(factors.item_ids, dtype=object),
        np.zeros((0, rank), dtype=np.float32),
        np.asarray(factors.item_factors, dtype=np.float32),
        factors.params,
    )


def _describe(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} v{v}" for name, v in sorted(versions.items()))

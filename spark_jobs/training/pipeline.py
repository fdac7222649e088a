"""The in-memory recommender of a set of users, and the settings of training.

``TrainedRecommender`` holds an ``InteractionMatrix`` over the whole catalog, the item-level
candidate sources, ALS factors and the ranker, and recommends with popularity, ALS or the hybrid
(ALS + neighbour candidates re-ranked by XGBoost, short lists filled with popularity). Training
never builds one over all users: each Spark task builds one for its slice of users
(``spark_model.ItemModel.chunk``), so these numpy routines are the single definition of how a
list is made, wherever it runs. ``train_on_spark`` (``trainer.py``) does the training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from spark_jobs.evaluation.splits import TEMPORAL
from spark_jobs.training.als import (
    DEFAULT_GRID,
    AlsFactors,
    AlsParams,
    masked_scores,
    recommend_from_scores,
)
from spark_jobs.training.candidates import CandidateSources
from spark_jobs.training.columns import (
    DEFAULT_K,
    ITEM_ID,
    RANK,
    SCORE,
    SEED,
    STRATEGIES,
    STRATEGY_ALS,
    STRATEGY_HYBRID,
    STRATEGY_POPULARITY,
    USER_ID,
)
from spark_jobs.training.features import (
    CandidateConfig,
    build_candidates,
)
from spark_jobs.training.matrix import InteractionMatrix
from spark_jobs.training.ranker import RankerModel, RankerParams, rank_candidates

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

MIN_USERS_FOR_ALS = 3
MIN_ITEMS_FOR_ALS = 3
MIN_LABEL_USERS_FOR_RANKER = 5


@dataclass(frozen=True)
class TrainSettings:
    """Knobs of ``train_recommender``; defaults are the ones the quality benchmark uses."""

    carve: str = TEMPORAL  # how the validation/label part is carved out of training data
    validation_ratio: float = 0.2
    grid: tuple[AlsParams, ...] = DEFAULT_GRID
    k: int = DEFAULT_K
    candidates: CandidateConfig = CandidateConfig()
    ranker: RankerParams = RankerParams()
    train_ranker: bool = True
    seed: int = SEED
    checkpoint_dir: str | None = None
    # Bounds on what grows with users: the ranker learns from the candidates of at most this many
    # label users (a seeded sample), evaluation measures at most this many holdout users.
    max_ranker_users: int = 20_000
    max_eval_users: int = 20_000


def available_models(has_als: bool, has_ranker: bool) -> tuple[str, ...]:
    """Popularity always; ALS with factors; the hybrid with factors and a ranker."""
    return (
        STRATEGY_POPULARITY,
        *((STRATEGY_ALS,) if has_als else ()),
        *((STRATEGY_HYBRID,) if has_als and has_ranker else ()),
    )


def resolve_model(model: str, has_als: bool, has_ranker: bool) -> str:
    """The model that will actually answer a request for ``model``: hybrid -> ALS -> popularity."""
    if model not in STRATEGIES:
        raise ValueError(f"unknown model {model!r}; use one of {STRATEGIES}")
    if model == STRATEGY_HYBRID and not has_ranker:
        model = STRATEGY_ALS
    if model == STRATEGY_ALS and not has_als:
        model = STRATEGY_POPULARITY
    return model


@dataclass
class TrainedRecommender:
    """Everything needed to recommend for the users of the training data, for all three models."""

    matrix: InteractionMatrix
    sources: CandidateSources
    factors: AlsFactors | None
    ranker: RankerModel | None
    side: pd.DataFrame
    search: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: TrainSettings = TrainSettings()
    # The population's mean history length when ``matrix`` holds only some users (a slice on an
    # executor); None: ``matrix`` is the population.
    mean_user_n: float | None = None

    @property
    def available_models(self) -> tuple[str, ...]:
        return available_models(self.factors is not None, self.ranker is not None)

    def resolve_model(self, model: str) -> str:
        """The model that will actually answer a request for ``model`` (fallback chain)."""
        return resolve_model(model, self.factors is not None, self.ranker is not None)

    def recommend(
        self, k: int = DEFAULT_K, model: str = STRATEGY_HYBRID, users: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Top-``k`` per user (``user_id, item_id, score, rank``), items the user has excluded.

        Users unknown to the training data get the popularity list (nothing to exclude).
        """
        used = self.resolve_model(model)
        wanted = [str(u) for u in (self.matrix.user_ids if users is None else users)]
        known_index = self.matrix.user_index()
        known = [u for u in wanted if u in known_index]
        unknown = [u for u in wanted if u not in known_index]
        if used == STRATEGY_HYBRID:
            assert self.ranker is not None
            cands = build_candidates(
                self.matrix,
                self.sources,
                self.factors,
                known,
                self.side,
                config=self.settings.candidates,
                mean_user_n=self.mean_user_n,
            )
            recs = rank_candidates(self.ranker, cands, k)
            short = _short_lists(recs, known, k)
            if short:
                recs = _fill(recs, self._popularity(short, k), k)
        elif used == STRATEGY_ALS:
            assert self.factors is not None
            recs = self._als(known, k)
        else:
            recs = self._popularity(known, k)
        if unknown:
            recs = pd.concat([recs, self._popularity(unknown, k)], ignore_index=True)
        return recs.reset_index(drop=True)

    def _als(self, users: list[str], k: int) -> pd.DataFrame:
        assert self.factors is not None
        index = self.matrix.user_index()
        rows = [index[u] for u in users]
        scores = masked_scores(
            self.factors.user_rows(users),
            self.factors.aligned_items(self.matrix.item_ids),
            self.matrix.strength[rows],
        )
        return recommend_from_scores(scores, users, self.matrix.item_ids, k)

    def _popularity(self, users: list[str], k: int) -> pd.DataFrame:
        index = self.matrix.user_index()
        pop = self.sources.popularity.astype(np.float64)
        # Ties broken by trend, then by item order: deterministic.
        base = pop + self.sources.trend / (self.sources.trend.max() + 1.0) * 0.5
        scores = np.tile(base, (len(users), 1))
        known = [(pos, index[u]) for pos, u in enumerate(users) if u in index]
        if known:
            pos, rows = zip(*known, strict=True)
            seen = self.matrix.strength[list(rows)].tocoo()
            scores[np.asarray(pos)[seen.row], seen.col] = -np.inf
        return recommend_from_scores(scores, users, self.matrix.item_ids, k)


def _short_lists(recs: pd.DataFrame, users: list[str], k: int) -> list[str]:
    counts = recs.groupby(USER_ID).size() if not recs.empty else pd.Series(dtype=int)
    return [u for u in users if counts.get(u, 0) < k]


def _fill(recs: pd.DataFrame, backup: pd.DataFrame, k: int) -> pd.DataFrame:
    """Append ``backup`` items below each short list (no duplicates), ranks renumbered."""
    merged = pd.concat([recs.assign(_p=0), backup.assign(_p=1)], ignore_index=True)
    merged = merged.drop_duplicates([USER_ID, ITEM_ID], keep="first")
    merged = merged.sort_values([USER_ID, "_p", RANK], kind="stable")
    merged[RANK] = merged.groupby(USER_ID, sort=False).cumcount() + 1
    return merged.loc[merged[RANK] <= k].drop(columns="_p")


def prepare_items(items: pd.DataFrame | None) -> pd.DataFrame | None:
    """Items frame with ``item_id`` as string (``categories`` lists kept as they are)."""
    if items is None or items.empty or ITEM_ID not in items.columns:
        return None
    return items.assign(**{ITEM_ID: items[ITEM_ID].astype(str)})


__all__ = ["SCORE", "TrainSettings", "TrainedRecommender", "prepare_items"]

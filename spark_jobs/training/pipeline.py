"""Training a recommender end to end on an interaction frame: ALS search, ranker, final refit.

The order of operations is what keeps the evaluation honest:

1. the training interactions are split (per user, ``carve`` protocol) into a *history* part and
   a *label* part; nothing outside the training interactions is ever read;
2. every ALS grid point is fitted on the history and judged on the label part (validation);
3. the ranker learns from candidates generated and featurised from the history only, labelled
   by the label part (so no feature is computed from a label row);
4. ALS is refitted with the chosen parameters on all training interactions, and the sources and
   features are recomputed on them for serving.

Too little data for any of the steps degrades to a documented fallback (popularity, or ALS
without a ranker) and says so in ``TrainedRecommender.notes``; it never raises for small data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from spark_jobs.evaluation.splits import TEMPORAL, split
from spark_jobs.training.als import (
    DEFAULT_GRID,
    AlsFactors,
    AlsParams,
    fit_als,
    masked_scores,
    recommend_from_scores,
    search_als,
)
from spark_jobs.training.candidates import CandidateSources, build_sources
from spark_jobs.training.columns import (
    DEFAULT_K,
    ITEM_ID,
    MODEL_ALS,
    MODEL_HYBRID,
    MODEL_POPULARITY,
    MODELS,
    RANK,
    SCORE,
    SEED,
    STRENGTH,
    USER_ID,
)
from spark_jobs.training.features import (
    CandidateConfig,
    build_candidates,
    candidate_recall,
    user_side_features,
)
from spark_jobs.training.matrix import InteractionMatrix, aggregate_pairs, build_matrix
from spark_jobs.training.ranker import RankerModel, RankerParams, fit_ranker, rank_candidates

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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

    @property
    def available_models(self) -> tuple[str, ...]:
        models = [MODEL_POPULARITY]
        if self.factors is not None:
            models.append(MODEL_ALS)
            if self.ranker is not None:
                models.append(MODEL_HYBRID)
        return tuple(models)

    def resolve_model(self, model: str) -> str:
        """The model that will actually answer a request for ``model`` (fallback chain)."""
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; use one of {MODELS}")
        if model == MODEL_HYBRID and self.ranker is None:
            model = MODEL_ALS
        if model == MODEL_ALS and self.factors is None:
            model = MODEL_POPULARITY
        return model

    def recommend(
        self, k: int = DEFAULT_K, model: str = MODEL_HYBRID, users: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Top-``k`` per user (``user_id, item_id, score, rank``), items the user has excluded.

        Users unknown to the training data get the popularity list (nothing to exclude).
        """
        used = self.resolve_model(model)
        wanted = [str(u) for u in (self.matrix.user_ids if users is None else users)]
        known_index = self.matrix.user_index()
        known = [u for u in wanted if u in known_index]
        unknown = [u for u in wanted if u not in known_index]
        if used == MODEL_HYBRID:
            assert self.ranker is not None
            cands = build_candidates(
                self.matrix, self.sources, self.factors, known, self.side, config=self.settings.candidates
            )
            recs = rank_candidates(self.ranker, cands, k)
            short = _short_lists(recs, known, k)
            if short:
                recs = _fill(recs, self._popularity(short, k), k)
        elif used == MODEL_ALS:
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


def popularity_only(interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> TrainedRecommender:
    """The fallback recommender (no Spark needed): most-interacted items, ties by trend."""
    if interactions.empty:
        raise ValueError("no interactions to train on")
    items = prepare_items(items)
    catalog = None if items is None else items[ITEM_ID].to_numpy()
    matrix = build_matrix(interactions, item_ids=catalog)
    return TrainedRecommender(
        matrix, build_sources(matrix, items=items), None, None, user_side_features(None)
    )


def train_recommender(
    spark: SparkSession,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    context: pd.DataFrame | None = None,
    settings: TrainSettings = TrainSettings(),
) -> TrainedRecommender:
    """Train popularity, ALS and the hybrid on ``interactions`` (``user_id, item_id, strength
    [, timestamp]``), honouring the history/label discipline described in the module docstring.

    ``items`` (``item_id, categories``) widens the catalog and feeds content features; ``users``
    and ``context`` feed user-side features. Raises ``ValueError`` only for an empty frame.
    """
    if interactions.empty:
        raise ValueError("no interactions to train on")
    items = prepare_items(items)
    catalog = None if items is None else items[ITEM_ID].to_numpy()
    notes: list[str] = []
    timings: dict[str, float] = {}
    metrics: dict[str, float] = {}
    side = user_side_features(users, context)

    started = time.perf_counter()
    full = build_matrix(interactions, item_ids=catalog)
    full_sources = build_sources(full, items=items)
    timings["prepare_s"] = time.perf_counter() - started
    result = TrainedRecommender(
        full, full_sources, None, None, side, notes=notes, timings=timings, metrics=metrics, settings=settings
    )

    positive_users = int((full.strength.getnnz(axis=1) > 0).sum())
    positive_items = int((full.strength.getnnz(axis=0) > 0).sum())
    if positive_users < MIN_USERS_FOR_ALS or positive_items < MIN_ITEMS_FOR_ALS:
        notes.append(
            f"too little data for ALS ({positive_users} users, {positive_items} items "
            "with positive interactions): popularity only"
        )
        return result

    try:
        _fit_models(spark, result, interactions, items, settings)
    except Exception as err:  # Spark ALS on degenerate data (singular systems): documented fallback
        result.factors, result.ranker = None, None
        notes.append(f"ALS failed on this data ({type(err).__name__}): popularity only")
    for note in notes:
        log.warning(note)
    return result


def _fit_models(
    spark: SparkSession,
    result: TrainedRecommender,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    settings: TrainSettings,
) -> None:
    """ALS search on history -> label, ranker on history features, ALS refit on everything."""
    pairs = aggregate_pairs(interactions)
    history, label = split(pairs, settings.carve, settings.validation_ratio, settings.seed)
    label = label.loc[label[STRENGTH] > 0]
    params = settings.grid[0] if settings.grid else AlsParams()
    hist_factors = None
    hist_matrix = build_matrix(history, item_ids=result.matrix.item_ids)
    if label.empty:
        result.notes.append(
            "no user has enough interactions for a validation split: "
            f"default ALS parameters {params}, no ranker"
        )
    else:
        started = time.perf_counter()
        search = search_als(spark, hist_matrix, label, settings.grid, settings.k, settings.checkpoint_dir)
        result.timings["als_search_s"] = time.perf_counter() - started
        params, hist_factors, result.search = search.best, search.factors, search.table
        result.metrics["als_val_ndcg"] = float(search.factors.extra.get("val_ndcg", float("nan")))

    if settings.train_ranker and hist_factors is not None:
        _train_ranker(result, hist_matrix, hist_factors, label, items, settings)

    started = time.perf_counter()
    result.factors = fit_als(spark, result.matrix, params, checkpoint_dir=settings.checkpoint_dir)
    result.timings["als_fit_s"] = time.perf_counter() - started


def _train_ranker(
    result: TrainedRecommender,
    hist_matrix: InteractionMatrix,
    hist_factors: AlsFactors,
    label: pd.DataFrame,
    items: pd.DataFrame | None,
    settings: TrainSettings,
) -> None:
    """Fit the ranker on history-only features and label-part targets (in place on ``result``)."""
    label_users = sorted(set(label[USER_ID].astype(str)) & set(hist_matrix.user_ids))
    if len(label_users) < MIN_LABEL_USERS_FOR_RANKER:
        result.notes.append(f"only {len(label_users)} users with label rows: no ranker")
        return
    started = time.perf_counter()
    hist_sources = build_sources(hist_matrix, items=items)
    cands = build_candidates(
        hist_matrix,
        hist_sources,
        hist_factors,
        label_users,
        result.side,
        labels=label,
        config=settings.candidates,
    )
    result.metrics["candidate_recall"] = candidate_recall(cands, label, label_users)
    result.timings["ranker_features_s"] = time.perf_counter() - started
    try:
        result.ranker = fit_ranker(cands, settings.ranker)
    except ValueError as err:
        result.notes.append(f"ranker not trained: {err}")
        return
    result.timings["ranker_fit_s"] = result.ranker.fit_seconds
    result.metrics.update(result.ranker.metrics)


def ids_as_str(frame: pd.DataFrame) -> pd.DataFrame:
    """``user_id``/``item_id`` as strings, so frames from CSVs and from models compare."""
    return frame.assign(**{USER_ID: frame[USER_ID].astype(str), ITEM_ID: frame[ITEM_ID].astype(str)})


__all__ = [
    "SCORE",
    "TrainSettings",
    "TrainedRecommender",
    "ids_as_str",
    "popularity_only",
    "prepare_items",
    "train_recommender",
]

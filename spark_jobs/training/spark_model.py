"""A trained recommender whose per-user work runs on Spark's executors.

The model has two halves. ``ItemModel`` is item-sized (catalog order, candidate sources, ALS item
factors, the ranker) and is broadcast. Everything per user (training pairs, ALS user vectors, side
features) stays in DataFrames. Recommending, building the ranker's examples and measuring a
holdout are ``mapInPandas`` jobs. Each task rebuilds, for its slice of users, the in-memory
``TrainedRecommender`` over the whole catalog (``ItemModel.chunk``) and runs the same numpy code.
So the lists do not depend on where they were computed, and the driver collects nothing that grows
with users or events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.evaluation.metrics import METRIC_NAMES, per_user_diversity, per_user_metrics
from spark_jobs.features.item_sources import PairStats
from spark_jobs.training.als import AlsFactors, AlsParams
from spark_jobs.training.candidates import CandidateSources
from spark_jobs.training.columns import (
    ITEM_ID,
    LABEL,
    RANK,
    SCORE,
    STRATEGIES,
    STRATEGY_HYBRID,
    USER_ID,
)
from spark_jobs.training.features import FEATURE_COLUMNS, build_candidates
from spark_jobs.training.pipeline import TrainedRecommender, TrainSettings, available_models, resolve_model
from spark_jobs.training.ranker import RankerModel
from spark_jobs.training.user_rows import (
    chunk_matrix,
    chunk_side,
    chunk_truth,
    chunk_vectors,
    slices,
    user_rows,
)

if TYPE_CHECKING:
    from pyspark import Broadcast

# Dense ``users x catalog`` arrays per slice stay around this many cells (tens of MB each).
SLICE_CELLS = 5_000_000
MAX_SLICE_USERS = 1024
CURVE_KS = (1, 3, 5, 10, 20, 50)

RECS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.StringType()),
        T.StructField(ITEM_ID, T.StringType()),
        T.StructField(SCORE, T.DoubleType()),
        T.StructField(RANK, T.IntegerType()),
    ]
)
EVAL_SCHEMA = T.StructType(
    [
        T.StructField("model", T.StringType()),
        T.StructField(USER_ID, T.StringType()),
        T.StructField("k", T.IntegerType()),
        *(T.StructField(m, T.DoubleType()) for m in METRIC_NAMES),
        T.StructField("diversity", T.DoubleType()),
        T.StructField("items", T.ArrayType(T.StringType())),
    ]
)


def candidates_schema(with_label: bool) -> T.StructType:
    fields = [
        T.StructField(USER_ID, T.StringType()),
        T.StructField(ITEM_ID, T.StringType()),
        *(T.StructField(c, T.DoubleType()) for c in FEATURE_COLUMNS),
    ]
    if with_label:
        fields.append(T.StructField(LABEL, T.IntegerType()))
    return T.StructType(fields)


@dataclass
class ItemModel:
    """The item-sized half of a recommender: what every task needs, broadcast once."""

    item_ids: np.ndarray
    sources: CandidateSources
    stats: PairStats
    item_factors: np.ndarray | None = None  # aligned with item_ids
    params: AlsParams | None = None
    ranker: RankerModel | None = None
    settings: TrainSettings = TrainSettings()

    @property
    def slice_users(self) -> int:
        return int(max(1, min(MAX_SLICE_USERS, SLICE_CELLS // max(len(self.item_ids), 1))))

    def chunk(self, rows: pd.DataFrame) -> TrainedRecommender:
        """The in-memory recommender of one slice of user rows (see module docstring)."""
        matrix = chunk_matrix(rows, self.item_ids, self.stats.reference_ts)
        factors = None
        if self.item_factors is not None and self.params is not None:
            vectors = chunk_vectors(rows, matrix.user_ids, self.item_factors.shape[1])
            factors = AlsFactors(matrix.user_ids, self.item_ids, vectors, self.item_factors, self.params)
        return TrainedRecommender(
            matrix,
            self.sources,
            factors,
            self.ranker if factors is not None else None,
            chunk_side(rows),
            settings=self.settings,
            mean_user_n=self.stats.mean_user_n,
        )


def _map_slices(
    bc: Broadcast[ItemModel], work: Callable[[ItemModel, pd.DataFrame], pd.DataFrame]
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function applying ``work`` to slices of user rows."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = bc.value
        for batch in batches:
            for part in slices(batch, model.slice_users):
                out = work(model, part)
                if not out.empty:
                    yield out

    return run


def _recommend_slice(model_name: str, k: int) -> Callable[[ItemModel, pd.DataFrame], pd.DataFrame]:
    def work(model: ItemModel, rows: pd.DataFrame) -> pd.DataFrame:
        users = rows["user_id"].astype(str).tolist()
        recs = model.chunk(rows).recommend(k, model_name, users)
        return recs[[USER_ID, ITEM_ID, SCORE, RANK]].astype({SCORE: float, RANK: np.int32})

    return work


def _candidates_slice(with_label: bool) -> Callable[[ItemModel, pd.DataFrame], pd.DataFrame]:
    def work(model: ItemModel, rows: pd.DataFrame) -> pd.DataFrame:
        rec = model.chunk(rows)
        users = [u for u in rows["user_id"].astype(str) if u in rec.matrix.user_index()]
        cands = build_candidates(
            rec.matrix,
            rec.sources,
            rec.factors,
            users,
            rec.side,
            labels=chunk_truth(rows) if with_label else None,
            config=model.settings.candidates,
            mean_user_n=model.stats.mean_user_n,
        )
        cols = [USER_ID, ITEM_ID, *FEATURE_COLUMNS] + ([LABEL] if with_label else [])
        out = cands[cols].astype({c: float for c in FEATURE_COLUMNS})
        return out.astype({LABEL: np.int32}) if with_label else out

    return work


def _evaluate_slice(
    models: Sequence[str], k: int, ks: Sequence[int], categories: dict[str, frozenset[str]]
) -> Callable[[ItemModel, pd.DataFrame], pd.DataFrame]:
    depth = max(*ks, k)

    def work(model: ItemModel, rows: pd.DataFrame) -> pd.DataFrame:
        rec = model.chunk(rows)
        truth = chunk_truth(rows)
        users = sorted(truth[USER_ID].unique())
        if not users:
            return pd.DataFrame(columns=[f.name for f in EVAL_SCHEMA.fields])
        parts = []
        for name in models:
            recs = rec.recommend(depth, name, users)
            for cut in sorted(set(ks) | {k}):
                table = per_user_metrics(recs, truth, cut).assign(model=name, k=cut)
                if cut == k:
                    top = recs.loc[recs[RANK] <= k]
                    lists = top.groupby(USER_ID)[ITEM_ID].agg(list)
                    diversity = per_user_diversity(top, categories, k) if categories else {}
                    table["items"] = table[USER_ID].map(lists).map(lambda v: v if isinstance(v, list) else [])
                    table["diversity"] = table[USER_ID].map(diversity).astype(float)
                else:
                    table["items"] = [[] for _ in range(len(table))]
                    table["diversity"] = np.nan
                parts.append(table)
        out = pd.concat(parts, ignore_index=True)
        return out[[f.name for f in EVAL_SCHEMA.fields]].astype({"k": np.int32})

    return work


@dataclass
class SparkRecommender:
    """Training pairs and user vectors as DataFrames, the rest in ``items`` (broadcast on use)."""

    items: ItemModel
    pairs: DataFrame  # user_id, item_id, strength, timestamp: what the model was trained on
    user_factors: DataFrame | None = None  # user_id, factors
    side: DataFrame | None = None  # user_id + USER_SIDE_COLUMNS
    search: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ranker(self) -> RankerModel | None:
        return self.items.ranker

    @property
    def has_als(self) -> bool:
        return self.items.item_factors is not None and self.user_factors is not None

    @property
    def available_models(self) -> tuple[str, ...]:
        return available_models(self.has_als, self.ranker is not None)

    def resolve_model(self, model: str) -> str:
        """The model that will actually answer a request for ``model`` (fallback chain)."""
        return resolve_model(model, self.has_als, self.ranker is not None)

    def rows(self, users: DataFrame | None = None, truth: DataFrame | None = None) -> DataFrame:
        """Per-user rows for ``users`` (default: every trained user) with their vectors and side."""
        factors = self.user_factors if self.has_als else None
        return user_rows(self.pairs, factors, self.side, truth, users)

    def _broadcast(self) -> Broadcast[ItemModel]:
        return self.pairs.sparkSession.sparkContext.broadcast(self.items)

    def recommend(self, k: int, model: str = STRATEGY_HYBRID, users: DataFrame | None = None) -> DataFrame:
        """Top-``k`` per user (``user_id, item_id, score, rank``), seen items excluded; users the
        model does not know get the popularity list."""
        work = _recommend_slice(self.resolve_model(model), k)
        return self.rows(users).mapInPandas(_map_slices(self._broadcast(), work), RECS_SCHEMA)

    def candidates(self, users: DataFrame, labels: DataFrame | None = None) -> DataFrame:
        """Candidate pairs with ``FEATURE_COLUMNS`` (and ``label`` when ``labels`` are given)."""
        rows = self.rows(users, labels)
        work = _candidates_slice(labels is not None)
        return rows.mapInPandas(_map_slices(self._broadcast(), work), candidates_schema(labels is not None))

    def evaluate(
        self,
        truth: DataFrame,
        k: int,
        models: Sequence[str] = STRATEGIES,
        ks: Sequence[int] = CURVE_KS,
        categories: dict[str, frozenset[str]] | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Metrics of ``models`` against ``truth`` (user_id, item_id of relevant items).

        Returns the table (one row per model: ``METRIC_NAMES``, coverage, diversity at ``k``) and
        the curves (one row per model and cut-off). Per-user values are computed on the
        executors; only their averages come back.
        """
        users = truth.select(USER_ID).distinct()
        work = _evaluate_slice(list(models), k, ks, categories or {})
        per_user = (
            self.rows(users, truth).mapInPandas(_map_slices(self._broadcast(), work), EVAL_SCHEMA).cache()
        )
        try:
            means = (
                per_user.groupBy("model", "k")
                .agg(
                    *(F.avg(m).alias(m) for m in METRIC_NAMES),
                    F.avg(F.when(~F.isnan("diversity"), F.col("diversity"))).alias("diversity"),
                )
                .toPandas()
            )
            covered = (
                per_user.where(F.col("k") == k)
                .select("model", F.explode("items").alias(ITEM_ID))
                .groupBy("model")
                .agg(F.countDistinct(ITEM_ID).alias("n"))
                .toPandas()
            )
        finally:
            per_user.unpersist()
        n_items = max(len(self.items.item_ids), 1)
        coverage = dict(zip(covered["model"], covered["n"] / n_items, strict=True))
        table = means.loc[means["k"] == k].set_index("model").reindex(list(models))
        table = table.assign(
            served_by=[self.resolve_model(m) for m in models],
            coverage=[float(coverage.get(m, 0.0)) for m in models],
        ).reset_index()
        table[list(METRIC_NAMES)] = table[list(METRIC_NAMES)].fillna(0.0)
        columns = ["model", "served_by", *METRIC_NAMES, "coverage", "diversity"]
        curve = means.loc[means["k"].isin(ks), ["model", "k", *METRIC_NAMES]]
        return table[columns], curve.sort_values(["model", "k"]).reset_index(drop=True)

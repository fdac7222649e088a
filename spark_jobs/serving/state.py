"""What the scorer keeps in memory between micro-batches: interactions, catalog, sources, context.

Built once from the lakehouse (``job.load_state``) and then updated by each micro-batch's
contributions, so scoring a batch never re-reads history. Interaction strengths are decayed
against a fixed ``reference_ts`` (the newest event when the state was built): adding a later
event's decayed weight keeps every pair on the same scale, so no pair has to be recomputed.
Item-level sources (popularity, trend, neighbours) are rebuilt every few batches (``refresh``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from spark_jobs.common import names
from spark_jobs.training.candidates import TREND_HALF_LIFE_DAYS, CandidateSources, build_sources
from spark_jobs.training.columns import CATEGORIES, STRENGTH, TIMESTAMP
from spark_jobs.training.features import user_side_features
from spark_jobs.training.matrix import InteractionMatrix, build_matrix

PAIR_COLUMNS = (names.USER_ID, names.ITEM_ID, STRENGTH, TIMESTAMP)
CONTEXT_COLUMNS = ("device", "hour_of_day", "country")
COUNTRY = "country"
TITLE = "title"
LENGTH_S = "length_s"
CREATED_TS = "created_ts"  # epoch seconds in the state (NaN unknown)


@dataclass
class ServingState:
    """Mutable serving state; ``refresh()`` after changing ``items`` or many pairs."""

    pairs: pd.DataFrame  # PAIR_COLUMNS, one row per (user, item), strength may be <= 0
    items: pd.DataFrame  # item_id, title, categories, length_s, created_ts (epoch s)
    users: pd.DataFrame  # user_id + profile columns (age_band, gender, occupation, country, consent)
    context: pd.DataFrame  # user_id -> device, hour_of_day, country of the latest event
    country_events: pd.DataFrame  # country, item_id, timestamp (positive events) for local trends
    reference_ts: float  # epoch seconds every decayed weight is relative to
    impressions: dict[tuple[str, str], int] = field(default_factory=dict)
    matrix: InteractionMatrix | None = None
    sources: CandidateSources | None = None
    side: pd.DataFrame | None = None
    country_trend: dict[str, np.ndarray] = field(default_factory=dict)
    category_vectors: np.ndarray | None = None
    primary_category: np.ndarray | None = None
    batches_since_refresh: int = 0

    # --- derived, rebuilt by refresh -------------------------------------------------------------

    def refresh(self) -> None:
        """Rebuild the catalog-wide matrix, sources, user-side features and country trends."""
        catalog = self.items[names.ITEM_ID].astype(str).to_numpy()
        known = self.pairs.loc[self.pairs[names.ITEM_ID].isin(set(catalog))]
        self.matrix = build_matrix(known[list(PAIR_COLUMNS)], item_ids=catalog)
        self.sources = build_sources(self.matrix, items=self.items)
        profile = self.users if not self.users.empty else None
        ctx = self.context.reset_index() if not self.context.empty else None
        self.side = user_side_features(profile, ctx)
        self.category_vectors = self.sources.categories.toarray().astype(np.float64)
        cats = self.items.set_index(names.ITEM_ID)[CATEGORIES].reindex(self.matrix.item_ids)
        self.primary_category = np.array(
            [c[0] if isinstance(c, list | tuple | np.ndarray) and len(c) else None for c in cats],
            dtype=object,
        )
        self.country_trend = _country_trend(self.country_events, self.matrix.item_ids, self.reference_ts)
        self.batches_since_refresh = 0

    @property
    def item_ids(self) -> np.ndarray:
        assert self.matrix is not None, "call refresh() first"
        return self.matrix.item_ids

    @property
    def mean_user_n(self) -> float:
        assert self.matrix is not None
        return float(self.matrix.strength.nnz) / max(self.matrix.n_users, 1)

    def titles(self) -> Mapping[str, str]:
        return dict(
            zip(self.items[names.ITEM_ID], self.items[TITLE].fillna(self.items[names.ITEM_ID]), strict=True)
        )

    # --- micro-batch updates ---------------------------------------------------------------------

    def add_pairs(self, contributions: pd.DataFrame) -> None:
        """Fold a batch's (user, item, strength, timestamp) contributions into ``pairs``."""
        if contributions.empty:
            return
        merged = pd.concat([self.pairs, contributions[list(PAIR_COLUMNS)]], ignore_index=True)
        self.pairs = merged.groupby([names.USER_ID, names.ITEM_ID], sort=False, as_index=False).agg(
            **{STRENGTH: (STRENGTH, "sum"), TIMESTAMP: (TIMESTAMP, "max")}
        )

    def add_context(self, latest: pd.DataFrame, country_events: pd.DataFrame) -> None:
        """Latest context per user (indexed by user_id) and the batch's positive events by country."""
        if not latest.empty:
            self.context = pd.concat([self.context.drop(latest.index, errors="ignore"), latest])
        if not country_events.empty:
            self.country_events = pd.concat([self.country_events, country_events], ignore_index=True)

    def add_impressions(self, served: pd.DataFrame) -> None:
        for user, item in zip(served[names.USER_ID], served[names.ITEM_ID], strict=True):
            self.impressions[(user, item)] = self.impressions.get((user, item), 0) + 1

    def forget_impressions(self, positives: pd.DataFrame) -> None:
        """A positive reaction resets the fatigue count of that item for that user."""
        for user, item in zip(positives[names.USER_ID], positives[names.ITEM_ID], strict=True):
            self.impressions.pop((user, item), None)

    # --- per-user views -------------------------------------------------------------------------

    def user_pairs(self, users: list[str]) -> pd.DataFrame:
        return self.pairs.loc[self.pairs[names.USER_ID].isin(set(users))]

    def user_matrix(self, users: list[str]) -> InteractionMatrix:
        """Matrix of just ``users`` over the catalog (same item order as ``sources``); items the
        catalog does not know yet are left out until the next ``refresh``."""
        own = self.user_pairs(users)
        own = own.loc[own[names.ITEM_ID].isin(set(self.item_ids))]
        return build_matrix(own[list(PAIR_COLUMNS)], item_ids=self.item_ids)


def _country_trend(events: pd.DataFrame, item_ids: np.ndarray, reference_ts: float) -> dict[str, np.ndarray]:
    """Per country, the decayed count of positive events per item (same half-life as ``trend``)."""
    if events.empty:
        return {}
    index = {i: n for n, i in enumerate(item_ids)}
    frame = events.assign(_i=events[names.ITEM_ID].map(index)).dropna(subset=["_i", COUNTRY])
    age_days = (reference_ts - frame[TIMESTAMP].astype(float)) / 86_400.0
    weight = np.power(0.5, age_days.to_numpy() / TREND_HALF_LIFE_DAYS)
    out = {}
    for country, rows in frame.assign(_w=weight).groupby(COUNTRY):
        out[str(country)] = np.bincount(
            rows["_i"].astype(int), weights=rows["_w"], minlength=len(item_ids)
        ).astype(np.float64)
    return out


def empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c in (names.USER_ID, names.ITEM_ID) else float) for c in PAIR_COLUMNS}
    )

"""What scoring a set of users reads: their own rows plus the shared item snapshot.

A ``ServingState`` is built for the users being scored only (a chunk on an executor, or a small
in-memory set in tests): their interaction pairs, latest context, profile and impressions, next
to the broadcast ``ItemSnapshot``. Nothing in it grows with the population: the population's
scalars (``reference_ts``, ``mean_user_n``) come from the snapshot, never from the chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from spark_jobs.common import names
from spark_jobs.serving.snapshot import COUNTRY, CREATED_TS, LENGTH_S, TITLE, ItemSnapshot
from spark_jobs.training.candidates import CandidateSources
from spark_jobs.training.columns import STRENGTH, TIMESTAMP
from spark_jobs.training.features import user_side_features
from spark_jobs.training.matrix import InteractionMatrix, build_matrix

PAIR_COLUMNS = (names.USER_ID, names.ITEM_ID, STRENGTH, TIMESTAMP)
CONTEXT_COLUMNS = ("device", "hour_of_day", "country")
PROFILE_COLUMNS = ("age_band", "gender", "occupation", "country", "consent_personalization")
__all__ = ["COUNTRY", "CREATED_TS", "LENGTH_S", "TITLE", "ServingState", "empty_pairs"]


@dataclass
class ServingState:
    """The scored users' data and the item snapshot; read-only while scoring."""

    snapshot: ItemSnapshot
    pairs: pd.DataFrame  # PAIR_COLUMNS, one row per (user, item), strength may be <= 0
    users: pd.DataFrame  # user_id + PROFILE_COLUMNS (those known)
    context: pd.DataFrame  # index user_id -> CONTEXT_COLUMNS of the user's latest event
    impressions: dict[tuple[str, str], int] = field(default_factory=dict)
    reference_ts: float = float("nan")  # the population's "now": set by ``with_reference``
    seen: pd.DataFrame | None = None  # user_id, item_id consumed before the pairs kept (ids only)

    def __post_init__(self) -> None:
        if not np.isfinite(self.reference_ts):
            self.reference_ts = self.snapshot.reference_ts

    def with_reference(self, now_ts: float) -> ServingState:
        """The same state with the population's "now" moved to ``now_ts`` when that is later than
        the snapshot's (a stream scores events newer than the snapshot it was built with)."""
        ref = self.snapshot.reference_ts
        return dataclasses.replace(self, reference_ts=max(ref, now_ts) if np.isfinite(ref) else now_ts)

    # --- the snapshot, under the names the scorer reads ---------------------------------------

    @property
    def items(self) -> pd.DataFrame:
        return self.snapshot.items

    @property
    def item_ids(self) -> np.ndarray:
        return self.snapshot.item_ids

    @property
    def sources(self) -> CandidateSources:
        return self.snapshot.sources

    @property
    def country_trend(self) -> dict[str, np.ndarray]:
        return self.snapshot.country_trend

    @property
    def category_vectors(self) -> np.ndarray:
        return self.snapshot.category_vectors

    @property
    def primary_category(self) -> np.ndarray:
        return self.snapshot.primary_category

    @property
    def mean_user_n(self) -> float:
        return self.snapshot.mean_user_n

    def titles(self) -> Mapping[str, str]:
        return self.snapshot.titles

    # --- per-user views -------------------------------------------------------------------------

    @cached_property
    def side(self) -> pd.DataFrame:
        """Demographic and context features of the state's users (the ranker's user side)."""
        profile = self.users if not self.users.empty else None
        ctx = self.context.reset_index() if not self.context.empty else None
        return user_side_features(profile, ctx)

    def user_pairs(self, users: list[str]) -> pd.DataFrame:
        return self.pairs.loc[self.pairs[names.USER_ID].isin(set(users))]

    def consumed(self, users: list[str]) -> set[tuple[str, str]]:
        """(user, item) of everything ``users`` interacted with: their pairs and older items."""
        own = self.user_pairs(users)
        keys = set(zip(own[names.USER_ID], own[names.ITEM_ID], strict=True))
        if self.seen is not None and not self.seen.empty:
            older = self.seen.loc[self.seen[names.USER_ID].isin(set(users))]
            keys |= set(zip(older[names.USER_ID], older[names.ITEM_ID], strict=True))
        return keys

    def user_matrix(self, users: list[str]) -> InteractionMatrix:
        """Matrix of just ``users`` over the snapshot's items, dated at the population's "now";
        items the snapshot does not know are left out (until its next refresh)."""
        own = self.user_pairs(users)
        own = own.loc[own[names.ITEM_ID].isin(self.snapshot.index.keys())]
        matrix = build_matrix(own[list(PAIR_COLUMNS)], item_ids=self.item_ids)
        return dataclasses.replace(matrix, reference_ts=self.reference_ts)


def empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c in (names.USER_ID, names.ITEM_ID) else float) for c in PAIR_COLUMNS}
    )

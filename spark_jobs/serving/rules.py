"""Business rules between the ranker and the serving table: pure functions on small pandas frames.

Order (``select_top_n``): drop what the user should not see again (fatigue), adjust for context
(long items on mobile at peak hours), then pick the top-N greedily by maximal marginal relevance
(MMR) under a per-category cap. Every function takes its "now"-like inputs as arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from spark_jobs.common import names

RELEVANCE = "relevance"  # the ranker's score after context adjustments, min-max scaled per user
PRIMARY_CATEGORY = "primary_category"


@dataclass(frozen=True)
class RuleSettings:
    """The knobs of ``select_top_n`` (taken from ``ServingSettings``)."""

    top_n: int
    mmr_lambda: float
    max_per_category: int
    peak_hours: frozenset[int]
    mobile_max_length_s: int
    mobile_long_penalty: float


def variant_of(user_id: str, challenger_share: float, salt: str = "recsys-ab-1") -> str:
    """Stable A/B bucket of a user: the same user gets the same variant in every process.

    SHA-256 of ``salt:user_id`` mapped to [0, 1); changing ``salt`` reshuffles all users at once.
    """
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2.0**64
    return names.VARIANT_CHALLENGER if bucket < challenger_share else names.VARIANT_CHAMPION


def drop_fatigued(
    pool: pd.DataFrame, impressions: Mapping[tuple[str, str], int], max_impressions: int
) -> pd.DataFrame:
    """Drop items already served ``max_impressions`` times to the user without a positive reaction."""
    if not impressions or max_impressions <= 0:
        return pool
    seen = np.array(
        [impressions.get((u, i), 0) for u, i in zip(pool[names.USER_ID], pool[names.ITEM_ID], strict=True)]
    )
    return pool.loc[seen < max_impressions]


def is_peak_mobile(device: object, hour: object, peak_hours: frozenset[int]) -> bool:
    """True when the context says: a phone, at one of the peak hours (local time)."""
    if device != "mobile" or hour is None or (isinstance(hour, float) and np.isnan(hour)):
        return False
    return int(hour) in peak_hours


def apply_context(
    pool: pd.DataFrame, lengths: pd.Series, peak_mobile_users: Iterable[str], settings: RuleSettings
) -> pd.DataFrame:
    """Scale ``relevance`` of long items (``length_s`` > limit) for users on mobile at peak hours."""
    users = set(peak_mobile_users)
    if not users:
        return pool
    length = pool[names.ITEM_ID].map(lengths).astype(float)
    long_item = length.gt(settings.mobile_max_length_s).fillna(False).to_numpy(dtype=bool)
    hit = pool[names.USER_ID].isin(users).to_numpy() & long_item
    out = pool.copy()
    out.loc[hit, RELEVANCE] = out.loc[hit, RELEVANCE] * settings.mobile_long_penalty
    return out


def scale_relevance(pool: pd.DataFrame, score: str = names.SCORE) -> pd.DataFrame:
    """``relevance`` = the score min-max scaled to [0, 1] within each user (MMR mixes it with a
    similarity, so both must live on the same scale)."""
    grouped = pool.groupby(names.USER_ID, sort=False)[score]
    low, high = grouped.transform("min"), grouped.transform("max")
    span = (high - low).where(high > low, 1.0)
    return pool.assign(**{RELEVANCE: ((pool[score] - low) / span).where(high > low, 1.0)})


def mmr_order(
    relevance: np.ndarray,
    vectors: np.ndarray,
    categories: Sequence[str | None],
    n: int,
    mmr_lambda: float,
    max_per_category: int,
) -> list[int]:
    """Greedy MMR: positions of the chosen items, in serving order.

    Each step takes ``argmax lambda*rel - (1-lambda)*max_sim(chosen)``, skipping items whose primary category
    already has ``max_per_category`` picks (0 = no cap). ``vectors`` are L2-normalised item
    descriptions (categories), so their dot product is a cosine similarity.
    """
    chosen: list[int] = []
    counts: dict[str, int] = {}
    max_sim = np.zeros(len(relevance))
    available = np.ones(len(relevance), dtype=bool)
    while len(chosen) < n and available.any():
        value = np.where(available, mmr_lambda * relevance - (1.0 - mmr_lambda) * max_sim, -np.inf)
        best = int(np.argmax(value))
        available[best] = False
        cat = categories[best]
        if max_per_category and cat is not None and counts.get(cat, 0) >= max_per_category:
            continue
        chosen.append(best)
        if cat is not None:
            counts[cat] = counts.get(cat, 0) + 1
        max_sim = np.maximum(max_sim, vectors @ vectors[best])
    return chosen


def user_groups(users: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Row order that puts each user's rows together (users in first-appearance order, rows in
    their original order within a user) and the start offset of each user's block (+ the end)."""
    codes, _ = pd.factorize(users, sort=False)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0]) if len(order) else np.zeros(0, int)
    return order, np.r_[starts, len(order)].astype(np.int64)


def select_top_n(
    pool: pd.DataFrame, vectors: np.ndarray, item_pos: Mapping[str, int], settings: RuleSettings
) -> pd.DataFrame:
    """Per user, the ``top_n`` rows of ``pool`` chosen by MMR under the category cap, ranked 1..n.

    ``pool`` has ``user_id, item_id, relevance, primary_category`` (+ anything to carry along);
    ``vectors[item_pos[item]]`` is the item's normalised category vector. Users come out in the
    order they first appear in ``pool``. One sort for all users, then MMR per user on arrays:
    this runs once per micro-batch for every user it touched.
    """
    if pool.empty:
        return pool.head(0).assign(**{names.RANK: pd.Series(dtype=np.int32)})
    codes, _ = pd.factorize(pool[names.USER_ID], sort=False)
    relevance = pool[RELEVANCE].to_numpy(dtype=np.float64)
    order = np.lexsort((-relevance, codes))  # by user, then relevance descending (stable)
    bounds = np.r_[np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0]), len(order)]
    rows = np.array([item_pos[i] for i in pool[names.ITEM_ID]], dtype=np.int64)[order]
    rel = relevance[order]
    cats = pool[PRIMARY_CATEGORY].to_numpy(dtype=object)[order]
    picked, ranks = [], []
    for start, end in pairwise(bounds):
        chosen = mmr_order(
            rel[start:end],
            vectors[rows[start:end]],
            cats[start:end],
            settings.top_n,
            settings.mmr_lambda,
            settings.max_per_category,
        )
        picked.append(order[start + np.asarray(chosen, dtype=np.int64)])
        ranks.append(np.arange(1, len(chosen) + 1, dtype=np.int32))
    out = pool.iloc[np.concatenate(picked)].reset_index(drop=True)
    out[names.RANK] = np.concatenate(ranks)
    return out

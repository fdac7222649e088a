"""Candidate sets and ranker features for (user, candidate item) pairs.

For a batch of users the module scores the whole catalog with every source (ALS, item
neighbours, popularity, trend, content, session co-occurrence), masks items the user already
has, takes the union of each source's top items as the candidate set, and reads the features of
those pairs off the same score matrices. Users are processed in chunks so memory stays
``chunk x catalog`` whatever the number of users.

Leakage rule: the ``matrix`` and ``sources`` handed in are the *feature history*. When labels are
attached (ranker training) they must come from rows that are not in that history; the pipeline
splits training data into history and label parts before calling this.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from spark_jobs.training.als import AlsFactors, top_k_indices
from spark_jobs.training.candidates import CandidateSources, recent_items
from spark_jobs.training.columns import ITEM_ID, LABEL, USER_ID
from spark_jobs.training.matrix import InteractionMatrix

USER_SIDE_COLUMNS = ("age", "gender_code", "occupation_code", "device_code", "hour_mean")
FEATURE_COLUMNS = (
    "als_score",
    "als_rank",
    "als_gap",
    "knn_score",
    "knn_rank",
    "knn_share",
    "cooc_score",
    "content_score",
    "pop_log",
    "pop_rank",
    "trend_share",
    "item_mean_strength",
    "item_age_days",
    "item_n_categories",
    "user_log_n",
    "user_recency_days",
    "user_mean_strength",
    "user_mean_pop_log",
    "user_pop_gap",
    "time_pop",
    "item_lead_days",
    *USER_SIDE_COLUMNS,
)


@dataclass(frozen=True)
class CandidateConfig:
    """How many top items each source contributes to a user's candidate set."""

    als: int = 100
    knn: int = 50
    popularity: int = 20
    trend: int = 20
    content: int = 20
    cooc: int = 20
    chunk_users: int = 1024

    @property
    def max_candidates(self) -> int:
        return self.als + self.knn + self.popularity + self.trend + self.content + self.cooc


def _stable_code(value: object) -> float:
    """A category string as a stable number (same code in every process; NaN when unknown)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value) == "":
        return np.nan
    return float(zlib.crc32(str(value).lower().encode("utf-8")) % 10_007)


def _age_value(value: object) -> float:
    """Numeric age from an age or an age band (``25-34`` -> 29.5, ``55+`` -> 55)."""
    if value is None:
        return np.nan
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().rstrip("+")
    parts = [p for p in text.replace("_", "-").split("-") if p.strip().isdigit()]
    return float(np.mean([float(p) for p in parts])) if parts else np.nan


def user_side_features(users: pd.DataFrame | None, context: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-user demographic and context features indexed by ``user_id`` (columns ``USER_SIDE_COLUMNS``).

    ``users``: optional ``age``/``age_band``, ``gender``, ``occupation``; ``context``: optional
    per-event ``device`` and ``hour_of_day`` with ``user_id`` (the user's most frequent device,
    mean hour). Unknown values stay NaN, which the ranker handles natively.
    """
    frames = []
    if users is not None and not users.empty and USER_ID in users.columns:
        age_col = "age" if "age" in users.columns else "age_band" if "age_band" in users.columns else None
        prof = pd.DataFrame(index=users[USER_ID].astype(str).to_numpy())
        prof["age"] = users[age_col].map(_age_value).to_numpy() if age_col else np.nan
        prof["gender_code"] = users["gender"].map(_stable_code).to_numpy() if "gender" in users else np.nan
        prof["occupation_code"] = (
            users["occupation"].map(_stable_code).to_numpy() if "occupation" in users else np.nan
        )
        frames.append(prof[~prof.index.duplicated()])
    if context is not None and not context.empty and USER_ID in context.columns:
        ctx = context.assign(**{USER_ID: context[USER_ID].astype(str)})
        parts = {}
        if "device" in ctx.columns and ctx["device"].notna().any():
            mode = ctx.dropna(subset=["device"]).groupby(USER_ID)["device"].agg(lambda s: s.mode().iat[0])
            parts["device_code"] = mode.map(_stable_code)
        if "hour_of_day" in ctx.columns:
            parts["hour_mean"] = ctx.groupby(USER_ID)["hour_of_day"].mean()
        if parts:
            frames.append(pd.DataFrame(parts))
    out = pd.concat(frames, axis=1) if frames else pd.DataFrame(index=pd.Index([], dtype=object))
    out.index.name = USER_ID
    for col in USER_SIDE_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    return out[list(USER_SIDE_COLUMNS)].astype(float)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every column within its row (ties broken by position)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
    return ranks


def _mark_top(mask: np.ndarray, scores: np.ndarray, n: int) -> None:
    if n <= 0:
        return
    top = top_k_indices(scores, n)
    rows = np.repeat(np.arange(scores.shape[0]), top.shape[1])
    cols = top.ravel()
    keep = cols >= 0
    mask[rows[keep], cols[keep]] = True


def build_candidates(
    matrix: InteractionMatrix,
    sources: CandidateSources,
    factors: AlsFactors | None,
    users: Sequence[str] | None = None,
    side: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    config: CandidateConfig = CandidateConfig(),
    mean_user_n: float | None = None,
) -> pd.DataFrame:
    """Candidate pairs with ``FEATURE_COLUMNS`` (+ ``label`` when ``labels`` are given).

    Rows are grouped by user (contiguous) in ``users`` order, which is what a ranking objective
    needs. ``factors=None`` means "no ALS" (ALS features are 0, other sources still nominate).
    Unknown users are skipped. ``mean_user_n`` is the population's mean history length; the
    scorer passes it because its ``matrix`` holds only the users being re-scored.
    """
    u_index = matrix.user_index()
    user_list = [str(u) for u in (matrix.user_ids if users is None else users) if str(u) in u_index]
    side = side if side is not None else user_side_features(None)
    side_rows = side.reindex(user_list)
    stats = _item_stats(matrix, sources)
    if mean_user_n is not None:
        stats["mean_user_n"] = np.array([max(mean_user_n, 1e-9)])
    item_f = factors.aligned_items(matrix.item_ids) if factors is not None else None
    label_matrix = _label_matrix(matrix, labels) if labels is not None else None

    out = []
    for start in range(0, len(user_list), config.chunk_users):
        chunk = user_list[start : start + config.chunk_users]
        rows = np.array([u_index[u] for u in chunk])
        frame, r, c = _chunk_frame(matrix, sources, stats, chunk, rows, factors, item_f, config)
        for col in USER_SIDE_COLUMNS:
            frame[col] = side_rows[col].to_numpy()[start : start + len(chunk)][r]
        if label_matrix is not None:
            frame[LABEL] = label_matrix[rows].toarray()[r, c].astype(np.int8)
        out.append(frame)
    if not out:
        cols = [USER_ID, ITEM_ID, *FEATURE_COLUMNS] + ([LABEL] if labels is not None else [])
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)


def _item_stats(matrix: InteractionMatrix, sources: CandidateSources) -> dict[str, np.ndarray]:
    """Item-level features in scale-free form: the ranker learns on a history that is a subset of
    what it later scores, so counts are relative to the data set's size (lift over the average)."""
    n_items = max(matrix.n_items, 1)
    ref = matrix.reference_ts
    return {
        "pop_log": np.log1p(sources.popularity / max(float(sources.popularity.sum()), 1e-9) * n_items),
        "pop_rank": (np.argsort(np.argsort(-sources.popularity, kind="stable"), kind="stable") + 1.0)
        / n_items,
        "trend_share": sources.trend / max(float(sources.trend.sum()), 1e-9) * n_items,
        "item_age_days": (ref - sources.first_seen) / 86_400.0
        if np.isfinite(ref)
        else np.full(matrix.n_items, np.nan),
        "item_n_categories": np.asarray((sources.categories > 0).sum(axis=1)).ravel().astype(float),
        "mean_user_n": np.array([max(float(matrix.strength.nnz) / max(matrix.n_users, 1), 1e-9)]),
    }


def _label_matrix(matrix: InteractionMatrix, labels: pd.DataFrame) -> sparse.csr_matrix:
    u_index, i_index = matrix.user_index(), matrix.item_index()
    lab = labels.assign(
        _u=labels[USER_ID].astype(str).map(u_index), _i=labels[ITEM_ID].astype(str).map(i_index)
    ).dropna(subset=["_u", "_i"])
    out = sparse.csr_matrix(
        (np.ones(len(lab), dtype=np.float32), (lab["_u"].astype(int), lab["_i"].astype(int))),
        shape=(matrix.n_users, matrix.n_items),
    )
    out.data[:] = 1.0
    return out


def _source_scores(
    matrix: InteractionMatrix,
    sources: CandidateSources,
    rows: np.ndarray,
    user_f: np.ndarray | None,
    item_f: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Dense ``chunk x catalog`` scores of every source (unmasked)."""
    seen = matrix.binary[rows]
    shape = (len(rows), matrix.n_items)
    scores = {
        "als": (user_f @ item_f.T) if user_f is not None and item_f is not None else np.zeros(shape),
        "knn": np.asarray((seen @ sources.knn).todense()),
        "cooc": np.asarray((recent_items(matrix, rows) @ sources.cooc).todense()),
        "content": np.zeros(shape),
    }
    if sources.categories.shape[1]:
        profile = (matrix.strength[rows] @ sources.categories).toarray()
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile = profile / np.where(norms == 0, 1.0, norms)
        scores["content"] = np.asarray((sources.categories.T.tocsr().T @ profile.T).T)
    scores["popularity"] = np.tile(sources.popularity.astype(np.float64), (len(rows), 1))
    scores["trend"] = np.tile(sources.trend.astype(np.float64), (len(rows), 1))
    return scores


def _chunk_frame(
    matrix: InteractionMatrix,
    sources: CandidateSources,
    stats: dict[str, np.ndarray],
    chunk: list[str],
    rows: np.ndarray,
    factors: AlsFactors | None,
    item_f: np.ndarray | None,
    config: CandidateConfig,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Candidates and features of one chunk of users; returns (frame, row idx, item idx)."""
    seen = matrix.binary[rows]
    seen_dense = seen.toarray().astype(bool)
    user_f = factors.user_rows(chunk) if factors is not None else None
    scores = _source_scores(matrix, sources, rows, user_f, item_f)
    masked = {name: np.where(seen_dense, -np.inf, m.astype(np.float64)) for name, m in scores.items()}

    mask = np.zeros(seen_dense.shape, dtype=bool)
    quota = {
        "als": config.als if factors is not None else 0,
        "knn": config.knn,
        "popularity": config.popularity,
        "trend": config.trend,
        "cooc": config.cooc,
        "content": config.content if sources.categories.shape[1] else 0,
    }
    for name, n in quota.items():
        _mark_top(mask, masked[name], n)
    mask &= ~seen_dense
    r, c = np.nonzero(mask)

    als, knn = scores["als"], scores["knn"]
    top = np.max(masked["als"], axis=1)
    top = np.where(np.isfinite(top) & (np.abs(top) > 1e-9), top, 1.0)
    top_abs = np.abs(top)
    n_user = np.asarray(seen.sum(axis=1)).ravel()
    user_strength = np.asarray(matrix.strength[rows].sum(axis=1)).ravel() / np.maximum(n_user, 1)
    pop_log = stats["pop_log"]
    user_pop = np.asarray(seen @ pop_log[:, None]).ravel() / np.maximum(n_user, 1)
    ref = matrix.reference_ts
    last = (
        matrix.timestamps[rows].max(axis=1).toarray().ravel()
        if matrix.timestamps.nnz
        else np.full(len(rows), np.nan)
    )
    time_pop = _time_aligned_popularity(matrix, sources, rows)
    frame = pd.DataFrame(
        {
            USER_ID: np.asarray(chunk, dtype=object)[r],
            ITEM_ID: matrix.item_ids[c],
            "als_score": als[r, c] / top_abs[r],
            "als_rank": _ranks(masked["als"])[r, c].astype(float),
            "als_gap": (top[r] - als[r, c]) / top_abs[r],
            "knn_score": knn[r, c] / np.maximum(n_user[r], 1),
            "knn_rank": _ranks(masked["knn"])[r, c].astype(float),
            "knn_share": knn[r, c] / np.maximum(knn.sum(axis=1), 1e-9)[r],
            "cooc_score": scores["cooc"][r, c],
            "content_score": scores["content"][r, c],
            "pop_log": pop_log[c],
            "pop_rank": stats["pop_rank"][c],
            "trend_share": stats["trend_share"][c],
            "item_mean_strength": sources.mean_strength[c],
            "item_age_days": stats["item_age_days"][c],
            "item_n_categories": stats["item_n_categories"][c],
            "user_log_n": np.log((n_user[r] + 1.0) / stats["mean_user_n"][0]),
            "user_recency_days": ((ref - last) / 86_400.0)[r] if np.isfinite(ref) else np.nan,
            "user_mean_strength": user_strength[r],
            "user_mean_pop_log": user_pop[r],
            "user_pop_gap": pop_log[c] - user_pop[r],
            "time_pop": time_pop[r, c],
            "item_lead_days": (sources.first_seen[c] - last[r]) / 86_400.0,
        }
    )
    return frame, r, c


def _time_aligned_popularity(
    matrix: InteractionMatrix, sources: CandidateSources, rows: np.ndarray
) -> np.ndarray:
    """users x items: the item's activity share in the buckets the user was active in (lift)."""
    n_buckets = sources.time_share.shape[1]
    if n_buckets == 0:
        return np.zeros((len(rows), matrix.n_items))
    sub = matrix.timestamps[rows].tocoo()
    bucket = sources.time_buckets(sub.data)
    ok = bucket >= 0
    profile = np.zeros((len(rows), n_buckets))
    np.add.at(profile, (sub.row[ok], bucket[ok]), 1.0)
    profile /= np.maximum(profile.sum(axis=1, keepdims=True), 1.0)
    return profile @ sources.time_share.T


def candidate_recall(candidates: pd.DataFrame, labels: pd.DataFrame, known_users: Sequence[str]) -> float:
    """Mean share of each known user's label items that made it into their candidate set."""
    known = set(map(str, known_users))
    lab = labels.loc[labels[USER_ID].astype(str).isin(known), [USER_ID, ITEM_ID]].astype(str)
    if lab.empty:
        return float("nan")
    hit = lab.merge(
        candidates[[USER_ID, ITEM_ID]].astype(str).drop_duplicates(),
        how="left",
        on=[USER_ID, ITEM_ID],
        indicator=True,
    )
    hit["_h"] = (hit["_merge"] == "both").astype(float)
    return float(hit.groupby(USER_ID)["_h"].mean().mean())

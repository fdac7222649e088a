"""Candidate sources besides ALS: popularity, trending, item neighbours, content, session co-occurrence.

Each source is a per-item vector or an item x item matrix computed once from an
``InteractionMatrix`` (and the catalog); scoring a batch of users is then a sparse product. The
sources serve twice: their top items join ALS's candidates (so new or niche items can reach the
ranker) and their scores are ranker features. Everything is computed from the interactions it is
given; the caller decides which rows those are (feature history vs. full training data).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from spark_jobs.training.columns import CATEGORIES, ITEM_ID, TIMESTAMP, USER_ID
from spark_jobs.training.matrix import InteractionMatrix

SESSION_GAP_S = 30 * 60  # a gap longer than this starts a new session when none is recorded
MAX_TIME_BUCKETS = 200  # time-aligned popularity: weekly buckets, coarser for long histories
MAX_SESSION_ITEMS = 50  # co-occurrence of longer sessions is computed on their last items
TREND_HALF_LIFE_DAYS = 14.0
RECENT_ITEMS = 20  # a user's "recent session" for co-occurrence scoring
KNN_NEIGHBOURS = 200


@dataclass
class CandidateSources:
    """Item-level state of the non-ALS sources, aligned with ``matrix.item_ids``."""

    popularity: np.ndarray  # distinct positive users per item
    trend: np.ndarray  # time-decayed interaction count (half-life ``TREND_HALF_LIFE_DAYS``)
    mean_strength: np.ndarray
    first_seen: np.ndarray  # earliest known time per item (NaN unknown)
    knn: sparse.csr_matrix  # item x item cosine similarity, top neighbours only, no diagonal
    cooc: sparse.csr_matrix  # item x item session co-occurrence, row-normalised
    categories: sparse.csr_matrix  # item x category, L2-normalised rows (empty rows: no metadata)
    category_names: list[str]
    time_share: np.ndarray  # item x time bucket: the item's share of each bucket's interactions
    bucket_origin: float = 0.0
    bucket_width_s: float = 7 * 86_400.0

    def time_buckets(self, ts: np.ndarray) -> np.ndarray:
        """Bucket index of each time (clipped to the known range; -1 where unknown)."""
        n = self.time_share.shape[1]
        if n == 0:
            return np.full(len(ts), -1)
        idx = np.floor((ts - self.bucket_origin) / self.bucket_width_s)
        return np.where(np.isfinite(idx), np.clip(np.nan_to_num(idx), 0, n - 1), -1).astype(int)


def sessionize(events: pd.DataFrame, gap_s: float = SESSION_GAP_S) -> pd.Series:
    """Session key per row: ``session_id`` when present, else user + gap-based sessions by time.

    Rows without a timestamp and without a session id get one session per user.
    """
    if "session_id" in events.columns and events["session_id"].notna().any():
        fallback = events[USER_ID].astype(str)
        return events["session_id"].astype("string").fillna(fallback).astype(str)
    if TIMESTAMP not in events.columns:
        return events[USER_ID].astype(str)
    ts = pd.to_numeric(events[TIMESTAMP], errors="coerce")
    frame = pd.DataFrame({"u": events[USER_ID].astype(str), "t": ts.fillna(0.0)}, index=events.index)
    frame = frame.sort_values(["u", "t"], kind="stable")
    new = (frame["u"] != frame["u"].shift()) | (frame["t"].diff() > gap_s)
    number = new.cumsum()
    return (frame["u"] + "#" + number.astype(str)).reindex(events.index)


def _row_normalise(m: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms) @ m


def _keep_top(m: sparse.csr_matrix, n: int) -> sparse.csr_matrix:
    """Keep the ``n`` largest entries of every row (item neighbour lists stay bounded)."""
    m = m.tocsr()
    rows, cols, vals = [], [], []
    for r in range(m.shape[0]):
        start, end = m.indptr[r], m.indptr[r + 1]
        if end - start == 0:
            continue
        data, idx = m.data[start:end], m.indices[start:end]
        if end - start > n:
            keep = np.argpartition(-data, n - 1)[:n]
            data, idx = data[keep], idx[keep]
        rows.append(np.full(len(idx), r))
        cols.append(idx)
        vals.append(data)
    if not rows:
        return sparse.csr_matrix(m.shape, dtype=np.float32)
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape
    )


def category_matrix(item_ids: np.ndarray, items: pd.DataFrame | None) -> tuple[sparse.csr_matrix, list[str]]:
    """Item x category indicator (L2-normalised rows) from ``items.categories`` lists."""
    if items is None or items.empty or CATEGORIES not in items.columns:
        return sparse.csr_matrix((len(item_ids), 0), dtype=np.float32), []
    index = {str(i): n for n, i in enumerate(item_ids)}
    names: dict[str, int] = {}
    rows, cols = [], []
    for item, cats in zip(items[ITEM_ID].astype(str), items[CATEGORIES], strict=True):
        pos = index.get(item)
        if pos is None or cats is None or isinstance(cats, float):
            continue
        for cat in dict.fromkeys(str(c) for c in cats if str(c)):
            rows.append(pos)
            cols.append(names.setdefault(cat, len(names)))
    m = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(item_ids), len(names))
    )
    return _row_normalise(m).tocsr(), list(names)


def session_cooccurrence(
    events: pd.DataFrame, item_ids: np.ndarray, max_items: int = MAX_SESSION_ITEMS
) -> sparse.csr_matrix:
    """Item x item counts of appearing in the same session (positive events), row-normalised."""
    n = len(item_ids)
    if events.empty:
        return sparse.csr_matrix((n, n), dtype=np.float32)
    index = {str(i): k for k, i in enumerate(item_ids)}
    frame = pd.DataFrame(
        {
            "s": sessionize(events).to_numpy(),
            "i": events[ITEM_ID].astype(str).map(index).to_numpy(),
            "t": pd.to_numeric(events.get(TIMESTAMP, pd.Series(0.0, index=events.index)), errors="coerce")
            .fillna(0.0)
            .to_numpy(),
        }
    ).dropna(subset=["i"])
    frame = frame.sort_values(["s", "t"]).groupby("s").tail(max_items).drop_duplicates(["s", "i"])
    codes, _ = pd.factorize(frame["s"])
    b = sparse.csr_matrix(
        (np.ones(len(frame), dtype=np.float32), (codes, frame["i"].astype(int))),
        shape=(codes.max() + 1 if len(codes) else 0, n),
    )
    co = (b.T @ b).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    return _row_normalise(_keep_top(co, KNN_NEIGHBOURS)).tocsr()


def build_sources(
    matrix: InteractionMatrix,
    events: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    trend_half_life_days: float = TREND_HALF_LIFE_DAYS,
) -> CandidateSources:
    """Compute every non-ALS source from ``matrix`` (and its raw ``events`` for sessions).

    ``events`` defaults to the matrix's aggregated pairs (one "session" per gap-based window).
    """
    binary = matrix.binary
    popularity = np.asarray(binary.sum(axis=0)).ravel().astype(np.float32)
    counts = np.maximum(popularity, 1.0)
    mean_strength = np.asarray(matrix.strength.sum(axis=0)).ravel() / counts

    ts = matrix.timestamps.tocoo()
    if np.isfinite(matrix.reference_ts):
        age_days = (matrix.reference_ts - ts.data) / 86_400.0
        decay = np.where(np.isfinite(age_days), 0.5 ** (np.maximum(age_days, 0) / trend_half_life_days), 0.0)
        trend = np.bincount(ts.col, weights=decay, minlength=matrix.n_items).astype(np.float32)
        first = np.full(matrix.n_items, np.inf)
        np.minimum.at(first, ts.col, np.where(np.isfinite(ts.data), ts.data, np.inf))
        first_seen = np.where(np.isfinite(first), first, np.nan)
    else:
        trend = popularity.copy()
        first_seen = np.full(matrix.n_items, np.nan)

    time_share, origin, width = _time_share(matrix)

    norm_items = _row_normalise(binary.T.tocsr())
    knn = (norm_items @ norm_items.T).tocsr()
    knn.setdiag(0)
    knn.eliminate_zeros()
    knn = _keep_top(knn, KNN_NEIGHBOURS)

    raw = matrix.pairs.loc[matrix.pairs["strength"] > 0] if events is None else events
    if events is not None and "strength" in events.columns:
        raw = events.loc[events["strength"] > 0]
    cooc = session_cooccurrence(raw, matrix.item_ids)
    cats, cat_names = category_matrix(matrix.item_ids, items)
    return CandidateSources(
        popularity,
        trend,
        mean_strength.astype(np.float32),
        first_seen,
        knn,
        cooc,
        cats,
        cat_names,
        time_share,
        origin,
        width,
    )


def _time_share(matrix: InteractionMatrix) -> tuple[np.ndarray, float, float]:
    """Item x bucket share of activity, so "what was popular when this user was active" is a
    product of the user's activity profile with it (the MovieLens effect of rating sessions)."""
    ts = matrix.timestamps.tocoo()
    known = np.isfinite(ts.data)
    if not known.any():
        return np.zeros((matrix.n_items, 0), dtype=np.float32), 0.0, 7 * 86_400.0
    t = ts.data[known]
    origin = float(t.min())
    span = float(t.max()) - origin
    width = max(7 * 86_400.0, span / MAX_TIME_BUCKETS, 1.0)
    n_buckets = int(span // width) + 1
    bucket = np.clip(((t - origin) // width).astype(int), 0, n_buckets - 1)
    counts = np.zeros((matrix.n_items, n_buckets), dtype=np.float64)
    np.add.at(counts, (ts.col[known], bucket), 1.0)
    totals = counts.sum(axis=0, keepdims=True)
    share = counts / np.where(totals == 0, 1.0, totals) * matrix.n_items
    return share.astype(np.float32), origin, width


def recent_items(matrix: InteractionMatrix, rows: Iterable[int], n: int = RECENT_ITEMS) -> sparse.csr_matrix:
    """Binary users x items of each user's ``n`` most recent positive items (all when untimed)."""
    rows = list(rows)
    sub_ts = matrix.timestamps[rows].tocsr()
    out_r, out_c = [], []
    for pos in range(len(rows)):
        start, end = sub_ts.indptr[pos], sub_ts.indptr[pos + 1]
        idx, t = sub_ts.indices[start:end], np.nan_to_num(sub_ts.data[start:end], nan=-np.inf)
        if end - start > n:
            idx = idx[np.argsort(-t, kind="stable")[:n]]
        out_r.append(np.full(len(idx), pos))
        out_c.append(idx)
    if not out_r:
        return sparse.csr_matrix((0, matrix.n_items), dtype=np.float32)
    r, c = np.concatenate(out_r), np.concatenate(out_c)
    return sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), matrix.n_items))

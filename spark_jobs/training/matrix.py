"""The user-item matrix every model in this package reads: ids <-> dense indices, sparse strengths.

Interactions arrive as a pandas frame (``user_id, item_id, strength[, timestamp]``), one row per
user-item pair (``aggregate_pairs`` makes it so). Models and feature code work on integer
indices and ``scipy.sparse`` matrices; this module is the single place where string ids become
indices and back, so an id never silently shifts between ALS, the candidate sources and the
ranker features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from spark_jobs.common.errors import require_columns
from spark_jobs.training.columns import ITEM_ID, STRENGTH, TIMESTAMP, USER_ID


def aggregate_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item): strengths summed, latest timestamp kept; ids as strings.

    Pairs whose net strength is not positive are kept (Spark's implicit ALS reads a negative
    strength as "confident no"), but every other model only looks at positive pairs.
    """
    require_columns(df, (USER_ID, ITEM_ID, STRENGTH), "interactions")
    frame = df.assign(**{USER_ID: df[USER_ID].astype(str), ITEM_ID: df[ITEM_ID].astype(str)})
    if TIMESTAMP not in frame.columns:
        frame = frame.assign(**{TIMESTAMP: np.nan})
    grouped = frame.groupby([USER_ID, ITEM_ID], sort=False, as_index=False).agg(
        **{STRENGTH: (STRENGTH, "sum"), TIMESTAMP: (TIMESTAMP, "max")}
    )
    return grouped


@dataclass
class InteractionMatrix:
    """Indexed interactions: ``strength`` (users x items, CSR, positive pairs only) and ids.

    ``timestamps`` holds the latest time of each positive pair in the same sparsity pattern
    (NaN where unknown); ``reference_ts`` is the newest known time (the "now" of this data set,
    so no transform reads the clock).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    strength: sparse.csr_matrix
    timestamps: sparse.csr_matrix
    reference_ts: float
    pairs: pd.DataFrame  # aggregated pairs incl. non-positive ones, with _u/_i indices

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def binary(self) -> sparse.csr_matrix:
        out = self.strength.copy()
        out.data = np.ones_like(out.data)
        return out

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.item_ids)}


def build_matrix(interactions: pd.DataFrame, item_ids: np.ndarray | None = None) -> InteractionMatrix:
    """Index ``interactions`` (any granularity; pairs are aggregated first).

    ``item_ids`` fixes the item universe (e.g. the catalog incl. items nobody touched yet, so
    content neighbours can recommend new items); items in the data but not in it are appended.
    """
    pairs = aggregate_pairs(interactions)
    users = np.array(sorted(pairs[USER_ID].unique()), dtype=object)
    known = [] if item_ids is None else [str(i) for i in item_ids]
    seen = set(known)
    extra = sorted(i for i in pairs[ITEM_ID].unique() if i not in seen)
    items = np.array(list(dict.fromkeys(known)) + extra, dtype=object)
    u_index = {u: i for i, u in enumerate(users)}
    i_index = {u: i for i, u in enumerate(items)}
    pairs = pairs.assign(
        _u=pairs[USER_ID].map(u_index).astype(np.int32), _i=pairs[ITEM_ID].map(i_index).astype(np.int32)
    )
    positive = pairs.loc[pairs[STRENGTH] > 0]
    shape = (len(users), len(items))
    strength = sparse.csr_matrix(
        (positive[STRENGTH].to_numpy(dtype=np.float32), (positive["_u"], positive["_i"])), shape=shape
    )
    ts = pd.to_numeric(positive[TIMESTAMP], errors="coerce").to_numpy(dtype=np.float64)
    timestamps = sparse.csr_matrix(
        (np.nan_to_num(ts, nan=-1.0) + 0.0, (positive["_u"], positive["_i"])), shape=shape
    )
    timestamps.data[timestamps.data == -1.0] = np.nan
    known_ts = ts[np.isfinite(ts)]
    reference = float(known_ts.max()) if known_ts.size else float("nan")
    strength.sort_indices()
    timestamps.sort_indices()
    return InteractionMatrix(users, items, strength, timestamps, reference, pairs)

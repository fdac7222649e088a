"""ALS fold-in: a fresh user vector from the champion's item factors and the user's latest strengths.

This is one half-step of the same implicit ALS the model was trained with (Hu, Koren, Volinsky;
Spark's ``implicitPrefs=True``): with the item factors ``Y`` fixed, a user's vector is the exact
least-squares solution

    x_u = (YtY + Yt (C_u - I) Y + reg * n_u * I)^-1  Yt C_u p_u,  c_ui = 1 + alpha*|r_ui|,  p_ui = [r_ui > 0]

where ``n_u`` is the user's number of interactions (Spark scales ``regParam`` by it). Solving it
per micro-batch is what lets a click change the user's ALS candidates at once, without a retrain;
``YtY`` is shared by every user, so each solve costs O(n_u·k² + k³).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spark_jobs.training.als import AlsParams


def gram(item_factors: np.ndarray) -> np.ndarray:
    """``YtY`` in float64, computed once per model and reused for every user."""
    y = item_factors.astype(np.float64)
    return y.T @ y


def fold_in(
    item_factors: np.ndarray,
    yty: np.ndarray,
    params: AlsParams,
    item_rows: Sequence[np.ndarray],
    strengths: Sequence[np.ndarray],
) -> np.ndarray:
    """One vector per user (rows ``float32``); a user without interactions gets zeros.

    ``item_rows[u]`` are row indices into ``item_factors`` and ``strengths[u]`` the user's net
    strengths for them (negative = confident "no"); items the model does not know are left out
    by the caller.
    """
    k = item_factors.shape[1]
    out = np.zeros((len(item_rows), k), dtype=np.float32)
    eye = np.eye(k)
    for pos, (user_rows, user_strengths) in enumerate(zip(item_rows, strengths, strict=True)):
        rows = np.asarray(user_rows, dtype=np.int64)
        r = np.asarray(user_strengths, dtype=np.float64)
        if rows.size == 0:
            continue
        y = item_factors[rows].astype(np.float64)
        extra = params.alpha * np.abs(r)  # c_ui - 1
        a = yty + (y.T * extra) @ y + params.reg_param * rows.size * eye
        b = ((1.0 + extra) * (r > 0)) @ y
        out[pos] = np.linalg.solve(a, b)
    return out

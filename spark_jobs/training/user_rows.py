"""One row per user with everything a model needs about them, and its way back to numpy.

Training, evaluation and scoring all work the same way: the pairs of each user are gathered into
one row (``items``, ``strengths``, ``timestamps`` arrays) next to their ALS vector, side features
and, for evaluation or ranker labels, their ``truth`` items. A task on an executor turns a slice of
such rows into a small ``InteractionMatrix`` over the whole catalog (``chunk_matrix``) and runs the
in-memory model code on it. Nothing about a user ever needs another user's row, so the work
scales with executors; what is shared (catalog, sources, item factors) is item-sized.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.training.columns import ITEM_ID, STRENGTH, TIMESTAMP, USER_ID
from spark_jobs.training.features import USER_SIDE_COLUMNS
from spark_jobs.training.matrix import InteractionMatrix, build_matrix

ITEMS, STRENGTHS, TIMESTAMPS = "items", "strengths", "timestamps"
FACTORS = "factors"
TRUTH = "truth"


def user_rows(
    pairs: DataFrame,
    factors: DataFrame | None = None,
    side: DataFrame | None = None,
    truth: DataFrame | None = None,
    users: DataFrame | None = None,
) -> DataFrame:
    """``pairs`` (user_id, item_id, strength, timestamp) gathered per user, with optional extras.

    ``factors``: user_id, factors (array<float>); ``side``: user_id + ``USER_SIDE_COLUMNS``;
    ``truth``: user_id, item_id (relevant items, gathered into ``truth``); ``users``: user_id,
    the users wanted (default: every user with pairs). Users without pairs get empty arrays.
    """
    rows = pairs.groupBy(USER_ID).agg(
        F.collect_list(F.col(ITEM_ID).cast("string")).alias(ITEMS),
        F.collect_list(F.col(STRENGTH).cast("double")).alias(STRENGTHS),
        F.collect_list(F.coalesce(F.col(TIMESTAMP).cast("double"), F.lit(float("nan")))).alias(TIMESTAMPS),
    )
    if users is not None:
        rows = users.select(USER_ID).distinct().join(rows, USER_ID, "left")
    if factors is not None:
        rows = rows.join(factors.select(USER_ID, FACTORS), USER_ID, "left")
    if side is not None:
        rows = rows.join(side.select(USER_ID, *USER_SIDE_COLUMNS), USER_ID, "left")
    if truth is not None:
        gathered = truth.groupBy(USER_ID).agg(F.collect_set(F.col(ITEM_ID).cast("string")).alias(TRUTH))
        rows = rows.join(gathered, USER_ID, "left")
    return rows


def _arrays(rows: pd.DataFrame, column: str) -> list[np.ndarray]:
    return [np.asarray(v if v is not None else [], dtype=object) for v in rows[column]]


def chunk_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """The exploded pairs of a slice of user rows (``user_id, item_id, strength, timestamp``)."""
    items = _arrays(rows, ITEMS)
    lengths = np.array([len(a) for a in items], dtype=np.int64)
    if not lengths.sum():
        return pd.DataFrame({USER_ID: [], ITEM_ID: [], STRENGTH: [], TIMESTAMP: []})
    return pd.DataFrame(
        {
            USER_ID: np.repeat(rows[USER_ID].astype(str).to_numpy(), lengths),
            ITEM_ID: np.concatenate(items).astype(str),
            STRENGTH: np.concatenate(_arrays(rows, STRENGTHS)).astype(np.float64),
            TIMESTAMP: np.concatenate(_arrays(rows, TIMESTAMPS)).astype(np.float64),
        }
    )


def chunk_matrix(rows: pd.DataFrame, item_ids: np.ndarray, reference_ts: float) -> InteractionMatrix:
    """The matrix of a slice of users over the whole catalog ``item_ids`` (items outside it are
    left out), with the population's ``reference_ts``, not the slice's own newest time."""
    pairs = chunk_pairs(rows)
    pairs = pairs.loc[pairs[ITEM_ID].isin(set(item_ids.tolist()))]
    matrix = build_matrix(pairs, item_ids=item_ids)
    return dataclasses.replace(matrix, reference_ts=reference_ts)


def chunk_side(rows: pd.DataFrame) -> pd.DataFrame:
    """Side features of the slice indexed by user (NaN where unknown)."""
    side = pd.DataFrame(index=rows[USER_ID].astype(str).to_numpy())
    side.index.name = USER_ID
    for col in USER_SIDE_COLUMNS:
        side[col] = rows[col].astype(float).to_numpy() if col in rows.columns else np.nan
    return side[~side.index.duplicated()]


def chunk_vectors(rows: pd.DataFrame, users: np.ndarray, rank: int) -> np.ndarray:
    """ALS vectors of ``users`` (zeros for users without one), float32."""
    out = np.zeros((len(users), rank), dtype=np.float32)
    if FACTORS not in rows.columns:
        return out
    given = dict(zip(rows[USER_ID].astype(str), rows[FACTORS], strict=True))
    for pos, user in enumerate(users):
        vec = given.get(str(user))
        if vec is not None and len(vec) == rank:
            out[pos] = np.asarray(vec, dtype=np.float32)
    return out


def chunk_truth(rows: pd.DataFrame) -> pd.DataFrame:
    """``user_id, item_id`` of the slice's truth items (empty when there is no ``truth`` column)."""
    if TRUTH not in rows.columns:
        return pd.DataFrame({USER_ID: pd.Series(dtype=object), ITEM_ID: pd.Series(dtype=object)})
    truth = _arrays(rows, TRUTH)
    lengths = np.array([len(a) for a in truth], dtype=np.int64)
    if not lengths.sum():
        return pd.DataFrame({USER_ID: pd.Series(dtype=object), ITEM_ID: pd.Series(dtype=object)})
    return pd.DataFrame(
        {
            USER_ID: np.repeat(rows[USER_ID].astype(str).to_numpy(), lengths),
            ITEM_ID: np.concatenate(truth).astype(str),
        }
    )


def slices(rows: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """``rows`` cut into consecutive slices of at most ``size`` users."""
    return [rows.iloc[start : start + size] for start in range(0, len(rows), max(size, 1))]

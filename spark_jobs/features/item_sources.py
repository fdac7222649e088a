"""Item-level candidate sources computed by Spark: the one definition training and serving share.

``item_sources`` turns a DataFrame of aggregated user-item pairs (``user_id, item_id, strength,
timestamp``) into the same ``CandidateSources`` that ``training.candidates.build_sources`` computes
from an in-memory matrix, but every step that grows with users or events runs on the executors:

* per-item aggregates (popularity, mean strength, first seen, decayed trend, activity per time
  bucket) are ``groupBy`` jobs;
* item neighbours (cosine over the users who liked both) and session co-occurrence are summed from
  partial ``items x items`` products, each computed by a task over a slice of users or sessions
  (``mapInPandas``), then cut to the top ``KNN_NEIGHBOURS`` per item.

Only item-sized results reach the driver (vectors over the catalog, at most ``KNN_NEIGHBOURS``
entries per item), which is what the scorer broadcasts and the ranker's features read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy import sparse

from spark_jobs.common import names
from spark_jobs.training.candidates import (
    KNN_NEIGHBOURS,
    MAX_SESSION_ITEMS,
    MAX_TIME_BUCKETS,
    SESSION_GAP_S,
    TREND_HALF_LIFE_DAYS,
    CandidateSources,
    _row_normalise,
    category_matrix,
)
from spark_jobs.training.columns import STRENGTH, TIMESTAMP

USER_ID, ITEM_ID = names.USER_ID, names.ITEM_ID
_IDX = "_i"
_GROUP = "_g"
_PAIR_SCHEMA = T.StructType(
    [
        T.StructField("i", T.IntegerType()),
        T.StructField("j", T.IntegerType()),
        T.StructField("c", T.DoubleType()),
    ]
)
WEEK_S = 7 * 86_400.0


@dataclass(frozen=True)
class PairStats:
    """Scalars of a pair set that item- and user-level features are relative to."""

    reference_ts: float  # newest positive pair's time (NaN when untimed): the data's "now"
    n_users: int  # users with at least one pair
    n_positive: int  # positive pairs

    @property
    def mean_user_n(self) -> float:
        """Mean positive items per user (the scale of ``user_log_n``)."""
        return max(float(self.n_positive) / max(self.n_users, 1), 1e-9)


def item_universe(pairs: DataFrame, catalog: Sequence[str] | None = None) -> np.ndarray:
    """The item order every model and source uses: the catalog first (as given, deduplicated),
    then items seen only in ``pairs``, sorted. Item-sized, so it is collected."""
    known = list(dict.fromkeys(str(i) for i in (catalog if catalog is not None else [])))
    seen = set(known)
    extra = sorted(
        r[0] for r in pairs.select(F.col(ITEM_ID).cast("string")).distinct().collect() if r[0] not in seen
    )
    return np.array(known + extra, dtype=object)


def with_item_index(pairs: DataFrame, item_ids: np.ndarray) -> DataFrame:
    """``pairs`` plus ``_i``, the item's position in ``item_ids`` (rows of unknown items dropped).

    The lookup table is item-sized and broadcast, so the join never shuffles the pairs.
    """
    spark = pairs.sparkSession
    lookup = spark.createDataFrame(
        pd.DataFrame({ITEM_ID: item_ids.astype(str), _IDX: np.arange(len(item_ids), dtype=np.int32)})
    )
    return pairs.join(F.broadcast(lookup), ITEM_ID, "inner")


def pair_stats(pairs: DataFrame) -> PairStats:
    """One pass over ``pairs`` for the scalars features are scaled by."""
    row = pairs.agg(
        F.max(F.when(F.col(STRENGTH) > 0, F.col(TIMESTAMP))).alias("ref"),
        F.countDistinct(USER_ID).alias("users"),
        F.sum((F.col(STRENGTH) > 0).cast("long")).alias("pos"),
    ).first()
    ref = row["ref"] if row is not None and row["ref"] is not None else float("nan")
    return PairStats(float(ref), int(row["users"] or 0) if row else 0, int(row["pos"] or 0) if row else 0)


def _vector(frame: pd.DataFrame, column: str, n: int, fill: float = 0.0) -> np.ndarray:
    out = np.full(n, fill, dtype=np.float64)
    if not frame.empty:
        out[frame[_IDX].to_numpy(dtype=np.int64)] = frame[column].to_numpy(dtype=np.float64)
    return out


def _partial_products(groups: Iterator[pd.DataFrame], n_items: int) -> Iterator[pd.DataFrame]:
    """Per slice of groups (users or sessions): ``B^T B`` of the slice, diagonal excluded, both
    triangles (each row item gets all its entries)."""
    for frame in groups:
        if frame.empty:
            continue
        lengths = frame["items"].map(len).to_numpy()
        rows = np.repeat(np.arange(len(frame)), lengths)
        cols = np.concatenate(frame["items"].to_numpy()).astype(np.int64) if len(rows) else rows
        b = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(frame), n_items)
        )
        b.data[:] = 1.0
        co = (b.T @ b).tocoo()
        off = co.row != co.col
        yield pd.DataFrame(
            {"i": co.row[off].astype(np.int32), "j": co.col[off].astype(np.int32), "c": co.data[off]}
        )


def _row_tops(
    parts: Iterator[pd.DataFrame], n_items: int, norms: np.ndarray | None, n: int
) -> Iterator[pd.DataFrame]:
    """Sum the partial products of the row items this task owns, scale by ``norms`` (cosine)
    when given, keep each row's ``n`` largest (ties by column)."""
    frames = [p for p in parts if not p.empty]
    if not frames:
        return
    part = pd.concat(frames, ignore_index=True)
    summed = sparse.coo_matrix(
        (part["c"].to_numpy(), (part["i"].to_numpy(), part["j"].to_numpy())), shape=(n_items, n_items)
    ).tocsr()
    summed.sum_duplicates()
    co = summed.tocoo()
    values = co.data / (norms[co.row] * norms[co.col]) if norms is not None else co.data
    order = np.lexsort((co.col, -values, co.row))
    row, col, values = co.row[order], co.col[order], values[order]
    starts = np.searchsorted(row, row, side="left")
    keep = (np.arange(len(row)) - starts) < n
    yield pd.DataFrame({"i": row[keep].astype(np.int32), "j": col[keep].astype(np.int32), "c": values[keep]})


def neighbour_lists(
    groups: DataFrame, n_items: int, norms: np.ndarray | None = None, n: int = KNN_NEIGHBOURS
) -> sparse.csr_matrix:
    """Item x item: in how many groups (``items`` arrays) two items appear together, divided by
    ``norms[i] * norms[j]`` when given, cut to the ``n`` largest per item.

    Each task multiplies its own slice of groups; the partial products are shuffled once, by row
    item, and summed and cut by the task that owns the row. Only the cut lists are collected.
    """
    spark = groups.sparkSession
    tasks = max(spark.sparkContext.defaultParallelism, 1)
    tops = (
        groups.mapInPandas(lambda it: _partial_products(it, n_items), _PAIR_SCHEMA)
        .repartition(tasks, "i")
        .mapInPandas(lambda it: _row_tops(it, n_items, norms, n), _PAIR_SCHEMA)
    )
    return _to_csr(tops.toPandas(), n_items)


def _to_csr(frame: pd.DataFrame, n_items: int) -> sparse.csr_matrix:
    if frame.empty:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    out = sparse.csr_matrix(
        (frame["c"].to_numpy(dtype=np.float64), (frame["i"].to_numpy(), frame["j"].to_numpy())),
        shape=(n_items, n_items),
    )
    out.sort_indices()
    return out


def item_neighbours(positive: DataFrame, popularity: np.ndarray, n_items: int) -> sparse.csr_matrix:
    """Item x item cosine similarity over the users who liked both, top neighbours per item."""
    per_user = positive.groupBy(USER_ID).agg(F.collect_list(_IDX).alias("items"))
    return neighbour_lists(per_user, n_items, np.sqrt(np.maximum(popularity, 1.0)))


def sessions(positive: DataFrame, gap_s: float = SESSION_GAP_S) -> DataFrame:
    """Gap-based sessions of each user's positive pairs: a pause over ``gap_s`` starts a new one.

    Returns ``_g`` (the session key), ``_i`` and ``timestamp`` (nulls as 0, like the pandas path).
    """
    by_user = Window.partitionBy(USER_ID).orderBy(TIMESTAMP, _IDX)
    t = F.coalesce(F.col(TIMESTAMP), F.lit(0.0))
    return (
        positive.select(USER_ID, _IDX, t.alias(TIMESTAMP))
        .withColumn("_gap", (F.col(TIMESTAMP) - F.lag(TIMESTAMP).over(by_user)) > gap_s)
        .withColumn("_n", F.sum(F.coalesce(F.col("_gap").cast("int"), F.lit(0))).over(by_user))
        .select(F.concat_ws("#", USER_ID, F.col("_n").cast("string")).alias(_GROUP), _IDX, TIMESTAMP)
    )


def session_cooccurrence(
    positive: DataFrame, n_items: int, max_items: int = MAX_SESSION_ITEMS
) -> sparse.csr_matrix:
    """Item x item session co-occurrence (the last ``max_items`` of each session), top neighbours
    per item, rows L2-normalised."""
    latest = Window.partitionBy(_GROUP).orderBy(F.desc(TIMESTAMP), F.desc(_IDX))
    per_session = (
        sessions(positive)
        .withColumn("_r", F.row_number().over(latest))
        .where(F.col("_r") <= max_items)
        .groupBy(_GROUP)
        .agg(F.collect_set(_IDX).alias("items"))
    )
    return _row_normalise(neighbour_lists(per_session, n_items)).tocsr()


def _time_share(positive: DataFrame, n_items: int) -> tuple[np.ndarray, float, float]:
    """Item x time bucket share of activity (the buckets are coarse: at most ``MAX_TIME_BUCKETS``)."""
    timed = positive.where(F.col(TIMESTAMP).isNotNull() & ~F.isnan(TIMESTAMP))
    bounds = timed.agg(F.min(TIMESTAMP).alias("lo"), F.max(TIMESTAMP).alias("hi")).first()
    if bounds is None or bounds["lo"] is None:
        return np.zeros((n_items, 0), dtype=np.float32), 0.0, WEEK_S
    origin, span = float(bounds["lo"]), float(bounds["hi"]) - float(bounds["lo"])
    width = max(WEEK_S, span / MAX_TIME_BUCKETS, 1.0)
    n_buckets = int(span // width) + 1
    bucket = F.least(F.floor((F.col(TIMESTAMP) - origin) / width).cast("int"), F.lit(n_buckets - 1))
    counts = timed.groupBy(_IDX, bucket.alias("b")).count().toPandas()
    grid = np.zeros((n_items, n_buckets), dtype=np.float64)
    np.add.at(
        grid, (counts[_IDX].to_numpy(dtype=np.int64), counts["b"].to_numpy(dtype=np.int64)), counts["count"]
    )
    totals = grid.sum(axis=0, keepdims=True)
    share = grid / np.where(totals == 0, 1.0, totals) * n_items
    return share.astype(np.float32), origin, width


def item_sources(
    pairs: DataFrame,
    item_ids: np.ndarray,
    items: pd.DataFrame | None = None,
    stats: PairStats | None = None,
    trend_half_life_days: float = TREND_HALF_LIFE_DAYS,
) -> CandidateSources:
    """Every non-ALS source over ``item_ids`` from aggregated ``pairs`` (positive pairs only count).

    ``items`` (``item_id, categories``) is the catalog's metadata, item-sized; ``stats`` saves a
    pass when the caller has them already.
    """
    n = len(item_ids)
    stats = stats or pair_stats(pairs)
    positive = with_item_index(pairs.where(F.col(STRENGTH) > 0), item_ids).cache()
    try:
        ref = stats.reference_ts
        age_days = F.greatest((F.lit(ref) - F.col(TIMESTAMP)) / 86_400.0, F.lit(0.0))
        decay = F.pow(F.lit(0.5), age_days / float(trend_half_life_days))
        per_item = (
            positive.groupBy(_IDX)
            .agg(
                F.count(F.lit(1)).alias("pop"),
                F.sum(STRENGTH).alias("total"),
                F.min(F.when(~F.isnan(TIMESTAMP), F.col(TIMESTAMP))).alias("first"),
                F.sum(F.when(~F.isnan(TIMESTAMP), decay).otherwise(F.lit(0.0))).alias("trend"),
            )
            .toPandas()
        )
        popularity = _vector(per_item, "pop", n).astype(np.float32)
        mean_strength = (_vector(per_item, "total", n) / np.maximum(popularity, 1.0)).astype(np.float32)
        if np.isfinite(ref):
            trend = _vector(per_item, "trend", n).astype(np.float32)
            first_seen = _vector(per_item.dropna(subset=["first"]), "first", n, fill=np.nan)
        else:
            trend, first_seen = popularity.copy(), np.full(n, np.nan)
        time_share, origin, width = _time_share(positive, n)
        knn = item_neighbours(positive, popularity, n)
        cooc = session_cooccurrence(positive, n)
    finally:
        positive.unpersist()
    cats, cat_names = category_matrix(item_ids, items)
    return CandidateSources(
        popularity, trend, mean_strength, first_seen, knn, cooc, cats, cat_names, time_share, origin, width
    )

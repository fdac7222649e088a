"""The item-level half of serving: catalog, candidate sources and country trends, item-sized.

Every user-level input of the scorer lives on the executors (``user_state``); what every user
shares is one ``ItemSnapshot``, built by Spark jobs over silver (``build_snapshot``: the pairs stay
on the executors, only vectors over the catalog and item x item neighbour lists reach the driver)
and broadcast to the tasks that score users. Its scalars are the population's: ``reference_ts``
(the newest positive interaction, the data's "now") and ``mean_user_n`` (mean positive items per
user), which a chunk of users could not compute from its own rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.features.item_sources import item_sources, item_universe, pair_stats, with_item_index
from spark_jobs.training.candidates import TREND_HALF_LIFE_DAYS, CandidateSources
from spark_jobs.training.columns import CATEGORIES, STRENGTH, TIMESTAMP
from spark_jobs.training.interactions import WEIGHT, with_event_weight

TITLE = names.TITLE
LENGTH_S = "length_s"
CREATED_TS = "created_ts"  # epoch seconds in the snapshot (NaN unknown)
COUNTRY = "country"
ITEM_COLUMNS = (names.ITEM_ID, TITLE, CATEGORIES, LENGTH_S, CREATED_TS)
DAY_S = 86_400.0


@dataclass
class ItemSnapshot:
    """Item-sized serving inputs, aligned with ``item_ids`` (the models' and sources' order)."""

    item_ids: np.ndarray
    items: pd.DataFrame  # ITEM_COLUMNS, one row per item of ``item_ids`` (same order)
    sources: CandidateSources
    country_trend: dict[str, np.ndarray]  # country -> decayed positive events per item
    reference_ts: float  # the population's newest positive interaction (epoch s)
    mean_user_n: float  # the population's mean positive items per user
    category_vectors: np.ndarray = field(init=False)
    primary_category: np.ndarray = field(init=False)
    titles: Mapping[str, str] = field(init=False)
    index: Mapping[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.category_vectors = self.sources.categories.toarray().astype(np.float64)
        self.primary_category = np.array(
            [
                c[0] if isinstance(c, list | tuple | np.ndarray) and len(c) else None
                for c in self.items[CATEGORIES]
            ],
            dtype=object,
        )
        titles = self.items[TITLE].where(self.items[TITLE].notna(), self.items[names.ITEM_ID])
        self.titles = dict(zip(self.items[names.ITEM_ID], titles, strict=True))
        self.index = {str(i): n for n, i in enumerate(self.item_ids)}


def catalog_frame(items: pd.DataFrame | None) -> pd.DataFrame:
    """``recsys.items`` rows (any subset of ``ITEM_COLUMNS``) in the snapshot's types: categories
    as lists, ``created_ts`` as epoch seconds."""
    frame = pd.DataFrame(columns=list(ITEM_COLUMNS)) if items is None else items.copy()
    for col in ITEM_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    frame[names.ITEM_ID] = frame[names.ITEM_ID].astype(str)
    frame[CATEGORIES] = frame[CATEGORIES].map(lambda c: [str(x) for x in c] if c is not None else [])
    created = pd.to_datetime(frame[CREATED_TS], utc=True)
    frame[CREATED_TS] = [t.timestamp() if pd.notna(t) else np.nan for t in created]
    frame[CREATED_TS] = frame[CREATED_TS].astype(float)
    return frame[list(ITEM_COLUMNS)].drop_duplicates(names.ITEM_ID).reset_index(drop=True)


def aligned_items(catalog: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """``catalog`` reindexed to ``item_ids``; items seen only in events get no metadata."""
    frame = catalog.set_index(names.ITEM_ID).reindex(pd.Index(item_ids.astype(str), name=names.ITEM_ID))
    frame[CATEGORIES] = [c if isinstance(c, list) else [] for c in frame[CATEGORIES]]
    frame[CREATED_TS] = frame[CREATED_TS].astype(float)
    return frame.reset_index()[list(ITEM_COLUMNS)]


def serving_pairs(events: DataFrame, half_life_days: float) -> DataFrame:
    """Silver events -> one row per (user, item): ``strength`` decayed to the newest event of the
    data (events after it count as age 0), ``timestamp`` its latest event (epoch s).

    The reference is a column over the whole frame (a window without partitions would pull every
    row into one task), so it comes from one small aggregate joined back by broadcast.
    """
    weighted = events.transform(with_event_weight).select(
        names.USER_ID, names.ITEM_ID, WEIGHT, F.col(names.EVENT_TS).cast("double").alias(TIMESTAMP)
    )
    reference = weighted.agg(F.max(TIMESTAMP).alias("_ref"))
    age_days = F.greatest((F.col("_ref") - F.col(TIMESTAMP)) / DAY_S, F.lit(0.0))
    decay = F.pow(F.lit(0.5), age_days / float(half_life_days)) if half_life_days > 0 else F.lit(1.0)
    return (
        weighted.crossJoin(F.broadcast(reference))
        .groupBy(names.USER_ID, names.ITEM_ID)
        .agg(F.sum(F.col(WEIGHT) * decay).alias(STRENGTH), F.max(TIMESTAMP).alias(TIMESTAMP))
        .where(F.col(STRENGTH) != 0.0)
    )


def country_trends(
    events: DataFrame, item_ids: np.ndarray, reference_ts: float, half_life_days: float = TREND_HALF_LIFE_DAYS
) -> dict[str, np.ndarray]:
    """Per country of the event's context, the decayed count of positive events per item (the
    same half-life as ``trend``); an aggregate of countries x items, then collected."""
    if not np.isfinite(reference_ts):
        return {}
    positive = events.transform(with_event_weight).where(F.col(WEIGHT) > 0)
    rows = positive.select(
        F.col(f"{names.CONTEXT}.{COUNTRY}").alias(COUNTRY),
        names.ITEM_ID,
        F.col(names.EVENT_TS).cast("double").alias(TIMESTAMP),
    ).where(F.col(COUNTRY).isNotNull())
    age_days = (F.lit(reference_ts) - F.col(TIMESTAMP)) / DAY_S
    counts = (
        with_item_index(rows, item_ids)
        .groupBy(COUNTRY, "_i")
        .agg(F.sum(F.pow(F.lit(0.5), age_days / float(half_life_days))).alias("w"))
        .toPandas()
    )
    out: dict[str, np.ndarray] = {}
    for country, group in counts.groupby(COUNTRY):
        vector = np.zeros(len(item_ids), dtype=np.float64)
        vector[group["_i"].to_numpy(dtype=np.int64)] = group["w"].to_numpy(dtype=np.float64)
        out[str(country)] = vector
    return out


def build_snapshot(events: DataFrame, catalog: pd.DataFrame | None, half_life_days: float) -> ItemSnapshot:
    """The item snapshot of silver ``events`` and the catalog (``recsys.items`` rows, item-sized).

    Item order: the catalog, then items seen only in events (sorted), as ``item_universe``.
    """
    items = catalog_frame(catalog)
    pairs = serving_pairs(events, half_life_days).cache()
    try:
        item_ids = item_universe(pairs, items[names.ITEM_ID].tolist())
        stats = pair_stats(pairs)
        aligned = aligned_items(items, item_ids)
        sources = item_sources(pairs, item_ids, aligned[[names.ITEM_ID, CATEGORIES]], stats)
    finally:
        pairs.unpersist()
    return ItemSnapshot(
        item_ids=item_ids,
        items=aligned,
        sources=sources,
        country_trend=country_trends(events, item_ids, stats.reference_ts),
        reference_ts=stats.reference_ts,
        mean_user_n=stats.mean_user_n,
    )

"""Scoring on the executors: user state rows in, padded top-N rows out, one ``mapInPandas`` task
per slice of users.

Each task rebuilds a small ``ServingState`` for the users of its Arrow batch (their pairs decayed
to the request's "now", their context, profile and impressions) next to the broadcast item
snapshot and models, and calls the same ``score_users`` as every other path, so a user's list is
the one an in-memory call would give. The driver sees only the request's scalars and counters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pyspark.accumulators import AccumulatorParam
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import ServingSettings
from spark_jobs.serving.models import ModelSet
from spark_jobs.serving.scorer import ScoringRequest, score_users
from spark_jobs.serving.sinks import pad_ranks
from spark_jobs.serving.snapshot import ItemSnapshot
from spark_jobs.serving.state import CONTEXT_COLUMNS, PAIR_COLUMNS, PROFILE_COLUMNS, ServingState
from spark_jobs.serving.tables import RECOMMENDATIONS_SCHEMA
from spark_jobs.serving.user_state import (
    BATCH_ITEMS,
    COUNTRY,
    DEVICE,
    HOUR,
    ITEMS,
    LAST_TS,
    NEWEST_TS,
    OLDER_ITEMS,
    SERVED_COUNTS,
    SERVED_ITEMS,
    STATE,
    VALUES,
    decayed_strengths,
)
from spark_jobs.training.columns import STRENGTH, TIMESTAMP

HAS_PROFILE = "has_profile"  # state rows joined with recsys.users: true where the user has a row
PROFILE_COUNTRY = "profile_country"  # the profile's country (``country`` is the latest context's)
SCORED_SCHEMA = T.StructType(  # padded lists: ranks beyond a user's list carry a null item
    [T.StructField(f.name, f.dataType, nullable=True) for f in RECOMMENDATIONS_SCHEMA.fields]
)


@dataclass(frozen=True)
class BatchRequest:
    """What every task of one scoring pass shares (scalars only)."""

    now_ts: float  # the newest event among the scored users (epoch s): strengths are as of it
    generated_at: datetime  # the I/O layer's clock, stamped on every row
    settings: ServingSettings
    half_life_days: float


class _SetParam(AccumulatorParam):
    """Union of sets: which model versions the tasks served."""

    def zero(self, value: set) -> set:
        return set()

    def addInPlace(self, value1: set, value2: set) -> set:
        value1 |= value2
        return value1


@dataclass
class Counters:
    """What the tasks report back to the driver besides their rows (Spark accumulators)."""

    rows: Any
    unknown_item_events: Any
    model_versions: Any

    @classmethod
    def create(cls, spark_context: Any) -> Counters:
        return cls(
            spark_context.accumulator(0),
            spark_context.accumulator(0),
            spark_context.accumulator(set(), _SetParam()),
        )


def chunk_state(
    rows: pd.DataFrame, snapshot: ItemSnapshot, now_ts: float, half_life_days: float
) -> ServingState:
    """The ``ServingState`` of the users in ``rows`` (state rows, optionally joined with their
    profile: ``PROFILE_COLUMNS`` + ``has_profile``); a user without state has no pairs."""
    users = rows[names.USER_ID].astype(str).tolist()
    docs = [json.loads(d) if isinstance(d, str) else {} for d in rows[STATE]]
    pair_users, items, values, last_ts = [], [], [], []
    seen_users, seen_items = [], []
    impressions: dict[tuple[str, str], int] = {}
    context: dict[str, tuple] = {}
    for user, doc in zip(users, docs, strict=True):
        own = doc.get(ITEMS, [])
        pair_users.extend([user] * len(own))
        items.extend(own)
        values.extend(doc.get(VALUES, []))
        last_ts.extend(doc.get(LAST_TS, []))
        older = doc.get(OLDER_ITEMS, [])
        seen_users.extend([user] * len(older))
        seen_items.extend(older)
        impressions.update(
            ((user, str(i)), int(n))
            for i, n in zip(doc.get(SERVED_ITEMS, []), doc.get(SERVED_COUNTS, []), strict=True)
        )
        if doc.get(NEWEST_TS) is not None:
            context[user] = (doc.get(DEVICE), doc.get(HOUR), doc.get(COUNTRY))
    times = np.asarray(last_ts, dtype=np.float64)
    pairs = pd.DataFrame(
        {
            names.USER_ID: np.asarray(pair_users, dtype=object),
            names.ITEM_ID: np.asarray(items, dtype=object),
            STRENGTH: decayed_strengths(np.asarray(values, dtype=np.float64), times, now_ts, half_life_days),
            TIMESTAMP: times,
        },
        columns=list(PAIR_COLUMNS),
    )
    latest = pd.DataFrame(
        list(context.values()),
        columns=list(CONTEXT_COLUMNS),
        index=pd.Index(list(context), name=names.USER_ID),
    )
    latest[HOUR] = latest[HOUR].astype(float)
    profile = pd.DataFrame({names.USER_ID: pd.Series(dtype=object)})
    if HAS_PROFILE in rows.columns:
        has_profile = rows[HAS_PROFILE].fillna(False).to_numpy(dtype=bool)
        source = {c: PROFILE_COUNTRY if c == "country" else c for c in PROFILE_COLUMNS}
        cols = {c: s for c, s in source.items() if s in rows.columns}
        profile = pd.DataFrame(
            {
                names.USER_ID: np.asarray(users, dtype=object)[has_profile],
                **{c: rows[s].to_numpy(dtype=object)[has_profile] for c, s in cols.items()},
            }
        )
    seen = pd.DataFrame(
        {
            names.USER_ID: np.asarray(seen_users, dtype=object),
            names.ITEM_ID: np.asarray(seen_items, dtype=object),
        }
    )
    state = ServingState(snapshot, pairs, profile, latest, impressions, seen=seen)
    return state.with_reference(now_ts)


def newest_times(rows: pd.DataFrame) -> pd.Series:
    """user_id -> newest event time the list accounts for (UTC, naive; NaT without state)."""
    times = pd.to_datetime(rows[NEWEST_TS].astype(float), unit="s")
    return pd.Series(times.to_numpy(), index=rows[names.USER_ID].astype(str).to_numpy())


def score_rows(
    rows: pd.DataFrame, snapshot: ItemSnapshot, models: ModelSet, request: BatchRequest
) -> pd.DataFrame:
    """Padded top-N rows (``SCORED_SCHEMA`` columns) of the users in ``rows``."""
    state = chunk_state(rows, snapshot, request.now_ts, request.half_life_days)
    users = rows[names.USER_ID].astype(str).tolist()
    scoring = ScoringRequest(users, request.now_ts, request.generated_at, newest_times(rows))
    recs = score_users(state, models, scoring, request.settings)
    if recs.empty:
        return pd.DataFrame({f.name: pd.Series(dtype=object) for f in SCORED_SCHEMA.fields})
    return pad_ranks(recs, request.settings.top_n)


def unknown_item_events(rows: pd.DataFrame, snapshot: ItemSnapshot) -> int:
    """Events of the batch on items the snapshot (hence the models) does not know."""
    if BATCH_ITEMS not in rows.columns:
        return 0
    return sum(
        sum(1 for item in json.loads(items) if str(item) not in snapshot.index)
        for items in rows[BATCH_ITEMS]
        if isinstance(items, str)
    )


def score_states(
    states: DataFrame, snapshot: Any, models: Any, request: BatchRequest, counters: Counters | None = None
) -> DataFrame:
    """``states`` (state rows, optionally joined with profiles) -> padded lists, on the executors.

    ``snapshot`` and ``models`` are broadcasts of an ``ItemSnapshot`` and a ``ModelSet``.
    """

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        item_snapshot, model_set = snapshot.value, models.value
        for rows in batches:
            if rows.empty:
                continue
            out = score_rows(rows, item_snapshot, model_set, request)
            if counters is not None:
                counters.unknown_item_events.add(unknown_item_events(rows, item_snapshot))
                counters.rows.add(int(out[names.ITEM_ID].notna().sum()))
                counters.model_versions.add(set(out[names.MODEL_VERSION].dropna().unique().tolist()))
            yield _typed(out)

    return states.mapInPandas(score_partition, SCORED_SCHEMA)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as UTC instants (Arrow reads naive ones in the session's zone)."""
    out = frame[[f.name for f in SCORED_SCHEMA.fields]].copy()
    for f in SCORED_SCHEMA.fields:
        if isinstance(f.dataType, T.TimestampType):
            stamps = pd.to_datetime(out[f.name])
            out[f.name] = (
                stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
            )
    return out

"""Per-user serving state: a bounded, exactly decayed history, the last context and impressions.

The state of one user is one JSON document (keys ``STATE_COLUMNS``): what scoring them needs and
nothing that grows with their whole history:

* ``items, values, last_ts``: at most ``max_history`` (user, item) pairs, the most recent by their
  latest event. ``values`` are decayed strengths *as of the pair's own* ``last_ts``: an event at
  ``e`` of weight ``w`` adds ``w * 2^-((last_ts - e) / half_life)``; a later event first moves the
  stored value to its own time. The result does not depend on the order events arrive in, and
  scoring at any ``now >= last_ts`` multiplies by ``2^-((now - last_ts) / half_life)``
  (``decayed_strengths``);
* ``device, hour_of_day, country``: the context of the newest event; ``newest_ts`` its time;
* ``older_items, older_ts``: items of pairs that fell out of the history (at most
  ``max_seen - max_history``, the most recent), kept as ids only so that nothing the user already
  consumed is recommended back;
* ``served_items, served_counts``: how often each item was served since the user last reacted
  to it positively (the fatigue rule), fed by the exposure log.

It lives in two places built by the same rules: ``UserStateProcessor``, the stateful processor of
the scorer stream (Spark's ``transformWithStateInPandas``, RocksDB state store, checkpointed with
the stream), and ``user_states``, the batch transform over silver and the exposure log that seeds
the stream on its first start and that ``recsys score --once`` scores. The document is also what
the stream emits and what scoring reads (a string column: a row of plain columns costs a fraction
of nested arrays to move between the JVM and Python, once per user and batch). The store keeps it
with ``STATE_FORMAT`` beside it: a state from another format is refused, never reinterpreted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StatefulProcessor

from spark_jobs.common import names
from spark_jobs.common.errors import RecsysError
from spark_jobs.serving.tables import LAST_EVENT_TS
from spark_jobs.training.interactions import WEIGHT, event_weight

STATE_FORMAT = 2  # 1 was the driver-side scorer (whole history in driver memory, no state store)
DAY_S = 86_400.0

KIND = "kind"  # input rows: an event, or one served (user, item) of the exposure log
KIND_EVENT, KIND_SERVED = 0, 1
TS = "ts"  # event time, epoch seconds
FORMAT = "format"
ITEMS, VALUES, LAST_TS = "items", "values", "last_ts"
DEVICE, HOUR, COUNTRY = "device", "hour_of_day", "country"
NEWEST_TS = "newest_ts"
SERVED_ITEMS, SERVED_COUNTS = "served_items", "served_counts"
OLDER_ITEMS, OLDER_TS = "older_items", "older_ts"
N_EVENTS = "n_events"  # events folded in by this batch (output rows only)
BATCH_ITEMS = "batch_items"  # the item of each of those events (output rows only)

INPUT_SCHEMA = T.StructType(
    [
        T.StructField(names.USER_ID, T.StringType()),
        T.StructField(KIND, T.IntegerType()),
        T.StructField(names.ITEM_ID, T.StringType()),
        T.StructField(WEIGHT, T.DoubleType()),
        T.StructField(TS, T.DoubleType()),
        T.StructField(DEVICE, T.StringType()),
        T.StructField(HOUR, T.IntegerType()),
        T.StructField(COUNTRY, T.StringType()),
    ]
)
STATE = "state"  # the user's state document (JSON)
BUCKET = "bucket"  # the stream groups users by a hash bucket of their id (``with_bucket``)
USER_KEY_SCHEMA = T.StructType([T.StructField(names.USER_ID, T.StringType())])
STORED_SCHEMA = T.StructType(  # the value kept per user in the state store
    [T.StructField(FORMAT, T.IntegerType()), T.StructField(STATE, T.BinaryType())]
)
_STATE_FIELDS = [
    T.StructField(FORMAT, T.IntegerType()),
    T.StructField(ITEMS, T.ArrayType(T.StringType())),
    T.StructField(VALUES, T.ArrayType(T.DoubleType())),
    T.StructField(LAST_TS, T.ArrayType(T.DoubleType())),
    T.StructField(DEVICE, T.StringType()),
    T.StructField(HOUR, T.IntegerType()),
    T.StructField(COUNTRY, T.StringType()),
    T.StructField(NEWEST_TS, T.DoubleType()),
    T.StructField(SERVED_ITEMS, T.ArrayType(T.StringType())),
    T.StructField(SERVED_COUNTS, T.ArrayType(T.LongType())),
    T.StructField(OLDER_ITEMS, T.ArrayType(T.StringType())),
    T.StructField(OLDER_TS, T.ArrayType(T.DoubleType())),
]
STATE_SCHEMA = T.StructType(_STATE_FIELDS)  # the document's fields (``user_states`` builds it)
STATE_ROW_SCHEMA = T.StructType(  # one user's state as a row: initial state, --once
    [
        T.StructField(names.USER_ID, T.StringType()),
        T.StructField(STATE, T.StringType()),
        T.StructField(NEWEST_TS, T.DoubleType()),
    ]
)
OUTPUT_SCHEMA = T.StructType(  # what the stream emits for each user its batch touched
    [
        *STATE_ROW_SCHEMA.fields,
        T.StructField(N_EVENTS, T.LongType()),
        T.StructField(BATCH_ITEMS, T.StringType()),  # JSON list: the item of each event
    ]
)
STATE_COLUMNS = [f.name for f in STATE_SCHEMA.fields]
OUTPUT_COLUMNS = OUTPUT_SCHEMA.fieldNames()


class StateFormatError(RecsysError):
    """The scorer's state was written by another version of the scorer."""


# --- one user's state, in Python ------------------------------------------------------------------


@dataclass
class UserState:
    """One user's state while it is folded (plain Python: the processor's working copy)."""

    pairs: dict[str, tuple[float, float]] = field(default_factory=dict)  # item -> (value, last_ts)
    device: str | None = None
    hour_of_day: int | None = None
    country: str | None = None
    newest_ts: float | None = None
    served: dict[str, int] = field(default_factory=dict)
    older: dict[str, float] = field(default_factory=dict)  # item -> last_ts, out of the history

    @classmethod
    def stored(cls, value: Iterable[Any] | None, where: str) -> UserState:
        """From the state store's ``STORED_SCHEMA`` value; None is a user without state.

        (Spark 4.0's Python state API cannot read array fields back from the store: the document
        is stored as bytes.)
        """
        if value is None:
            return cls()
        found, payload = list(value)
        check_format(found, where)
        return cls.of(json.loads(bytes(payload)), where)

    def encoded(self) -> tuple[int, bytes]:
        """The ``STORED_SCHEMA`` value of this state."""
        return STATE_FORMAT, self.json().encode()

    @classmethod
    def of(cls, doc: dict[str, Any] | None, where: str = "the scorer state") -> UserState:
        """From a state document; None is a user without state."""
        if doc is None:
            return cls()
        check_format(doc.get(FORMAT), where)
        return cls(
            pairs={
                str(i): (float(v), float(t))
                for i, v, t in zip(doc.get(ITEMS, []), doc.get(VALUES, []), doc.get(LAST_TS, []), strict=True)
            },
            device=_text(doc.get(DEVICE)),
            hour_of_day=_int(doc.get(HOUR)),
            country=_text(doc.get(COUNTRY)),
            newest_ts=_float(doc.get(NEWEST_TS)),
            served={
                str(i): int(n)
                for i, n in zip(doc.get(SERVED_ITEMS, []), doc.get(SERVED_COUNTS, []), strict=True)
            },
            older={
                str(i): float(t) for i, t in zip(doc.get(OLDER_ITEMS, []), doc.get(OLDER_TS, []), strict=True)
            },
        )

    def document(self) -> dict[str, Any]:
        """The state document (items in id order: one canonical form)."""
        items, served, older = sorted(self.pairs), sorted(self.served), sorted(self.older)
        return {
            FORMAT: STATE_FORMAT,
            ITEMS: items,
            VALUES: [self.pairs[i][0] for i in items],
            LAST_TS: [self.pairs[i][1] for i in items],
            DEVICE: self.device,
            HOUR: self.hour_of_day,
            COUNTRY: self.country,
            NEWEST_TS: self.newest_ts,
            SERVED_ITEMS: served,
            SERVED_COUNTS: [self.served[i] for i in served],
            OLDER_ITEMS: older,
            OLDER_TS: [self.older[i] for i in older],
        }

    def json(self) -> str:
        return json.dumps(self.document(), separators=(",", ":"))


def check_format(found: object, where: str) -> None:
    """Refuse a state of another format in one line that says what to do."""
    if found != STATE_FORMAT:
        raise StateFormatError(
            f"scorer state at {where} was written by state format {found}; this scorer needs "
            f"{STATE_FORMAT}: run `recsys score --reset-state` to rebuild it from silver"
        )


def _text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _int(value: object) -> int | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else int(value)  # type: ignore[call-overload]


def _float(value: object) -> float | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)  # type: ignore[arg-type]


def fold_served(state: UserState, items: Iterable[str]) -> None:
    """Count one impression per served (user, item) row."""
    for item in items:
        state.served[item] = state.served.get(item, 0) + 1


def fold_events(
    state: UserState,
    events: pd.DataFrame,
    half_life_days: float,
    max_history: int,
    max_seen: int | None = None,
) -> None:
    """Fold a batch of the user's events (``item_id, weight, ts`` + context) into ``state``."""
    fold_event_rows(
        state,
        zip(
            events[names.ITEM_ID].astype(str),
            events[WEIGHT].astype(float),
            events[TS].astype(float),
            events[DEVICE],
            events[HOUR],
            events[COUNTRY],
            strict=True,
        ),
        half_life_days,
        max_history,
        max_seen,
    )


def fold_event_rows(
    state: UserState,
    rows: Iterable[tuple[str, float, float, object, object, object]],
    half_life_days: float,
    max_history: int,
    max_seen: int | None = None,
) -> None:
    """Fold events ``(item, weight, ts, device, hour_of_day, country)`` into ``state``.

    Exact decay whatever the order (see the module docstring); the newest event's context wins
    (the last one among equally new ones) unless an event already folded is newer; a positive
    event resets that item's impressions; only the ``max_history`` most recent pairs are kept
    (``bound``).
    Plain Python: a user's batch is a handful of events, where pandas would cost more than it does.
    """
    half_life_s = half_life_days * DAY_S
    latest: tuple | None = None
    for row in rows:
        item, weight, ts = row[0], float(row[1]), float(row[2])
        old_value, old_ts = state.pairs.get(item, (0.0, ts))
        last = max(old_ts, ts)
        value = _decay(old_value, last - old_ts, half_life_s) + _decay(weight, last - ts, half_life_s)
        state.older.pop(item, None)
        if value != 0.0:
            state.pairs[item] = (value, last)
        else:
            state.pairs.pop(item, None)
        if weight > 0:
            state.served.pop(item, None)
        if latest is None or ts >= latest[2]:
            latest = row
    if latest is not None and (state.newest_ts is None or float(latest[2]) >= state.newest_ts):
        state.device, state.hour_of_day, state.country = _text(latest[3]), _int(latest[4]), _text(latest[5])
        state.newest_ts = float(latest[2])
    bound(state, max_history, max_seen)


def _decay(value: float, seconds: float, half_life_s: float) -> float:
    """``value`` moved ``seconds`` later (no decay when the half-life is off)."""
    return value if half_life_s <= 0 else value * 0.5 ** (seconds / half_life_s)


def bound(state: UserState, max_history: int, max_seen: int | None = None) -> None:
    """Keep the ``max_history`` most recent pairs (the rest as ids among the ``max_seen`` most
    recent items seen) and the ``max_history`` most served items; ties by item id."""
    if len(state.pairs) > max_history:
        ranked = sorted(state.pairs, key=lambda i: (-state.pairs[i][1], i))
        state.older.update((i, state.pairs[i][1]) for i in ranked[max_history:])
        state.pairs = {i: state.pairs[i] for i in ranked[:max_history]}
    room = max(0, (max_seen if max_seen is not None else max_history) - len(state.pairs))
    if len(state.older) > room:
        recent = sorted(state.older, key=lambda i: (-state.older[i], i))[:room]
        state.older = {i: state.older[i] for i in recent}
    if len(state.served) > max_history:
        top = sorted(state.served, key=lambda i: (-state.served[i], i))[:max_history]
        state.served = {i: state.served[i] for i in top}


def decayed_strengths(
    values: np.ndarray, last_ts: np.ndarray, now_ts: float, half_life_days: float
) -> np.ndarray:
    """Stored pair values as of ``now_ts`` (pairs newer than it count at their own time)."""
    if half_life_days <= 0:
        return values
    age = np.maximum(now_ts - last_ts, 0.0)
    return values * np.power(0.5, age / (half_life_days * DAY_S))


# --- the stateful processor of the scorer stream -----------------------------------------------


class UserStateProcessor(StatefulProcessor):
    """``transformWithStateInPandas`` processor over ``INPUT_SCHEMA`` rows grouped by
    ``BUCKET`` (``with_bucket``), each user's document in a map state keyed by ``user_id``.

    It folds the batch into each user's state and emits the updated state (``OUTPUT_SCHEMA``) of
    the users the batch had events of; served rows alone update impressions silently. Grouping by
    a bucket of users rather than by user is what makes it cheap: Spark's Python state API costs
    a few milliseconds per group (Arrow frames both ways, socket calls), while a user inside a
    group costs its two state calls.
    """

    def __init__(self, half_life_days: float, max_history: int, max_seen: int, where: str) -> None:
        self.half_life_days = half_life_days
        self.max_history = max_history
        self.max_seen = max_seen
        self.where = where

    def init(self, handle: Any) -> None:
        self.users = handle.getMapState("users", USER_KEY_SCHEMA, STORED_SCHEMA)

    def handleInputRows(
        self, key: Any, rows: Iterator[pd.DataFrame], timerValues: Any
    ) -> Iterator[pd.DataFrame]:
        by_user: dict[str, list[tuple]] = {}
        for frame in rows:
            columns = [frame[c].tolist() for c in INPUT_SCHEMA.fieldNames()]
            for row in zip(*columns, strict=True):
                by_user.setdefault(str(row[0]), []).append(row)
        out = []
        for user_id, user_rows in by_user.items():
            user = UserState.stored(self.users.getValue((user_id,)), self.where)
            fold_served(user, (str(r[2]) for r in user_rows if r[1] == KIND_SERVED))
            events = [(str(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in user_rows if r[1] == KIND_EVENT]
            fold_event_rows(user, events, self.half_life_days, self.max_history, self.max_seen)
            document = user.json()
            self.users.updateValue((user_id,), (STATE_FORMAT, document.encode()))
            if events:
                out.append(
                    (user_id, document, user.newest_ts, len(events), json.dumps([e[0] for e in events]))
                )
        if out:
            yield pd.DataFrame(out, columns=OUTPUT_COLUMNS)

    def handleInitialState(self, key: Any, initialState: pd.DataFrame, timerValues: Any) -> None:
        for user_id, document in zip(initialState[names.USER_ID], initialState[STATE], strict=True):
            user = UserState.of(json.loads(document), self.where)
            self.users.updateValue((str(user_id),), user.encoded())

    def close(self) -> None:
        pass


def with_bucket(rows: DataFrame, buckets: int) -> DataFrame:
    """``rows`` plus ``BUCKET``, the stream's grouping key: a stable hash of the user id."""
    return rows.withColumn(BUCKET, F.pmod(F.xxhash64(names.USER_ID), F.lit(buckets)).cast("int"))


# --- the same state as a batch transform -------------------------------------------------------


def event_inputs(events: DataFrame) -> DataFrame:
    """Silver events -> processor input rows (``INPUT_SCHEMA``, kind = event)."""
    ctx = names.CONTEXT
    return events.select(
        names.USER_ID,
        F.lit(KIND_EVENT).alias(KIND),
        names.ITEM_ID,
        event_weight().alias(WEIGHT),
        F.col(names.EVENT_TS).cast("double").alias(TS),
        F.col(f"{ctx}.device").alias(DEVICE),
        F.col(f"{ctx}.hour_of_day").cast("int").alias(HOUR),
        F.col(f"{ctx}.country").alias(COUNTRY),
    )


def served_inputs(log: DataFrame) -> DataFrame:
    """Exposure log rows -> processor input rows (kind = served): one per (user, item) served."""
    none = F.lit(None)
    return log.where(F.col(names.ITEM_ID).isNotNull()).select(
        names.USER_ID,
        F.lit(KIND_SERVED).alias(KIND),
        names.ITEM_ID,
        F.lit(0.0).alias(WEIGHT),
        none.cast("double").alias(TS),
        none.cast("string").alias(DEVICE),
        none.cast("int").alias(HOUR),
        none.cast("string").alias(COUNTRY),
    )


def _decay_col(seconds: Column, half_life_days: float) -> Column:
    if half_life_days <= 0:
        return F.lit(1.0)
    return F.pow(F.lit(0.5), seconds / (half_life_days * DAY_S))


def user_states(
    events: DataFrame,
    log: DataFrame | None,
    half_life_days: float,
    max_history: int,
    max_seen: int | None = None,
) -> DataFrame:
    """Every user's state row (``STATE_ROW_SCHEMA``) from their events and served lists at once,
    by the same rules as folding them one by one: window functions per user, on the executors.

    Users with served lists but no events get no state (nothing to score them on).
    """
    rows = event_inputs(events)
    by_pair = Window.partitionBy(names.USER_ID, names.ITEM_ID)
    pairs = (
        rows.withColumn("_last", F.max(TS).over(by_pair))
        .groupBy(names.USER_ID, names.ITEM_ID)
        .agg(
            F.sum(F.col(WEIGHT) * _decay_col(F.col("_last") - F.col(TS), half_life_days)).alias("_v"),
            F.max(TS).alias("_t"),
        )
        .where(F.col("_v") != 0.0)
        .withColumn(
            "_r",
            F.row_number().over(
                Window.partitionBy(names.USER_ID).orderBy(F.desc("_t"), F.asc(names.ITEM_ID))
            ),
        )
        .where(F.col("_r") <= max(max_seen or 0, max_history))
        .groupBy(names.USER_ID)
        .agg(
            F.sort_array(
                F.collect_list(F.when(F.col("_r") <= max_history, F.struct(names.ITEM_ID, "_v", "_t")))
            ).alias("_p"),
            F.sort_array(
                F.collect_list(F.when(F.col("_r") > max_history, F.struct(names.ITEM_ID, "_t")))
            ).alias("_o"),
        )
    )
    latest = Window.partitionBy(names.USER_ID).orderBy(F.desc(TS))
    context = (
        rows.withColumn("_r", F.row_number().over(latest))
        .where(F.col("_r") == 1)
        .select(names.USER_ID, DEVICE, HOUR, COUNTRY, F.col(TS).alias(NEWEST_TS))
    )
    users = context.join(pairs, names.USER_ID, "left")
    if log is not None:
        users = users.join(_served(log, rows, max_history), names.USER_ID, "left")
    else:
        users = users.withColumn("_s", F.lit(None).cast("array<struct<item_id:string,n:bigint>>"))
    strings, doubles = F.array().cast("array<string>"), F.array().cast("array<double>")
    document = F.struct(
        F.lit(STATE_FORMAT).alias(FORMAT),
        F.coalesce(F.col(f"_p.{names.ITEM_ID}"), strings).alias(ITEMS),
        F.coalesce(F.col("_p._v"), doubles).alias(VALUES),
        F.coalesce(F.col("_p._t"), doubles).alias(LAST_TS),
        DEVICE,
        HOUR,
        COUNTRY,
        NEWEST_TS,
        F.coalesce(F.col(f"_s.{names.ITEM_ID}"), strings).alias(SERVED_ITEMS),
        F.coalesce(F.col("_s.n"), F.array().cast("array<bigint>")).alias(SERVED_COUNTS),
        F.coalesce(F.col(f"_o.{names.ITEM_ID}"), strings).alias(OLDER_ITEMS),
        F.coalesce(F.col("_o._t"), doubles).alias(OLDER_TS),
    )
    return users.select(names.USER_ID, F.to_json(document).alias(STATE), NEWEST_TS)


def _served(log: DataFrame, rows: DataFrame, max_history: int) -> DataFrame:
    """Per user, how often each item was served, counting only lists served after the user's last
    positive event on it (by ``last_event_ts``, the newest event the list accounted for)."""
    positive = (
        rows.where(F.col(WEIGHT) > 0).groupBy(names.USER_ID, names.ITEM_ID).agg(F.max(TS).alias("_pos"))
    )
    served = (
        log.where(F.col(names.ITEM_ID).isNotNull())
        .select(names.USER_ID, names.ITEM_ID, F.col(LAST_EVENT_TS).cast("double").alias("_at"))
        .join(positive, [names.USER_ID, names.ITEM_ID], "left")
        .where(F.col("_pos").isNull() | (F.col("_at") >= F.col("_pos")))
        .groupBy(names.USER_ID, names.ITEM_ID)
        .agg(F.count(F.lit(1)).alias("n"))
        .withColumn(
            "_r",
            F.row_number().over(Window.partitionBy(names.USER_ID).orderBy(F.desc("n"), F.asc(names.ITEM_ID))),
        )
        .where(F.col("_r") <= max_history)
    )
    return served.groupBy(names.USER_ID).agg(
        F.sort_array(F.collect_list(F.struct(names.ITEM_ID, "n"))).alias("_s")
    )

"""Column names and Delta schemas of ``recsys.user_features`` and ``recsys.item_features``.

Decayed values are stored *as of* ``decay_ts`` (an event time, never the wall clock): a reader
that wants them at another time ``at`` multiplies by ``2^-((at - decay_ts) / half_life)``
(``transforms.decayed_as_of``). Recency is stored as ``last_event_ts`` for the same reason:
"seconds since" depends on when it is read.
"""

from __future__ import annotations

from pyspark.sql import types as T

from spark_jobs.common import names

# Both tables.
LAST_EVENT_TS = "last_event_ts"
N_EVENTS = "n_events"
DECAY_TS = "decay_ts"  # event time the decayed columns are expressed at
UPDATED_TS = "updated_ts"  # wall-clock time of the micro-batch that last changed the row

# recsys.user_features
N_EVENTS_7D = "n_events_7d"
DAILY_EVENTS = "daily_events"  # UTC day -> events, the days of the frequency window only
CATEGORY_AFFINITY = "category_affinity"
LAST_ITEMS = "last_items"
LAST_ITEMS_TS = "last_items_ts"  # latest interaction with each of last_items, to merge late events
N_SESSIONS = "n_sessions"
N_SESSION_EVENTS = "n_session_events"
MEAN_EVENTS_PER_SESSION = "mean_events_per_session"
LAST_SESSION_ID = "last_session_id"
DEVICE = "device"
COUNTRY = "country"

# recsys.item_features
N_USERS = "n_users"
USERS_SKETCH = "users_sketch"  # HLL sketch of distinct users, so n_users can grow batch by batch
POPULARITY = "popularity"
TRENDING = "trending"
VIEWS = "views"
CLICKS = "clicks"
CTR = "ctr"

# recsys.items
CATEGORIES = names.CATEGORIES

# Batch-only column: the sessions seen in one micro-batch (not stored).
BATCH_SESSIONS = "_batch_sessions"

# n_events_7d counts the events of the 7 UTC days that end on the day of decay_ts.
FREQUENCY_WINDOW_DAYS = 7
HLL_LG_CONFIG_K = 12  # 4096 buckets: about 1.6% error; exact while an item has few users

USER_FEATURES_SCHEMA = T.StructType(
    [
        T.StructField(names.USER_ID, T.StringType(), nullable=False),
        T.StructField(LAST_EVENT_TS, T.TimestampType(), nullable=False),
        T.StructField(N_EVENTS, T.LongType(), nullable=False),
        T.StructField(N_EVENTS_7D, T.LongType(), nullable=False),
        T.StructField(DAILY_EVENTS, T.MapType(T.DateType(), T.LongType()), nullable=False),
        T.StructField(
            CATEGORY_AFFINITY,
            T.MapType(T.StringType(), T.DoubleType()),
            nullable=False,
        ),
        T.StructField(LAST_ITEMS, T.ArrayType(T.StringType()), nullable=False),
        T.StructField(LAST_ITEMS_TS, T.ArrayType(T.TimestampType()), nullable=False),
        T.StructField(N_SESSIONS, T.LongType(), nullable=False),
        T.StructField(N_SESSION_EVENTS, T.LongType(), nullable=False),
        T.StructField(MEAN_EVENTS_PER_SESSION, T.DoubleType()),
        T.StructField(LAST_SESSION_ID, T.StringType()),
        T.StructField(DEVICE, T.StringType()),
        T.StructField(COUNTRY, T.StringType()),
        T.StructField(DECAY_TS, T.TimestampType(), nullable=False),
        T.StructField(UPDATED_TS, T.TimestampType(), nullable=False),
    ]
)

ITEM_FEATURES_SCHEMA = T.StructType(
    [
        T.StructField(names.ITEM_ID, T.StringType(), nullable=False),
        T.StructField(LAST_EVENT_TS, T.TimestampType(), nullable=False),
        T.StructField(N_EVENTS, T.LongType(), nullable=False),
        T.StructField(N_USERS, T.LongType(), nullable=False),
        T.StructField(USERS_SKETCH, T.BinaryType(), nullable=False),
        T.StructField(POPULARITY, T.DoubleType(), nullable=False),
        T.StructField(TRENDING, T.DoubleType(), nullable=False),
        T.StructField(VIEWS, T.LongType(), nullable=False),
        T.StructField(CLICKS, T.LongType(), nullable=False),
        T.StructField(CTR, T.DoubleType(), nullable=False),
        T.StructField(DECAY_TS, T.TimestampType(), nullable=False),
        T.StructField(UPDATED_TS, T.TimestampType(), nullable=False),
    ]
)

USER_FEATURE_COLUMNS = tuple(USER_FEATURES_SCHEMA.fieldNames())
ITEM_FEATURE_COLUMNS = tuple(ITEM_FEATURES_SCHEMA.fieldNames())

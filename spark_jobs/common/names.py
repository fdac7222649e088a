"""The one place for table, column and topic names.

Every module refers to tables through these constants so that a rename is one edit and a
reader can grep for where a table is written and read. Table names are unqualified here;
``qualified()`` adds the database.
"""

from __future__ import annotations

DATABASE = "recsys"
TOPIC_EVENTS = "recsys.events"

# Tables (database `recsys`, Delta). See ARCHITECTURE.md for their contracts.
EVENTS_BRONZE = "events_bronze"
EVENTS = "events"
EVENTS_QUARANTINE = "events_quarantine"
ITEMS = "items"
USERS = "users"
USER_FEATURES = "user_features"
ITEM_FEATURES = "item_features"
RECOMMENDATIONS = "recommendations"
DRIFT_REPORTS = "drift_reports"
QUALITY_RESULTS = "quality_results"
ERASURE_REQUESTS = "erasure_requests"
ERASURE_AUDIT = "erasure_audit"
# Every list the scorer served (append-only exposure log): CTR per A/B variant is computed from it.
RECOMMENDATION_LOG = "recommendation_log"
# ALS factors of every registered version (``model_version`` = the recsys_als version).
USER_FACTORS = "user_factors"
ITEM_FACTORS = "item_factors"

# Views over the tables (created with the tables, in the same database).
VIEW_USER_TOP_N = "user_top_n"
VIEW_CTR_BY_VARIANT = "ctr_by_variant"

ALL_TABLES = (
    EVENTS_BRONZE,
    EVENTS,
    EVENTS_QUARANTINE,
    ITEMS,
    USERS,
    USER_FEATURES,
    ITEM_FEATURES,
    RECOMMENDATIONS,
    DRIFT_REPORTS,
    QUALITY_RESULTS,
    ERASURE_REQUESTS,
    ERASURE_AUDIT,
    RECOMMENDATION_LOG,
    USER_FACTORS,
    ITEM_FACTORS,
)

# Registered MLflow models.
MODEL_ALS = "recsys_als"
MODEL_RANKER = "recsys_ranker"
ALIAS_CHAMPION = "champion"
ALIAS_CHALLENGER = "challenger"

# Event fields (contract, schema_version 1).
EVENT_ID = "event_id"
EVENT_TYPE = "event_type"
USER_ID = "user_id"
ITEM_ID = "item_id"
SESSION_ID = "session_id"
EVENT_TS = "event_ts"
DWELL_MS = "dwell_ms"
SCROLL_DEPTH = "scroll_depth"
VALUE = "value"
CONTEXT = "context"
SCHEMA_VERSION = "schema_version"

# Catalog columns (recsys.items): the item's display name and its categories, first = primary.
TITLE = "title"
CATEGORIES = "categories"

# Columns added by the lakehouse.
EVENT_DATE = "event_date"
INGEST_TS = "ingest_ts"
REASON = "reason"

# Kafka record columns kept in bronze and quarantine.
KAFKA_KEY = "key"
KAFKA_VALUE = "value"
KAFKA_TOPIC = "topic"
KAFKA_PARTITION = "partition"
KAFKA_OFFSET = "offset"
KAFKA_TS = "kafka_ts"

# Streaming query names (also the names of their checkpoint folders).
QUERY_INGEST = "ingest"  # Kafka -> bronze + silver + quarantine, one query (the live path)
QUERY_BRONZE = "ingest_bronze"  # the staged pair: Kafka -> bronze ...
QUERY_SILVER = "ingest_silver"  # ... and bronze -> silver (rebuilds)
QUERY_FEATURES = "features"
QUERY_SCORER = "scorer"

# Serving table columns (recommendations / recommendation_log) beyond the event fields.
RANK = "rank"
SCORE = "score"
MODEL_VERSION = "model_version"
VARIANT = "variant"
GENERATED_AT = "generated_at"
VARIANT_CHAMPION = "champion"
VARIANT_CHALLENGER = "challenger"


def qualified(table: str, database: str = DATABASE) -> str:
    """Return ``database.table`` for a table name from this module."""
    return f"{database}.{table}"

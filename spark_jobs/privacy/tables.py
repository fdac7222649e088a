"""The two Delta tables of the erasure process: requests (the work queue) and the audit trail.

Their names live here until they join ``spark_jobs.common.names``. Neither keeps the raw user
id once a request is done: the request row keeps only a SHA-256 of it, which is what an
auditor needs to answer "was user X erased, and when?" without the lakehouse still holding X.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table

ERASURE_REQUESTS = names.ERASURE_REQUESTS
ERASURE_AUDIT = names.ERASURE_AUDIT
PRIVACY_TABLES = (ERASURE_REQUESTS, ERASURE_AUDIT)

REQUEST_ID = "request_id"
USER_ID_SHA256 = "user_id_sha256"
REQUESTED_AT = "requested_at"
STATUS = "status"
PROCESSED_AT = "processed_at"
ROWS_DELETED = "rows_deleted"
TABLES_VACUUMED = "tables_vacuumed"
ERASED_AT = "erased_at"

STATUS_PENDING = "pending"
STATUS_DONE = "done"

REQUESTS_SCHEMA = T.StructType(
    [
        T.StructField(REQUEST_ID, T.StringType(), nullable=False),
        T.StructField(names.USER_ID, T.StringType()),  # nulled once the request is done
        T.StructField(USER_ID_SHA256, T.StringType(), nullable=False),
        T.StructField(REQUESTED_AT, T.TimestampType(), nullable=False),
        T.StructField(STATUS, T.StringType(), nullable=False),
        T.StructField(PROCESSED_AT, T.TimestampType()),
    ]
)
AUDIT_SCHEMA = T.StructType(
    [
        T.StructField(REQUEST_ID, T.StringType(), nullable=False),
        T.StructField(USER_ID_SHA256, T.StringType(), nullable=False),
        T.StructField(ROWS_DELETED, T.MapType(T.StringType(), T.LongType()), nullable=False),
        T.StructField(TABLES_VACUUMED, T.ArrayType(T.StringType()), nullable=False),
        T.StructField(ERASED_AT, T.TimestampType(), nullable=False),
    ]
)


def ensure_privacy_tables(spark: SparkSession, config: Config) -> None:
    """Create ``recsys.erasure_requests`` and ``recsys.erasure_audit`` if missing (idempotent)."""
    ensure_table(spark, config, ERASURE_REQUESTS, REQUESTS_SCHEMA)
    ensure_table(spark, config, ERASURE_AUDIT, AUDIT_SCHEMA)

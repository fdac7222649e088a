"""Ingest transforms on inline rows: whole output frames, schemas included, not counts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from spark_jobs.common.errors import DataFrameMissingColumnError
from spark_jobs.contract.events import Limits, silver_schema
from spark_jobs.ingest.tables import BRONZE_SCHEMA, QUARANTINE_SCHEMA
from spark_jobs.ingest.transforms import to_bronze, to_quarantine, to_silver
from spark_jobs.ingest.validate import validate_records

pytestmark = pytest.mark.spark

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
INGEST = datetime(2026, 3, 1, 9, 0, 5, tzinfo=UTC)
E1 = "11111111-1111-4111-8111-111111111111"
E2 = "22222222-2222-4222-8222-222222222222"


def _event(event_id: str, **extra: object) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": "dwell",
            "user_id": "u1",
            "item_id": "i9",
            "event_ts": "2026-03-01T08:59:00Z",
            "schema_version": 1,
            **extra,
        }
    )


def _bronze(spark, rows):
    return spark.createDataFrame(
        [(None, v, "recsys.events", p, o, T0, INGEST) for v, p, o in rows],
        "key string, value string, topic string, partition int, offset long,"
        " kafka_ts timestamp, ingest_ts timestamp",
    )


def test_to_bronze_keeps_raw_text_and_coordinates(spark) -> None:
    kafka = spark.createDataFrame(
        [
            (b"u1", b'{"a":1}', "recsys.events", 0, 7, T0),
            (None, b"\xff\xfe", "recsys.events", 1, 3, T0),
        ],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    expected = [
        {
            "key": "u1",
            "value": '{"a":1}',
            "topic": "recsys.events",
            "partition": 0,
            "offset": 7,
            "kafka_ts": T0.replace(tzinfo=None),
            "ingest_ts": INGEST.replace(tzinfo=None),
        },
        {
            "key": None,
            "value": "\ufffd\ufffd",
            "topic": "recsys.events",
            "partition": 1,
            "offset": 3,
            "kafka_ts": T0.replace(tzinfo=None),
            "ingest_ts": INGEST.replace(tzinfo=None),
        },
    ]
    assertDataFrameEqual(to_bronze(kafka, F.lit(INGEST)), spark.createDataFrame(expected, BRONZE_SCHEMA))


def test_to_bronze_names_missing_columns(spark) -> None:
    with pytest.raises(DataFrameMissingColumnError, match="timestamp"):
        to_bronze(spark.createDataFrame([(1,)], "value int"), F.lit(INGEST))


def test_silver_keeps_first_copy_and_types_fields(spark) -> None:
    bronze = _bronze(
        spark,
        [
            (_event(E1, dwell_ms=1500, context={"device": "mobile", "hour_of_day": 9}), 1, 2),
            (_event(E1, dwell_ms=1500, context={"device": "mobile", "hour_of_day": 9}), 0, 5),
            (_event(E2, event_type="rating", value=4, event_ts=1772355540000), 0, 6),
            ('{"event_id": 5}', 1, 3),
        ],
    )
    validated = validate_records(bronze, Limits())
    base = {
        "user_id": "u1",
        "item_id": "i9",
        "session_id": None,
        "scroll_depth": None,
        "schema_version": 1,
        "event_date": date(2026, 3, 1),
        "ingest_ts": INGEST.replace(tzinfo=None),
    }
    expected = [
        {
            **base,
            "event_id": E1,
            "event_type": "dwell",
            "event_ts": datetime(2026, 3, 1, 8, 59),
            "dwell_ms": 1500,
            "value": None,
            "context": {"device": "mobile", "country": None, "referrer": None, "hour_of_day": 9},
        },
        {
            **base,
            "event_id": E2,
            "event_type": "rating",
            "event_ts": datetime(2026, 3, 1, 8, 59),
            "dwell_ms": None,
            "value": 4.0,
            "context": None,
        },
    ]
    assertDataFrameEqual(to_silver(validated), spark.createDataFrame(expected, silver_schema()))


def test_quarantine_has_reason_raw_value_and_coordinates(spark) -> None:
    bronze = _bronze(spark, [(_event(E1), 0, 1), ('{"event_id": 5}', 1, 3)])
    expected = [
        {
            "value": '{"event_id": 5}',
            "reason": "wrong_type:event_id; missing_field:event_type; missing_field:user_id; "
            "missing_field:item_id; missing_field:event_ts; missing_field:schema_version",
            "topic": "recsys.events",
            "partition": 1,
            "offset": 3,
            "key": None,
            "kafka_ts": T0.replace(tzinfo=None),
            "ingest_ts": INGEST.replace(tzinfo=None),
        }
    ]
    quarantined = to_quarantine(validate_records(bronze, Limits()))
    assertDataFrameEqual(quarantined, spark.createDataFrame(expected, QUARANTINE_SCHEMA))

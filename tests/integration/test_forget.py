"""GDPR erasure on real Delta tables: the user's rows are gone now, from old versions and from disk."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table
from spark_jobs.ingest.tables import BRONZE_SCHEMA, QUARANTINE_SCHEMA, ensure_ingest_tables
from spark_jobs.privacy import erasure
from spark_jobs.privacy import tables as pt

pytestmark = [pytest.mark.integration, pytest.mark.spark]

T0 = datetime(2026, 3, 1, 9, 0)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FEATURES_SCHEMA = T.StructType(
    [T.StructField(names.USER_ID, T.StringType()), T.StructField("frequency", T.LongType())]
)
RECS_SCHEMA = T.StructType(
    [
        T.StructField(names.USER_ID, T.StringType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField(names.ITEM_ID, T.StringType()),
    ]
)


def _value(user: object, n: int) -> str:
    return json.dumps({"event_id": f"e{n}", "user_id": user, "item_id": "i1"})


def _append(spark, config: Config, table: str, rows: list[tuple], schema: T.StructType) -> None:
    spark.createDataFrame(rows, schema).write.format("delta").mode("append").save(config.table_path(table))


def _silver(spark, rows: list[tuple[str, str]]):
    from spark_jobs.contract.events import silver_schema

    data = [
        (
            f"{n:08d}-0000-4000-8000-000000000000",
            "click",
            u,
            "i1",
            None,
            T0,
            None,
            None,
            None,
            None,
            1,
            date(2026, 3, 1),
            T0,
        )
        for n, u in rows
    ]
    return spark.createDataFrame(data, silver_schema())


def _load_lakehouse(spark, config: Config) -> None:
    """Users u1 and u2 in every table that holds user ids; u1 also in records keyed wrongly.

    One commit per table after its creation: that version is the "old version" time travel
    must not bring u1 back from once the erasure has committed and vacuumed.
    """
    ensure_ingest_tables(spark, config)
    ensure_table(spark, config, names.USER_FEATURES, FEATURES_SCHEMA)
    ensure_table(spark, config, names.RECOMMENDATIONS, RECS_SCHEMA)
    bronze = [
        ("u1", _value("u1", 0), "t", 0, 0, T0, T0),
        (None, _value("u1", 1), "t", 0, 1, T0, T0),  # no key: found by the value's user_id
        ("u1", "{broken", "t", 0, 2, T0, T0),  # not JSON: found by key
        ("u2", _value("u2", 3), "t", 1, 3, T0, T0),
    ]
    quarantine = [
        ("{broken", "invalid_json", "t", 0, 2, "u1", T0, T0),
        (_value(7, 4), "wrong_type:user_id", "t", 1, 4, "u2", T0, T0),
    ]
    _append(spark, config, names.EVENTS_BRONZE, bronze, BRONZE_SCHEMA)
    _append(spark, config, names.EVENTS_QUARANTINE, quarantine, QUARANTINE_SCHEMA)
    _silver(spark, [(0, "u1"), (3, "u2")]).write.format("delta").mode("append").save(
        config.table_path(names.EVENTS)
    )
    _append(spark, config, names.USER_FEATURES, [("u1", 1), ("u2", 1)], FEATURES_SCHEMA)
    _append(spark, config, names.RECOMMENDATIONS, [("u1", 1, "i9"), ("u2", 1, "i9")], RECS_SCHEMA)
    from spark_jobs.produce.catalog import upsert_table, users_df

    upsert_table(spark, config, names.USERS, users_df(spark, [{"user_id": "u1"}, {"user_id": "u2"}]), T0)


TABLES = (
    names.EVENTS_BRONZE,
    names.EVENTS,
    names.EVENTS_QUARANTINE,
    names.USERS,
    names.USER_FEATURES,
    names.RECOMMENDATIONS,
)


def _mentions(df, user: str):
    """Rows of any of our tables that mention ``user`` anywhere (any column, raw JSON included)."""
    text = F.concat_ws("|", *[F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("")) for c in df.columns])
    return df.where(
        text.contains(f'"{user}"')
        | text.contains(f"|{user}|")
        | text.startswith(f"{user}|")
        | text.endswith(f"|{user}")
        | (text == user)
    )


def _user_rows(spark, config: Config, table: str, user: str, version: int | None = None) -> int:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return _mentions(reader.load(config.table_path(table)), user).count()


def _versions(spark, config: Config, table: str) -> list[int]:
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, config.table_path(table)).history().select("version")
    return sorted(r[0] for r in history.collect())


def _old_version_rows(spark, config: Config, table: str, user: str, version: int) -> int:
    """Rows time travel returns for ``user``; a version whose files were vacuumed returns none."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        return _user_rows(spark, config, table, user, version)
    except (PySparkException, Py4JJavaError) as err:
        assert "FileNotFound" in str(err) or "does not exist" in str(err) or "FILE_NOT_FOUND" in str(err), err
        return 0


def test_forget_erases_user_everywhere_including_old_versions(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    _load_lakehouse(spark, config)
    before = {t: _user_rows(spark, config, t, "u1") for t in TABLES}
    assert before == {
        names.EVENTS_BRONZE: 3,
        names.EVENTS: 1,
        names.EVENTS_QUARANTINE: 1,
        names.USERS: 1,
        names.USER_FEATURES: 1,
        names.RECOMMENDATIONS: 1,
    }
    old_versions = {t: _versions(spark, config, t) for t in TABLES}

    request = erasure.record_request(spark, config, "u1", NOW)
    assert erasure.record_request(spark, config, " u1 ", NOW) == request  # one pending request
    erasure.record_request(spark, config, "u2", NOW)  # recorded only, left for the maintenance run
    result = erasure.process_requests(spark, config, NOW, user_ids=["u1"])  # forget --user u1 --now

    assert result.request_ids == (request,)
    assert {t: result.rows_deleted[t] for t in TABLES} == before
    assert set(result.tables_vacuumed) == set(TABLES)
    # Gone now, from every version that existed before the erasure, and from the files on disk.
    for table in TABLES:
        assert _user_rows(spark, config, table, "u1") == 0, table
        for version in old_versions[table]:
            assert _old_version_rows(spark, config, table, "u1", version) == 0, (table, version)
        assert _mentions(spark.read.parquet(config.table_path(table)), "u1").count() == 0, table
    # u2 (request pending) is untouched.
    assert {t: _user_rows(spark, config, t, "u2") for t in TABLES} == dict.fromkeys(TABLES, 1)
    # The audit row and the finished request keep only the hash of the id.
    audit = spark.read.format("delta").load(config.table_path(pt.ERASURE_AUDIT)).collect()
    assert [(r.request_id, r.user_id_sha256, r.erased_at) for r in audit] == [
        (request, erasure.user_hash("u1"), NOW.replace(tzinfo=None))
    ]
    assert {t: audit[0].rows_deleted[t] for t in TABLES} == before
    assert set(audit[0].tables_vacuumed) == set(TABLES)
    requests = spark.read.format("delta").load(config.table_path(pt.ERASURE_REQUESTS))
    assert [r.asDict() for r in requests.where("status = 'done'").collect()] == [
        {
            "request_id": request,
            "user_id": None,
            "user_id_sha256": erasure.user_hash("u1"),
            "requested_at": NOW.replace(tzinfo=None),
            "status": "done",
            "processed_at": NOW.replace(tzinfo=None),
        }
    ]
    assert _mentions(spark.read.parquet(config.table_path(pt.ERASURE_REQUESTS)), "u1").count() == 0

    # The maintenance run processes what is pending (u2); a rerun finds nothing to do.
    assert [u for _, u in erasure.pending_requests(spark, config)] == ["u2"]
    result = erasure.process_requests(spark, config, NOW)
    assert result.rows_deleted == {
        names.EVENTS_BRONZE: 1,
        names.EVENTS: 1,
        names.EVENTS_QUARANTINE: 1,
        names.USERS: 1,
        names.USER_FEATURES: 1,
        names.RECOMMENDATIONS: 1,
    }
    assert _user_rows(spark, config, names.EVENTS_BRONZE, "u2") == 0
    assert erasure.process_requests(spark, config, NOW) == erasure.ErasureResult()
    assert spark.read.format("delta").load(config.table_path(pt.ERASURE_AUDIT)).count() == 2

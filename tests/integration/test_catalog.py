"""``recsys.items`` / ``recsys.users``: exact rows after an upsert, and re-running changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import DataFrameMissingColumnError, RecsysError
from spark_jobs.produce import catalog
from spark_jobs.produce.catalog import UpsertCounts

pytestmark = pytest.mark.spark

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
ITEMS = [
    {
        "item_id": "i1",
        "title": "Quiet Orbit",
        "categories": ["science", "tech"],
        "length_s": 240,
        "created_ts": datetime(2024, 1, 1, tzinfo=UTC),
        "source": "synthetic",
    },
    {
        "item_id": "2",
        "title": "GoldenEye (1995)",
        "categories": ["Action", "Adventure", "Thriller"],
        "length_s": None,
        "created_ts": None,
        "source": "movielens",
        "imdb_url": "http://us.imdb.com/M/title-exact?GoldenEye%20(1995)",  # not a column
    },
]
USERS = [
    {
        "user_id": "1",
        "age_band": "18-24",
        "gender": "M",
        "occupation": "technician",
        "country": "US",
        "consent_personalization": True,
        "consent_analytics": True,
        "created_ts": datetime(1997, 9, 22, 21, 57, 58, tzinfo=UTC),
        "source": "movielens",
    }
]


@pytest.fixture()
def lake(spark: Any, config: Config, tmp_path: Path) -> Iterator[Config]:
    """A config whose tables live under this test's own folder; the catalog entries are dropped
    before and after, so no other test sees tables pointing here."""
    isolated = dataclasses.replace(config, lakehouse_root=str(tmp_path / "lakehouse"))

    def drop() -> None:
        for table in (names.ITEMS, names.USERS):
            spark.sql(f"DROP TABLE IF EXISTS {isolated.table(table)}")

    drop()
    yield isolated
    drop()


def expected_items(spark: Any, stamps: dict[str, datetime]) -> list[Any]:
    rows = [{**r, "updated_ts": stamps[r["item_id"]]} for r in ITEMS]
    return sorted(catalog.items_df(spark, rows).collect())


def table_rows(spark: Any, lake: Config, table: str) -> list[Any]:
    return sorted(spark.table(lake.table(table)).collect())


def test_first_upsert_creates_tables_with_exact_rows(spark: Any, lake: Config) -> None:
    counts = catalog.upsert_catalog(
        spark, lake, catalog.items_df(spark, ITEMS), catalog.users_df(spark, USERS), T0
    )
    assert counts == [
        UpsertCounts("recsys.items", inserted=2, updated=0),
        UpsertCounts("recsys.users", inserted=1, updated=0),
    ]
    assert table_rows(spark, lake, names.ITEMS) == expected_items(spark, {"i1": T0, "2": T0})
    assert table_rows(spark, lake, names.USERS) == sorted(
        catalog.users_df(spark, [{**USERS[0], "updated_ts": T0}]).collect()
    )
    items = spark.table(lake.table(names.ITEMS))
    assert items.columns == catalog.ITEMS_SCHEMA.fieldNames()
    assert [f.dataType for f in items.schema] == [f.dataType for f in catalog.ITEMS_SCHEMA]
    detail = spark.sql(f"DESCRIBE DETAIL {lake.table(names.ITEMS)}").first()
    assert detail["format"] == "delta"
    assert detail["location"].rstrip("/").endswith(lake.table_path(names.ITEMS))


def test_upsert_twice_changes_nothing_then_only_what_changed(spark: Any, lake: Config) -> None:
    def upsert(items: list[dict[str, Any]], now: datetime) -> list[UpsertCounts]:
        frames = catalog.items_df(spark, items), catalog.users_df(spark, USERS)
        return catalog.upsert_catalog(spark, lake, *frames, now)

    upsert(ITEMS, T0)
    first_items = table_rows(spark, lake, names.ITEMS)
    first_users = table_rows(spark, lake, names.USERS)

    assert upsert(ITEMS, T1) == [
        UpsertCounts("recsys.items", inserted=0, updated=0),
        UpsertCounts("recsys.users", inserted=0, updated=0),
    ]
    assert table_rows(spark, lake, names.ITEMS) == first_items
    assert table_rows(spark, lake, names.USERS) == first_users

    renamed = {**ITEMS[0], "title": "Quiet Orbit (remastered)"}
    new = {**ITEMS[0], "item_id": "i3", "categories": []}
    counts = upsert([renamed, ITEMS[1], new], T1)
    assert counts[0] == UpsertCounts("recsys.items", inserted=1, updated=1)
    expected = sorted(
        catalog.items_df(
            spark,
            [
                {**renamed, "updated_ts": T1},
                {**ITEMS[1], "updated_ts": T0},
                {**new, "updated_ts": T1},
            ],
        ).collect()
    )
    assert table_rows(spark, lake, names.ITEMS) == expected


def test_rows_are_checked_before_spark_sees_them(spark: Any, lake: Config) -> None:
    with pytest.raises(RecsysError, match="catalog rows repeat item_id i1"):
        catalog.items_df(spark, [ITEMS[0], ITEMS[0]])
    with pytest.raises(RecsysError, match="catalog row 0 has no user_id"):
        catalog.users_df(spark, [{"age_band": "18-24"}])
    partial = spark.createDataFrame([("i9", "t")], "item_id string, title string")
    with pytest.raises(DataFrameMissingColumnError, match=r"lack column.*categories"):
        catalog.upsert_catalog(spark, lake, partial, None, T0)
    with pytest.raises(ValueError, match="now_ts must be timezone-aware"):
        catalog.upsert_catalog(spark, lake, None, None, T0.replace(tzinfo=None))

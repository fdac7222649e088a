"""The embedded catalog: tables resolve by name, and the name follows the lakehouse root."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table
from spark_jobs.common.spark import register_tables

pytestmark = pytest.mark.spark

SCHEMA = T.StructType([T.StructField("n", T.IntegerType())])


def _rooted(config: Config, root: Path) -> Config:
    return dataclasses.replace(config, lakehouse_root=str(root), checkpoint_root=str(root / "_cp"))


def _append(spark, path: str, rows: list[tuple[int]]) -> None:
    spark.createDataFrame(rows, SCHEMA).write.format("delta").mode("append").save(path)


def test_names_follow_the_lakehouse_root_without_touching_data(spark, config: Config, tmp_path: Path) -> None:
    first, second = _rooted(config, tmp_path / "a"), _rooted(config, tmp_path / "b")
    table = names.DRIFT_REPORTS  # any table name; the schema here is the test's own
    ensure_table(spark, first, table, SCHEMA)
    _append(spark, first.table_path(table), [(1,)])
    ensure_table(spark, second, table, SCHEMA)
    _append(spark, second.table_path(table), [(2,), (3,)])

    assert sorted(r.n for r in spark.table(first.table(table)).collect()) == [2, 3]
    assert register_tables(spark, first) == [table]
    assert [r.n for r in spark.table(first.table(table)).collect()] == [1]
    # Re-pointing dropped only the registration: the other root's rows are intact.
    assert spark.read.format("delta").load(second.table_path(table)).count() == 2
    spark.sql(f"DROP TABLE {first.table(table)}")

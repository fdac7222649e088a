"""The views of database ``recsys``: exact rows on a small scenario, created only with their tables."""

from __future__ import annotations

import pytest
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table
from spark_jobs.common.spark import register_tables
from spark_jobs.serving.tables import ensure_serving_tables
from spark_jobs.sql.views import register_views
from tests import sql_scenario

pytestmark = pytest.mark.spark


def _rows(spark, query: str) -> list[tuple]:
    return [tuple(row) for row in spark.sql(query).collect()]


def test_views_return_the_scenarios_exact_rows(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    sql_scenario.write_current(spark, config)
    sql_scenario.write_history(spark, config)

    register_tables(spark, config)

    top_n = config.table(names.VIEW_USER_TOP_N)
    assert spark.table(top_n).columns == [
        "user_id",
        "rank",
        "item_id",
        "title",
        "categories",
        "score",
        "reason",
        "variant",
        "model_version",
        "generated_at",
    ]
    assert _rows(spark, f"SELECT * FROM {top_n} ORDER BY user_id, rank") == sql_scenario.USER_TOP_N_ROWS
    ctr = config.table(names.VIEW_CTR_BY_VARIANT)
    assert spark.table(ctr).columns == ["variant", "users", "exposures", "clicks", "ctr"]
    assert _rows(spark, f"SELECT * FROM {ctr} ORDER BY variant") == sql_scenario.CTR_ROWS


def test_a_view_exists_only_while_its_base_tables_do(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    assert register_views(spark, config) == []
    assert not spark.catalog.tableExists(config.table(names.VIEW_USER_TOP_N))

    sql_scenario.write_current(spark, config)  # items + recommendations, no log or events yet
    register_tables(spark, config)

    assert spark.catalog.tableExists(config.table(names.VIEW_USER_TOP_N))
    assert not spark.catalog.tableExists(config.table(names.VIEW_CTR_BY_VARIANT))

    spark.sql(f"DROP TABLE {config.table(names.ITEMS)}")  # registration only; data stays
    assert register_views(spark, config) == []
    assert not spark.catalog.tableExists(config.table(names.VIEW_USER_TOP_N))


def test_a_view_its_tables_cannot_back_is_skipped_not_raised(spark, fresh_lakehouse: Config) -> None:
    config = fresh_lakehouse
    ensure_serving_tables(spark, config)
    ensure_table(spark, config, names.ITEMS, T.StructType([T.StructField("item_id", T.StringType())]))

    assert register_views(spark, config) == []  # items has no title: the session still starts
    assert not spark.catalog.tableExists(config.table(names.VIEW_USER_TOP_N))

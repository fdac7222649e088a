"""The SQL server end to end: a real Spark Thrift server queried over the HiveServer2 protocol.

The server runs as ``recsys stack up --sql`` runs it (``LocalSqlServer``, its own Python + JVM)
on an isolated lakehouse and a free port; PyHive is the JDBC-equivalent client.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pyhive import hive

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.stack.ports import LOOPBACK, free_port, port_is_free
from spark_jobs.stack.sql_server import LocalSqlServer
from tests import sql_scenario

pytestmark = pytest.mark.integration

REFRESH_WAIT_S = 120.0  # the server re-reads the lakehouse every 10 s; a loaded machine is slower


@pytest.fixture()
def served(spark, fresh_lakehouse: Config) -> Iterator[tuple[Config, LocalSqlServer]]:
    """Current lists and items on an isolated lakehouse, and a SQL server started over it."""
    config = dataclasses.replace(
        fresh_lakehouse, spark=dataclasses.replace(fresh_lakehouse.spark, sql_port=free_port())
    )
    sql_scenario.write_current(spark, config)
    server = LocalSqlServer(config)
    started = time.monotonic()
    server.start(timeout_s=300)
    print(f"SQL server answered after {time.monotonic() - started:.1f}s")
    try:
        yield config, server
    finally:
        server.stop()


def _query(config: Config, sql: str) -> list[tuple[Any, ...]]:
    connection = hive.connect(
        host="localhost", port=config.spark.sql_port, database=config.database, username="test"
    )
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        connection.close()


def _wait_for_table(config: Config, table: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (config.database, table, False) in _query(config, f"SHOW TABLES IN {config.database}"):
            return
        time.sleep(1.0)
    pytest.fail(f"{config.table(table)} did not appear over JDBC within {timeout_s:.0f}s")


def test_tables_and_views_over_jdbc_then_a_clean_stop(spark, served: tuple[Config, LocalSqlServer]) -> None:
    config, server = served
    first = server.status()
    assert first.running
    assert first.url == f"jdbc:hive2://localhost:{config.spark.sql_port}/{config.database}"
    assert server.start().pid == first.pid  # idempotent: the running server is kept

    recs = _query(config, f"SELECT * FROM {config.table(names.RECOMMENDATIONS)} ORDER BY user_id, rank")
    assert recs == sql_scenario.RECOMMENDATION_ROWS
    top_n = _query(config, "SELECT user_id, rank, title, generated_at FROM user_top_n ORDER BY user_id, rank")
    assert top_n == [
        ("u1", 1, "Alpha", datetime(2026, 3, 1, 11, 0)),
        ("u1", 2, "Gamma", datetime(2026, 3, 1, 11, 0)),
        ("u2", 1, None, datetime(2026, 3, 1, 11, 0)),
    ]

    # The log and events are written after the server started: its refresh must pick them up.
    sql_scenario.write_history(spark, config)
    _wait_for_table(config, names.VIEW_CTR_BY_VARIANT, REFRESH_WAIT_S)
    ctr = _query(config, f"SELECT * FROM {config.table(names.VIEW_CTR_BY_VARIANT)} ORDER BY variant")
    assert ctr == sql_scenario.CTR_ROWS

    assert server.stop() is True
    assert server.status().running is False
    assert port_is_free(config.spark.sql_port, LOOPBACK)
    assert server.stop() is False  # stopping a stopped server is a no-op

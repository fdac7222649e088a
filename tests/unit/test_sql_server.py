"""The SQL server without a JVM: flags, port config, server settings, a stopped server, view SQL."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import socket
from pathlib import Path

import pytest

from spark_jobs.cli import stack as stack_cli
from spark_jobs.common import names
from spark_jobs.common.config import Config, load_config
from spark_jobs.common.errors import StackError
from spark_jobs.sql import thrift_server
from spark_jobs.sql.views import VIEWS
from spark_jobs.stack.ports import LOOPBACK, free_port
from spark_jobs.stack.sql_server import LocalSqlServer

pytestmark = pytest.mark.unit


@pytest.fixture()
def stopped(tmp_path: Path) -> Config:
    """A local config on a temp lakehouse root and free ports, where nothing ever ran."""
    broker, controller, sql = free_port(), free_port(), free_port()
    return load_config(
        "local",
        overrides={
            "lakehouse_root": str(tmp_path / "lakehouse"),
            "kafka": {"broker_port": broker, "controller_port": controller},
            "spark": {"sql_port": sql},
        },
        environ={},
    )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recsys")
    stack_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_stack_up_starts_the_sql_server_only_when_asked() -> None:
    plain = _parse(["stack", "up"])
    with_sql = _parse(["stack", "up", "--sql", "--sql-timeout", "60"])

    assert (plain.sql, plain.sql_timeout) == (False, 180.0)
    assert (with_sql.sql, with_sql.sql_timeout, with_sql.timeout) == (True, 60.0, 90.0)


def test_sql_port_defaults_to_10000_and_follows_the_environment(tmp_path: Path) -> None:
    default = load_config("local", environ={"RECSYS_HOME": str(tmp_path)})
    moved = load_config("local", environ={"RECSYS_HOME": str(tmp_path), "RECSYS_SPARK__SQL_PORT": "12345"})

    assert default.spark.sql_port == 10000
    assert thrift_server.jdbc_url(default) == "jdbc:hive2://localhost:10000/recsys"
    assert thrift_server.jdbc_url(moved) == "jdbc:hive2://localhost:12345/recsys"


def test_server_listens_on_localhost_and_keeps_hive_state_in_the_stack_folder(stopped: Config) -> None:
    home = stopped.stack_dir / "sql"

    assert thrift_server.server_conf(stopped) == {
        "spark.hadoop.javax.jdo.option.ConnectionURL": "jdbc:derby:memory:recsys_sql_execution;create=true",
        "spark.hadoop.hive.server2.thrift.bind.host": "localhost",
        "spark.hadoop.hive.server2.thrift.port": str(stopped.spark.sql_port),
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.hadoop.hive.server2.authentication": "NONE",
        "spark.hadoop.hive.server2.enable.doAs": "false",
        "spark.hadoop.hive.exec.local.scratchdir": str(home / "scratch"),
        "spark.hadoop.hive.downloaded.resources.dir": str(home / "resources"),
        "spark.hadoop.hive.server2.logging.operation.log.location": str(home / "operation_logs"),
    }


def test_the_server_process_gets_exactly_the_launching_config(stopped: Config, tmp_path: Path) -> None:
    custom = dataclasses.replace(stopped, database="analytics")
    path = tmp_path / "server" / "config.json"

    thrift_server.write_config(custom, path)

    assert thrift_server.read_config(path) == custom


def test_a_stopped_server_reads_as_stopped_and_stop_is_a_no_op(stopped: Config) -> None:
    server = LocalSqlServer(stopped)

    assert server.status().running is False
    assert server.status().pid is None
    assert server.stop() is False
    assert not Path(stopped.lakehouse_root).exists()  # asking changed nothing on disk


def test_start_names_the_taken_port_and_the_variable_to_change(stopped: Config) -> None:
    squatter = socket.socket()
    squatter.bind((LOOPBACK, stopped.spark.sql_port))
    squatter.listen()
    try:
        with pytest.raises(StackError) as caught:
            LocalSqlServer(stopped).start(timeout_s=5)
    finally:
        squatter.close()

    assert f"port {stopped.spark.sql_port} (SQL server) is in use" in str(caught.value)
    assert "RECSYS_SPARK__SQL_PORT" in (caught.value.hint or "")


def test_status_shows_the_sql_server_of_a_stopped_stack(
    stopped: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.show_status(stopped) == stack_cli.EXIT_NOT_RUNNING

    assert "sql       | not running (start it with `recsys stack up --sql`)" in capsys.readouterr().out


def test_present_tables_are_the_folders_with_a_delta_log(stopped: Config) -> None:
    for table in (names.RECOMMENDATIONS, names.EVENTS):
        (Path(stopped.table_path(table)) / "_delta_log").mkdir(parents=True)
    Path(stopped.table_path(names.ITEMS)).mkdir(parents=True)  # a folder, but no table yet

    assert thrift_server.present_tables(stopped) == (names.EVENTS, names.RECOMMENDATIONS)


def test_view_sql_reads_only_the_configured_database(stopped: Config) -> None:
    analytics = dataclasses.replace(stopped, database="analytics")

    for view in VIEWS:
        statement = view.create_statement(analytics)
        assert statement.startswith(f"CREATE OR REPLACE VIEW analytics.{view.name} AS\n")
        for table in view.base_tables:
            assert re.search(rf"\banalytics\.{table}\b", statement)
        assert "recsys." not in statement


def test_package_jars_come_from_the_cache_while_settings_and_jars_are_unchanged(tmp_path: Path) -> None:
    jar = tmp_path / "io.delta_delta-spark_2.13-4.0.0.jar"
    jar.write_bytes(b"")
    conf = {"spark.jars.packages": "io.delta:delta-spark_2.13:4.0.0", "spark.sql.shuffle.partitions": "4"}
    cache = tmp_path / "package-jars.json"
    settings = {"spark.jars.packages": conf["spark.jars.packages"]}
    cache.write_text(json.dumps({"settings": settings, "jars": [str(jar)]}))

    assert thrift_server.package_jars(conf, cache) == [str(jar)]  # Ivy would answer with its own paths
    assert thrift_server.class_path_conf(conf, cache) == {
        "spark.jars.packages": "",
        "spark.driver.extraClassPath": str(jar),
    }
    assert thrift_server.package_jars({"spark.sql.shuffle.partitions": "4"}, cache) == []

"""The Spark Thrift server: JDBC/ODBC (HiveServer2 protocol) access to the embedded catalog.

Run as ``python -m spark_jobs.sql.thrift_server --config FILE`` by ``recsys stack up --sql``
(``spark_jobs.stack.sql_server`` starts, watches and stops it); ``FILE`` is the launching
process's ``Config`` as JSON, so the server sees exactly the lakehouse root it was started for.

No Hive metastore holds our tables: ``HiveThriftServer2.startWithContext`` serves any session, and
each JDBC connection gets a ``newSession()`` of this one, sharing its in-memory catalog. So the
tables and views ``register_tables`` puts there are what clients see. The server looks at the
lakehouse every ``REFRESH_S`` seconds and registers again when a table folder appeared, so tables
created after the start (the first ``recsys score``, ...) show up without a restart. The server
classes come with PySpark itself (its wheel ships ``spark-hive-thriftserver_2.13`` and Hive 2.3),
so nothing extra is resolved from Maven.

Two traps of that Hive layer shape the start:

- When a client runs a statement synchronously (PyHive does, beeline does not) and then
  disconnects, Hive closes every class loader between the session's and its own, which includes
  the one ``spark.jars.packages`` puts Delta in; Delta then fails every later query with a
  ``NullPointerException`` in the closure cleaner. So the server resolves the packages first
  (Spark's own Ivy, in a short-lived JVM) and puts the jars on the JVM's class path instead,
  where no session can close them.
- Closing a session opens Hive's own "execution" metastore. Spark's default in-memory Derby URL
  for it (``jdbc:derby:memory:;databaseName=<tmp>``) makes Derby 10.16 look for a folder that
  exists, so every disconnect spent half a minute in failing retries. The server names an
  in-memory database Derby accepts instead; it holds nothing of ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from spark_jobs.common import console, names
from spark_jobs.common.config import Config, load_config
from spark_jobs.common.errors import RecsysError, StackError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MODULE = "spark_jobs.sql.thrift_server"
SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
HOST = "localhost"
APP_NAME = "recsys-sql-server"
REFRESH_S = 10.0
EXECUTION_METASTORE = "recsys_sql_execution"  # in-memory Derby of Hive's session bookkeeping
SCRATCH_DIRS = ("scratch", "resources", "operation_logs")
CLASS_PATH_CACHE = "package-jars.json"
POLL_S = 0.5


def sql_home(config: Config) -> Path:
    """Folder of the server's state: log, config file, Hive scratch and operation logs."""
    return config.stack_dir / "sql"


def jdbc_url(config: Config) -> str:
    """What beeline and JDBC tools connect to: ``jdbc:hive2://localhost:10000/recsys``."""
    return f"jdbc:hive2://{HOST}:{config.spark.sql_port}/{config.database}"


def server_conf(config: Config) -> dict[str, str]:
    """Spark settings of the server session on top of ``session_conf``; pure.

    The Thrift service reads ``hive.server2.*`` from the Hadoop conf (``spark.hadoop.*``). It
    listens on localhost only and without authentication: a local, single-user endpoint.
    """
    home = sql_home(config)
    hive = {
        "javax.jdo.option.ConnectionURL": f"jdbc:derby:memory:{EXECUTION_METASTORE};create=true",
        "hive.server2.thrift.bind.host": HOST,
        "hive.server2.thrift.port": str(config.spark.sql_port),
        "hive.server2.transport.mode": "binary",
        "hive.server2.authentication": "NONE",
        "hive.server2.enable.doAs": "false",
        "hive.exec.local.scratchdir": str(home / SCRATCH_DIRS[0]),
        "hive.downloaded.resources.dir": str(home / SCRATCH_DIRS[1]),
        "hive.server2.logging.operation.log.location": str(home / SCRATCH_DIRS[2]),
    }
    return {f"spark.hadoop.{key}": value for key, value in hive.items()}


def write_config(config: Config, path: Path) -> None:
    """Save ``config`` for the server process (``read_config`` rebuilds the same one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n", encoding="utf-8")


def read_config(path: Path) -> Config:
    """The config ``write_config`` saved; the environment and recsys.toml cannot change it."""
    try:
        values: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StackError(f"cannot read the SQL server config {path}: {err}") from err
    return load_config(values["env"], overrides=values, environ={})


def package_jars(conf: Mapping[str, str], cache: Path | None = None) -> list[str]:
    """Local paths of the jars ``spark.jars.packages`` resolves to (with their dependencies).

    Resolution is Spark's own (spark-submit's Ivy, same cache and settings), done in a bare
    gateway JVM with no SparkContext, which reports the result as its ``spark.jars`` property.
    ``cache`` (a JSON file) keeps the answer for the same settings while its jars exist.
    """
    ivy = {k: v for k, v in sorted(conf.items()) if k.startswith("spark.jars.")}
    if not ivy.get("spark.jars.packages"):
        return []
    cached = _read_json(cache) if cache else {}
    jars = cached.get("jars")
    if cached.get("settings") == ivy and jars and all(Path(str(jar)).is_file() for jar in jars):
        return [str(jar) for jar in jars]
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    gateway = launch_gateway(SparkConf(loadDefaults=False).setAll(list(ivy.items())))
    try:
        resolved = str(gateway.jvm.java.lang.System.getProperty("spark.jars") or "")
    finally:
        gateway.shutdown()
        gateway.proc.kill()
        gateway.proc.wait()
    paths = [_local_path(uri) for uri in resolved.split(",") if uri]
    if cache:
        cache.write_text(json.dumps({"settings": ivy, "jars": paths}, indent=2) + "\n", encoding="utf-8")
    return paths


def class_path_conf(conf: Mapping[str, str], cache: Path | None = None) -> dict[str, str]:
    """Settings that load the packages from the JVM class path rather than from Ivy at start."""
    jars = package_jars(conf, cache)
    if not jars:
        return {}
    return {"spark.jars.packages": "", "spark.driver.extraClassPath": os.pathsep.join(jars)}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _local_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("file", "local") else uri


def present_tables(config: Config) -> tuple[str, ...]:
    """The ``recsys`` tables whose folder holds a Delta log: what a refresh would register."""
    return tuple(t for t in names.ALL_TABLES if (Path(config.table_path(t)) / "_delta_log").is_dir())


def start(spark: SparkSession) -> Any:
    """Start the Thrift service on ``spark``'s catalog; returns the JVM ``HiveThriftServer2``."""
    from py4j.protocol import Py4JError

    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    try:
        jvm.java.lang.Class.forName(SERVER_CLASS)
    except Py4JError as err:
        raise StackError(
            f"this Spark has no Thrift server ({SERVER_CLASS} is not on the classpath)",
            hint="use the PyPI pyspark (its jars include spark-hive-thriftserver) or a Spark "
            "distribution built with -Phive-thriftserver, and unset SPARK_HOME if it points elsewhere",
        ) from err
    server = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
    return server.startWithContext(spark._jsparkSession.sqlContext())  # type: ignore[attr-defined]


def serve(config: Config, should_stop: Callable[[], bool], refresh_s: float = REFRESH_S) -> None:
    """Build the session, start the server and keep the catalog fresh until ``should_stop()``."""
    from spark_jobs.common.spark import build_session, session_conf

    started = time.monotonic()
    for folder in SCRATCH_DIRS:  # Hive logs an error on every disconnect when one is missing
        (sql_home(config) / folder).mkdir(parents=True, exist_ok=True)
    console.step("resolving the Spark packages (Delta, Kafka connector) onto the class path")
    class_path = class_path_conf(session_conf(config), cache=sql_home(config) / CLASS_PATH_CACHE)
    extra_conf = {**class_path, **server_conf(config)}
    console.step(f"starting Spark for the SQL server (lakehouse {config.lakehouse_root})")
    spark = build_session(config, app_name=APP_NAME, extra_conf=extra_conf)
    tables = present_tables(config)
    server = start(spark)
    console.step(
        f"SQL server listening on {HOST}:{config.spark.sql_port} after "
        f"{time.monotonic() - started:.1f}s ({jdbc_url(config)}); {len(tables)} tables"
    )
    try:
        next_refresh = time.monotonic() + refresh_s
        while not should_stop():
            time.sleep(POLL_S)
            if time.monotonic() < next_refresh:
                continue
            next_refresh = time.monotonic() + refresh_s
            now_present = present_tables(config)
            if now_present != tables:
                tables = _refresh(spark, config, tables, now_present)
    finally:
        console.step("stopping the SQL server")
        server.stop()
        spark.stop()
        _wait_for_jvm()


def _wait_for_jvm(timeout_s: float = 30.0) -> None:
    """End the Spark JVM (it exits when its stdin closes) and reap it: gone when this process is."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway  # type: ignore[attr-defined]
    proc = getattr(gateway, "proc", None)
    if proc is None:
        return
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _refresh(
    spark: SparkSession, config: Config, before: tuple[str, ...], now_present: tuple[str, ...]
) -> tuple[str, ...]:
    """Register tables (and views) again; a table caught mid-creation is retried next time."""
    from spark_jobs.common.spark import register_tables

    try:
        register_tables(spark, config)
    except Exception as err:  # the server must outlive one failed refresh
        console.info(f"catalog refresh failed, retried at the next one: {err!r}"[:500])
        return before
    added = sorted(set(now_present) - set(before))
    console.info(f"catalog refreshed; new tables: {', '.join(added) or 'none'}")
    return now_present


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="config JSON written by stack up")
    parser.add_argument("--refresh", type=float, default=REFRESH_S, help="seconds between catalog refreshes")
    args = parser.parse_args(argv)
    stop_requested: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        serve(read_config(args.config), lambda: bool(stop_requested), refresh_s=args.refresh)
    except RecsysError as err:
        print(f"error: {err}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr, flush=True)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Spark session factory: one place that knows about Delta, Kafka jars and the catalog.

``local`` builds a ``local[*]`` session that resolves Delta and the Kafka connector from Maven
Central (Ivy cache) and registers every ``recsys.*`` table found under the lakehouse root, so
tables are reachable by name from any process. ``cluster`` leaves master, jars and metastore to
the platform: the same jobs run there with no code change. A ``spark://`` master on this machine
(``recsys stack up --spark``) gets what its executors need to reach back: see ``standalone_conf``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from spark_jobs.common import console, names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import batch_compaction_conf
from spark_jobs.common.errors import JavaNotFoundError, StackError
from spark_jobs.sql.views import register_views
from spark_jobs.stack.ports import accepts_connections
from spark_jobs.stack.processes import tail_file

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPARK_VERSION = "4.0.0"
SCALA_BINARY = "2.13"
DELTA_VERSION = "4.0.0"
PACKAGES = (
    f"io.delta:delta-spark_{SCALA_BINARY}:{DELTA_VERSION}",
    f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{SPARK_VERSION}",
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def java_executable() -> str:
    """Path of the ``java`` Spark and Kafka will use; raises a clear error when there is none."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found:
        return found
    raise JavaNotFoundError(
        "no Java runtime found (Spark 4 and Kafka need Java 17 or 21)",
        hint="install one (apt-get install openjdk-17-jre-headless) or set JAVA_HOME",
    )


def session_conf(config: Config) -> dict[str, str]:
    """The Spark settings implied by ``config``; exposed so spark-submit wrappers can reuse them."""
    conf = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(config.spark.shuffle_partitions),
        "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
    }
    conf.update(batch_compaction_conf())
    if config.spark.master:
        conf.update(
            {
                "spark.driver.memory": config.spark.driver_memory,
                "spark.sql.warehouse.dir": config.warehouse_dir,
                "spark.ui.enabled": str(config.spark.ui_enabled).lower(),
                "spark.ui.showConsoleProgress": "false",
                "spark.driver.extraJavaOptions": "-Dderby.system.home=" + config.warehouse_dir,
                # Small local tables: Delta's default 50 partitions for rebuilding a table's state
                # turn every read of the log into dozens of tiny tasks on a laptop.
                "spark.databricks.delta.snapshotPartitions": str(config.spark.shuffle_partitions),
            }
        )
    if config.spark.resolve_packages:
        # Resolved by the driver and served to executors from it, on a cluster as in local mode.
        conf["spark.jars.packages"] = ",".join(PACKAGES)
    if local_standalone_master(config.spark.master) is not None:
        conf.update(standalone_conf())
    return conf


def local_standalone_master(master: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``spark://`` master on the loopback address, else None."""
    if not master.startswith("spark://"):
        return None
    host, _, port = master.removeprefix("spark://").rstrip("/").rpartition(":")
    if host not in LOOPBACK_HOSTS or not port.isdigit():
        return None
    return host, int(port)


def standalone_conf() -> dict[str, str]:
    """Driver settings for a standalone cluster on this machine (``recsys stack up --spark``).

    Executors connect back to the driver: it must listen on (and advertise) 127.0.0.1, where the
    workers are, not on whatever address the host name resolves to. ``spark.pyspark.python``
    (read by spark-submit) and ``PYSPARK_PYTHON`` (see ``build_session``) make their Python
    workers this very interpreter, valid there because the workers are on this machine; they
    can import this copy of ``spark_jobs`` even when it is not installed in that interpreter.
    """
    package_parent = str(Path(__file__).resolve().parents[2])
    return {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.pyspark.python": sys.executable,
        "spark.executorEnv.PYTHONPATH": package_parent,
    }


def build_session(
    config: Config, app_name: str | None = None, extra_conf: Mapping[str, str] | None = None
) -> SparkSession:
    """Create (or return the running) session for ``config`` and make ``recsys.*`` resolvable.

    Under ``spark-submit`` the master it was given wins over ``spark.master`` of the config, so
    ``spark-submit --master spark://... infra/spark/recsys_submit.py train`` runs on that cluster
    whatever the profile says. A local ``spark://`` master that does not answer is a
    ``StackError`` at once, instead of the driver retrying for a minute and failing with a Java
    stack trace.
    """
    submitted = submitted_master()
    if submitted and submitted != config.spark.master:
        config = dataclasses.replace(config, spark=dataclasses.replace(config.spark, master=submitted))
    if config.spark.master:
        java_executable()
    if local_standalone_master(config.spark.master) is not None:
        _check_local_master(config.spark.master)
    if config.spark.master.startswith("local") or local_standalone_master(config.spark.master):
        # A Python driver's executors start ``PYSPARK_PYTHON`` (else whatever ``python3`` is on
        # the worker's PATH), read when the context starts; the conf alone does not reach them.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    app = app_name or config.spark.app_name
    conf = {
        "spark.app.name": app,
        **({"spark.master": config.spark.master} if config.spark.master else {}),
        **session_conf(config),
        **(extra_conf or {}),
    }
    if config.spark.quiet and config.spark.master and not submitted:
        start_jvm_quietly(conf, spark_log_path(config, app))
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.spark.log_level)
    register_tables(spark, config)
    return spark


def spark_log_path(config: Config, app: str) -> Path:
    """Where a quiet driver's JVM writes its output: ``<lakehouse>/_logs/<app>.log`` for a local
    lakehouse, else the temp folder (a remote root is no place for a driver's log)."""
    root = config.lakehouse_root
    folder = (
        Path(root) / "_logs" if root and "://" not in root else Path(tempfile.gettempdir()) / "recsys-logs"
    )
    return folder / f"{app}.log"


def start_jvm_quietly(conf: Mapping[str, str], log_path: Path) -> None:
    """Start the driver's JVM with its stdout and stderr appended to ``log_path``.

    pyspark starts the JVM (spark-submit) with the console as its output: Ivy's resolution report
    and Spark's WARN lines would bury the command's own progress. The same ``--conf`` pairs the
    session is built with reach it here; the session then attaches to this JVM. Nothing happens
    when a JVM is already running (a second session in the same process, spark-submit).
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None:
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    spark_conf = SparkConf(loadDefaults=False).setAll(list(conf.items()))
    with log_path.open("ab") as log:
        log.write(f"--- {datetime.now(UTC).isoformat()} {conf.get('spark.app.name', '')}\n".encode())
        log.flush()
        try:
            gateway = launch_gateway(spark_conf, popen_kwargs={"stdout": log, "stderr": log})
        except Exception as err:  # pyspark's JAVA_GATEWAY_EXITED: the reason is in the log
            raise StackError(
                f"Spark did not start ({type(err).__name__}); "
                f"last lines of {log_path}:\n{tail_file(log_path)}",
                hint="fix the cause shown above; `recsys --verbose` shows Spark's output as it starts",
            ) from None
    SparkContext._ensure_initialized(gateway=gateway)
    console.spark_log = str(log_path)


def submitted_master() -> str:
    """The ``--master`` of the ``spark-submit`` that launched this driver; "" when Python starts
    Spark itself (``recsys``, notebooks, tests).

    Only spark-submit hands a Python driver a running JVM (``PYSPARK_GATEWAY_PORT``), whose system
    properties hold the master; without one, nothing is started here: the session's settings
    (packages) must reach the JVM when ``build_session`` launches it.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return ""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connects to spark-submit's JVM; a bare SparkConf would not
    return SparkConf().get("spark.master", "") or ""


def _check_local_master(master: str) -> None:
    address = local_standalone_master(master)
    if address is not None and not accepts_connections(*address, timeout_s=3.0):
        raise StackError(
            f"no Spark master answers at {master}",
            hint="start the local cluster with `recsys stack up --spark`, or point "
            "RECSYS_SPARK__MASTER at a running master",
        )


def register_tables(spark: SparkSession, config: Config) -> list[str]:
    """Create the database and register every existing ``recsys`` Delta table by location.

    With the embedded catalog the lakehouse root *is* the catalog: a table exists when its
    folder holds a Delta log. Registration is idempotent and cheap (one log read per table).
    The views of ``spark_jobs.sql.views`` whose base tables exist are (re)created with them.
    Returns the tables registered.
    """
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {config.database}")
    if config.spark.catalog != "embedded":
        return []
    registered = []
    for table in names.ALL_TABLES:
        if _delta_table_exists(config.table_path(table)):
            register_table(spark, config, table)
            registered.append(table)
    register_views(spark, config)
    return registered


def register_table(spark: SparkSession, config: Config, table: str) -> None:
    """Point ``recsys.<table>`` at its location under this config's lakehouse root.

    A name already registered elsewhere (another lakehouse root in the same session) is
    re-pointed; tables are always external, so dropping a registration never touches data.
    """
    name, path = config.table(table), config.table_path(table)
    if spark.catalog.tableExists(name):
        if _registered_location(spark, name) == path.removeprefix("file:"):
            return
        spark.sql(f"DROP TABLE {name}")
    spark.sql(f"CREATE TABLE {name} USING DELTA LOCATION '{path}'")


def _registered_location(spark: SparkSession, name: str) -> str:
    row = spark.sql(f"DESCRIBE TABLE EXTENDED {name}").where("col_name = 'Location'").first()
    return str(row["data_type"]).removeprefix("file:") if row else ""


def _delta_table_exists(path: str) -> bool:
    if "://" in path or path.startswith("dbfs:"):
        return True  # remote roots are registered by the platform's metastore
    return (Path(path) / "_delta_log").is_dir()


@contextmanager
def temporary_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Session confs for one operation (a query's start, a VACUUM); what was there before
    (or nothing) comes back after it, so one job's settings never leak into the next."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)

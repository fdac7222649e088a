"""The Spark session factory: one place that knows about Delta, Kafka jars and the catalog.

``local`` builds a ``local[*]`` session that resolves Delta and the Kafka connector from Maven
Central (Ivy cache) and registers every ``recsys.*`` table found under the lakehouse root, so
tables are reachable by name from any process. ``cluster`` leaves master, jars and metastore to
the platform: the same jobs run there with no code change.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import JavaNotFoundError
from spark_jobs.sql.views import register_views

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPARK_VERSION = "4.0.0"
SCALA_BINARY = "2.13"
DELTA_VERSION = "4.0.0"
PACKAGES = (
    f"io.delta:delta-spark_{SCALA_BINARY}:{DELTA_VERSION}",
    f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{SPARK_VERSION}",
)


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
        "spark.databricks.delta.autoCompact.enabled": "true",
    }
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
        conf["spark.jars.packages"] = ",".join(PACKAGES)
    return conf


def build_session(
    config: Config, app_name: str | None = None, extra_conf: Mapping[str, str] | None = None
) -> SparkSession:
    """Create (or return the running) session for ``config`` and make ``recsys.*`` resolvable."""
    if config.spark.master:
        java_executable()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name or config.spark.app_name)
    if config.spark.master:
        builder = builder.master(config.spark.master)
    for key, value in {**session_conf(config), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.spark.log_level)
    register_tables(spark, config)
    return spark


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

"""The Spark session training code runs in: the project's session plus quiet progress output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spark_jobs.common.config import Config
from spark_jobs.common.spark import build_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TRAINING_CONF = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # ALS checkpoints (lineage cuts) are deleted once their RDDs are gone.
    "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
}


def training_session(config: Config, app_name: str = "recsys-train") -> SparkSession:
    """The configured session (Delta, catalog) with console progress bars off."""
    return build_session(config, app_name=app_name, extra_conf=TRAINING_CONF)


def checkpoint_dir(config: Config) -> str:
    """Where ALS cuts its lineage on long runs (one folder under the checkpoint root)."""
    return config.checkpoint("als")

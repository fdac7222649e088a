"""``recsys.user_factors`` / ``recsys.item_factors``: the ALS vectors of every registered version.

One partition per ``model_version`` (the ``recsys_als`` version), rewritten whole by
``replaceWhere``, so writing a version again (a retried task) replaces it instead of adding
rows. The user vectors go from the executors straight to Delta; the item vectors are item-sized.
SQL users read them like any table; the gate reads the champion's user vectors from here.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.delta import ensure_table
from spark_jobs.training.spark_model import SparkRecommender

FACTORS = "factors"
TRAINED_AT = "trained_at"
MODEL_VERSION = names.MODEL_VERSION


def _schema(key: str) -> T.StructType:
    return T.StructType(
        [
            T.StructField(MODEL_VERSION, T.StringType(), nullable=False),
            T.StructField(key, T.StringType(), nullable=False),
            T.StructField(FACTORS, T.ArrayType(T.FloatType()), nullable=False),
            T.StructField(TRAINED_AT, T.TimestampType(), nullable=False),
        ]
    )


USER_FACTORS_SCHEMA = _schema(names.USER_ID)
ITEM_FACTORS_SCHEMA = _schema(names.ITEM_ID)


def ensure_factor_tables(spark: SparkSession, config: Config) -> None:
    ensure_table(spark, config, names.USER_FACTORS, USER_FACTORS_SCHEMA, partition_by=(MODEL_VERSION,))
    ensure_table(spark, config, names.ITEM_FACTORS, ITEM_FACTORS_SCHEMA, partition_by=(MODEL_VERSION,))


def _replace_version(frame: DataFrame, path: str, version: str) -> None:
    (
        frame.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"{MODEL_VERSION} = '{version}'")
        .save(path)
    )


def write_factors(
    spark: SparkSession, config: Config, model: SparkRecommender, version: str, trained_at: datetime
) -> None:
    """Write ``model``'s user and item vectors as ALS version ``version`` (idempotent)."""
    if not version.isdigit():
        raise ValueError(f"a model version is a number, got {version!r}")
    if not model.has_als or model.user_factors is None or model.items.item_factors is None:
        return
    ensure_factor_tables(spark, config)
    stamp = F.lit(trained_at).cast("timestamp")
    users = model.user_factors.select(
        F.lit(version).alias(MODEL_VERSION),
        F.col(names.USER_ID).cast("string").alias(names.USER_ID),
        F.col(FACTORS).cast("array<float>").alias(FACTORS),
        stamp.alias(TRAINED_AT),
    )
    _replace_version(users, config.table_path(names.USER_FACTORS), version)
    item_rows = pd.DataFrame(
        {
            names.ITEM_ID: model.items.item_ids.astype(str),
            FACTORS: [row.tolist() for row in model.items.item_factors.astype(np.float32)],
        }
    )
    items = spark.createDataFrame(
        item_rows, T.StructType([ITEM_FACTORS_SCHEMA[names.ITEM_ID], ITEM_FACTORS_SCHEMA[FACTORS]])
    ).select(F.lit(version).alias(MODEL_VERSION), names.ITEM_ID, FACTORS, stamp.alias(TRAINED_AT))
    _replace_version(items, config.table_path(names.ITEM_FACTORS), version)


def user_factors_of(spark: SparkSession, config: Config, version: str) -> DataFrame | None:
    """``user_id, factors`` of ALS version ``version``; None when the table has none of it."""
    if not spark.catalog.tableExists(config.table(names.USER_FACTORS)):
        return None
    rows = (
        spark.read.format("delta")
        .load(config.table_path(names.USER_FACTORS))
        .where(F.col(MODEL_VERSION) == version)
        .select(names.USER_ID, FACTORS)
    )
    return rows if rows.limit(1).count() else None

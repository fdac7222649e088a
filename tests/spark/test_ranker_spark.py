"""The ranker on Spark trains whatever the Arrow batches hold.

XGBoost's Spark reader (3.1.2), given a list of feature columns, raised KeyError('values') on an
Arrow batch whose training or early-stopping part was empty: whether that happened depended on
how rows fell into batches, and it failed CI's training test. Small batches make it certain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_jobs.training.columns import LABEL, USER_ID
from spark_jobs.training.ranker import FEATURE_COLUMNS, fit_ranker_spark

pytestmark = [pytest.mark.spark]

USERS, PER_USER = 200, 20


def test_ranker_trains_with_early_stopping_when_batches_hold_one_part_only(spark) -> None:
    rng = np.random.default_rng(0)
    n = USERS * PER_USER
    frame = pd.DataFrame({c: rng.random(n).astype("float32") for c in FEATURE_COLUMNS})
    frame.loc[::7, FEATURE_COLUMNS[3]] = np.nan  # missing values stay missing
    frame[USER_ID] = [f"u{i // PER_USER:03d}" for i in range(n)]
    frame[LABEL] = (rng.random(n) < 0.2).astype(int)
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, "50")  # most batches: training rows only
    try:
        ranker = fit_ranker_spark(spark.createDataFrame(frame))
    finally:
        spark.conf.set(key, before)
    usable = frame.groupby(USER_ID)[LABEL].agg(["sum", "count"])
    assert ranker.metrics["ranker_users"] == ((usable["sum"] > 0) & (usable["sum"] < usable["count"])).sum()
    assert 0.0 < ranker.metrics["ranker_valid_ndcg10"] <= 1.0  # early stopping saw its users
    assert ranker.booster.get_booster().feature_names == list(FEATURE_COLUMNS)

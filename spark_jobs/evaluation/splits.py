"""Split protocols: per-user random and per-user temporal, on pandas interaction frames.

Both keep every user on both sides when the user has at least two interactions (the held-out
side gets ``round(n * test_ratio)`` rows, at least one), so a user is never evaluated without a
training history. Users with a single interaction stay entirely in training. The same functions
carve the validation split out of a training set, which is how hyperparameters and ranker labels
are chosen without ever looking at the evaluation split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from spark_jobs.common.errors import require_columns
from spark_jobs.training.columns import SEED, TIMESTAMP, USER_ID

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

RANDOM = "random"
TEMPORAL = "temporal"
PROTOCOLS = (RANDOM, TEMPORAL)


def _held_out_counts(sizes: pd.Series, test_ratio: float) -> pd.Series:
    held = np.round(sizes.to_numpy() * test_ratio).astype(int)
    held = np.where(sizes.to_numpy() >= 2, np.clip(held, 1, sizes.to_numpy() - 1), 0)
    return pd.Series(held, index=sizes.index)


def _split_by_order(
    df: pd.DataFrame, order: np.ndarray, test_ratio: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out, per user, the rows with the highest ``order`` values."""
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
    frame = df.reset_index(drop=True)
    keys = pd.DataFrame({USER_ID: frame[USER_ID].to_numpy(), "_o": order})
    position = keys.groupby(USER_ID)["_o"].rank(method="first", ascending=False)
    sizes = frame.groupby(USER_ID).size()
    held = frame[USER_ID].map(_held_out_counts(sizes, test_ratio))
    is_test = (position <= held).to_numpy()
    return frame.loc[~is_test].reset_index(drop=True), frame.loc[is_test].reset_index(drop=True)


def random_split(
    df: pd.DataFrame, test_ratio: float = 0.25, seed: int = SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split (stratified by user): each user's rows shuffled with ``seed``."""
    require_columns(df, (USER_ID,), "interactions")
    rng = np.random.default_rng(seed)
    return _split_by_order(df, rng.random(len(df)), test_ratio)


def temporal_split(
    df: pd.DataFrame, test_ratio: float = 0.25, time_col: str = TIMESTAMP, seed: int = SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user temporal split: each user's latest ``test_ratio`` of rows are held out.

    Ties in time are broken by a seeded random order, so the split is reproducible.
    """
    require_columns(df, (USER_ID, time_col), "interactions")
    rng = np.random.default_rng(seed)
    times = pd.to_numeric(df[time_col], errors="coerce").fillna(-np.inf).to_numpy(dtype=float)
    jitter = rng.random(len(df)) * 1e-3
    return _split_by_order(df, times + jitter, test_ratio)


def split(
    df: pd.DataFrame, protocol: str, test_ratio: float = 0.25, seed: int = SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dispatch on ``protocol`` (``random`` or ``temporal``)."""
    if protocol == RANDOM:
        return random_split(df, test_ratio, seed)
    if protocol == TEMPORAL:
        return temporal_split(df, test_ratio, seed=seed)
    raise ValueError(f"unknown split protocol {protocol!r}; use one of {PROTOCOLS}")


def split_frame(
    df: SparkDataFrame, protocol: str, test_ratio: float = 0.25, seed: int = SEED
) -> tuple[SparkDataFrame, SparkDataFrame]:
    """The same per-user protocols on a Spark DataFrame, computed on the executors.

    Held-out counts follow ``_held_out_counts`` (half-to-even rounding, at least one row and
    never all of a user's rows); the random order comes from Spark's seeded ``rand``, so the
    rows chosen differ from the pandas split's, the proportions do not.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; use one of {PROTOCOLS}")
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
    order = F.rand(seed)
    if protocol == TEMPORAL:
        time = F.coalesce(F.col(TIMESTAMP).cast("double"), F.lit(float("-inf")))
        order = F.when(F.isnan(time), F.lit(float("-inf"))).otherwise(time) + F.rand(seed) * 1e-3
    per_user = Window.partitionBy(USER_ID)
    size = F.count(F.lit(1)).over(per_user)
    held = F.when(size >= 2, F.least(F.greatest(F.bround(size * test_ratio), F.lit(1)), size - 1)).otherwise(
        0
    )
    marked = (
        df.withColumn("_o", order)
        .withColumn("_pos", F.row_number().over(per_user.orderBy(F.desc("_o"))))
        .withColumn("_test", F.col("_pos") <= held)
        .drop("_o", "_pos")
        .cache()
    )
    return marked.where(~F.col("_test")).drop("_test"), marked.where(F.col("_test")).drop("_test")

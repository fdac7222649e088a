"""Per-user side features of the ranker (profile and context), as a Spark transform.

``user_side_features`` gives one row per user with ``USER_SIDE_COLUMNS``: numeric age (from an age
or an age band), stable codes for gender, occupation and the user's most frequent device, and the
mean local hour of their events. Codes are ``crc32(lower(value)) % 10007``, the same numbers
``training.features.user_side_features`` computes in memory, so a ranker trained on either reads
the same values. Unknown values stay null (NaN to the ranker, which handles them natively).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.training.features import USER_SIDE_COLUMNS

CODE_MODULUS = 10_007


def stable_code(value: Column) -> Column:
    """A category string as a stable number (null when missing or empty)."""
    text = F.lower(value.cast("string"))
    return F.when(text.isNull() | (text == ""), F.lit(None)).otherwise(
        (F.crc32(text) % CODE_MODULUS).cast("double")
    )


def age_value(value: Column) -> Column:
    """Numeric age from an age or an age band (``25-34`` -> 29.5, ``55+`` -> 55)."""
    text = F.regexp_replace(F.trim(value.cast("string")), r"\+$", "")
    parts = F.filter(F.split(F.regexp_replace(text, "_", "-"), "-"), lambda p: F.trim(p).rlike(r"^\d+$"))
    mean = F.aggregate(parts, F.lit(0.0), lambda acc, p: acc + F.trim(p).cast("double")) / F.size(parts)
    return F.when(F.size(parts) > 0, mean).otherwise(F.lit(None).cast("double"))


def user_side_features(users: DataFrame | None, context: DataFrame | None) -> DataFrame | None:
    """``user_id`` + ``USER_SIDE_COLUMNS`` from profiles (``age``/``age_band``, ``gender``,
    ``occupation``) and per-user context (``device``: the most frequent, ``hour_of_day``: the mean,
    as ``training.interactions.user_context`` gives it). None when neither is given."""
    null = F.lit(None).cast("double")
    profile = None
    if users is not None:
        cols = set(users.columns)
        age_col = "age" if "age" in cols else "age_band" if "age_band" in cols else None
        profile = users.select(
            F.col(names.USER_ID).cast("string").alias(names.USER_ID),
            age_value(F.col(age_col)).alias("age") if age_col else null.alias("age"),
            stable_code(F.col("gender")).alias("gender_code")
            if "gender" in cols
            else null.alias("gender_code"),
            stable_code(F.col("occupation")).alias("occupation_code")
            if "occupation" in cols
            else null.alias("occupation_code"),
        ).dropDuplicates([names.USER_ID])
    ctx = None
    if context is not None:
        cols = set(context.columns)
        ctx = context.select(
            F.col(names.USER_ID).cast("string").alias(names.USER_ID),
            stable_code(F.col("device")).alias("device_code")
            if "device" in cols
            else null.alias("device_code"),
            F.col("hour_of_day").cast("double").alias("hour_mean")
            if "hour_of_day" in cols
            else null.alias("hour_mean"),
        )
    if profile is None and ctx is None:
        return None
    if profile is None:
        joined = ctx
    elif ctx is None:
        joined = profile
    else:
        joined = profile.join(ctx, names.USER_ID, "full_outer")
    for col in USER_SIDE_COLUMNS:
        if col not in joined.columns:
            joined = joined.withColumn(col, null)
    return joined.select(names.USER_ID, *(F.col(c).cast("double").alias(c) for c in USER_SIDE_COLUMNS))

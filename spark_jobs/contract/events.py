"""The event contract (schema_version 1), in one place.

Two readers share it: producers validate with ``validate_event`` (pure Python), and the ingest
stream validates with Spark expressions built from the same ``FIELDS`` table
(``spark_jobs.ingest.validate``). Both return the same reason strings, so a record's fate can be
predicted before it is sent; the tests hold the two to each other.

Reasons (``REASON_*``) are stable strings: dashboards and the quarantine table group by them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spark_jobs.common import names
from spark_jobs.common.config import Config, IngestSettings

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

EVENT_TYPES = ("view", "click", "dwell", "scroll", "like", "dislike", "skip", "rating", "purchase")
DEVICES = ("mobile", "desktop", "tablet", "tv")
# What an event says about its item: the one definition that features (CTR), training, drift,
# the SQL views and serving share. A click, like or purchase is engagement (the numerator of CTR,
# a reward for an exposure); a dislike or skip is "not interested": activity, never attraction.
VIEW_EVENT_TYPES = ("view",)
CLICK_EVENT_TYPES = ("click", "like", "purchase")
NEGATIVE_EVENT_TYPES = ("dislike", "skip")

# Reason codes. ``{field}`` is the dotted field name (``context.device``).
REASON_OVERSIZED = "oversized"
REASON_INVALID_JSON = "invalid_json"
REASON_NOT_OBJECT = "not_an_object"
REASON_UNSUPPORTED_VERSION = "unsupported_schema_version"
REASON_MISSING = "missing_field:{field}"
REASON_WRONG_TYPE = "wrong_type:{field}"
REASON_TOO_LONG = "too_long:{field}"
REASON_INVALID_FORMAT = "invalid_format:{field}"
REASON_OUT_OF_RANGE = "out_of_range:{field}"
REASON_UNKNOWN_EVENT_TYPE = "unknown_event_type"
REASON_FUTURE_TS = "future_event_ts"
REASON_SEPARATOR = "; "

# Patterns are unanchored: each validator anchors them to the whole string in its own dialect
# (Python ``re.fullmatch``, Java ``^(?:...)\z``), because ``$`` accepts a trailing newline in both.
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# ISO-8601 date-time *with* a zone; second fractions up to microseconds (Spark's precision).
ISO_TS_PATTERN = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})"


@dataclass(frozen=True)
class FieldSpec:
    """One contract field. ``kind``: string, integer, number, timestamp (ISO string or epoch ms)."""

    name: str
    kind: str
    required: bool = False
    max_length: bool = False  # bounded by ``Limits.max_id_length``
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(names.EVENT_ID, "string", required=True, max_length=True, pattern=UUID_PATTERN),
    FieldSpec(names.EVENT_TYPE, "string", required=True, choices=EVENT_TYPES),
    FieldSpec(names.USER_ID, "string", required=True, max_length=True),
    FieldSpec(names.ITEM_ID, "string", required=True, max_length=True),
    FieldSpec(names.SESSION_ID, "string", max_length=True),
    FieldSpec(names.EVENT_TS, "timestamp", required=True, minimum=0),
    FieldSpec(names.DWELL_MS, "integer", minimum=0),
    FieldSpec(names.SCROLL_DEPTH, "number", minimum=0.0, maximum=1.0),
    FieldSpec(names.VALUE, "number"),
)
CONTEXT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("device", "string", choices=DEVICES),
    FieldSpec("country", "string", max_length=True),
    FieldSpec("referrer", "string", max_length=True),
    FieldSpec("hour_of_day", "integer", minimum=0, maximum=23),
)


_INGEST_DEFAULTS = IngestSettings()


@dataclass(frozen=True)
class Limits:
    """Bounds the contract leaves to operators: ``ingest`` settings of the config, one source.

    The defaults are ``IngestSettings``' own; a deployment's come from ``Limits.from_config``.
    """

    max_event_bytes: int = _INGEST_DEFAULTS.max_event_bytes
    max_id_length: int = _INGEST_DEFAULTS.max_id_length
    max_future_skew_ms: int = int(_INGEST_DEFAULTS.max_future_skew_hours * 3600 * 1000)

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        """The limits an operator configured for this deployment (validator and producers)."""
        return cls(
            max_event_bytes=config.ingest.max_event_bytes,
            max_id_length=config.ingest.max_id_length,
            max_future_skew_ms=int(config.ingest.max_future_skew_hours * 3600 * 1000),
        )


def validate_event(
    raw: str | bytes | dict[str, Any], reference_ms: int, limits: Limits = Limits()
) -> list[str]:
    """Return the reasons ``raw`` breaks the contract; an empty list means it is valid.

    ``reference_ms`` is the time the record is judged against for "too far in the future"
    (the producer's send time; on the stream, the Kafka record timestamp).
    """
    limits = limits or Limits()
    if isinstance(raw, dict):
        obj: Any = raw
    else:
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        if len(data) > limits.max_event_bytes:
            return [REASON_OVERSIZED]
        try:
            obj = json.loads(data, parse_constant=_reject, object_pairs_hook=_unique_keys)
        except (UnicodeDecodeError, ValueError):
            return [REASON_INVALID_JSON]
    if not isinstance(obj, dict):
        return [REASON_NOT_OBJECT]

    version = obj.get(names.SCHEMA_VERSION)
    if _is_int(version) and version not in SUPPORTED_SCHEMA_VERSIONS:
        return [REASON_UNSUPPORTED_VERSION]
    reasons = [r for spec in FIELDS for r in _check(spec, obj.get(spec.name), spec.name, limits)]
    if not any(r.endswith(":" + names.EVENT_TS) for r in reasons):
        ts_ms = event_ts_millis(obj.get(names.EVENT_TS))
        if ts_ms is not None and ts_ms > reference_ms + limits.max_future_skew_ms:
            reasons.append(REASON_FUTURE_TS)
    context = obj.get(names.CONTEXT)
    if context is not None:
        if not isinstance(context, dict):
            reasons.append(REASON_WRONG_TYPE.format(field=names.CONTEXT))
        else:
            for spec in CONTEXT_FIELDS:
                dotted = f"{names.CONTEXT}.{spec.name}"
                reasons += _check(spec, context.get(spec.name), dotted, limits)
    if version is None:
        reasons.append(REASON_MISSING.format(field=names.SCHEMA_VERSION))
    elif not _is_int(version):
        reasons.append(REASON_WRONG_TYPE.format(field=names.SCHEMA_VERSION))
    return reasons


def event_ts_millis(value: Any) -> int | None:
    """Epoch milliseconds of a contract timestamp (ISO string with zone or epoch ms), else None."""
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(ISO_TS_PATTERN, value, re.ASCII):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return int(parsed.timestamp() * 1000)
    return None


def _check(spec: FieldSpec, value: Any, dotted: str, limits: Limits) -> list[str]:
    if value is None or (spec.required and value == ""):
        return [REASON_MISSING.format(field=dotted)] if spec.required else []
    if not _has_kind(spec.kind, value):
        return [REASON_WRONG_TYPE.format(field=dotted)]
    if spec.kind == "string":
        if spec.max_length and len(value) > limits.max_id_length:
            return [REASON_TOO_LONG.format(field=dotted)]
        if spec.pattern and not re.fullmatch(spec.pattern, value, re.ASCII):
            return [REASON_INVALID_FORMAT.format(field=dotted)]
        if spec.choices and value not in spec.choices:
            if spec.name == names.EVENT_TYPE:
                return [REASON_UNKNOWN_EVENT_TYPE]
            return [REASON_OUT_OF_RANGE.format(field=dotted)]
        return []
    if spec.kind == "timestamp":
        millis = event_ts_millis(value)
        if millis is None:
            return [REASON_INVALID_FORMAT.format(field=dotted)]
        value = millis
    if (spec.minimum is not None and value < spec.minimum) or (
        spec.maximum is not None and value > spec.maximum
    ):
        return [REASON_OUT_OF_RANGE.format(field=dotted)]
    return []


def _reject(constant: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python accepts them, Spark does not."""
    raise ValueError(f"{constant} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Duplicate keys make a record ambiguous; Spark's parser rejects them, so do we."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_kind(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return _is_int(value)
    if kind == "number":
        return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
    if kind == "timestamp":
        return isinstance(value, str) or _is_int(value)
    raise ValueError(f"unknown field kind {kind!r}")


def silver_schema():  # -> pyspark StructType; imported lazily so producers need no Spark
    """Typed Spark schema of ``recsys.events`` (silver): contract fields + lakehouse columns."""
    from pyspark.sql import types as T

    context = T.StructType(
        [
            T.StructField("device", T.StringType()),
            T.StructField("country", T.StringType()),
            T.StructField("referrer", T.StringType()),
            T.StructField("hour_of_day", T.IntegerType()),
        ]
    )
    return T.StructType(
        [
            T.StructField(names.EVENT_ID, T.StringType(), nullable=False),
            T.StructField(names.EVENT_TYPE, T.StringType(), nullable=False),
            T.StructField(names.USER_ID, T.StringType(), nullable=False),
            T.StructField(names.ITEM_ID, T.StringType(), nullable=False),
            T.StructField(names.SESSION_ID, T.StringType()),
            T.StructField(names.EVENT_TS, T.TimestampType(), nullable=False),
            T.StructField(names.DWELL_MS, T.LongType()),
            T.StructField(names.SCROLL_DEPTH, T.DoubleType()),
            T.StructField(names.VALUE, T.DoubleType()),
            T.StructField(names.CONTEXT, context),
            T.StructField(names.SCHEMA_VERSION, T.IntegerType(), nullable=False),
            T.StructField(names.EVENT_DATE, T.DateType(), nullable=False),
            T.StructField(names.INGEST_TS, T.TimestampType(), nullable=False),
        ]
    )

"""Contract validation as Spark expressions: bronze rows in, typed rows with reasons out.

The rules are generated from ``contract.events.FIELDS`` so they cannot drift from the Python
validator producers use; ``tests/unit/test_ingest_validate.py`` holds the two to the same
reason strings record by record.

Types are judged on Spark's VARIANT (``try_parse_json``): ``schema_of_variant`` tells a JSON
string from a number exactly, where ``from_json`` would quietly turn ``123`` into ``"123"``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.common import names
from spark_jobs.contract import events as contract
from spark_jobs.contract.events import FieldSpec, Limits

RAW = "_raw"
VARIANT = "_v"
REASONS = "_reasons"

_INTEGER_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")


def validate_records(records: DataFrame, limits: Limits) -> DataFrame:
    """Parse and judge raw event JSON.

    Input: ``value`` (raw string) and ``kafka_ts`` (the reference time for "too far in the
    future"), plus any other columns, which are kept. Output adds ``_reasons``
    (array<string>, empty when valid) and one typed column per contract field, named as in
    silver. The raw string is kept as ``_raw``; the input ``value`` is replaced by the typed
    event ``value`` (a number), as in silver.
    """
    df = records.withColumnRenamed(names.KAFKA_VALUE, RAW).withColumn(
        VARIANT, F.expr(f"try_parse_json({RAW})")
    )
    return df.withColumn(REASONS, _reasons(F.col(names.KAFKA_TS), limits)).select(
        *[c for c in df.columns if c != VARIANT], REASONS, *_typed_fields()
    )


def _reasons(reference_ts: Column, limits: Limits) -> Column:
    """Same reasons, in the same order, as ``contract.events.validate_event``."""
    root_type = F.expr(f"schema_of_variant({VARIANT})")
    version_type = _type_at(names.SCHEMA_VERSION)
    version = _get(names.SCHEMA_VERSION, "bigint")
    supported = F.lit(sorted(contract.SUPPORTED_SCHEMA_VERSIONS))

    field_reasons = [_field_reason(spec, spec.name, limits) for spec in contract.FIELDS]
    ts_ok = F.lit(True)
    for spec in contract.FIELDS:
        if spec.kind == "timestamp":
            ts_ok = _field_reason(spec, spec.name, limits).isNull()
    skew = F.expr(f"INTERVAL {int(limits.max_future_skew_ms)} MILLISECONDS")
    future = F.when(
        ts_ok & (_timestamp(names.EVENT_TS) > reference_ts + skew), F.lit(contract.REASON_FUTURE_TS)
    )
    context_type = _type_at(names.CONTEXT)
    context_present = context_type.isNotNull() & (context_type != "VOID")
    context_is_object = context_type.startswith("OBJECT")
    context_wrong = F.when(
        context_present & ~context_is_object,
        F.lit(contract.REASON_WRONG_TYPE.format(field=names.CONTEXT)),
    )
    context_reasons = [
        F.when(context_is_object, _field_reason(spec, f"{names.CONTEXT}.{spec.name}", limits))
        for spec in contract.CONTEXT_FIELDS
    ]
    version_reason = F.when(
        _absent(version_type), F.lit(contract.REASON_MISSING.format(field=names.SCHEMA_VERSION))
    ).when(
        ~version_type.isin(*_INTEGER_TYPES),
        F.lit(contract.REASON_WRONG_TYPE.format(field=names.SCHEMA_VERSION)),
    )
    field_level = F.array_compact(
        F.array(*field_reasons, future, context_wrong, *context_reasons, version_reason)
    )
    return (
        F.when(F.octet_length(F.col(RAW)) > limits.max_event_bytes, _one(contract.REASON_OVERSIZED))
        .when(F.col(VARIANT).isNull(), _one(contract.REASON_INVALID_JSON))
        .when(~root_type.startswith("OBJECT"), _one(contract.REASON_NOT_OBJECT))
        .when(
            version_type.isin(*_INTEGER_TYPES) & ~F.array_contains(supported, version),
            _one(contract.REASON_UNSUPPORTED_VERSION),
        )
        .otherwise(field_level)
    )


def _field_reason(spec: FieldSpec, path: str, limits: Limits) -> Column:
    """At most one reason for one field, by the contract's precedence; null when it is fine."""
    kind = _type_at(path)
    reason = F.when(
        _absent(kind) | _empty_required(spec, path, kind),
        _reason(contract.REASON_MISSING, path, spec.required),
    )
    reason = reason.when(~_has_kind(spec.kind, kind), _reason(contract.REASON_WRONG_TYPE, path))
    if spec.kind == "string":
        text = _get(path, "string")
        if spec.max_length:
            reason = reason.when(
                F.char_length(text) > limits.max_id_length, _reason(contract.REASON_TOO_LONG, path)
            )
        if spec.pattern:
            reason = reason.when(
                ~_full_match(text, spec.pattern), _reason(contract.REASON_INVALID_FORMAT, path)
            )
        if spec.choices:
            code = (
                F.lit(contract.REASON_UNKNOWN_EVENT_TYPE)
                if spec.name == names.EVENT_TYPE
                else _reason(contract.REASON_OUT_OF_RANGE, path)
            )
            reason = reason.when(~text.isin(*spec.choices), code)
        return reason
    if spec.kind == "timestamp":
        reason = reason.when(
            _timestamp(path).isNull(), _reason(contract.REASON_INVALID_FORMAT, path)
        )
        number = _get(path, "bigint")
        # ISO strings are checked against the minimum through their epoch value.
        number = F.coalesce(number, F.unix_millis(_timestamp(path)))
    else:
        number = _get(path, "double")
    out_of_range = F.lit(False)
    if spec.minimum is not None:
        out_of_range = out_of_range | (number < spec.minimum)
    if spec.maximum is not None:
        out_of_range = out_of_range | (number > spec.maximum)
    return reason.when(out_of_range, _reason(contract.REASON_OUT_OF_RANGE, path))


def _typed_fields() -> list[Column]:
    """Contract fields with silver types; values of invalid rows are meaningless but harmless."""
    context = F.when(
        _type_at(names.CONTEXT).startswith("OBJECT"),
        F.struct(
            _get(f"{names.CONTEXT}.device", "string").alias("device"),
            _get(f"{names.CONTEXT}.country", "string").alias("country"),
            _get(f"{names.CONTEXT}.referrer", "string").alias("referrer"),
            _get(f"{names.CONTEXT}.hour_of_day", "int").alias("hour_of_day"),
        ),
    )
    return [
        _get(names.EVENT_ID, "string").alias(names.EVENT_ID),
        _get(names.EVENT_TYPE, "string").alias(names.EVENT_TYPE),
        _get(names.USER_ID, "string").alias(names.USER_ID),
        _get(names.ITEM_ID, "string").alias(names.ITEM_ID),
        _get(names.SESSION_ID, "string").alias(names.SESSION_ID),
        _timestamp(names.EVENT_TS).alias(names.EVENT_TS),
        _get(names.DWELL_MS, "bigint").alias(names.DWELL_MS),
        _get(names.SCROLL_DEPTH, "double").alias(names.SCROLL_DEPTH),
        _get(names.VALUE, "double").alias(names.VALUE),
        context.alias(names.CONTEXT),
        _get(names.SCHEMA_VERSION, "int").alias(names.SCHEMA_VERSION),
    ]


def _type_at(path: str) -> Column:
    """``STRING``, ``BIGINT``, ``DECIMAL(3,1)``, ``OBJECT<...>``, ``VOID`` (JSON null) or null (absent)."""
    return F.expr(f"schema_of_variant(variant_get({VARIANT}, '$.{path}', 'variant'))")


def _get(path: str, sql_type: str) -> Column:
    return F.expr(f"try_variant_get({VARIANT}, '$.{path}', '{sql_type}')")


def _timestamp(path: str) -> Column:
    """A contract timestamp: ISO-8601 string with a zone, or epoch milliseconds."""
    kind = _type_at(path)
    text = _get(path, "string")
    iso = F.when(
        (kind == "STRING") & _full_match(text, contract.ISO_TS_PATTERN),
        F.expr(f"try_cast(try_variant_get({VARIANT}, '$.{path}', 'string') AS TIMESTAMP)"),
    )
    millis = F.when(kind.isin(*_INTEGER_TYPES), F.timestamp_millis(_get(path, "bigint")))
    return F.coalesce(iso, millis)


def _has_kind(kind_name: str, kind: Column) -> Column:
    if kind_name == "string":
        return kind == "STRING"
    if kind_name == "integer":
        return kind.isin(*_INTEGER_TYPES)
    if kind_name == "number":
        return kind.isin(*_INTEGER_TYPES, "DOUBLE", "FLOAT") | kind.startswith("DECIMAL")
    if kind_name == "timestamp":
        return (kind == "STRING") | kind.isin(*_INTEGER_TYPES)
    raise ValueError(f"unknown field kind {kind_name!r}")


def _absent(kind: Column) -> Column:
    return kind.isNull() | (kind == "VOID")


def _empty_required(spec: FieldSpec, path: str, kind: Column) -> Column:
    if not spec.required:
        return F.lit(False)
    return (kind == "STRING") & (_get(path, "string") == "")


def _full_match(text: Column, pattern: str) -> Column:
    return text.rlike(f"^(?:{pattern})\\z")


def _reason(template: str, path: str, applies: bool = True) -> Column:
    return F.lit(template.format(field=path)) if applies else F.lit(None).cast("string")


def _one(reason: str) -> Column:
    return F.array(F.lit(reason))

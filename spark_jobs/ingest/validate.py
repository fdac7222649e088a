"""Contract validation as Spark expressions: bronze rows in, typed rows with reasons out.

The rules are generated from ``contract.events.FIELDS`` so they cannot drift from the Python
validator producers use; ``tests/unit/test_ingest_validate.py`` holds the two to the same
reason strings record by record.

Types are judged on Spark's VARIANT (``try_parse_json``): ``schema_of_variant`` tells a JSON
string from a number exactly, where ``from_json`` would quietly turn ``123`` into ``"123"``.

``try_parse_json`` stops at the end of the first JSON value and ignores what follows
(``{"a":1}}`` parses). So the record is parsed wrapped as ``[<record>,0]``: only a record that is
exactly one JSON value yields that two-element array, and its object is then at ``$[0]``.

Two projections keep it fast: the first *probes* each field once (its JSON type, its value as
text, number and timestamp), the second judges the record from those columns. Spark does not
inline an expensive probe into every rule that reads it, so each VARIANT lookup runs once.
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
ROOT = "$[0]"  # where the record's own value sits in the ``[<record>,0]`` wrapper

_INTEGER_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")


def validate_records(records: DataFrame, limits: Limits) -> DataFrame:
    """Parse and judge raw event JSON.

    Input: ``value`` (raw string) and ``kafka_ts`` (the reference time for "too far in the
    future"), plus any other columns, which are kept. Output adds ``_reasons``
    (array<string>, empty when valid) and one typed column per contract field, named as in
    silver. The raw string is kept as ``_raw``; the input ``value`` is replaced by the typed
    event ``value`` (a number), as in silver.
    """
    df = records.withColumnRenamed(names.KAFKA_VALUE, RAW)
    kept = df.columns
    wrapped = F.expr(f"try_parse_json(concat('[', {RAW}, ',0]'))")
    probed = df.withColumn(VARIANT, wrapped).select(*kept, VARIANT, *_probes())
    return probed.select(*kept, _reasons(F.col(names.KAFKA_TS), limits).alias(REASONS), *_typed_fields())


# Which views of each field the rules and the typed output read; probing only those halves the
# VARIANT work per record.
_VIEWS_BY_KIND = {
    "string": ("text",),
    "integer": ("integer", "number"),
    "number": ("number",),
    "timestamp": ("text", "integer"),
}
_PROBED: dict[str, tuple[str, ...]] = {
    **{spec.name: _VIEWS_BY_KIND[spec.kind] for spec in contract.FIELDS},
    names.CONTEXT: (),
    names.SCHEMA_VERSION: ("integer",),
    **{f"{names.CONTEXT}.{spec.name}": _VIEWS_BY_KIND[spec.kind] for spec in contract.CONTEXT_FIELDS},
}
_SQL_TYPES = {"text": "string", "number": "double", "integer": "bigint"}


def _probes() -> list[Column]:
    """One column per (field, view) the rules need: JSON type, text, number, integer; plus event time."""
    exactly_one_value = (
        f"try_variant_get({VARIANT}, '$[1]', 'int') = 0 AND variant_get({VARIANT}, '$[2]', 'variant') IS NULL"
    )
    root = f"schema_of_variant(variant_get({VARIANT}, '{ROOT}', 'variant'))"
    cols = [F.expr(f"CASE WHEN {exactly_one_value} THEN {root} END").alias(_probe("root", "type"))]
    for path, views in _PROBED.items():
        lookup = f"variant_get({VARIANT}, '{ROOT}.{path}', 'variant')"
        cols.append(F.expr(f"schema_of_variant({lookup})").alias(_probe(path, "type")))
        cols += [
            F.expr(f"try_variant_get({VARIANT}, '{ROOT}.{path}', '{_SQL_TYPES[view]}')").alias(
                _probe(path, view)
            )
            for view in views
        ]
    kind, text = F.col(_probe(names.EVENT_TS, "type")), F.col(_probe(names.EVENT_TS, "text"))
    iso = F.when(
        (kind == "STRING") & _full_match(text, contract.ISO_TS_PATTERN),
        F.expr(f"try_cast(try_variant_get({VARIANT}, '{ROOT}.{names.EVENT_TS}', 'string') AS TIMESTAMP)"),
    )
    millis = F.when(kind.isin(*_INTEGER_TYPES), F.timestamp_millis(F.col(_probe(names.EVENT_TS, "integer"))))
    cols.append(F.coalesce(iso, millis).alias(_probe(names.EVENT_TS, "ts")))
    return cols


def _reasons(reference_ts: Column, limits: Limits) -> Column:
    """Same reasons, in the same order, as ``contract.events.validate_event``."""
    root_type = F.col(_probe("root", "type"))
    version_type = _type(names.SCHEMA_VERSION)
    version = F.col(_probe(names.SCHEMA_VERSION, "integer"))
    supported = F.lit(sorted(contract.SUPPORTED_SCHEMA_VERSIONS))

    field_reasons = {spec.name: _field_reason(spec, spec.name, limits) for spec in contract.FIELDS}
    skew = F.expr(f"INTERVAL {int(limits.max_future_skew_ms)} MILLISECONDS")
    future = F.when(
        field_reasons[names.EVENT_TS].isNull() & (F.col(_probe(names.EVENT_TS, "ts")) > reference_ts + skew),
        F.lit(contract.REASON_FUTURE_TS),
    )
    context_type = _type(names.CONTEXT)
    context_is_object = context_type.startswith("OBJECT")
    context_wrong = F.when(
        ~_absent(context_type) & ~context_is_object,
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
        F.array(*field_reasons.values(), future, context_wrong, *context_reasons, version_reason)
    )
    return (
        F.when(F.octet_length(F.col(RAW)) > limits.max_event_bytes, _one(contract.REASON_OVERSIZED))
        .when(root_type.isNull(), _one(contract.REASON_INVALID_JSON))
        .when(~root_type.startswith("OBJECT"), _one(contract.REASON_NOT_OBJECT))
        .when(
            version_type.isin(*_INTEGER_TYPES) & ~F.array_contains(supported, version),
            _one(contract.REASON_UNSUPPORTED_VERSION),
        )
        .otherwise(field_level)
    )


def _field_reason(spec: FieldSpec, path: str, limits: Limits) -> Column:
    """At most one reason for one field, by the contract's precedence; null when it is fine."""
    kind = _type(path)
    text = F.col(_probe(path, "text"))
    empty = (kind == "STRING") & (text == "") if spec.required else F.lit(False)
    reason = F.when(_absent(kind) | empty, _reason(contract.REASON_MISSING, path, spec.required))
    reason = reason.when(~_has_kind(spec.kind, kind), _reason(contract.REASON_WRONG_TYPE, path))
    if spec.kind == "string":
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
        ts = F.col(_probe(path, "ts"))
        reason = reason.when(ts.isNull(), _reason(contract.REASON_INVALID_FORMAT, path))
        number = F.unix_millis(ts)
    else:
        number = F.col(_probe(path, "number"))
    out_of_range = F.lit(False)
    if spec.minimum is not None:
        out_of_range = out_of_range | (number < spec.minimum)
    if spec.maximum is not None:
        out_of_range = out_of_range | (number > spec.maximum)
    return reason.when(out_of_range, _reason(contract.REASON_OUT_OF_RANGE, path))


def _typed_fields() -> list[Column]:
    """Contract fields with silver types; values of invalid rows are meaningless but harmless."""
    context = F.when(
        _type(names.CONTEXT).startswith("OBJECT"),
        F.struct(
            F.col(_probe(f"{names.CONTEXT}.device", "text")).alias("device"),
            F.col(_probe(f"{names.CONTEXT}.country", "text")).alias("country"),
            F.col(_probe(f"{names.CONTEXT}.referrer", "text")).alias("referrer"),
            F.col(_probe(f"{names.CONTEXT}.hour_of_day", "integer")).cast("int").alias("hour_of_day"),
        ),
    )
    text = [names.EVENT_ID, names.EVENT_TYPE, names.USER_ID, names.ITEM_ID, names.SESSION_ID]
    return [
        *(F.col(_probe(name, "text")).alias(name) for name in text),
        F.col(_probe(names.EVENT_TS, "ts")).alias(names.EVENT_TS),
        F.col(_probe(names.DWELL_MS, "integer")).alias(names.DWELL_MS),
        F.col(_probe(names.SCROLL_DEPTH, "number")).alias(names.SCROLL_DEPTH),
        F.col(_probe(names.VALUE, "number")).alias(names.VALUE),
        context.alias(names.CONTEXT),
        F.col(_probe(names.SCHEMA_VERSION, "integer")).cast("int").alias(names.SCHEMA_VERSION),
    ]


def _probe(path: str, view: str) -> str:
    """Column name of one probe, e.g. ``_p_context_device_type``."""
    return f"_p_{path.replace('.', '_')}_{view}"


def _type(path: str) -> Column:
    """``STRING``, ``BIGINT``, ``DECIMAL(3,1)``, ``OBJECT<...>``, ``VOID`` (JSON null) or null (absent)."""
    return F.col(_probe(path, "type"))


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


def _full_match(text: Column, pattern: str) -> Column:
    return text.rlike(f"^(?:{pattern})\\z")


def _reason(template: str, path: str, applies: bool = True) -> Column:
    return F.lit(template.format(field=path)) if applies else F.lit(None).cast("string")


def _one(reason: str) -> Column:
    return F.array(F.lit(reason))

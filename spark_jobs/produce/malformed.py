"""Malformed records, one builder per way the contract can reject an event.

Each kind is named by the exact reason list ``validate_event`` must return for it (one reason),
so a test, or the ingest stream's quarantine counts, can check every injected record landed
where it should. Builders start from a good event and break one thing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from spark_jobs.common import names
from spark_jobs.contract import events as contract

Event = dict[str, Any]
Builder = Callable[[Event, random.Random, contract.Limits], bytes]

FUTURE_SHIFT = timedelta(days=365)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, the producers' wire format."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _with(event: Event, **changes: Any) -> bytes:
    return dumps({**event, **changes})


def _without(event: Event, field: str) -> bytes:
    return dumps({k: v for k, v in event.items() if k != field})


def _with_context(event: Event, **changes: Any) -> bytes:
    return _with(event, context={**event.get(names.CONTEXT, {}), **changes})


def _oversized(event: Event, _rng: random.Random, limits: contract.Limits) -> bytes:
    return _with(event, padding="x" * (limits.max_event_bytes + 1))


def _invalid_json(event: Event, rng: random.Random, _limits: contract.Limits) -> bytes:
    data = dumps(event)
    variant = rng.randrange(3)
    if variant == 0:
        return data[: len(data) // 2]  # truncated mid-record
    if variant == 1:
        return data.replace(b'"', b"'")  # a Python repr, not JSON
    # Not ``data + b"}"``: Spark's parser stops after the first complete value and accepts it.
    return data[:-1]  # the closing brace is missing


def _not_an_object(event: Event, rng: random.Random, _limits: contract.Limits) -> bytes:
    return rng.choice([dumps([event]), b'"a string"', b"42", b"[]"])


def _future_ts(event: Event, _rng: random.Random, _limits: contract.Limits) -> bytes:
    ts_ms = contract.event_ts_millis(event[names.EVENT_TS])
    if ts_ms is None:
        raise ValueError("future_event_ts needs a good event to shift")
    shifted = datetime.fromtimestamp(ts_ms / 1000, UTC) + FUTURE_SHIFT
    return _with(event, event_ts=shifted.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def _ts_without_zone(event: Event, _rng: random.Random, _limits: contract.Limits) -> bytes:
    ts_ms = contract.event_ts_millis(event[names.EVENT_TS]) or 0
    naive = datetime.fromtimestamp(ts_ms / 1000, UTC).replace(tzinfo=None)
    return _with(event, event_ts=naive.isoformat(timespec="milliseconds"))


def _reason(template: str, field: str) -> str:
    return template.format(field=field)


# kind (= the one reason validate_event must give) -> builder.
BUILDERS: dict[str, Builder] = {
    contract.REASON_OVERSIZED: _oversized,
    contract.REASON_INVALID_JSON: _invalid_json,
    contract.REASON_NOT_OBJECT: _not_an_object,
    contract.REASON_UNSUPPORTED_VERSION: lambda e, _r, _l: _with(e, schema_version=2),
    _reason(contract.REASON_MISSING, names.USER_ID): lambda e, _r, _l: _without(e, names.USER_ID),
    _reason(contract.REASON_MISSING, names.SCHEMA_VERSION): (
        lambda e, _r, _l: _without(e, names.SCHEMA_VERSION)
    ),
    _reason(contract.REASON_WRONG_TYPE, names.ITEM_ID): (
        lambda e, r, _l: _with(e, item_id=r.randrange(1, 10_000))
    ),
    _reason(contract.REASON_WRONG_TYPE, names.DWELL_MS): lambda e, _r, _l: _with(e, dwell_ms="1200"),
    _reason(contract.REASON_TOO_LONG, names.USER_ID): (
        lambda e, _r, lim: _with(e, user_id="u" * (lim.max_id_length + 1))
    ),
    _reason(contract.REASON_INVALID_FORMAT, names.EVENT_ID): (
        lambda e, _r, _l: _with(e, event_id="not-a-uuid-" + e[names.EVENT_ID][:8])
    ),
    _reason(contract.REASON_INVALID_FORMAT, names.EVENT_TS): _ts_without_zone,
    _reason(contract.REASON_OUT_OF_RANGE, names.DWELL_MS): (
        lambda e, r, _l: _with(e, dwell_ms=-r.randrange(1, 60_000))
    ),
    _reason(contract.REASON_OUT_OF_RANGE, names.SCROLL_DEPTH): (
        lambda e, r, _l: _with(e, scroll_depth=round(1.0 + r.uniform(0.01, 2.0), 3))
    ),
    _reason(contract.REASON_OUT_OF_RANGE, "context.hour_of_day"): (
        lambda e, _r, _l: _with_context(e, hour_of_day=25)
    ),
    _reason(contract.REASON_OUT_OF_RANGE, "context.device"): (
        lambda e, _r, _l: _with_context(e, device="fridge")
    ),
    contract.REASON_UNKNOWN_EVENT_TYPE: lambda e, _r, _l: _with(e, event_type="hover"),
    contract.REASON_FUTURE_TS: _future_ts,
}

BAD_KINDS: tuple[str, ...] = tuple(BUILDERS)


def make_bad(kind: str, event: Event, rng: random.Random, limits: contract.Limits) -> bytes:
    """The wire bytes of ``event`` broken so that ``validate_event`` gives exactly ``[kind]``.

    ``event`` must be a valid event with an ISO ``event_ts`` and a ``context``; the future
    timestamp lies a year past the event's own, so it is rejected against any send time
    within a year of the event.
    """
    try:
        builder = BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown bad-record kind {kind!r}; known: {', '.join(BAD_KINDS)}") from None
    return builder(event, rng, limits)

"""``recsys produce synthetic | movielens | file``: send events to Kafka, and load the catalog.

Handlers read the arguments, build the records with the pure generators of
``spark_jobs.produce`` and push them through one ``KafkaSink``. The catalog (``recsys.items``,
``recsys.users``) is loaded with Spark unless ``--no-catalog``; Spark is imported only then, so
``--help`` and catalog-less runs start instantly. The broker is contacted first, so a missing
broker fails in a second rather than after a Spark start.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spark_jobs.cli.args import positive_int
from spark_jobs.common import console, names
from spark_jobs.common.config import Config, get_config
from spark_jobs.common.errors import RecsysError, UsageError
from spark_jobs.contract.events import Limits, event_ts_millis
from spark_jobs.produce.kafka_sink import KafkaSink, SinkStats, ensure_topic, message_key
from spark_jobs.produce.pacing import pace_event_time, pace_rate

NEXT_STEPS = ("recsys ingest --once      # Kafka -> bronze + silver / quarantine",)
Record = dict[str, Any] | bytes
Row = dict[str, Any]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``produce`` and its sources to the ``recsys`` parser."""
    parser = subparsers.add_parser(
        "produce",
        help="send events to Kafka (synthetic world, MovieLens replay, JSON-lines file)",
        description="Send contract events to the configured topic (key = user_id) and, for "
        "synthetic and MovieLens, load recsys.items / recsys.users (needs Spark; skip with "
        "--no-catalog).",
    )
    sources = parser.add_subparsers(dest="produce_source", metavar="SOURCE", required=True)

    syn = sources.add_parser(
        "synthetic",
        help="a seeded synthetic world: users with tastes, items, realistic sessions",
        description="Generate a deterministic world (same --seed, same catalog and, for the same "
        "start time, the same events and ids) and send its sessions. Without --rate the events "
        "form recent history ending now; with --rate they are played in real time.",
    )
    syn.add_argument("--users", type=positive_int, default=1000, help="users (default 1000)")
    syn.add_argument("--items", type=positive_int, default=500, help="items (default 500)")
    syn.add_argument("--events", type=positive_int, default=100_000, help="records to send (default 100000)")
    syn.add_argument(
        "--rate",
        type=_positive_float,
        help="events per second, sent in real time with event time = send time "
        "(default: no pacing; the events then form the recent past)",
    )
    syn.add_argument(
        "--bad-fraction",
        type=_fraction,
        default=0.0,
        help="share of malformed records, every kind the contract rejects (default 0)",
    )
    syn.add_argument(
        "--duplicate-fraction",
        type=_fraction,
        default=0.0,
        help="share of exact re-sends of earlier events, to exercise dedup (default 0)",
    )
    syn.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    _add_no_catalog(syn)
    syn.set_defaults(handler=_run_synthetic)

    ml = sources.add_parser(
        "movielens",
        help="replay a MovieLens 100k folder as rating events, in timestamp order",
        description="Send u.data as `rating` events in timestamp order (ids derived from "
        "user-item-time, so a second replay is deduplicated) and load u.item / u.user.",
    )
    ml.add_argument("--path", type=Path, required=True, help="folder with u.data, u.item, u.user")
    ml.add_argument(
        "--speedup",
        type=_positive_float,
        help="compress event-time gaps by this factor (default: as fast as possible)",
    )
    ml.add_argument("--limit", type=positive_int, help="send only the first N ratings")
    _add_no_catalog(ml)
    ml.set_defaults(handler=_run_movielens)

    jl = sources.add_parser(
        "file",
        help="send each line of a JSON-lines file as it is",
        description="Send every non-blank line of a JSON-lines file byte for byte (malformed "
        "lines included: the ingest stream quarantines them). Key = the line's user_id, if any.",
    )
    jl.add_argument("--path", type=Path, required=True, help="JSON-lines file")
    jl.add_argument("--rate", type=_positive_float, help="lines per second (default: no pacing)")
    jl.set_defaults(handler=_run_file)


@dataclass(frozen=True)
class SendResult:
    stats: SinkStats
    events_per_s: float
    seconds: float


def _run_synthetic(args: argparse.Namespace) -> int:
    from spark_jobs.produce import synthetic

    if args.bad_fraction + args.duplicate_fraction >= 1:
        raise UsageError(
            f"--bad-fraction + --duplicate-fraction must be below 1, got "
            f"{args.bad_fraction} + {args.duplicate_fraction}"
        )
    config = get_config()
    anchor_ms = synthetic.world_anchor_ms(_now_ms())
    world = synthetic.build_world(args.users, args.items, args.seed, anchor_ms)
    kinds: Counter[str] = Counter()
    span = _Span()
    with _open_sink(config) as sink:
        loaded = _maybe_load_catalog(
            config,
            args.no_catalog,
            lambda: (synthetic.item_rows(world), synthetic.user_rows(world)),
        )
        # Time is read only now, after the catalog load: paced events are stamped as sent.
        now_ms = _now_ms()
        events_per_s = args.rate or synthetic.DEFAULT_EVENTS_PER_S
        start_ms = now_ms if args.rate else synthetic.history_start_ms(now_ms, args.events)
        records = synthetic.generate_records(
            world,
            args.events,
            start_ms,
            bad_fraction=args.bad_fraction,
            duplicate_fraction=args.duplicate_fraction,
            events_per_s=events_per_s,
            limits=Limits.from_config(config),
        )

        def stamped() -> Iterator[tuple[int, bytes | None, Record]]:
            """Records with the stream's event time so far (malformed ones have none)."""
            current_ms = start_ms
            for record, kind in records:
                kinds[kind] += 1
                if kind == synthetic.GOOD:
                    ts = record[names.EVENT_TS]  # type: ignore[index]
                    span.see(ts)
                    if args.rate:
                        current_ms = event_ts_millis(ts) or current_ms
                yield current_ms, message_key(record), record

        # --rate R: traffic of R events/s played in real time, so event time = send time.
        speedup = 1.0 if args.rate else None
        paced = pace_event_time(stamped(), lambda r: r[0], speedup, origin_ms=start_ms)
        how = f"{args.rate:g} events/s in real time" if args.rate else "as fast as possible"
        console.step(f"sending {args.events:,} synthetic records (seed {args.seed}, {how})")
        result = _send(sink, ((key, value) for _, key, value in paced), args.events)
    bad = {k: n for k, n in sorted(kinds.items()) if k not in (synthetic.GOOD, synthetic.DUPLICATE)}
    rows: list[tuple[str, object]] = [
        *_sent_rows(config, result),
        ("good events", kinds[synthetic.GOOD]),
        ("duplicates re-sent", kinds[synthetic.DUPLICATE]),
        ("bad injected", sum(bad.values())),
        *((f"  bad {kind}", n) for kind, n in bad.items()),
        ("event time", span.text()),
        ("world", f"{args.users:,} users, {args.items:,} items, seed {args.seed}"),
        *loaded,
    ]
    return _finish("recsys produce synthetic", rows, result)


def _run_movielens(args: argparse.Namespace) -> int:
    from spark_jobs.produce import movielens

    path = movielens.check_folder(args.path)
    config = get_config()
    console.step(f"reading MovieLens ratings from {path}")
    ratings = movielens.read_ratings(path)
    chosen = ratings if args.limit is None else ratings[: args.limit]
    events = movielens.to_events(chosen)
    paced = pace_event_time(events, lambda e: e[names.EVENT_TS], args.speedup)
    keyed = ((e[names.USER_ID].encode("utf-8"), e) for e in paced)
    with _open_sink(config) as sink:
        loaded = _maybe_load_catalog(
            config,
            args.no_catalog,
            lambda: (
                movielens.read_items(path),
                movielens.read_users(path, movielens.first_ratings(ratings)),
            ),
        )
        how = f"{args.speedup:g}x event time" if args.speedup else "as fast as possible"
        console.step(f"replaying {len(chosen):,} ratings ({how})")
        result = _send(sink, keyed, len(chosen))
    first, last = (chosen[0].ts_ms, chosen[-1].ts_ms) if chosen else (None, None)
    rows: list[tuple[str, object]] = [
        *_sent_rows(config, result),
        ("event time", f"{_iso(first)} .. {_iso(last)}" if first is not None else ""),
        ("speedup", f"{args.speedup:g}x" if args.speedup else "none"),
        *loaded,
    ]
    return _finish("recsys produce movielens", rows, result)


def _run_file(args: argparse.Namespace) -> int:
    from spark_jobs.produce.jsonl import JsonLinesFile

    source = JsonLinesFile(args.path)
    config = get_config()
    with _open_sink(config) as sink:
        console.step(f"sending the lines of {source.path}")
        result = _send(sink, pace_rate(source, args.rate), None)
    rows: list[tuple[str, object]] = [
        *_sent_rows(config, result),
        ("lines with a user_id key", source.keyed),
        ("blank lines skipped", source.blank_lines),
        ("file", str(source.path)),
    ]
    return _finish("recsys produce file", rows, result)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _open_sink(config: Config) -> KafkaSink:
    console.step(f"connecting to Kafka at {config.kafka.bootstrap_servers}")
    if ensure_topic(config):
        console.info(f"created topic {config.kafka.topic} ({config.kafka.partitions} partitions)")
    return KafkaSink.from_config(config)


def _send(sink: KafkaSink, records: Iterable[tuple[bytes | None, Record]], total: int | None) -> SendResult:
    progress = console.Progress("queued", total=total)
    sink.progress = progress
    for key, value in records:
        sink.send(key, value)
    console.info("waiting for the broker to acknowledge everything")
    stats = sink.flush()
    rate = progress.done()
    return SendResult(stats, rate, progress.elapsed)


def _maybe_load_catalog(
    config: Config, skip: bool, rows: Callable[[], tuple[list[Row], list[Row]]]
) -> list[tuple[str, object]]:
    """Load items and users unless ``skip``; ``rows()`` gives (item rows, user rows)."""
    if skip:
        return [("catalog", "skipped (--no-catalog)")]
    item_rows, user_rows = rows()
    console.step(f"loading {len(item_rows):,} items and {len(user_rows):,} users (starting Spark)")
    from spark_jobs.common.spark import build_session
    from spark_jobs.produce import catalog

    spark = build_session(config, app_name="recsys-produce")
    try:
        counts = catalog.upsert_catalog(
            spark,
            config,
            catalog.items_df(spark, item_rows),
            catalog.users_df(spark, user_rows),
            now_ts=datetime.now(UTC),
        )
    finally:
        spark.stop()
    loaded = {"items": len(item_rows), "users": len(user_rows)}
    return [
        (
            f"{c.table} loaded",
            f"{loaded[c.table.rsplit('.', 1)[-1]]:,} ({c.inserted:,} new, {c.updated:,} changed)",
        )
        for c in counts
    ]


def _sent_rows(config: Config, result: SendResult) -> list[tuple[str, object]]:
    stats = result.stats
    rows: list[tuple[str, object]] = [
        ("records sent (acked)", stats.sent),
        ("failed", stats.failed),
        ("events/s", round(result.events_per_s)),
        ("seconds", round(result.seconds, 1)),
        ("megabytes", round(stats.bytes / 1e6, 1)),
        ("topic", f"{config.kafka.topic} @ {config.kafka.bootstrap_servers}"),
    ]
    if stats.errors:
        rows.append(("errors", ", ".join(stats.errors)))
    return rows


def _finish(title: str, rows: Sequence[tuple[str, object]], result: SendResult) -> int:
    console.summary(title, rows, next_steps=NEXT_STEPS)
    if result.stats.failed:
        raise RecsysError(
            f"{result.stats.failed:,} of {result.stats.submitted:,} records were not acknowledged",
            hint="check the broker (`recsys stack status`) and send again; ids are stable, "
            "so re-sent events are deduplicated",
        )
    return 0


class _Span:
    """First and last event time seen (the synthetic stream is in event-time order)."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.last: str | None = None

    def see(self, ts: str) -> None:
        if self.first is None:
            self.first = ts
        self.last = ts

    def text(self) -> str:
        return f"{self.first} .. {self.last}" if self.first else ""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _add_no_catalog(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-catalog",
        action="store_true",
        help="do not load recsys.items / recsys.users (no Spark start)",
    )


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value

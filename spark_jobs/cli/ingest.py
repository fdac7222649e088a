"""``recsys ingest``: Kafka -> bronze + silver/quarantine (or silver re-derived from bronze)."""

from __future__ import annotations

import argparse

from spark_jobs.common import console, names
from spark_jobs.common.config import get_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "ingest",
        help="stream Kafka events into bronze, silver and quarantine",
        description="Kafka -> recsys.events_bronze + recsys.events + recsys.events_quarantine. "
        "Exactly once: stop and restart at any time.",
    )
    parser.add_argument("--once", action="store_true", help="process what is in Kafka now and exit")
    parser.add_argument(
        "--from-bronze",
        action="store_true",
        help="re-derive silver and quarantine from recsys.events_bronze instead of reading Kafka "
        "(its own checkpoint; for a rebuild, clear both tables first)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from spark_jobs.common.spark import build_session
    from spark_jobs.ingest import job

    config = get_config()
    console.step(f"starting Spark ({config.spark.master or 'cluster'})")
    spark = build_session(config, app_name="recsys-ingest")
    if not args.once:
        source = config.table(names.EVENTS_BRONZE) if args.from_bronze else config.kafka.topic
        console.step(f"streaming {source} every {config.ingest.trigger_interval}; Ctrl-C to stop")
        job.run_continuous(spark, config, on_progress=console.info, from_bronze=args.from_bronze)
        return 0
    if args.from_bronze:
        console.step(f"re-deriving silver and quarantine from {config.table(names.EVENTS_BRONZE)}")
    else:
        console.step(f"ingesting what is in {config.kafka.topic} at {config.kafka.bootstrap_servers}")
    counts = job.run_once(spark, config, on_progress=console.info, from_bronze=args.from_bronze)
    reasons = job.top_reasons(spark, config, limit=5)
    console.summary(
        "ingest summary",
        [
            (config.table(names.EVENTS_BRONZE), counts.bronze),
            (config.table(names.EVENTS), counts.silver),
            (config.table(names.EVENTS_QUARANTINE), counts.quarantine),
            ("duplicates dropped", counts.duplicates),
            *((f"  quarantined: {reason}", n) for reason, n in reasons),
        ],
        next_steps=[
            f'recsys sql "select event_type, count(*) from {config.table(names.EVENTS)} group by 1"',
            f'recsys sql "select reason, count(*) from {config.table(names.EVENTS_QUARANTINE)} group by 1"',
        ],
    )
    return 0

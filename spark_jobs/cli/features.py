"""``recsys features``: silver events -> recsys.user_features + recsys.item_features."""

from __future__ import annotations

import argparse

from spark_jobs.common import console, names
from spark_jobs.common.config import FeatureSettings, get_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "features",
        help="stream silver events into the user and item feature tables",
        description="recsys.events -> recsys.user_features + recsys.item_features: recency, frequency, "
        "decayed category affinity, last items, sessions; popularity, trending, CTR. "
        "Exactly once: stop and restart at any time.",
    )
    parser.add_argument("--once", action="store_true", help="fold in the events in silver now and exit")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from spark_jobs.common.spark import build_session
    from spark_jobs.features import job

    config = get_config()
    settings = config.features
    console.step(f"starting Spark ({config.spark.master or 'cluster'})")
    spark = build_session(config, app_name="recsys-features")
    source = config.table(names.EVENTS)
    if not args.once:
        console.step(f"streaming {source} every {settings.trigger_interval}; Ctrl-C to stop")
        job.run_continuous(spark, config, on_progress=console.info)
        return 0
    console.step(f"folding the new events of {source} into the feature tables")
    counts = job.run_once(spark, config, on_progress=console.info)
    trending = job.top_trending(spark, config, limit=5)
    console.summary(
        "features summary",
        [
            (config.table(names.USER_FEATURES), counts.users),
            (config.table(names.ITEM_FEATURES), counts.items),
            ("newest event", counts.newest_event_ts),
            ("half-lives (h): affinity / popularity / trending", _half_lives(settings)),
            *((f"  trending: {item}", score) for item, score in trending),
        ],
        next_steps=[
            f'recsys sql "select * from {config.table(names.USER_FEATURES)} limit 5"',
            f'recsys sql "select item_id, trending, ctr from {config.table(names.ITEM_FEATURES)}'
            ' order by trending desc limit 10"',
        ],
    )
    return 0


def _half_lives(settings: FeatureSettings) -> str:
    hours = (
        settings.affinity_half_life_hours,
        settings.popularity_half_life_hours,
        settings.trending_half_life_hours,
    )
    return " / ".join(f"{h:g}" for h in hours)

"""``recsys score [--once]``: the streaming scorer that keeps ``recsys.recommendations`` fresh."""

from __future__ import annotations

import argparse
import time

from spark_jobs.common import console, names
from spark_jobs.common.config import get_config
from spark_jobs.common.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score",
        help="re-rank the top-N of users with new events into recsys.recommendations",
        description="Streaming scorer: every micro-batch of new silver events re-scores the users "
        "it touched (ALS fold-in, candidates, champion ranker, rules, MMR, reasons) on the executors "
        "and MERGEs their lists into recsys.recommendations. Per-user state lives in the stream's "
        "checkpoint; a restart resumes where the last committed batch ended. --once scores every "
        "active user from silver and exits.",
    )
    parser.add_argument("--once", action="store_true", help="score all active users once and exit")
    parser.add_argument(
        "--user", action="append", default=None, metavar="ID", help="with --once: only these users"
    )
    parser.add_argument(
        "--mmr-lambda", type=float, default=None, help="relevance vs diversity, 0..1 (default from config)"
    )
    parser.add_argument(
        "--reset-state",
        action="store_true",
        help="delete the stream's checkpoint and state first; the stream then rebuilds them from silver",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from spark_jobs.common.spark import build_session
    from spark_jobs.serving import job

    config = get_config()
    if args.mmr_lambda is not None:
        if not 0.0 <= args.mmr_lambda <= 1.0:
            raise UsageError(f"--mmr-lambda must be in [0, 1], got {args.mmr_lambda}")
        config = job.with_serving(config, mmr_lambda=args.mmr_lambda)
    if args.user and not args.once:
        raise UsageError("--user only works with --once")
    console.step(f"starting Spark ({config.spark.master or 'cluster'})")
    spark = build_session(config, app_name="recsys-score")
    if args.reset_state:
        dropped = job.reset_state(spark, config)
        console.step(
            f"scorer state {'deleted' if dropped else 'was empty'}: the stream rebuilds it from silver"
        )
    if args.once:
        console.step("building user states and the item snapshot from silver, scoring every active user")
        scorer = job.refresh_all(spark, config, users=args.user)
    else:
        console.step(f"scoring new events every {config.serving.trigger_interval}; Ctrl-C to stop")
        query, scorer = job.start_stream(spark, config)
        try:
            while query.isActive:
                time.sleep(10)
                s = scorer.stats
                console.info(f"{s.batches} batches, {s.events:,} events, {s.users_scored:,} users re-scored")
            query.awaitTermination()
        except KeyboardInterrupt:
            query.stop()
    _summary(config, scorer)
    return 0


def _summary(config, scorer) -> None:
    s = scorer.stats
    rate = s.users_scored / s.seconds if s.seconds else 0.0
    console.summary(
        "recsys score",
        [
            ("users scored", s.users_scored),
            (f"rows in {config.table(names.RECOMMENDATIONS)}", s.rows_written),
            ("users per second", round(rate, 1)),
            ("seconds reading / scoring / writing", f"{s.read_s:.1f} / {s.score_s:.1f} / {s.write_s:.1f}"),
            ("models", ", ".join(sorted(s.model_versions)) or "none"),
            *(("note", m) for m in scorer.store.messages),
            *((("item snapshot rebuilds", s.snapshot_refreshes),) if s.snapshot_refreshes else ()),
            *((("events for unknown items", s.unknown_item_events),) if s.unknown_item_events else ()),
        ],
        next_steps=[
            f"recsys sql \"select * from {config.table(names.VIEW_USER_TOP_N)} where user_id = '...'\""
        ],
    )

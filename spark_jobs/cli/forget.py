"""``recsys forget``: GDPR erasure requests, and erasing users now."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from spark_jobs.common import console
from spark_jobs.common.config import get_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "forget",
        help="GDPR erasure: record a request, or erase now",
        description="Record an erasure request for a user (processed by the maintenance DAG), or "
        "with --now erase the user from every table holding them (bronze included), vacuum "
        "the old files away and write an audit row. --pending processes every pending request.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", metavar="ID", help="the user id to erase")
    target.add_argument("--pending", action="store_true", help="process every pending request (maintenance)")
    parser.add_argument("--now", action="store_true", help="with --user: erase immediately")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from spark_jobs.common.spark import build_session
    from spark_jobs.privacy import erasure
    from spark_jobs.privacy.tables import ERASURE_AUDIT, ERASURE_REQUESTS

    config = get_config()
    now = datetime.now(UTC)
    if args.user is not None:
        erasure.validate_user_id(args.user, config.ingest.max_id_length)
    console.step(f"starting Spark ({config.spark.master or 'cluster'})")
    spark = build_session(config, app_name="recsys-forget")
    rows: list[tuple[str, object]] = []
    users = None
    if args.user is not None:
        request = erasure.record_request(spark, config, args.user, now)
        console.step(f"recorded erasure request {request} in {config.table(ERASURE_REQUESTS)}")
        rows.append(("request", request))
        if not args.now:
            console.summary(
                "forget summary",
                rows,
                next_steps=["the maintenance DAG erases it, or: recsys forget --pending"],
            )
            return 0
        users = [args.user.strip()]
    console.step("erasing, then vacuuming every table that holds user ids")
    result = erasure.process_requests(spark, config, now, user_ids=users)
    rows += [
        ("requests processed", len(result.request_ids)),
        *((f"  deleted from {config.table(t)}", n) for t, n in sorted(result.rows_deleted.items())),
        ("tables vacuumed", len(result.tables_vacuumed)),
        ("audit", config.table(ERASURE_AUDIT)),
    ]
    console.summary("forget summary", rows)
    return 0

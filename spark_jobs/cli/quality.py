"""``recsys quality``: run the Great Expectations suites against the lakehouse."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from spark_jobs.common import console, names
from spark_jobs.common.config import get_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "quality",
        help="run the data quality suites (Great Expectations)",
        description="Validate silver events, features, training interactions and the serving "
        "table with the suites in expectations/*.json; results go to recsys.quality_results and "
        "data docs HTML under <lakehouse>/_quality. Exits 4 when a critical suite fails.",
    )
    parser.add_argument("--suite", action="append", metavar="NAME", help="run only this suite (repeatable)")
    parser.add_argument("--run-id", help="key of this run's rows (default: manual__<time>)")
    parser.add_argument(
        "--at",
        type=parse_time,
        metavar="ISO_TIME",
        help="end of the checked window (default: now); orchestrators pass their data interval end",
    )
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even when a critical suite fails")
    parser.set_defaults(handler=run)


def parse_time(text: str) -> datetime:
    """ISO-8601; a time without zone is UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    from spark_jobs.common.spark import build_session
    from spark_jobs.quality import job
    from spark_jobs.quality.gx_runner import data_docs_index
    from spark_jobs.quality.suites import expectations_dir, load_suites

    config = get_config()
    checked_at = args.at or datetime.now(UTC)
    run_id = args.run_id or f"manual__{checked_at.isoformat()}"
    suites = load_suites(expectations_dir(config), only=args.suite)
    console.step(f"starting Spark ({config.spark.master or 'cluster'})")
    spark = build_session(config, app_name="recsys-quality")
    console.step(f"running {len(suites)} suite(s) for run {run_id}")
    outcomes = job.run_quality(spark, config, run_id, checked_at, suites)
    console.summary(
        "quality summary",
        [
            *(
                (
                    f"{o.suite}{' (critical)' if o.critical else ''}",
                    o.status + (f": {', '.join(o.failed_expectations)}" if o.failed_expectations else ""),
                )
                for o in outcomes
            ),
            ("results", config.table(names.QUALITY_RESULTS)),
            ("data docs", data_docs_index(config.lakehouse_root) or "(remote root: none)"),
        ],
    )
    if not args.no_fail:
        job.raise_for_critical(outcomes)
    return 0

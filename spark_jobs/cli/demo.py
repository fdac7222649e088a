"""``recsys demo``: the main job end to end on the embedded stack.

It runs the very commands a person would type, in order, so the demo doubles as a walkthrough:
``stack up`` -> ``produce`` -> ``ingest --once`` -> ``train --once`` -> ``score --once`` ->
``sql`` (in a new process, to show the tables are found by name from any session: event counts,
then a few users' recommendations with their reasons) -> ``stack down``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from spark_jobs.cli.args import positive_int
from spark_jobs.common import console, names
from spark_jobs.common.config import get_config
from spark_jobs.common.errors import RecsysError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the main job end to end on the local stack",
        description="Start the local broker, produce events (synthetic by default), ingest them "
        "into bronze/silver/quarantine and query the result with SQL from a new process.",
    )
    parser.add_argument("--source", choices=("synthetic", "movielens"), default="synthetic")
    parser.add_argument("--path", type=Path, help="MovieLens 100k folder (with --source movielens)")
    parser.add_argument(
        "--events", type=positive_int, default=20_000, help="synthetic events (default 20000)"
    )
    parser.add_argument("--keep-stack", action="store_true", help="leave the broker running at the end")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from spark_jobs.cli.main import main as recsys

    if args.source == "movielens" and args.path is None:
        raise UsageError("--source movielens needs --path DIR (e.g. ../shared/data/ml-100k)")
    config = get_config()
    produce = (
        ["produce", "movielens", "--path", str(args.path)]
        if args.source == "movielens"
        else [
            "produce",
            "synthetic",
            "--events",
            str(args.events),
            "--bad-fraction",
            "0.01",
            "--duplicate-fraction",
            "0.01",
        ]
    )
    steps: list[tuple[str, list[str]]] = [
        ("start the local stack", ["stack", "up"]),
        (f"produce {args.source} events", produce),
        ("ingest: Kafka -> bronze + silver + quarantine", ["ingest", "--once"]),
        ("features: silver -> recsys.user_features + recsys.item_features", ["features", "--once"]),
        ("train ALS + ranker, register and gate in MLflow", ["train", "--once", "--quick"]),
        ("score every active user into the serving table", ["score", "--once"]),
    ]
    before = _counts(config)
    try:
        for title, argv in steps:
            console.step(f"demo: {title}  (recsys {' '.join(argv)})")
            code = recsys(argv)
            if code != 0:
                raise RecsysError(f"demo step failed: recsys {' '.join(argv)} exited {code}")
        console.step("demo: query the lakehouse from a new process  (recsys sql ...)")
        by_type = _sql_in_new_process(
            f"select event_type, count(*) as events from {config.table(names.EVENTS)}"
            " group by 1 order by 2 desc"
        )
        print(by_type)
        console.step("demo: recommendations for a few users, with their reasons  (recsys sql ...)")
        print(_sql_in_new_process(top_n_query(config)))
    finally:
        if not args.keep_stack:
            console.step("demo: stop the local stack  (recsys stack down)")
            recsys(["stack", "down"])
    after = _counts(config)
    new = {k: after[k] - before[k] for k in after}
    produced = args.events if args.source == "synthetic" else None
    duplicates = new["bronze"] - new["silver"] - new["quarantine"]
    console.summary(
        "demo summary (rows added by this run)",
        [
            ("records produced", produced if produced is not None else "see produce summary"),
            (config.table(names.EVENTS_BRONZE), new["bronze"]),
            (config.table(names.EVENTS), new["silver"]),
            (config.table(names.EVENTS_QUARANTINE), new["quarantine"]),
            ("duplicates dropped", duplicates),
            ("nothing lost (bronze = produced)", produced is None or new["bronze"] == produced),
        ],
        next_steps=[
            f'recsys sql "select * from {config.table(names.EVENTS_QUARANTINE)} limit 5"',
            "recsys stack up && recsys produce synthetic --rate 200 & recsys ingest   (live)",
            f"mlflow ui --backend-store-uri {config.tracking_uri}",
            f"lakehouse: {config.lakehouse_root}",
        ],
    )
    return 0


def top_n_query(config, users: int = 3, ranks: int = 5) -> str:
    """The first ``ranks`` recommendations of ``users`` users, with titles and reasons."""
    recs, items = config.table(names.RECOMMENDATIONS), config.table(names.ITEMS)
    return (
        f"select r.user_id, r.rank, coalesce(i.title, r.item_id) as title, r.reason, r.variant "
        f"from {recs} r left join {items} i on i.item_id = r.item_id "
        f"where r.rank <= {ranks} and r.user_id in "
        f"(select distinct user_id from {recs} order by user_id limit {users}) "
        f"order by r.user_id, r.rank"
    )


def _counts(config) -> dict[str, int]:
    """Row counts of the ingest tables (zero where a table does not exist yet)."""
    from spark_jobs.common.spark import build_session
    from spark_jobs.ingest.job import table_counts
    from spark_jobs.ingest.tables import ensure_ingest_tables

    spark = build_session(config, app_name="recsys-demo")
    ensure_ingest_tables(spark, config)
    counts = table_counts(spark, config)
    return {"bronze": counts.bronze, "silver": counts.silver, "quarantine": counts.quarantine}


def _sql_in_new_process(query: str, fmt: str = "table") -> str:
    """Run ``recsys sql`` as a separate process: the catalog must resolve tables there too."""
    result = subprocess.run(
        [sys.executable, "-m", "spark_jobs.cli.main", "sql", query, "--format", fmt],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RecsysError(f"recsys sql failed in a new process: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout

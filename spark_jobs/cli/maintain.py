"""``recsys maintain``: OPTIMIZE / VACUUM every table that exists, remove leftover folders."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from spark_jobs.cli.args import positive_int
from spark_jobs.cli.quality import parse_time
from spark_jobs.common import console, names
from spark_jobs.common.config import get_config
from spark_jobs.common.errors import RecsysError, UsageError


class MaintenanceFailedError(RecsysError):
    """Some table or folder could not be maintained (the others were)."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "maintain",
        help="OPTIMIZE / VACUUM the tables, remove leftover checkpoint and drift folders",
        description="Housekeeping of the lakehouse (the maintenance DAG runs it daily). --optimize "
        "compacts every existing table (Z-ORDER BY user_id/item_id where it has them); --vacuum "
        "removes files older than the retention (168 h, Delta's safe default; less needs --force); "
        "--checkpoints removes checkpoint folders of unknown queries and drift plot folders not "
        "written to for --older-than-days. Missing tables are skipped.",
    )
    parser.add_argument("--optimize", action="store_true", help="OPTIMIZE (Z-ORDER) every existing table")
    parser.add_argument("--vacuum", action="store_true", help="VACUUM every existing table")
    parser.add_argument(
        "--retain-hours",
        type=float,
        metavar="H",
        help="with --vacuum: retention in hours (default 168; below 168 only with --force)",
    )
    parser.add_argument("--force", action="store_true", help="with --vacuum: allow a retention below 168 h")
    parser.add_argument(
        "--checkpoints", action="store_true", help="remove leftover checkpoint and drift plot folders"
    )
    parser.add_argument(
        "--older-than-days",
        type=positive_int,
        default=7,
        metavar="N",
        help="with --checkpoints: only folders nothing was written to for N days (default 7)",
    )
    parser.add_argument(
        "--at", type=parse_time, metavar="ISO_TIME", help="'now' for --older-than-days (default: now)"
    )
    parser.add_argument(
        "--table",
        action="append",
        choices=names.ALL_TABLES,
        metavar="NAME",
        help="only this table (repeatable; default: every table)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    parser.set_defaults(handler=run)


def check_args(args: argparse.Namespace) -> float:
    """The VACUUM retention to use; ``UsageError`` for flags that cannot work together."""
    from spark_jobs.maintenance.tables import SAFE_RETENTION_HOURS, check_retention

    if not (args.optimize or args.vacuum or args.checkpoints):
        raise UsageError("nothing to do", hint="give --optimize, --vacuum and/or --checkpoints")
    if not args.vacuum and (args.retain_hours is not None or args.force):
        raise UsageError("--retain-hours and --force go with --vacuum")
    if args.table and not (args.optimize or args.vacuum):
        raise UsageError("--table goes with --optimize or --vacuum")
    retain = SAFE_RETENTION_HOURS if args.retain_hours is None else args.retain_hours
    return check_retention(retain, args.force) if args.vacuum else retain


def run(args: argparse.Namespace) -> int:
    retain_hours = check_args(args)
    config = get_config()
    rows: list[tuple[str, object]] = []
    failures: list[str] = []
    if args.optimize or args.vacuum:
        from spark_jobs.common.spark import build_session
        from spark_jobs.maintenance.tables import FAILED, maintain_tables

        console.step(f"starting Spark ({config.spark.master or 'cluster'})")
        spark = build_session(config, app_name="recsys-maintain")
        steps = " and ".join(s for s, on in (("OPTIMIZE", args.optimize), ("VACUUM", args.vacuum)) if on)
        console.step(f"{steps}{' (dry run)' if args.dry_run else ''}")
        for outcome in maintain_tables(
            spark,
            config,
            tuple(args.table or names.ALL_TABLES),
            optimize=args.optimize,
            vacuum=args.vacuum,
            retain_hours=retain_hours,
            force=args.force,
            dry_run=args.dry_run,
        ):
            label = config.table(outcome.table) + (
                "" if outcome.operation == "-" else f" {outcome.operation}"
            )
            rows.append((label, f"{outcome.status}: {outcome.detail}"))
            if outcome.status == FAILED:
                failures.append(label)
    if args.checkpoints:
        from spark_jobs.maintenance.leftovers import clean_leftovers

        at, older_than = args.at or datetime.now(UTC), timedelta(days=args.older_than_days)
        console.step(f"leftover folders not written to since {at - older_than:%Y-%m-%d %H:%M}")
        for result in clean_leftovers(config, at, older_than, args.dry_run):
            rows += _cleanup_rows(result)
            failures += list(result.errors)
    console.summary(f"maintain summary{' (dry run: nothing changed)' if args.dry_run else ''}", rows)
    if failures:
        raise MaintenanceFailedError(
            f"{len(failures)} step(s) failed: {', '.join(failures)}",
            hint="see the summary; rerun retries them",
        )
    return 0


def _cleanup_rows(result) -> list[tuple[str, object]]:  # CleanupResult -> summary rows
    if result.skipped:
        return [(result.root, f"skipped: {result.skipped}")]
    verb = "would remove" if result.dry_run else "removed"
    rows: list[tuple[str, object]] = [
        (result.root, f"{verb} {len(result.removed)} folder(s), kept {result.kept}")
    ]
    rows += [
        (f"  {verb}", f"{f.name} (last written {f.last_modified:%Y-%m-%d %H:%M})") for f in result.removed
    ]
    rows += [("  error", e) for e in result.errors]
    return rows

"""``recsys sql``: run SQL against the lakehouse from any process."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from spark_jobs.cli.args import positive_int
from spark_jobs.common import console
from spark_jobs.common.config import get_config
from spark_jobs.common.errors import RecsysError

FORMATS = ("table", "csv", "json")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sql",
        help="run a SQL query against the recsys tables",
        description="Run Spark SQL over the lakehouse (tables as recsys.<name>, and the views "
        "recsys.user_top_n and recsys.ctr_by_variant). Progress goes to stderr, results to stdout: "
        "csv and json are safe to pipe. For JDBC/ODBC clients, see `recsys stack up --sql`.",
    )
    parser.add_argument("query", help='e.g. "select event_type, count(*) from recsys.events group by 1"')
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--limit", type=positive_int, default=1000, help="most rows to print (default 1000)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from spark_jobs.common.spark import build_session

    config = get_config()
    console.step("starting Spark", stream=sys.stderr)
    spark = build_session(config, app_name="recsys-sql", extra_conf={"spark.ui.enabled": "false"})
    columns, rows = execute(spark, args.query, args.limit)
    sys.stdout.write(render(columns, rows, args.format))
    return 0


def execute(spark: Any, query: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``query``; Spark's analysis and parse errors become one-line ``RecsysError``s."""
    from pyspark.errors import PySparkException

    try:
        df = spark.sql(query)
        rows = [tuple(r) for r in df.limit(limit).collect()]
    except PySparkException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecsysError(
            f"query failed: {first}", hint="list tables and views with: recsys sql 'show tables in recsys'"
        ) from None
    return df.columns, rows


def render(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> str:
    """Text for people (``table``) or scripts (``csv`` with header, ``json`` one object per line)."""
    if fmt == "table":
        return console.render_table(columns, rows) + f"\n({len(rows)} row{'s' if len(rows) != 1 else ''})\n"
    if fmt == "csv":
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_plain(v) for v in row] for row in rows])
        return out.getvalue()
    return "".join(
        json.dumps(dict(zip(columns, (_plain(v) for v in row), strict=True)), ensure_ascii=False) + "\n"
        for row in rows
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "asDict"):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

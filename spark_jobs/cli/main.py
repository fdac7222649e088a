"""Entry point of the ``recsys`` console script.

Each command module exposes ``register(subparsers)``; handlers take the parsed arguments and
return an exit code. Errors a user can act on (``RecsysError``) print one line and a hint.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from spark_jobs.common.config import get_config
from spark_jobs.common.errors import RecsysError

# Command modules, in the order `recsys --help` lists them.
COMMAND_MODULES = (
    "spark_jobs.cli.stack",
    "spark_jobs.cli.produce",
    "spark_jobs.cli.ingest",
    "spark_jobs.cli.features",
    "spark_jobs.cli.train",
    "spark_jobs.cli.score",
    "spark_jobs.cli.offline",
    "spark_jobs.cli.quality",
    "spark_jobs.cli.drift",
    "spark_jobs.cli.forget",
    "spark_jobs.cli.maintain",
    "spark_jobs.cli.sql",
    "spark_jobs.cli.bench",
    "spark_jobs.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Real-time content recommendation lakehouse (Kafka, Spark, Delta, MLflow).",
        epilog="Configuration: RECSYS_ENV=local|cluster, recsys.toml, RECSYS_* variables (see README).",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Spark's own output (Ivy, JVM warnings) instead of writing it to <lakehouse>/_logs",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        # Through the config's own layering, so every Spark session of the command sees it.
        os.environ["RECSYS_SPARK__QUIET"] = "false"
        get_config.cache_clear()
    try:
        return int(args.handler(args) or 0)
    except RecsysError as err:
        print(f"error: {err}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``recsys bench NAME``: run a benchmark from ``benchmarks/`` and record its figures."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from spark_jobs.common import console
from spark_jobs.common.config import get_config, project_root
from spark_jobs.common.errors import UsageError


def available() -> list[str]:
    """Benchmarks are the modules of ``benchmarks/`` that define ``run(config, quick)``."""
    folder = Path(importlib.import_module("benchmarks").__file__ or "").parent
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        if "def run(" in path.read_text(encoding="utf-8"):
            found.append(path.stem)
    return found


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="run a benchmark and print its figures",
        description="Run a benchmark (see benchmarks/README.md). Results are also written to "
        "benchmarks/results/NAME[-quick].json with the machine and date.",
    )
    parser.add_argument("name", help="benchmark name, e.g. ingest")
    parser.add_argument("--quick", action="store_true", help="smaller run (about two minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=_size,
        metavar="EVENTS/USERS/ITEMS",
        help="scale only: the data sizes to measure instead of the defaults, e.g. 300k/10k/2k 3M/100k/10k",
    )
    parser.set_defaults(handler=run)


def _size(text: str) -> object:
    """``--sizes`` values, read by the benchmark that takes them (a bad one is an argparse error)."""
    from benchmarks.scale import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    names = available()
    if args.name not in names:
        raise UsageError(f"unknown benchmark {args.name!r}", hint=f"choose one of: {', '.join(names)}")
    module = importlib.import_module(f"benchmarks.{args.name}")
    accepts = inspect.signature(module.run).parameters
    sizes = getattr(args, "sizes", None)
    if sizes and "sizes" not in accepts:
        raise UsageError(f"--sizes does not apply to benchmark {args.name!r}", hint="it is for: scale")
    config = get_config()
    log = sys.stderr if args.json else sys.stdout
    console.step(f"benchmark {args.name}{' (quick)' if args.quick else ''}", stream=log)
    extra = {"log": log} if "log" in accepts else {}
    if sizes:
        extra["sizes"] = sizes
    figures = module.run(config, quick=args.quick, **extra)
    record = {
        "benchmark": args.name,
        "quick": args.quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "figures": figures,
    }
    # Sizes of one's own choosing must not overwrite the recorded figures of the default sizes.
    stem = f"{args.name}{'-quick' if args.quick else ''}{'-custom' if sizes else ''}"
    out = project_root() / "benchmarks" / "results" / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(figures))
    else:
        # A benchmark with many figures may say which belong in the summary (all are in the file).
        rows = module.summary_rows(figures) if hasattr(module, "summary_rows") else sorted(figures.items())
        console.summary(f"benchmark {args.name}", rows, next_steps=[f"results: {out}"])
    return 0


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    import os

    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            mem_gib = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }

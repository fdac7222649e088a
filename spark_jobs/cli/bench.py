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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    names = available()
    if args.name not in names:
        raise UsageError(f"unknown benchmark {args.name!r}", hint=f"choose one of: {', '.join(names)}")
    module = importlib.import_module(f"benchmarks.{args.name}")
    config = get_config()
    log = sys.stderr if args.json else sys.stdout
    console.step(f"benchmark {args.name}{' (quick)' if args.quick else ''}", stream=log)
    accepts_log = "log" in inspect.signature(module.run).parameters
    figures = module.run(config, quick=args.quick, **({"log": log} if accepts_log else {}))
    record = {
        "benchmark": args.name,
        "quick": args.quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "figures": figures,
    }
    out = project_root() / "benchmarks" / "results" / f"{args.name}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(figures))
    else:
        console.summary(f"benchmark {args.name}", sorted(figures.items()), next_steps=[f"results: {out}"])
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

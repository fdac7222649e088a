"""GPU check: the project's ranker fitted on the same synthetic data on CPU and on a CUDA GPU.

Why a separate check: no GPU is lent to CI or to most sessions, and XGBoost falls back to CPU
without an error when ``device="cuda"`` finds no GPU, so "the GPU path works" can only be shown
on a GPU machine, by reading back what the booster ran on. This module is what such a machine
runs (``benchmarks/gpu_check.sh``); it needs nothing from the network, only the project's venv.

What it does: builds ``--rows`` synthetic learning-to-rank candidates (``--per-query`` rows per
query, ``FEATURE_COLUMNS`` + ``label``), fits ``fit_ranker`` once with ``Accelerator("cpu",
"pandas")`` and, when ``detect_accelerator`` finds a CUDA device, once with ``device="cuda"``
(cuDF when importable, else pandas). The number of boosting rounds is fixed (no early stopping)
so both sides do the same work. Prints both fit times, the CPU/GPU ratio and the devices read
back from the boosters, and writes the figures to ``--out`` (JSON).

Exit codes: 0 both sides ran and the GPU side ran on CUDA; 2 bad arguments (or ``--out`` not
writable); 3 no CUDA device (CPU side only); 4 the GPU side failed or XGBoost did not run it on
CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from spark_jobs.training.columns import LABEL, SEED, USER_ID
from spark_jobs.training.features import FEATURE_COLUMNS
from spark_jobs.training.ranker import (
    Accelerator,
    RankerParams,
    booster_device,
    detect_accelerator,
    fit_ranker,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu_check.json"
DEFAULT_ROWS = 1_000_000
DEFAULT_PER_QUERY = 50
DEFAULT_ROUNDS = 100
# Rows of the data set both models score, to show the GPU-trained model agrees with the CPU one.
AGREEMENT_ROWS = 10_000

EXIT_OK = 0
EXIT_NO_GPU = 3
EXIT_GPU_FAILED = 4
NO_GPU_MESSAGE = "no CUDA device: GPU side not run"


def synthetic_candidates(rows: int, per_query: int = DEFAULT_PER_QUERY, seed: int = SEED) -> pd.DataFrame:
    """``rows`` candidate rows in queries of ``per_query`` (the last one may be shorter).

    Relevance depends on a few features plus noise, so the ranker has something to learn; each
    query's top tenth by relevance (at least one row) is labelled 1, and every query has both
    labels, so ``fit_ranker`` keeps all of them. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    features = rng.random((rows, len(FEATURE_COLUMNS)), dtype=np.float32)
    frame = pd.DataFrame(features, columns=list(FEATURE_COLUMNS))
    query = np.arange(rows) // per_query
    relevance = (
        2.0 * frame["als_score"].to_numpy()
        + frame["knn_score"].to_numpy()
        + 0.5 * frame["content_score"].to_numpy()
        + rng.normal(0.0, 0.5, rows)
    )
    rank_in_query = pd.Series(-relevance).groupby(query).rank(method="first").to_numpy()
    query_size = np.bincount(query)[query]
    frame[LABEL] = (rank_in_query <= np.maximum(1, query_size // 10)).astype(np.int8)
    frame[USER_ID] = pd.Series(query).map("q{:07d}".format)
    return frame


def _fit(candidates: pd.DataFrame, accel: Accelerator, params: RankerParams) -> tuple[dict[str, Any], Any]:
    started = time.perf_counter()
    model = fit_ranker(candidates, params, accel)
    wall = time.perf_counter() - started
    side = {
        "ran": True,
        "requested_device": accel.device,
        "dataframe": accel.dataframe,
        "device": booster_device(model.booster),  # read before scoring moves it to cpu
        "fit_s": round(model.fit_seconds, 3),
        "wall_s": round(wall, 3),
        "rounds": int(model.booster.get_booster().num_boosted_rounds()),
        "train_rows": int(model.metrics["ranker_train_rows"]),
    }
    return side, model


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _gpu_names() -> list[str]:
    """GPU names from ``nvidia-smi`` when it is there (for the record only; never required)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def run(
    rows: int = DEFAULT_ROWS,
    per_query: int = DEFAULT_PER_QUERY,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = SEED,
) -> tuple[dict[str, Any], int]:
    """Fit on CPU, then on GPU if there is one; returns the result document and the exit code."""
    import xgboost  # noqa: F401  (imported here so its start-up is not timed as the CPU fit)

    params = RankerParams(n_estimators=rounds, early_stopping_rounds=0, seed=seed)
    built = time.perf_counter()
    candidates = synthetic_candidates(rows, per_query, seed)
    result: dict[str, Any] = {
        "rows": rows,
        "queries": int(candidates[USER_ID].nunique()),
        "per_query": per_query,
        "features": len(FEATURE_COLUMNS),
        "rounds": rounds,
        "seed": seed,
        "build_s": round(time.perf_counter() - built, 3),
        "xgboost": _version("xgboost"),
        "cudf": _version("cudf-cu12"),
        "cpu_count": os.cpu_count(),
        "gpus": _gpu_names(),
    }
    print(f"data: {rows:,} rows, {result['queries']:,} queries, {len(FEATURE_COLUMNS)} features")

    cpu, cpu_model = _fit(candidates, Accelerator("cpu", "pandas", "gpu_check CPU side"), params)
    result["cpu"] = cpu
    print(f"cpu: fit {cpu['fit_s']:.2f}s (wall {cpu['wall_s']:.2f}s) on device {cpu['device']}")

    # Probing also starts the CUDA context, so the GPU fit below is not charged for it.
    detected = detect_accelerator()
    result["detected"] = {
        "device": detected.device,
        "dataframe": detected.dataframe,
        "reason": detected.reason,
    }
    result["ratio_cpu_over_gpu"] = None
    if detected.device != "cuda":
        result["gpu"] = {"ran": False, "reason": f"{NO_GPU_MESSAGE} ({detected.reason})"}
        result["status"] = "no_gpu"
        print(f"{NO_GPU_MESSAGE} ({detected.reason})")
        return result, EXIT_NO_GPU

    try:
        gpu, gpu_model = _fit(candidates, detected, params)
    except Exception as err:  # the record must say why, whatever the CUDA stack raised
        result["gpu"] = {"ran": False, "reason": f"GPU fit failed: {type(err).__name__}: {err}"[:500]}
        result["status"] = "gpu_failed"
        print(result["gpu"]["reason"])
        return result, EXIT_GPU_FAILED
    sample = candidates.head(AGREEMENT_ROWS)
    gpu["score_corr_with_cpu"] = round(
        float(np.corrcoef(cpu_model.score(sample), gpu_model.score(sample))[0, 1]), 4
    )
    result["gpu"] = gpu
    result["ratio_cpu_over_gpu"] = round(cpu["fit_s"] / gpu["fit_s"], 2) if gpu["fit_s"] > 0 else None
    print(
        f"gpu: fit {gpu['fit_s']:.2f}s (wall {gpu['wall_s']:.2f}s) on device {gpu['device']} "
        f"with {gpu['dataframe']}"
    )
    print(f"ratio cpu/gpu: {result['ratio_cpu_over_gpu']}; score correlation {gpu['score_corr_with_cpu']}")
    if not gpu["device"].startswith("cuda"):
        result["status"] = "gpu_not_used"
        print(f"device cuda was asked for, but XGBoost ran on {gpu['device']}")
        return result, EXIT_GPU_FAILED
    result["status"] = "ok"
    return result, EXIT_OK


class _Parser(argparse.ArgumentParser):
    """Bad arguments end in one line on stderr and exit 2, not a usage block or a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=_positive, default=DEFAULT_ROWS, help="candidate rows (1,000,000)")
    parser.add_argument("--per-query", type=_positive, default=DEFAULT_PER_QUERY, help="rows per query (50)")
    parser.add_argument("--rounds", type=_positive, default=DEFAULT_ROUNDS, help="boosting rounds (100)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.per_query < 2:
        parser.error("--per-query must be at least 2: a query needs a positive and a negative row")
    if args.rows < args.per_query:
        parser.error(f"--rows ({args.rows}) must be at least --per-query ({args.per_query})")
    try:  # before the run: a bad --out should not cost minutes of fitting
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {args.out}: {err.strerror}")
    result, code = run(args.rows, args.per_query, args.rounds, args.seed)
    result["exit_code"] = code
    try:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as err:
        print(f"gpu_check: error: cannot write {args.out}: {err.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())

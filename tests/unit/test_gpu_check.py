"""The GPU check runs its CPU side anywhere and says plainly, in its output, JSON and exit code,
that the GPU side did not run when there is no CUDA device (CI never has one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import gpu_check
from spark_jobs.training.columns import LABEL, USER_ID
from spark_jobs.training.features import FEATURE_COLUMNS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_gpu_the_cpu_side_runs_and_the_gpu_side_is_marked_not_run(tmp_path: Path):
    out = tmp_path / "gpu_check.json"
    # No visible device, even on a machine that has one: this test pins the no-GPU branch.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    argv = ["--rows", "2000", "--rounds", "10", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == gpu_check.EXIT_NO_GPU == 3, done.stderr
    assert "no CUDA device: GPU side not run" in done.stdout
    result = json.loads(out.read_text())
    assert result["cpu"]["fit_s"] > 0
    assert {k: result["cpu"][k] for k in ("ran", "requested_device", "device", "dataframe", "rounds")} == {
        "ran": True,
        "requested_device": "cpu",
        "device": "cpu",
        "dataframe": "pandas",
        "rounds": 10,
    }
    assert result["gpu"]["ran"] is False
    assert result["gpu"]["reason"].startswith("no CUDA device: GPU side not run")
    assert (result["rows"], result["queries"], result["features"]) == (2000, 40, len(FEATURE_COLUMNS))
    assert (result["status"], result["exit_code"], result["ratio_cpu_over_gpu"]) == ("no_gpu", 3, None)
    assert result["detected"]["device"] == "cpu"


def test_synthetic_candidates_are_grouped_queries_with_both_labels():
    frame = gpu_check.synthetic_candidates(rows=105, per_query=10, seed=1)

    assert list(frame.columns) == [*FEATURE_COLUMNS, LABEL, USER_ID]
    per_query = frame.groupby(USER_ID, sort=True)[LABEL].agg(["size", "sum"])
    # Ten full queries with their top tenth labelled, and a last one of 5 rows with one positive.
    assert per_query.to_dict("list") == {"size": [10] * 10 + [5], "sum": [1] * 11}
    pd.testing.assert_frame_equal(frame, gpu_check.synthetic_candidates(rows=105, per_query=10, seed=1))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rows", "0"], "gpu_check: error: argument --rows: expected a number >= 1, got 0\n"),
        (["--rows", "many"], "gpu_check: error: argument --rows: expected a whole number, got 'many'\n"),
        (["--per-query", "1"], "gpu_check: error: --per-query must be at least 2"),
        (["--rows", "10"], "gpu_check: error: --rows (10) must be at least --per-query (50)\n"),
    ],
)
def test_bad_arguments_end_in_one_line_and_exit_2(argv: list[str], message: str, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(argv)

    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1

"""``recsys bench scale``: the parts that need no Spark (sizes, memory sampler, targets, figures).

The sampler is checked on a real process tree this test starts: a Python "driver" holding a
known amount of memory, a child named ``java`` (a link to the interpreter) holding more, and a
plain Python child holding a third amount, so each peak must land in its own bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pytest

from benchmarks import scale
from benchmarks.scale import (
    CommandResult,
    Peaks,
    Proc,
    RssSampler,
    Size,
    SizeRun,
    build_figures,
    check_sizes,
    check_targets,
    command_env,
    parse_count,
    parse_size,
    split_rss,
)
from spark_jobs.cli import bench
from spark_jobs.common import console
from spark_jobs.common.config import load_config
from spark_jobs.common.errors import UsageError

pytestmark = pytest.mark.unit

MB = 1 << 20
HOLD_S = 1.0


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2000", 2000), ("2_000", 2000), ("2k", 2000), ("0.3M", 300_000), ("1.5k", 1500), ("1e6", 1_000_000)],
)
def test_parse_count(text: str, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize("text", ["", "k", "1.5", "0", "-3k", "abc", "nan", "0.0001k"])
def test_parse_count_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="count"):
        parse_count(text)


def test_size_labels_read_back() -> None:
    for size in (*scale.FULL_SIZES, *scale.QUICK_SIZES, Size(1_500, 12_345, 7)):
        assert parse_size(size.label) == size
    assert scale.FULL_SIZES[0].label == "300k/10k/2k"
    assert scale.FULL_SIZES[-1].slug == "10M-300k-50k"
    assert parse_size("0.3M/10k/2k") == Size(300_000, 10_000, 2_000)


def test_check_sizes_orders_and_refuses() -> None:
    small, large = Size(1_000, 10, 5), Size(5_000, 10, 5)
    assert check_sizes([large, small]) == (small, large)
    with pytest.raises(UsageError, match="at least two"):
        check_sizes([small])
    with pytest.raises(UsageError, match="differ in events"):
        check_sizes([small, Size(1_000, 20, 5)])


def build_parser() -> argparse.ArgumentParser:
    """``recsys`` with only its ``bench`` command (the others' imports would slow the test)."""
    parser = argparse.ArgumentParser(prog="recsys")
    bench.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_sizes_argument(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["bench", "scale", "--quick", "--sizes", "30k/2k/500", "1M/10k/1k"])
    assert args.sizes == [Size(30_000, 2_000, 500), Size(1_000_000, 10_000, 1_000)]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bench", "scale", "--sizes", "30k/2k"])
    assert exit_info.value.code == 2
    assert "expected EVENTS/USERS/ITEMS such as 300k/10k/2k, got '30k/2k'" in capsys.readouterr().err


def test_sizes_refused_for_other_benchmarks() -> None:
    args = build_parser().parse_args(["bench", "scorer", "--sizes", "30k/2k/500", "1M/10k/1k"])
    with pytest.raises(UsageError, match="--sizes does not apply to benchmark 'scorer'"):
        bench.run(args)


# -------------------------------------------------------------------------- sampler


def test_split_rss_buckets() -> None:
    procs = [
        Proc(10, 1, "recsys", 100),
        Proc(11, 10, "bash", 1),
        Proc(12, 11, "java", 500),
        Proc(13, 12, "python3", 40),
        Proc(14, 12, "python3", 60),
    ]
    assert split_rss(procs, root_pid=10) == (100, 500, 101)
    assert split_rss(procs, root_pid=10, jvm=lambda name: name == "bash") == (100, 1, 600)


def _tree_script(tmp_path: Path) -> list[str]:
    """A driver holding 30 MB that starts a ``java`` child (120 MB) and a Python child (70 MB)."""
    java = tmp_path / "java"
    java.symlink_to(os.path.realpath(sys.executable))
    hold = "import sys, time; block = b'\\x01' * ({mb} << 20); time.sleep({s})"
    driver = (
        "import subprocess, sys, time\n"
        "block = b'\\x01' * (30 << 20)\n"
        f"kids = [subprocess.Popen([{str(java)!r}, '-c', {hold.format(mb=120, s=HOLD_S)!r}]),\n"
        f"        subprocess.Popen([sys.executable, '-c', {hold.format(mb=70, s=HOLD_S)!r}])]\n"
        "for kid in kids: kid.wait()\n"
    )
    return [sys.executable, "-c", driver]


NO_PSUTIL = pytest.mark.skipif(scale.psutil is None, reason="psutil is not installed")
BACKENDS = ["procfs", pytest.param("psutil", marks=NO_PSUTIL)]


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to start a known tree")
@pytest.mark.parametrize("backend", BACKENDS)
def test_sampler_peaks_per_process_kind(tmp_path: Path, backend: str) -> None:
    import subprocess

    proc = subprocess.Popen(_tree_script(tmp_path))
    sampler = RssSampler(proc.pid, interval_s=0.05, backend=backend).start()
    assert proc.wait(timeout=30) == 0
    peaks = sampler.stop()

    assert peaks.samples >= 10
    assert 30 <= peaks.python_mb < 70, peaks  # 30 MB block + the interpreter
    assert 120 <= peaks.jvm_mb < 170, peaks
    assert 70 <= peaks.others_mb < 120, peaks
    # The tree is gone: sampling again changes nothing, the peaks stay.
    sampler.sample_once()
    assert sampler.peaks == peaks
    assert scale.process_tree(proc.pid, backend) == []


def test_sampler_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        RssSampler(os.getpid(), interval_s=0)


# ------------------------------------------------------------------- measured commands


def test_run_measured_reports_the_error_line(tmp_path: Path) -> None:
    code = "import sys; print('working'); print('error: boom', file=sys.stderr); print('bye'); sys.exit(3)"
    done = scale.run_measured(
        "fail", [sys.executable, "-c", code], env=os.environ, cwd=tmp_path, log_path=tmp_path / "f.log"
    )
    assert (done.returncode, done.ok, done.error, done.timed_out) == (3, False, "error: boom", False)
    assert done.peaks is not None and done.peaks.python_mb > 0
    assert done.seconds is not None and done.seconds < 10


def test_run_measured_stops_a_command_past_its_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    done = scale.run_measured(
        "hang",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env=os.environ,
        cwd=tmp_path,
        log_path=tmp_path / "h.log",
        timeout_s=0.5,
    )
    assert done.timed_out and not done.ok and done.error == "timed out after 0s"
    assert time.monotonic() - started < 20


def test_last_json_is_the_helper_result(tmp_path: Path) -> None:
    log = tmp_path / "write.log"
    log.write_text('    30,000 silver events\n{"events": 30000, "write_s": 4.2}\n')
    assert scale.last_json(log) == {"events": 30000, "write_s": 4.2}
    assert scale.last_json(tmp_path / "missing.log") == {}


def test_served_models_from_the_scorer_summary(tmp_path: Path) -> None:
    log = tmp_path / "score.log"
    log.write_text(
        "recsys score\nwhat | value\n-----+------\nusers scored | 136\n"
        "models                              | als:v1+ranker:v1  \nnext:\n"
    )
    assert scale.served_models(log) == "als:v1+ranker:v1"
    log.write_text("Traceback (most recent call last):\nValueError: boom\n")
    assert scale.served_models(log) is None


def test_command_env_points_everything_at_the_root(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "RECSYS_HOME": "/elsewhere",
        "MLFLOW_TRACKING_URI": "sqlite:////real/mlflow.db",
        "RECSYS_SPARK__DRIVER_MEMORY": "2g",
    }
    env = command_env(tmp_path, base)
    config = load_config("local", environ=env)
    assert config.lakehouse_root == str(tmp_path)
    assert config.checkpoint_root == str(tmp_path / "_checkpoints")
    assert config.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert config.artifact_root == f"{tmp_path}/mlruns"
    assert config.spark.driver_memory == "2g"  # the user's other settings still apply
    assert env["PATH"] == "/usr/bin"


# --------------------------------------------------------------------- targets, figures


def _done(name: str, seconds: float, python_mb: float, jvm_mb: float = 900.0, rc: int = 0) -> CommandResult:
    return CommandResult(name, rc, seconds, Peaks(python_mb, jvm_mb, 50.0, 100), f"/x/{name}.log")


def _run(events: int, train_s: float, score_s: float, python_mb: float, score_rc: int = 0) -> SizeRun:
    return SizeRun(
        Size(events, events // 10, events // 100),
        events_written=events,
        write=_done("write", 5.0, 0.0),
        train=_done("train", train_s, python_mb),
        score=_done("score", score_s, python_mb / 2, rc=score_rc),
        champion_forced=False,
        served_models="als:v1+ranker:v1",
    )


def test_targets_met_when_flat_memory_and_sublinear_time() -> None:
    runs = [
        _run(10_000, 20.0, 10.0, 400.0),
        _run(30_000, 25.0, 12.0, 410.0),
        _run(100_000, 60.0, 30.0, 500.0),
    ]
    assert check_targets(runs) == {
        "event_ratio": 10.0,
        "train_time_ratio": 3.0,
        "train_scaling_ok": True,
        "score_time_ratio": 3.0,
        "score_scaling_ok": True,
        "python_peak_ratio": 1.25,
        "python_memory_ok": True,
        "jvm_peak_ratio": 1.0,
        "time_scaling_ok": True,
        "all_succeeded": True,
        "targets_met": True,
    }


def test_targets_missed() -> None:
    grows = check_targets([_run(10_000, 10.0, 10.0, 400.0), _run(100_000, 101.0, 50.0, 800.0)])
    assert grows["train_scaling_ok"] is False and grows["score_scaling_ok"] is True
    assert grows["python_peak_ratio"] == 2.0 and grows["python_memory_ok"] is False
    assert grows["targets_met"] is False

    # The largest size's scorer failed: its time is not measured and its peak does not count.
    failed = check_targets([_run(10_000, 10.0, 10.0, 400.0), _run(100_000, 20.0, 5.0, 400.0, score_rc=1)])
    assert failed["score_time_ratio"] is None and failed["score_scaling_ok"] is False
    assert failed["python_peak_ratio"] == 1.0  # train's peak alone
    assert failed["all_succeeded"] is False and failed["targets_met"] is False


def test_figures_are_one_flat_json_object() -> None:
    runs = [_run(100_000, 60.0, 30.0, 500.0), _run(10_000, 20.0, 10.0, 400.0)]
    runs.append(
        SizeRun(
            Size(1_000_000, 10_000, 1_000),
            write=_done("write", 9.0, 0.0),
            train=CommandResult("train", 1, 3.0, Peaks(300, 800, 0, 10), "/x/t.log", "error: no events"),
            score=CommandResult.skipped("score", "training failed"),
        )
    )
    figures = build_figures(runs, {"cpus": 2})
    assert json.loads(json.dumps(figures)) == figures
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in figures.values())
    assert figures["sizes"] == "10k/1k/100 100k/10k/1k 1M/10k/1k" and figures["n_sizes"] == 3
    per_size = ("events", "users", "items", "train_s", "score_s", "python_peak_rss_mb", "jvm_peak_rss_mb")
    assert all(f"size{n}_{key}" in figures for n in (1, 2, 3) for key in per_size)
    first = (figures["size1_events"], figures["size1_train_s"], figures["size1_python_peak_rss_mb"])
    assert first == (10_000, 20.0, 400.0)
    assert figures["size3_train_ok"] is False and figures["size3_score_s"] is None
    assert figures["size3_python_peak_rss_mb"] is None  # the failed command's peak is not the size's
    assert figures["size3_train_python_peak_rss_mb"] == 300  # ... but it is recorded
    assert figures["size3_notes"] == "train: error: no events; score: not run: training failed"
    assert figures["size1_served_models"] == "als:v1+ranker:v1" and figures["size3_served_models"] is None
    assert figures["targets_met"] is False and figures["cpus"] == 2

    rows = scale.size_rows(figures)
    assert [r["size"] for r in rows] == ["10k/1k/100", "100k/10k/1k", "1M/10k/1k"]
    assert "1M/10k/1k" in scale.size_table(figures)
    summary = dict(scale.summary_rows(figures))
    assert summary["train time ratio (<= event ratio)"] == "not measured"
    assert summary["Python peak ratio (<= 1.5)"] == "not measured"
    assert summary["1M/10k/1k"].startswith("train: error: no events")
    console.render_table(("what", "value"), scale.summary_rows(figures))


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    runs = [_run(10_000, 20.0, 10.0, 400.0), _run(100_000, 60.0, 30.0, 500.0, score_rc=1)]
    path = scale.plot(build_figures(runs, {}), tmp_path / "scale.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

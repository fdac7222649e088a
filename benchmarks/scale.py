"""How ``recsys train`` and ``recsys score --once`` grow with the data: time and peak memory.

The question is whether the commands scale with Spark or with the driver: if training and
scoring run on executors, the Python driver's peak memory stays flat as silver grows and the
time grows no faster than the data. So the commands are measured *as users run them*, each in
its own process (the ``recsys`` console script), never by calling their internals: whatever the
commands do inside (driver-side pandas or executor-side Spark), the harness sees the same thing
a user would.

Per size (events / users / items; three by default, ``--sizes`` to choose), in a fresh lakehouse
under ``<lakehouse_root>/_bench/scale/<size>`` with its own MLflow registry:

1. a synthetic history is written straight into silver in a helper process
   (``python -m benchmarks.scale write``: ``_world.write_silver``, no Kafka);
2. ``recsys train --once`` (``--quick`` grid with ``--quick``) is timed while a sampler thread
   polls, every 0.2 s, the resident memory of the command's Python process (the driver), of the
   ``java`` process among its descendants (the driver JVM pyspark launches) and of everything
   else below it (PySpark's Python workers, launcher shells), keeping each peak;
3. when the gate kept popularity, a helper process (``python -m benchmarks.scale promote``)
   makes the challenger champion anyway, so the scorer serves the trained models at every size
   (``champion_forced``);
4. ``recsys score --once`` is timed and sampled the same way.

Targets, between the smallest and the largest size: the Python driver's peak (the larger of the
two commands') within ``PYTHON_PEAK_MAX_RATIO`` (1.5x), and each command's time ratio at most
the event ratio; and every command succeeded. Results go to ``benchmarks/results/scale[-quick]``
(``.json`` through ``recsys bench``, ``.png`` here: time and peak memory against events).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from spark_jobs.common import console
from spark_jobs.common.config import Config, project_root
from spark_jobs.common.errors import UsageError

try:
    import psutil
except ImportError:  # the sampler reads /proc instead
    psutil = None


@dataclass(frozen=True)
class Size:
    """One size of synthetic silver: how many events, and over how many users and items."""

    events: int
    users: int
    items: int

    @property
    def label(self) -> str:
        """``300k/10k/2k``: how people write it and how ``--sizes`` reads it back."""
        return "/".join(format_count(n) for n in (self.events, self.users, self.items))

    @property
    def slug(self) -> str:
        """The label as a folder name."""
        return self.label.replace("/", "-")


FULL_SIZES = (
    Size(300_000, 10_000, 2_000),
    Size(3_000_000, 100_000, 10_000),
    Size(10_000_000, 300_000, 50_000),
)
QUICK_SIZES = (Size(30_000, 2_000, 500), Size(100_000, 5_000, 1_000), Size(300_000, 10_000, 2_000))
PYTHON_PEAK_MAX_RATIO = 1.5  # largest size's Python peak / smallest size's
SAMPLE_INTERVAL_S = 0.2
HEARTBEAT_S = 30.0  # a progress line this often while a command runs
# A command running longer than this is stopped and counted as failed (a hung JVM must not
# hold the benchmark forever); generous, so a slow but working command is measured.
TIMEOUT_S = {True: 1_800.0, False: 6 * 3_600.0}
SEED = 42
JVM_NAMES = frozenset({"java"})
MIB = 1024 * 1024
COMMANDS = ("train", "score")


# ----------------------------------------------------------------------------------- sizes


def format_count(n: int) -> str:
    """``300000 -> 300k``, ``3000000 -> 3M``, ``500 -> 500`` (exact: ``parse_count`` reads it back)."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale:
            text = f"{Decimal(n) / scale:f}"
            return (text.rstrip("0").rstrip(".") if "." in text else text) + unit
    return str(n)


def parse_count(text: str) -> int:
    """A whole count > 0 as people type it: ``2000``, ``2_000``, ``2k``, ``0.3M``, ``1e6``.

    Raises ``ValueError`` with the offending text for anything else (fractions included).
    """
    cleaned = text.strip().replace("_", "").lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(cleaned[-1:], 1)
    if scale != 1:
        cleaned = cleaned[:-1]
    try:
        value = Decimal(cleaned) * scale
    except InvalidOperation:
        raise ValueError(f"expected a count such as 300k, 3M or 2000, got {text!r}") from None
    if not value.is_finite() or value != value.to_integral_value() or value <= 0:
        raise ValueError(f"expected a whole count greater than 0, got {text!r}")
    return int(value)


def parse_size(text: str) -> Size:
    """``EVENTS/USERS/ITEMS``, e.g. ``300k/10k/2k``; ``ValueError`` naming the text otherwise."""
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError(f"expected EVENTS/USERS/ITEMS such as 300k/10k/2k, got {text!r}")
    events, users, items = (parse_count(p) for p in parts)
    return Size(events, users, items)


def check_sizes(sizes: Sequence[Size]) -> tuple[Size, ...]:
    """The sizes smallest first; ``UsageError`` unless there are two or more with distinct event
    counts (the targets compare the smallest with the largest)."""
    ordered = tuple(sorted(sizes, key=lambda s: (s.events, s.users, s.items)))
    if len(ordered) < 2:
        raise UsageError("--sizes needs at least two sizes (the targets compare smallest and largest)")
    if len({s.events for s in ordered}) != len(ordered):
        raise UsageError(f"--sizes must differ in events, got {' '.join(s.label for s in ordered)}")
    return ordered


# ------------------------------------------------------------------------- memory sampling


@dataclass(frozen=True)
class Proc:
    """One process of a sampled tree: its parent, its short name (``comm``) and resident bytes."""

    pid: int
    ppid: int
    name: str
    rss: int


def process_tree(root_pid: int, backend: str | None = None) -> list[Proc]:
    """``root_pid`` and all its descendants (empty once it is gone). ``backend`` is ``"psutil"``
    or ``"procfs"``; the default is psutil when installed, else ``/proc``."""
    backend = backend or default_backend()
    if backend == "psutil":
        return _psutil_tree(root_pid)
    if backend == "procfs":
        return _procfs_tree(root_pid)
    raise ValueError(f"unknown backend {backend!r} (psutil or procfs)")


def default_backend() -> str:
    """psutil when installed, else ``/proc``; ``UsageError`` where neither exists (macOS bare)."""
    if psutil is not None:
        return "psutil"
    if Path("/proc/self/statm").exists():
        return "procfs"
    raise UsageError(
        "the scale benchmark reads process memory with psutil or /proc", hint="pip install psutil"
    )


def _psutil_tree(root_pid: int) -> list[Proc]:
    assert psutil is not None
    gone = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)
    try:
        root = psutil.Process(root_pid)
        members = [root, *root.children(recursive=True)]
    except gone:
        return []
    found = []
    for proc in members:
        with contextlib.suppress(*gone):
            found.append(Proc(proc.pid, proc.ppid(), proc.name(), proc.memory_info().rss))
    return found


def _procfs_tree(root_pid: int) -> list[Proc]:
    page = os.sysconf("SC_PAGE_SIZE")
    table: dict[int, Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            resident = int((entry / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ")".
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        ppid = int(stat[stat.rfind(")") + 1 :].split()[1])
        table[int(entry.name)] = Proc(int(entry.name), ppid, name, resident)
    if root_pid not in table:
        return []
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(table[pid])
        todo.extend(children.get(pid, ()))
    return found


def is_jvm(name: str) -> bool:
    """The driver JVM: pyspark's ``spark-submit`` launcher execs ``java``."""
    return name in JVM_NAMES


def split_rss(
    procs: Iterable[Proc], root_pid: int, jvm: Callable[[str], bool] = is_jvm
) -> tuple[int, int, int]:
    """Resident bytes of (the root process, its JVM descendants, every other descendant)."""
    python = jvm_rss = others = 0
    for proc in procs:
        if proc.pid == root_pid:
            python += proc.rss
        elif jvm(proc.name):
            jvm_rss += proc.rss
        else:
            others += proc.rss
    return python, jvm_rss, others


@dataclass(frozen=True)
class Peaks:
    """Peak resident memory (MiB) seen by a ``RssSampler``; ``samples`` polls that found the root."""

    python_mb: float
    jvm_mb: float
    others_mb: float
    samples: int


class RssSampler:
    """Polls a process tree's resident memory from a thread and keeps the peaks.

    The root is the command's own process (the Python driver); its ``java`` descendants are the
    driver JVM; the rest (PySpark workers, shells) are summed apart, so memory moved from the
    driver into workers shows up instead of vanishing. Peaks of sums are per poll: a spike
    shorter than ``interval_s`` can be missed, which is the price of a cheap sampler.
    """

    def __init__(
        self,
        pid: int,
        interval_s: float = SAMPLE_INTERVAL_S,
        backend: str | None = None,
        jvm: Callable[[str], bool] = is_jvm,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.pid, self.interval_s, self.jvm = pid, interval_s, jvm
        self.backend = backend or default_backend()
        self._peak = [0, 0, 0]
        self._samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"rss-sampler-{pid}", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> Peaks:
        """Stop polling (after one last poll) and return the peaks."""
        self._stop.set()
        self._thread.join()
        return self.peaks

    @property
    def peaks(self) -> Peaks:
        """The peaks so far (readable while sampling: the progress lines show them)."""
        python, jvm, others = self._peak
        return Peaks(round(python / MIB, 1), round(jvm / MIB, 1), round(others / MIB, 1), self._samples)

    def sample_once(self) -> None:
        procs = process_tree(self.pid, self.backend)
        if not procs:
            return
        current = split_rss(procs, self.pid, self.jvm)
        self._peak = [max(a, b) for a, b in zip(self._peak, current, strict=True)]
        self._samples += 1

    def _loop(self) -> None:
        while True:
            self.sample_once()
            if self._stop.wait(self.interval_s):
                self.sample_once()
                return

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class CommandResult:
    """One measured command: wall seconds, exit status, memory peaks and where its output is."""

    name: str
    returncode: int | None  # None: not run (an earlier step failed)
    seconds: float | None
    peaks: Peaks | None
    log: str
    error: str = ""  # the command's last error line when it failed
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @classmethod
    def skipped(cls, name: str, why: str) -> CommandResult:
        return cls(name, None, None, None, "", error=f"not run: {why}")


def recsys_argv(*args: str) -> list[str]:
    """The ``recsys`` console script next to this interpreter, as users run it; else the module.

    Either way the process started *is* the Python driver (no shell in between), so its pid is
    the one to sample.
    """
    script = Path(sys.executable).with_name("recsys")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), *args]
    return [sys.executable, "-m", "spark_jobs.cli.main", *args]


def command_env(root: Path, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with everything of the configuration pointed at ``root``: tables, checkpoints and
    a private MLflow store (empty URIs derive from the root). The user's other ``RECSYS_*``
    settings (master, driver memory, ...) are kept: they are part of how the commands run."""
    dropped = {"RECSYS_HOME", "RECSYS_CHECKPOINT_ROOT", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}
    env = {k: v for k, v in base.items() if k not in dropped}
    env.update(
        RECSYS_LAKEHOUSE_ROOT=str(root),
        RECSYS_CHECKPOINT_ROOT=str(root / "_checkpoints"),
        RECSYS_MLFLOW__TRACKING_URI="",
        RECSYS_MLFLOW__ARTIFACT_ROOT="",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_measured(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    timeout_s: float | None = None,
    interval_s: float = SAMPLE_INTERVAL_S,
    heartbeat_s: float = HEARTBEAT_S,
    log: TextIO | None = None,
) -> CommandResult:
    """Run ``argv`` to completion with its output in ``log_path``, timed and memory-sampled.

    The command gets its own process group, so a timeout or Ctrl-C stops its JVM and workers
    too, and nothing it left behind runs into the next measurement.
    """
    started = time.perf_counter()
    timed_out = False
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sampler = RssSampler(proc.pid, interval_s).start()
        next_beat = started + heartbeat_s
        try:
            while True:
                try:
                    proc.wait(timeout=min(1.0, heartbeat_s))
                    break
                except subprocess.TimeoutExpired:
                    now = time.perf_counter()
                    if timeout_s is not None and now - started > timeout_s:
                        timed_out = True
                        _stop_group(proc)
                        break
                    if now >= next_beat:
                        next_beat = now + heartbeat_s
                        p = sampler.peaks
                        console.info(
                            f"{name}: {now - started:,.0f}s, peak Python {p.python_mb:,.0f} MB, "
                            f"JVM {p.jvm_mb:,.0f} MB",
                            stream=log,
                        )
        except BaseException:
            _stop_group(proc)
            raise
        finally:
            peaks = sampler.stop()
    seconds = time.perf_counter() - started
    _stop_group(proc, wait_first_s=10.0)  # a JVM outliving its driver would skew the next run
    error = ""
    if proc.returncode != 0:
        error = f"timed out after {timeout_s:.0f}s" if timed_out else error_line(log_path)
    return CommandResult(name, proc.returncode, round(seconds, 2), peaks, str(log_path), error, timed_out)


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0, wait_first_s: float = 0.0) -> None:
    """End what is left of the process group we started for ``proc`` (its leader's pid).

    Waits ``wait_first_s`` for a group that is winding down by itself, then SIGTERM, and SIGKILL
    after ``grace_s``. Reaps ``proc`` on the way (an unreaped leader keeps the group alive).
    """
    pgid = proc.pid

    def wait_gone(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            proc.poll()
            if not _group_alive(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    if wait_gone(wait_first_s):
        return
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)
        if wait_gone(wait_s):
            return
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def error_line(log_path: Path, max_chars: int = 300) -> str:
    """The line that says why a command failed: its last ``error:`` line (the CLI's one-line
    errors), else the last line of a traceback or of the output."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no output)"
    chosen = next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1] if lines else "")
    return chosen[:max_chars] or "(no output)"


def served_models(log_path: Path) -> str | None:
    """What ``recsys score`` says it served: its summary's ``models`` row (``als:v1+ranker:v1``,
    ``none`` for popularity alone); None when the log has no such row. Read from the output, as a
    user would, so a size whose scorer fell back to popularity is not compared unawares."""
    with contextlib.suppress(OSError):
        for line in reversed(log_path.read_text(errors="replace").splitlines()):
            name, bar, value = line.partition("|")
            if bar and name.strip() == "models":
                return value.strip()
    return None


def last_json(log_path: Path) -> dict[str, Any]:
    """The last JSON object line a helper process printed (its result); empty if none."""
    with contextlib.suppress(OSError):
        for line in reversed(log_path.read_text(errors="replace").splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    return dict(json.loads(line))
    return {}


# ---------------------------------------------------------------------------- one size


@dataclass
class SizeRun:
    """Everything measured at one size."""

    size: Size
    events_written: int | None = None
    write: CommandResult | None = None
    train: CommandResult | None = None
    score: CommandResult | None = None
    champion_forced: bool | None = None
    served_models: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c is not None and c.ok for c in (self.write, self.train, self.score))

    def peak(self, which: str) -> float | None:
        """The larger of train's and score's peak for ``which`` (python_mb, jvm_mb, others_mb);
        a failed command's peak is not counted (it measured a different amount of work)."""
        values = [getattr(c.peaks, which) for c in (self.train, self.score) if c and c.ok and c.peaks]
        return max(values) if values else None


def measure_size(
    size: Size, root: Path, *, quick: bool, end_ms: int, base_env: Mapping[str, str], log: TextIO
) -> SizeRun:
    """Write silver, then train and score through the ``recsys`` commands, in a fresh ``root``."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = command_env(root, base_env)
    timeout = TIMEOUT_S[quick]
    result = SizeRun(size)

    def step(name: str, argv: Sequence[str]) -> CommandResult:
        done = run_measured(
            name, argv, env=env, cwd=root, log_path=root / f"{name}.log", timeout_s=timeout, log=log
        )
        status = "ok" if done.ok else f"FAILED (exit {done.returncode}): {done.error}"
        peaks = done.peaks or Peaks(0, 0, 0, 0)
        console.info(
            f"{name}: {done.seconds:,.1f}s, peak Python {peaks.python_mb:,.0f} MB, "
            f"JVM {peaks.jvm_mb:,.0f} MB, workers {peaks.others_mb:,.0f} MB; {status}",
            stream=log,
        )
        return done

    helper = [sys.executable, "-m", "benchmarks.scale"]
    counts = ("--events", size.events, "--users", size.users, "--items", size.items, "--end-ms", end_ms)
    result.write = step("write", [*helper, "write", *map(str, counts), "--seed", str(SEED)])
    if not result.write.ok:
        result.train = CommandResult.skipped("train", "writing silver failed")
        result.score = CommandResult.skipped("score", "writing silver failed")
        return result
    result.events_written = last_json(Path(result.write.log)).get("events")

    result.train = step("train", recsys_argv("train", "--once", *(["--quick"] if quick else [])))
    if not result.train.ok:
        result.score = CommandResult.skipped("score", "training failed")
        return result

    promoted = run_measured(
        "promote",
        [*helper, "promote"],
        env=env,
        cwd=root,
        log_path=root / "promote.log",
        timeout_s=600,
        log=log,
    )
    outcome = last_json(Path(promoted.log))
    result.champion_forced = bool(outcome.get("forced")) if promoted.ok else None
    if not promoted.ok:
        result.notes.append(f"forcing the champion failed: {promoted.error}")
    elif not outcome.get("champion"):
        result.notes.append("no model registered: the scorer serves popularity")
    elif result.champion_forced:
        console.info("the gate kept popularity: challenger made champion for the scorer", stream=log)

    result.score = step("score", recsys_argv("score", "--once"))
    result.served_models = served_models(Path(result.score.log))
    return result


# ----------------------------------------------------------------------------- figures


def check_targets(runs: Sequence[SizeRun]) -> dict[str, Any]:
    """The targets between the smallest and the largest size (by events) as flat figures.

    A ratio that cannot be computed (a command failed at either end) is ``None`` and its check
    ``False``: a target is met only when it was measured.
    """
    ordered = sorted(runs, key=lambda r: r.size.events)
    small, large = ordered[0], ordered[-1]
    event_ratio = large.size.events / small.size.events

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b <= 0 else round(a / b, 3)

    def seconds(run: SizeRun, name: str) -> float | None:
        done = getattr(run, name)
        return done.seconds if done is not None and done.ok else None

    figures: dict[str, Any] = {"event_ratio": round(event_ratio, 3)}
    for name in COMMANDS:
        r = ratio(seconds(large, name), seconds(small, name))
        figures[f"{name}_time_ratio"] = r
        figures[f"{name}_scaling_ok"] = r is not None and r <= event_ratio
    py = ratio(large.peak("python_mb"), small.peak("python_mb"))
    figures["python_peak_ratio"] = py
    figures["python_memory_ok"] = py is not None and py <= PYTHON_PEAK_MAX_RATIO
    figures["jvm_peak_ratio"] = ratio(large.peak("jvm_mb"), small.peak("jvm_mb"))
    figures["time_scaling_ok"] = all(figures[f"{n}_scaling_ok"] for n in COMMANDS)
    figures["all_succeeded"] = all(r.ok for r in runs)
    figures["targets_met"] = bool(
        figures["time_scaling_ok"] and figures["python_memory_ok"] and figures["all_succeeded"]
    )
    return figures


def size_figures(index: int, run: SizeRun) -> dict[str, Any]:
    """Flat figures of one size, keys prefixed ``size<index>_`` (1 = smallest)."""
    p = f"size{index}_"
    figures: dict[str, Any] = {
        f"{p}size": run.size.label,
        f"{p}events": run.events_written if run.events_written is not None else run.size.events,
        f"{p}users": run.size.users,
        f"{p}items": run.size.items,
        f"{p}write_s": run.write.seconds if run.write else None,
    }
    for name in COMMANDS:
        done: CommandResult | None = getattr(run, name)
        figures[f"{p}{name}_s"] = done.seconds if done else None
        figures[f"{p}{name}_ok"] = bool(done and done.ok)
    figures[f"{p}python_peak_rss_mb"] = run.peak("python_mb")
    figures[f"{p}jvm_peak_rss_mb"] = run.peak("jvm_mb")
    figures[f"{p}workers_peak_rss_mb"] = run.peak("others_mb")
    for name in COMMANDS:
        done = getattr(run, name)
        peaks = done.peaks if done else None
        figures[f"{p}{name}_python_peak_rss_mb"] = peaks.python_mb if peaks else None
        figures[f"{p}{name}_jvm_peak_rss_mb"] = peaks.jvm_mb if peaks else None
        figures[f"{p}{name}_workers_peak_rss_mb"] = peaks.others_mb if peaks else None
        figures[f"{p}{name}_samples"] = peaks.samples if peaks else 0
    figures[f"{p}champion_forced"] = run.champion_forced
    figures[f"{p}served_models"] = run.served_models
    errors = [f"{c.name}: {c.error}" for c in (run.write, run.train, run.score) if c is not None and c.error]
    figures[f"{p}notes"] = "; ".join(errors + run.notes)
    return figures


def build_figures(runs: Sequence[SizeRun], context: Mapping[str, Any]) -> dict[str, Any]:
    """All flat figures: ``sizes``, the targets, each size's (``size1_`` smallest), then ``context``."""
    ordered = sorted(runs, key=lambda r: r.size.events)
    figures: dict[str, Any] = {"sizes": " ".join(r.size.label for r in ordered), "n_sizes": len(ordered)}
    figures.update(check_targets(ordered))
    for index, run in enumerate(ordered, start=1):
        figures.update(size_figures(index, run))
    figures.update(context)
    return figures


def size_rows(figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-size figures back as one dict per size (unprefixed), smallest first."""
    rows = []
    for index in range(1, int(figures["n_sizes"]) + 1):
        p = f"size{index}_"
        rows.append({k.removeprefix(p): v for k, v in figures.items() if k.startswith(p)})
    return rows


SIZE_TABLE = (
    ("size", "size"),
    ("events", "events"),
    ("train_s", "train s"),
    ("score_s", "score s"),
    ("python_peak_rss_mb", "Python MB"),
    ("jvm_peak_rss_mb", "JVM MB"),
    ("workers_peak_rss_mb", "workers MB"),
    ("train_ok", "train ok"),
    ("score_ok", "score ok"),
)


def size_table(figures: Mapping[str, Any]) -> str:
    """The per-size table printed at the end of a run."""
    rows = size_rows(figures)
    return console.render_table([h for _, h in SIZE_TABLE], ([r.get(k) for k, _ in SIZE_TABLE] for r in rows))


def summary_rows(figures: Mapping[str, Any]) -> list[tuple[str, object]]:
    """What ``recsys bench scale`` ends with: the targets (the per-size table comes just before)."""
    limit = PYTHON_PEAK_MAX_RATIO
    rows: list[tuple[str, object]] = [
        ("sizes", figures["sizes"]),
        ("event ratio (largest / smallest)", figures["event_ratio"]),
    ]
    for name in COMMANDS:
        verdict = _verdict(figures[f"{name}_time_ratio"], figures[f"{name}_scaling_ok"])
        rows.append((f"{name} time ratio (<= event ratio)", verdict))
    verdict = _verdict(figures["python_peak_ratio"], figures["python_memory_ok"])
    rows += [
        (f"Python peak ratio (<= {limit:g})", verdict),
        ("JVM peak ratio", figures["jvm_peak_ratio"]),
        ("every command succeeded", figures["all_succeeded"]),
        ("targets met", figures["targets_met"]),
    ]
    rows += [(r["size"], r["notes"]) for r in size_rows(figures) if r.get("notes")]
    if figures.get("plot"):
        rows.append(("plot", figures["plot"]))
    return rows


def _verdict(value: float | None, ok: bool) -> str:
    return "not measured" if value is None else f"{value:g} ({'ok' if ok else 'MISSED'})"


def plot(figures: Mapping[str, Any], path: Path) -> Path:
    """Time (left) and peak memory (right) against events, log x, with the target lines: time
    proportional to events from the smallest size, and 1.5x the smallest Python peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{k: float("nan") if v is None else v for k, v in r.items()} for r in size_rows(figures)]
    events = [r["events"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("train_s", "recsys train"), ("score_s", "recsys score --once")):
        (line,) = ax_t.plot(events, [r[key] for r in rows], marker="o", label=label)
        first = rows[0][key]
        if not math.isnan(first):  # the smallest size was measured: its target line
            growth = [first * e / events[0] for e in events]
            ax_t.plot(events, growth, ls=":", color=line.get_color(), alpha=0.8)
    ax_t.plot([], [], ls=":", color="grey", label="target: growing like the events")
    ax_t.set(xscale="log", yscale="log", xlabel="silver events", ylabel="seconds (wall)", title="time")
    colors: dict[str, str] = {}
    for key, label in (
        ("python_peak_rss_mb", "Python driver"),
        ("jvm_peak_rss_mb", "driver JVM"),
        ("workers_peak_rss_mb", "other (Python workers)"),
    ):
        (line,) = ax_m.plot(events, [r[key] for r in rows], marker="o", label=label)
        colors[key] = line.get_color()
    smallest = rows[0]["python_peak_rss_mb"]
    if not math.isnan(smallest):
        target = f"Python target ({PYTHON_PEAK_MAX_RATIO:g}x smallest)"
        ax_m.axhline(
            smallest * PYTHON_PEAK_MAX_RATIO, ls=":", color=colors["python_peak_rss_mb"], label=target
        )
    ax_m.set(xscale="log", xlabel="silver events", ylabel="peak RSS (MiB)", title="peak memory")
    ax_m.set_ylim(bottom=0)
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"recsys bench scale: {figures['sizes']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- run


def run(
    config: Config, quick: bool = False, log: TextIO = sys.stdout, sizes: Sequence[Size] | None = None
) -> dict[str, Any]:
    """Measure every size (smallest first) and return the flat figures; writes the plot."""
    chosen = check_sizes(sizes or (QUICK_SIZES if quick else FULL_SIZES))
    if "://" in config.lakehouse_root or config.lakehouse_root.startswith("dbfs:"):
        raise UsageError(
            f"the scale benchmark needs a local lakehouse root, got {config.lakehouse_root}",
            hint="set RECSYS_LAKEHOUSE_ROOT to a local folder",
        )
    default_backend()  # fail before any work where memory cannot be read
    bench_root = Path(config.lakehouse_root) / "_bench" / "scale"
    end_ms = int(time.time() * 1000)
    load_start = os.getloadavg()[0]
    runs = []
    for n, size in enumerate(chosen, start=1):
        console.step(
            f"size {n}/{len(chosen)}: {size.events:,} events, {size.users:,} users, {size.items:,} items",
            stream=log,
        )
        root = bench_root / size.slug
        done = measure_size(size, root, quick=quick, end_ms=end_ms, base_env=os.environ, log=log)
        runs.append(done)
        if done.ok:  # keep the commands' logs (what they printed is the evidence), not the data
            for path in root.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.suffix != ".log":
                    path.unlink()
            console.info(f"logs in {root}", stream=log)
        else:
            console.info(f"kept {root} (tables and logs of the failed step)", stream=log)
    context = {
        "train_command": " ".join(["recsys", "train", "--once", *(["--quick"] if quick else [])]),
        "score_command": "recsys score --once",
        "sample_interval_s": SAMPLE_INTERVAL_S,
        "sampler": default_backend(),
        "spark_master": config.spark.master,
        "driver_memory": config.spark.driver_memory,
        "load_avg_1m_start": round(load_start, 1),
        "load_avg_1m_end": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }
    figures = build_figures(runs, context)
    stem = (
        f"scale{'-quick' if quick else ''}{'-custom' if sizes else ''}"  # as ``recsys bench`` names the JSON
    )
    path = project_root() / "benchmarks" / "results" / f"{stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        plot(figures, path)
        figures["plot"] = str(path.relative_to(project_root()))
    except ImportError:
        console.info("matplotlib is not installed: no plot", stream=log)
    print("\n" + size_table(figures), file=log, flush=True)
    return figures


# ------------------------------------------------------- helper steps (own processes)


def _write(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks._world import session, write_silver

    spark = session(config, "recsys-bench-scale-write")
    history, write_s = write_silver(
        spark,
        config,
        n_users=args.users,
        n_items=args.items,
        n_events=args.events,
        end_ms=args.end_ms,
        seed=args.seed,
    )
    spark.stop()
    return {"events": history.events, "write_s": round(write_s, 2)}


def _promote(config: Config) -> dict[str, Any]:
    """Make the challenger champion when the gate kept popularity (as ``_world`` does)."""
    import mlflow

    from spark_jobs.common import names
    from spark_jobs.registry.gate import GateDecision, apply_decision
    from spark_jobs.registry.store import champion_versions, setup_tracking

    setup_tracking(config)
    client = mlflow.MlflowClient()
    champion = champion_versions(client)
    if champion:
        return {"forced": False, "champion": champion}
    challenger = champion_versions(client, names.ALIAS_CHALLENGER)
    if challenger:
        apply_decision(client, GateDecision(True, ("forced by benchmark",)), challenger)
    return {"forced": bool(challenger), "champion": challenger}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.scale write|promote``: the set-up steps, each in its own process
    so the harness holds no JVM of its own while it measures the commands."""
    from spark_jobs.cli.args import positive_int
    from spark_jobs.common.config import get_config

    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=main.__doc__)
    sub = parser.add_subparsers(dest="step", required=True)
    write = sub.add_parser("write", help="synthetic catalog + silver history into the configured lakehouse")
    for flag in ("--events", "--users", "--items", "--end-ms"):
        write.add_argument(flag, type=positive_int, required=True)
    write.add_argument("--seed", type=int, default=SEED)
    sub.add_parser("promote", help="make the challenger champion when the gate kept popularity")
    args = parser.parse_args(argv)
    config = get_config()
    outcome = _write(config, args) if args.step == "write" else _promote(config)
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

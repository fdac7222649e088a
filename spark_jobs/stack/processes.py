"""Helpers for the local stack's background processes (Kafka broker, SQL server, Spark cluster).

Each service is one detached process recorded in a pid file under ``config.stack_dir``; these
functions read and signal it, tell it from an unrelated process that reused its pid, and keep
its log readable for error messages. They only touch the pid and files they are given.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LOG_TAIL_LINES = 25


def read_pid(path: Path) -> int | None:
    """The pid recorded in ``path``; None when the file is missing or unreadable."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def send_signal(pid: int, signum: int) -> None:
    """Send ``signum``; a process that exited meanwhile is what we wanted anyway."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (an exited child nobody reaped still answers ``kill 0``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): kill 0 is all we have
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def exited(pid: int, child: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether ``pid`` is gone; ``child``, our ``Popen`` of it if any, is reaped on the way."""
    if child is not None and child.pid == pid:
        return child.poll() is not None
    return not pid_alive(pid)


def wait_exit(
    pid: int, timeout_s: float, child: subprocess.Popen[bytes] | None = None, poll_s: float = 0.1
) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to exit; whether it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if exited(pid, child):
            return True
        time.sleep(poll_s)
    return exited(pid, child)


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (a service started in its own session, with the
    children it forked, e.g. a Spark worker's executors), else just the process."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        send_signal(pid, signal.SIGKILL)


def command_line(pid: int) -> str | None:
    """The process's command line (procfs, else ``ps``), to tell our service from a reused pid."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        if Path("/proc").is_dir():
            return None
    except OSError:
        return None
    result = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created with its folder) for the block."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rotate(log_file: Path) -> None:
    """Keep the previous run's log as ``.1`` so the failing run's lines are the only ones."""
    if log_file.exists():
        log_file.replace(log_file.with_name(log_file.name + ".1"))


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def tail_file(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a (possibly large) log, for error messages."""
    try:
        with path.open("rb") as handle:
            return tail_text(_read_end(handle).decode(errors="replace"), lines)
    except OSError:
        return "(no log written)"


def tail_text(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _read_end(handle: IO[bytes], max_bytes: int = 64_000) -> bytes:
    handle.seek(0, os.SEEK_END)
    handle.seek(max(handle.tell() - max_bytes, 0))
    return handle.read()


class PidFileService:
    """A detached service of the local stack whose pid is kept in ``pid_file``.

    ``_proc`` is our ``Popen`` of it when this process started it (so its exit code is known and
    it is reaped); subclasses say, by ``_owns``, which command line is theirs, so a pid reused by
    an unrelated process is never taken for the service.
    """

    pid_file: Path
    _proc: subprocess.Popen[bytes] | None = None
    poll_s: float = 0.125

    def _owns(self, command: str) -> bool:
        raise NotImplementedError

    def _running_pid(self) -> int | None:
        """The pid in the pid file if that process is alive and is this service."""
        pid = read_pid(self.pid_file)
        if pid is None or self._exit_code(pid) is not None:
            return None
        command = command_line(pid)
        return pid if command is not None and self._owns(command) else None

    def _exit_code(self, pid: int | None = None) -> int | None:
        """Exit code of our child (or -1 for a dead non-child), None while it runs."""
        proc = self._proc
        if proc is not None and (pid is None or proc.pid == pid):
            return proc.poll()
        if pid is None:
            pid = read_pid(self.pid_file)
        return -1 if pid is None or not pid_alive(pid) else None

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        return wait_exit(pid, timeout_s, self._proc, self.poll_s)

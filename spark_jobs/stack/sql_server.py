"""The local SQL server (Spark Thrift, JDBC/ODBC) as a background process of the stack.

``recsys stack up --sql`` starts ``python -m spark_jobs.sql.thrift_server`` with the venv's
Python, detached like the broker, and waits until its port answers. State under the lakehouse
root::

    <lakehouse>/_stack/sql.pid              pid of the server's Python process (the JVM is its child)
    <lakehouse>/_stack/sql.lock             serialises concurrent start/stop
    <lakehouse>/_stack/sql/server.log       stdout/stderr of Python and Spark (previous run: .1)
    <lakehouse>/_stack/sql/config.json      the config the server was started with
    <lakehouse>/_stack/sql/package-jars.json   Delta/Kafka jars resolved for its class path (a cache)

``start`` and ``stop`` are idempotent. Stopping sends SIGTERM (the server closes its port and
stops Spark), then SIGKILL to the whole process group when it does not exit in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spark_jobs.common.config import Config
from spark_jobs.common.errors import StackError
from spark_jobs.common.spark import java_executable
from spark_jobs.sql.thrift_server import HOST, MODULE, jdbc_url, sql_home, write_config
from spark_jobs.stack.ports import LOOPBACK, accepts_connections, port_is_free
from spark_jobs.stack.processes import (
    PidFileService,
    kill_group,
    locked,
    rotate,
    send_signal,
    tail_file,
    write_atomically,
)

KILL_WAIT_S = 10.0
POLL_S = 0.25

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SqlServerStatus:
    """What ``recsys stack status`` reports. ``pid`` is None unless ``running``."""

    running: bool
    pid: int | None
    url: str
    log_file: Path


class LocalSqlServer(PidFileService):
    """Start, stop and inspect the Thrift server of ``config``'s lakehouse (local profile).

    ``progress`` receives one line per stage (``console.step`` in the CLI); tests leave it silent.
    """

    def __init__(self, config: Config, progress: Progress | None = None) -> None:
        self.config = config
        self.port = config.spark.sql_port
        self.home = sql_home(config)
        self.log_file = self.home / "server.log"
        self.config_file = self.home / "config.json"
        self.pid_file = config.stack_dir / "sql.pid"
        self.url = jdbc_url(config)
        self._progress = progress or (lambda _message: None)
        self._proc: subprocess.Popen[bytes] | None = None

    def status(self) -> SqlServerStatus:
        """Whether our server process is alive; read-only (a stale pid file reads as stopped)."""
        pid = self._running_pid()
        return SqlServerStatus(pid is not None, pid, self.url, self.log_file)

    def answers(self, timeout_s: float = 1.0) -> bool:
        """Whether the server's port accepts connections."""
        return accepts_connections(HOST, self.port, timeout_s=timeout_s)

    def start(self, timeout_s: float = 180) -> SqlServerStatus:
        """Start the server unless it already runs, and wait until its port answers.

        Raises ``StackError`` (port taken, server exited or not ready in ``timeout_s``, with
        the last log lines) or ``JavaNotFoundError``.
        """
        java_executable()
        deadline = time.monotonic() + timeout_s
        with locked(self.config.stack_dir / "sql.lock"):
            pid = self._running_pid()
            if pid is not None:
                self._progress(f"SQL server already running (pid {pid}) on {HOST}:{self.port}")
                self._wait_ready(deadline, timeout_s, ours=False)
            else:
                self.pid_file.unlink(missing_ok=True)
                self._check_port_free()
                self._launch()
                self._wait_ready(deadline, timeout_s, ours=True)
        return self.status()

    def stop(self, timeout_s: float = 30) -> bool:
        """Stop the server: SIGTERM, then SIGKILL to its process group after ``timeout_s``.

        Returns True when a server was stopped, False when none was running (a no-op).
        """
        if not self.config.stack_dir.is_dir():
            return False
        with locked(self.config.stack_dir / "sql.lock"):
            pid = self._running_pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            self._progress(f"stopping SQL server (pid {pid})")
            send_signal(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout_s):
                self._progress(f"no clean shutdown within {timeout_s:.0f}s; killing pid {pid}")
                kill_group(pid)
                if not self._wait_exit(pid, KILL_WAIT_S):
                    raise StackError(f"SQL server (pid {pid}) survived SIGKILL")
            self.pid_file.unlink(missing_ok=True)
            self._proc = None
            return True

    def _check_port_free(self) -> None:
        if not port_is_free(self.port, LOOPBACK):
            raise StackError(
                f"port {self.port} (SQL server) is in use by another process, not by the SQL "
                f"server of {self.config.stack_dir}",
                hint="stop that process, or pick a free port with RECSYS_SPARK__SQL_PORT=<port>",
            )

    def _launch(self) -> None:
        write_config(self.config, self.config_file)
        self._progress(f"starting the Spark SQL (Thrift) server on {HOST}:{self.port}")
        rotate(self.log_file)
        command = [sys.executable, "-m", MODULE, "--config", str(self.config_file)]
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                cwd=self.home,  # stray files (derby.log, spark-warehouse) stay in the stack folder
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI and its Ctrl-C; its own process group
            )
        write_atomically(self.pid_file, f"{self._proc.pid}\n")

    def _wait_ready(self, deadline: float, timeout_s: float, ours: bool) -> None:
        """Block until the port answers, else raise with the log; a server we launched is killed."""
        while time.monotonic() < deadline:
            exit_code = self._exit_code()
            if exit_code is not None:
                self.pid_file.unlink(missing_ok=True)
                code = f" with code {exit_code}" if exit_code >= 0 else ""
                raise self._startup_error(f"SQL server exited{code} during startup")
            if self.answers(timeout_s=min(1.0, max(deadline - time.monotonic(), 0.1))):
                return
            time.sleep(POLL_S)
        if ours:
            pid = self._running_pid()
            if pid is not None:
                kill_group(pid)
                self._wait_exit(pid, KILL_WAIT_S)
            self.pid_file.unlink(missing_ok=True)
        raise self._startup_error(f"SQL server did not answer within {timeout_s:.0f}s")

    def _startup_error(self, message: str) -> StackError:
        return StackError(
            f"{message}; last lines of {self.log_file}:\n{tail_file(self.log_file)}",
            hint=f"fix the cause shown above (the full log is {self.log_file}), then rerun "
            "(a slow machine may need a longer --sql-timeout)",
        )

    def _owns(self, command: str) -> bool:
        return MODULE in command and str(self.config_file) in command

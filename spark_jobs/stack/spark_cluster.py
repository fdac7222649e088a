"""A local Spark standalone cluster (one master, N workers) as background processes of the stack.

``recsys stack up --spark`` starts ``org.apache.spark.deploy.master.Master`` and
``...deploy.worker.Worker`` with ``bin/spark-class`` of the pyspark installation (SPARK_HOME is the
pyspark package), every daemon, UI and executor on 127.0.0.1. Jobs use it with
``RECSYS_SPARK__MASTER=spark://127.0.0.1:<spark.cluster_port>`` and nothing else changed
(``spark_jobs.common.spark.standalone_conf``). State under the lakehouse root::

    <lakehouse>/_stack/spark-master.pid, spark-worker-<i>.pid   pid of each daemon's JVM
    <lakehouse>/_stack/spark.lock               serialises concurrent start/stop
    <lakehouse>/_stack/spark/<daemon>.log       the daemon's stdout/stderr (previous run: .1)
    <lakehouse>/_stack/spark/<daemon>.conf      its properties file (also how we recognise it)
    <lakehouse>/_stack/spark/work/<worker>/     executors' stdout/stderr, per application
    <lakehouse>/_stack/spark/conf/              SPARK_CONF_DIR, empty: no stray spark-defaults

``start`` is idempotent and starts only what is missing (a worker that died is started again);
``stop`` sends SIGTERM (a worker stops its executors), then SIGKILL to the daemon's process group.
The master's JSON status (``http://127.0.0.1:<spark.cluster_ui_port>/json/``) says which workers
registered; ``state`` returns it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_jobs.common.config import Config
from spark_jobs.common.errors import StackError
from spark_jobs.common.spark import java_executable
from spark_jobs.stack.ports import LOOPBACK, port_is_free
from spark_jobs.stack.processes import (
    command_line,
    exited,
    kill_group,
    locked,
    read_pid,
    rotate,
    send_signal,
    tail_file,
    wait_exit,
    write_atomically,
)

HOST = LOOPBACK
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "512m"  # heap of each daemon JVM; executors get theirs from the worker's memory
KILL_WAIT_S = 10.0
POLL_S = 0.5

Progress = Callable[[str], None]


def spark_home() -> Path:
    """The pyspark package folder: a complete Spark (``bin/spark-class``, ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass(frozen=True)
class DaemonStatus:
    """One daemon as ``recsys stack status`` reports it. ``pid`` is None unless ``running``."""

    name: str  # "master", "worker-1", ...
    running: bool
    pid: int | None
    ui_url: str
    log_file: Path


@dataclass(frozen=True)
class ClusterStatus:
    """The master and the workers, in that order; ``master_url`` is what jobs use as master."""

    master_url: str
    ui_url: str
    daemons: tuple[DaemonStatus, ...]

    @property
    def master(self) -> DaemonStatus:
        return self.daemons[0]

    @property
    def workers(self) -> tuple[DaemonStatus, ...]:
        return self.daemons[1:]

    @property
    def running(self) -> bool:
        """Every daemon's process is alive (registration is in ``LocalSparkCluster.state``)."""
        return all(d.running for d in self.daemons)


@dataclass(frozen=True)
class _Daemon:
    name: str
    main_class: str
    args: tuple[str, ...]
    ui_port: int
    pid_file: Path
    log_file: Path
    properties: Path

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.ui_port}"


def render_properties(daemon: str) -> str:
    """The daemon's properties file; pure. A taken port fails the start instead of moving on."""
    settings = {"spark.port.maxRetries": 0}
    if daemon.startswith("worker"):
        settings["spark.worker.cleanup.enabled"] = "true"  # old applications' folders
    header = f"# Spark {daemon} of `recsys stack up --spark`; regenerated at each start.\n"
    return header + "".join(f"{key} {value}\n" for key, value in settings.items())


class LocalSparkCluster:
    """Start, stop and inspect the standalone cluster of ``config``'s lakehouse (local profile).

    ``progress`` receives one line per stage (``console.step`` in the CLI); tests leave it silent.
    """

    def __init__(self, config: Config, progress: Progress | None = None) -> None:
        spark = config.spark
        ports = [spark.cluster_port, spark.cluster_ui_port]
        ports += [spark.cluster_ui_port + i for i in range(1, spark.cluster_workers + 1)]
        if len(set(ports)) != len(ports):
            raise StackError(
                f"spark.cluster_port {spark.cluster_port} collides with the UI ports "
                f"{spark.cluster_ui_port}..{ports[-1]} (master, then one per worker)",
                hint="move one of them: RECSYS_SPARK__CLUSTER_PORT or RECSYS_SPARK__CLUSTER_UI_PORT",
            )
        self.config = config
        self.home = config.stack_dir / "spark"
        self.conf_dir = self.home / "conf"
        self.work_dir = self.home / "work"
        self.master_url = f"spark://{HOST}:{spark.cluster_port}"
        self.ui_url = f"http://{HOST}:{spark.cluster_ui_port}"
        self._progress = progress or (lambda _message: None)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._daemons = [self._master()] + [self._worker(i) for i in range(1, spark.cluster_workers + 1)]

    # -- public API --------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Which daemons are alive; read-only (a stale pid file reads as stopped)."""
        daemons = []
        for daemon in self._daemons:
            pid = self._running_pid(daemon)
            daemons.append(DaemonStatus(daemon.name, pid is not None, pid, daemon.ui_url, daemon.log_file))
        return ClusterStatus(self.master_url, self.ui_url, tuple(daemons))

    def state(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The master's JSON status (workers, cores, applications); None when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=timeout_s) as response:
                return json.load(response)
        except (OSError, ValueError):
            return None

    def alive_workers(self, state: dict[str, Any] | None = None) -> list[str]:
        """Names of our workers the master lists as ALIVE (from ``state`` or a fresh one)."""
        state = self.state() if state is None else state
        if state is None:
            return []
        alive = {w.get("webuiaddress") for w in state.get("workers", []) if w.get("state") == "ALIVE"}
        return [d.name for d in self._daemons[1:] if d.ui_url in alive]

    def _all_registered(self) -> bool:
        return self.alive_workers() == [d.name for d in self._daemons[1:]]

    def start(self, timeout_s: float = 120) -> ClusterStatus:
        """Start whichever daemons are not running and wait until every worker has registered.

        Raises ``StackError`` (a port taken, a daemon exited or not ready in ``timeout_s``, with
        the last lines of its log; the daemons started by this call are stopped again) or
        ``JavaNotFoundError``.
        """
        java_executable()
        deadline = time.monotonic() + timeout_s
        with locked(self.config.stack_dir / "spark.lock"):
            launched: list[_Daemon] = []
            try:
                for daemon in self._daemons:
                    pid = self._running_pid(daemon)
                    if pid is not None:
                        self._progress(f"Spark {daemon.name} already running (pid {pid})")
                        continue
                    daemon.pid_file.unlink(missing_ok=True)
                    self._check_ports_free(daemon)
                    self._launch(daemon)
                    launched.append(daemon)
                    if daemon.main_class == MASTER_CLASS:
                        self._wait(deadline, timeout_s, launched, "master", lambda: self.state() is not None)
                self._wait(deadline, timeout_s, launched, "workers to register", self._all_registered)
            except BaseException:
                for daemon in reversed(launched):
                    self._stop_daemon(daemon, timeout_s=5.0, quiet=True)
                raise
        return self.status()

    def stop(self, timeout_s: float = 30) -> bool:
        """Stop the workers, then the master: SIGTERM, then SIGKILL after ``timeout_s``.

        Returns True when any daemon was stopped, False when none was running (a no-op).
        """
        if not self.config.stack_dir.is_dir():
            return False
        with locked(self.config.stack_dir / "spark.lock"):
            stopped = [self._stop_daemon(d, timeout_s) for d in reversed(self._daemons)]
        return any(stopped)

    # -- daemons -----------------------------------------------------------------------------

    def _master(self) -> _Daemon:
        spark = self.config.spark
        args = ("--host", HOST, "--port", str(spark.cluster_port), "--webui-port", str(spark.cluster_ui_port))
        return self._daemon("master", MASTER_CLASS, args, spark.cluster_ui_port)

    def _worker(self, index: int) -> _Daemon:
        spark, name = self.config.spark, f"worker-{index}"
        args = (
            "--host", HOST,
            "--webui-port", str(spark.cluster_ui_port + index),
            "--cores", str(spark.worker_cores),
            "--memory", spark.worker_memory,
            "--work-dir", str(self.work_dir / name),
            self.master_url,
        )  # fmt: skip
        return self._daemon(name, WORKER_CLASS, args, spark.cluster_ui_port + index)

    def _daemon(self, name: str, main_class: str, args: tuple[str, ...], ui_port: int) -> _Daemon:
        properties = self.home / f"{name}.conf"
        return _Daemon(
            name=name,
            main_class=main_class,
            args=(*args, "--properties-file", str(properties)),
            ui_port=ui_port,
            pid_file=self.config.stack_dir / f"spark-{name}.pid",
            log_file=self.home / f"{name}.log",
            properties=properties,
        )

    def _check_ports_free(self, daemon: _Daemon) -> None:
        ports = [(daemon.ui_port, "RECSYS_SPARK__CLUSTER_UI_PORT", "web UI")]
        if daemon.main_class == MASTER_CLASS:
            ports.insert(0, (self.config.spark.cluster_port, "RECSYS_SPARK__CLUSTER_PORT", "RPC"))
        for port, variable, role in ports:
            if not port_is_free(port, HOST):
                raise StackError(
                    f"port {port} (Spark {daemon.name} {role}) is in use by another process, not by "
                    f"the Spark cluster of {self.config.stack_dir}",
                    hint=f"stop that process, or pick other ports with {variable}=<port> (worker UIs "
                    "take the ports right after the master's)",
                )

    def _launch(self, daemon: _Daemon) -> None:
        for folder in (self.conf_dir, self.work_dir):
            folder.mkdir(parents=True, exist_ok=True)
        write_atomically(daemon.properties, render_properties(daemon.name))
        self._progress(f"starting Spark {daemon.name} ({daemon.ui_url})")
        rotate(daemon.log_file)
        home = spark_home()
        env = {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_CONF_DIR": str(self.conf_dir),
            "SPARK_LOCAL_IP": HOST,  # RPC, web UIs and executors bind here
            "SPARK_PUBLIC_DNS": HOST,  # ... and advertise it in the UI links
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        }
        command = [str(home / "bin" / "spark-class"), daemon.main_class, *daemon.args]
        with daemon.log_file.open("ab") as log:
            proc = subprocess.Popen(
                command,
                cwd=self.home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI; its own group, with its executors
            )
        self._procs[daemon.name] = proc
        write_atomically(daemon.pid_file, f"{proc.pid}\n")

    def _wait(
        self, deadline: float, timeout_s: float, launched: list[_Daemon], what: str, ready: Callable[[], bool]
    ) -> None:
        """Poll ``ready`` until the deadline; a launched daemon that exits meanwhile is an error."""
        while time.monotonic() < deadline:
            for daemon in launched:
                if self._running_pid(daemon) is None:
                    raise self._startup_error(daemon, f"Spark {daemon.name} exited during startup")
            if ready():
                return
            time.sleep(POLL_S)
        culprit = launched[-1] if launched else self._daemons[0]
        raise self._startup_error(culprit, f"timed out after {timeout_s:.0f}s waiting for the {what}")

    def _startup_error(self, daemon: _Daemon, message: str) -> StackError:
        return StackError(
            f"{message}; last lines of {daemon.log_file}:\n{tail_file(daemon.log_file)}",
            hint=f"fix the cause shown above (logs: {self.home}), then rerun; a slow machine may "
            "need a longer --spark-timeout",
        )

    def _stop_daemon(self, daemon: _Daemon, timeout_s: float, quiet: bool = False) -> bool:
        pid = self._running_pid(daemon)
        if pid is None:
            daemon.pid_file.unlink(missing_ok=True)
            return False
        if not quiet:
            self._progress(f"stopping Spark {daemon.name} (pid {pid})")
        child = self._procs.get(daemon.name)
        send_signal(pid, signal.SIGTERM)
        if not wait_exit(pid, timeout_s, child):
            if not quiet:
                self._progress(f"no clean shutdown within {timeout_s:.0f}s; killing pid {pid}")
            kill_group(pid)
            if not wait_exit(pid, KILL_WAIT_S, child):
                raise StackError(f"Spark {daemon.name} (pid {pid}) survived SIGKILL")
        daemon.pid_file.unlink(missing_ok=True)
        self._procs.pop(daemon.name, None)
        return True

    def _running_pid(self, daemon: _Daemon) -> int | None:
        """The pid in the daemon's pid file if it is alive and is this root's daemon."""
        pid, child = read_pid(daemon.pid_file), self._procs.get(daemon.name)
        if pid is None or exited(pid, child):
            return None
        if child is not None and child.pid == pid:
            return pid  # launched here: ours even while spark-class is still exec-ing into Java
        command = command_line(pid)
        if command is None or daemon.main_class not in command or str(daemon.properties) not in command:
            return None
        return pid

"""``recsys stack up | down | status``: the local Kafka broker, the SQL server (``--sql``) and a
Spark standalone cluster (``--spark``).

All are background processes started and stopped idempotently; the SQL server (Spark Thrift,
JDBC/ODBC) serves the lakehouse's tables and views on ``localhost:<spark.sql_port>``; the
cluster (one master, ``spark.cluster_workers`` workers, all on 127.0.0.1) runs any job given
``RECSYS_SPARK__MASTER=spark://127.0.0.1:<spark.cluster_port>``.

Handlers load the configuration and call ``up``, ``down`` or ``show_status``, which take a
``Config`` so tests can drive them against a temporary lakehouse root.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from spark_jobs.common import console
from spark_jobs.common.config import Config, get_config
from spark_jobs.common.errors import UsageError
from spark_jobs.sql.thrift_server import jdbc_url

if TYPE_CHECKING:
    from spark_jobs.stack.spark_cluster import LocalSparkCluster
    from spark_jobs.stack.sql_server import LocalSqlServer

EXIT_NOT_RUNNING = 3


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``stack`` and its actions to the ``recsys`` parser."""
    parser = subparsers.add_parser(
        "stack",
        help="start, stop or inspect the local stack (Kafka broker, SQL server, Spark cluster)",
        description="The local stack: one single-node Kafka broker (KRaft) and, on request, a "
        "Spark Thrift server for JDBC/ODBC clients and a Spark standalone cluster (a master and "
        "workers on 127.0.0.1); their data and logs live under the lakehouse root (RECSYS_HOME). "
        "Every action is idempotent.",
    )
    actions = parser.add_subparsers(dest="stack_command", metavar="ACTION", required=True)

    up_parser = actions.add_parser(
        "up",
        help="start the broker (fetching jars on first use) and create the events topic",
        description="Start the local Kafka broker unless it already runs, then make sure the "
        "configured topic exists. The first run fetches the broker jars with Maven. With --sql, "
        "also start the Spark Thrift server (JDBC/ODBC) over the lakehouse; with --spark, a Spark "
        "standalone master and its workers (jobs run there with "
        "RECSYS_SPARK__MASTER=spark://127.0.0.1:<spark.cluster_port>).",
    )
    up_parser.add_argument(
        "--timeout", type=float, default=90.0, help="seconds to wait for the broker (default 90)"
    )
    up_parser.add_argument(
        "--sql",
        action="store_true",
        help="also start the SQL server: jdbc:hive2://localhost:<spark.sql_port>/recsys "
        "(port 10000 unless RECSYS_SPARK__SQL_PORT says otherwise)",
    )
    up_parser.add_argument(
        "--sql-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for the SQL server to answer (default 180)",
    )
    up_parser.add_argument(
        "--spark",
        action="store_true",
        help="also start a Spark standalone cluster: master spark://127.0.0.1:<spark.cluster_port> "
        "(7077) with spark.cluster_workers (2) workers, web UI on 127.0.0.1:<spark.cluster_ui_port> (8090)",
    )
    up_parser.add_argument(
        "--spark-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for the Spark workers to register (default 180)",
    )
    up_parser.set_defaults(handler=_run_up)

    down_parser = actions.add_parser(
        "down", help="stop the Spark cluster, the SQL server and the broker (data is kept)"
    )
    down_parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for a clean shutdown before killing it (default 30)",
    )
    down_parser.set_defaults(handler=_run_down)

    status_parser = actions.add_parser(
        "status",
        help="show whether the broker, the SQL server and the Spark cluster run "
        "(exit code 0 = broker running, 3 = not running)",
    )
    status_parser.set_defaults(handler=_run_status)


def _run_up(args: argparse.Namespace) -> int:
    return up(
        get_config(),
        timeout_s=args.timeout,
        sql=args.sql,
        sql_timeout_s=args.sql_timeout,
        spark=args.spark,
        spark_timeout_s=args.spark_timeout,
    )


def _run_down(args: argparse.Namespace) -> int:
    return down(get_config(), timeout_s=args.timeout)


def _run_status(args: argparse.Namespace) -> int:
    return show_status(get_config())


def up(
    config: Config,
    timeout_s: float = 90.0,
    sql: bool = False,
    sql_timeout_s: float = 180.0,
    spark: bool = False,
    spark_timeout_s: float = 180.0,
) -> int:
    """Start the broker (the SQL server with ``sql``, the Spark cluster with ``spark``) and print
    the summary.

    Raises ``StackError`` when a service cannot start; what did start is left running, so a
    retry just starts what is missing.
    """
    from spark_jobs.stack.kafka import LocalKafka

    _require_local(config)
    broker = LocalKafka(config, progress=console.step)
    was_running = broker.status().running
    started = time.monotonic()
    status = broker.start(timeout_s=timeout_s)
    how = "was already up" if was_running else f"ready after {time.monotonic() - started:.1f}s"
    topic = config.kafka.topic
    partitions = broker.topic_partitions(topic)
    if partitions != config.kafka.partitions:
        console.info(
            f"note: topic {topic} has {partitions} partitions, the config asks for "
            f"{config.kafka.partitions}; existing topics are left as they are"
        )
    _warn_bootstrap_mismatch(config, status.bootstrap)
    rows: list[tuple[str, object]] = [
        ("kafka", f"running (pid {status.pid}), {how}"),
        ("bootstrap", status.bootstrap),
        ("topic", topic),
        ("partitions", partitions),
        ("data dir", status.data_dir),
        ("log file", status.log_file),
    ]
    next_steps = [
        "recsys produce synthetic      # send events to the topic",
        "recsys ingest                 # Kafka -> bronze + silver / quarantine",
    ]
    if sql:
        rows += _start_sql(config, sql_timeout_s)
        next_steps.append(f"beeline -u {jdbc_url(config)}   # or any JDBC/ODBC client")
    if spark:
        cluster_rows, master_url = _start_spark(config, spark_timeout_s)
        rows += cluster_rows
        next_steps.append(f"RECSYS_SPARK__MASTER={master_url} recsys train --once   # jobs on the cluster")
    next_steps.append("recsys stack down             # stop the stack (data is kept)")
    console.summary("recsys stack up", rows, next_steps=next_steps)
    return 0


def _start_sql(config: Config, timeout_s: float) -> list[tuple[str, object]]:
    """Start the SQL server; the summary rows that describe it."""
    from spark_jobs.stack.sql_server import LocalSqlServer

    server = LocalSqlServer(config, progress=console.step)
    was_running = server.status().running
    started = time.monotonic()
    status = server.start(timeout_s=timeout_s)
    how = "was already up" if was_running else f"ready after {time.monotonic() - started:.1f}s"
    return [
        ("sql", f"running (pid {status.pid}), {how}"),
        ("jdbc url", status.url),
        ("sql log", status.log_file),
    ]


def _start_spark(config: Config, timeout_s: float) -> tuple[list[tuple[str, object]], str]:
    """Start the Spark cluster; the summary rows that describe it, and its master URL."""
    from spark_jobs.stack.spark_cluster import LocalSparkCluster

    cluster = LocalSparkCluster(config, progress=console.step)
    was_running = cluster.status().running
    started = time.monotonic()
    status = cluster.start(timeout_s=timeout_s)
    how = "was already up" if was_running else f"ready after {time.monotonic() - started:.1f}s"
    rows: list[tuple[str, object]] = [
        ("spark master", f"running (pid {status.master.pid}), {how}"),
        ("master url", status.master_url),
        ("spark ui", status.ui_url),
    ]
    spark = config.spark
    rows += [
        (f"spark {w.name}", f"running (pid {w.pid}), {spark.worker_cores} core(s), {spark.worker_memory}")
        for w in status.workers
    ]
    rows.append(("spark logs", status.master.log_file.parent))
    return rows, status.master_url


def down(config: Config, timeout_s: float = 30.0) -> int:
    """Stop the Spark cluster, the SQL server and the broker if they run; stopping a stopped stack
    is fine (exit 0)."""
    from spark_jobs.stack.kafka import LocalKafka
    from spark_jobs.stack.spark_cluster import LocalSparkCluster
    from spark_jobs.stack.sql_server import LocalSqlServer

    _require_local(config)
    if LocalSparkCluster(config, progress=console.step).stop(timeout_s=timeout_s):
        console.step("Spark cluster stopped")
    if LocalSqlServer(config, progress=console.step).stop(timeout_s=timeout_s):
        console.step("SQL server stopped")
    broker = LocalKafka(config, progress=console.step)
    if broker.stop(timeout_s=timeout_s):
        console.step(f"Kafka broker stopped; data kept in {broker.data_dir}")
    else:
        console.step("Kafka broker is not running; nothing to stop")
    return 0


def show_status(config: Config) -> int:
    """Print the stack's state; exit code 0 when the broker runs, 3 when it does not (for scripts)."""
    from spark_jobs.stack.kafka import LocalKafka
    from spark_jobs.stack.spark_cluster import LocalSparkCluster
    from spark_jobs.stack.sql_server import LocalSqlServer

    _require_local(config)
    broker = LocalKafka(config)
    status = broker.status()
    if status.running:
        answering = "yes" if broker.answers(timeout_s=3.0) else "not yet (starting?)"
        state = f"running (pid {status.pid})"
    else:
        answering, state = "no", "not running (start it with `recsys stack up`)"
    console.summary(
        "recsys stack status",
        [
            ("kafka", state),
            ("bootstrap", status.bootstrap),
            ("answering", answering),
            ("data dir", status.data_dir),
            ("log file", status.log_file),
            *_sql_status_rows(LocalSqlServer(config)),
            *_spark_status_rows(LocalSparkCluster(config)),
        ],
    )
    return 0 if status.running else EXIT_NOT_RUNNING


def _sql_status_rows(server: LocalSqlServer) -> list[tuple[str, object]]:
    status = server.status()
    if not status.running:
        return [("sql", "not running (start it with `recsys stack up --sql`)")]
    answering = "answering" if server.answers() else "not answering yet (starting?)"
    return [("sql", f"running (pid {status.pid}), {answering}"), ("jdbc url", status.url)]


def _spark_status_rows(cluster: LocalSparkCluster) -> list[tuple[str, object]]:
    status = cluster.status()
    if not any(d.running for d in status.daemons):
        return [("spark", "not running (start it with `recsys stack up --spark`)")]
    state = cluster.state() if status.master.running else None
    registered = set(cluster.alive_workers(state)) if state is not None else set()
    if not status.master.running:
        master = "not running (`recsys stack up --spark` starts what is missing)"
    elif state is None:
        master = f"running (pid {status.master.pid}), not answering yet (starting?)"
    else:
        master = f"running (pid {status.master.pid}), {len(registered)}/{len(status.workers)} workers alive"
    rows: list[tuple[str, object]] = [
        ("spark master", master),
        ("master url", status.master_url),
        ("spark ui", status.ui_url),
    ]
    for worker in status.workers:
        if not worker.running:
            state_text = "not running"
        elif worker.name in registered:
            state_text = f"running (pid {worker.pid}), registered, UI {worker.ui_url}"
        else:
            state_text = f"running (pid {worker.pid}), not registered with the master"
        rows.append((f"spark {worker.name}", state_text))
    return rows


def _require_local(config: Config) -> None:
    if config.env != "local":
        raise UsageError(
            f"`recsys stack` runs the local stack, but RECSYS_ENV is {config.env!r}",
            hint="on a cluster the platform provides Kafka; unset RECSYS_ENV for local runs",
        )


def _warn_bootstrap_mismatch(config: Config, bootstrap: str) -> None:
    """Clients read ``kafka.bootstrap_servers``; say so when it does not point at this broker."""
    port = bootstrap.rsplit(":", 1)[1]
    servers = [s.strip() for s in config.kafka.bootstrap_servers.split(",")]
    if not any(s.rsplit(":", 1)[-1] == port for s in servers):
        console.info(
            f"note: kafka.bootstrap_servers is {config.kafka.bootstrap_servers!r} but the broker "
            f"listens on {bootstrap}; set RECSYS_KAFKA__BOOTSTRAP_SERVERS={bootstrap} for clients"
        )

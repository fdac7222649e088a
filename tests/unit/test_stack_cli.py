"""The local stack without a JVM: status of a stopped stack, port conflicts, stale pid files
(broker and Spark cluster), the session settings for a local Spark master."""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import socket
import sys
from pathlib import Path

import pytest

import spark_jobs
from spark_jobs.cli import stack as stack_cli
from spark_jobs.common.config import Config, get_config, load_config
from spark_jobs.common.errors import BrokerUnavailableError, ConfigError, StackError, UsageError
from spark_jobs.common.spark import build_session, local_standalone_master, session_conf
from spark_jobs.stack.kafka import LocalKafka, new_cluster_id, render_server_properties
from spark_jobs.stack.ports import LOOPBACK, free_port
from spark_jobs.stack.spark_cluster import LocalSparkCluster, render_properties

pytestmark = pytest.mark.unit


@pytest.fixture()
def stopped(tmp_path: Path) -> Config:
    """A local config on a temp lakehouse root and free ports, where no broker ever ran."""
    broker, controller = free_port(), free_port()
    return load_config(
        "local",
        overrides={
            "lakehouse_root": str(tmp_path / "lakehouse"),
            "kafka": {
                "bootstrap_servers": f"localhost:{broker}",
                "broker_port": broker,
                "controller_port": controller,
            },
        },
        environ={},
    )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recsys")
    stack_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_stack_status_exits_3_on_a_stopped_stack(
    stopped: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in [k for k in os.environ if k.startswith("RECSYS_")]:
        monkeypatch.delenv(key)
    empty_toml = Path(stopped.lakehouse_root).parent / "recsys.toml"
    empty_toml.write_text("")
    monkeypatch.setenv("RECSYS_CONFIG", str(empty_toml))
    monkeypatch.setenv("RECSYS_HOME", stopped.lakehouse_root)
    monkeypatch.setenv("RECSYS_KAFKA__BROKER_PORT", str(stopped.kafka.broker_port))
    monkeypatch.setenv("RECSYS_KAFKA__CONTROLLER_PORT", str(stopped.kafka.controller_port))
    get_config.cache_clear()
    try:
        args = _parse(["stack", "status"])
        code = args.handler(args)
    finally:
        get_config.cache_clear()

    assert code == stack_cli.EXIT_NOT_RUNNING == 3
    out = capsys.readouterr().out
    assert "kafka     | not running (start it with `recsys stack up`)" in out
    assert f"bootstrap | localhost:{stopped.kafka.broker_port}" in out
    assert not Path(stopped.lakehouse_root).exists()  # asking changed nothing on disk


def test_stack_down_on_a_stopped_stack_is_a_no_op(stopped: Config) -> None:
    assert stack_cli.down(stopped) == 0
    assert LocalKafka(stopped).stop() is False
    assert not Path(stopped.lakehouse_root).exists()


def test_stack_commands_refuse_the_cluster_profile(stopped: Config) -> None:
    cluster = load_config(
        "cluster", overrides={"lakehouse_root": stopped.lakehouse_root}, environ={}
    )

    with pytest.raises(UsageError, match="RECSYS_ENV"):
        stack_cli.show_status(cluster)


def test_start_names_the_taken_port_and_the_variable_to_change(stopped: Config) -> None:
    squatter = socket.socket()
    squatter.bind((LOOPBACK, stopped.kafka.broker_port))
    squatter.listen()
    try:
        with pytest.raises(StackError) as caught:
            LocalKafka(stopped).start(timeout_s=5)
    finally:
        squatter.close()

    assert f"port {stopped.kafka.broker_port} (Kafka broker listener)" in str(caught.value)
    assert "RECSYS_KAFKA__BROKER_PORT" in (caught.value.hint or "")


def test_a_pid_file_of_another_process_reads_as_stopped_and_stop_removes_it(
    stopped: Config,
) -> None:
    broker = LocalKafka(stopped)
    stopped.stack_dir.mkdir(parents=True)
    broker.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Kafka broker

    assert broker.status().running is False
    assert broker.status().pid is None
    assert broker.stop() is False
    assert not broker.pid_file.exists()


def test_server_properties_describe_one_localhost_kraft_node(stopped: Config) -> None:
    data_dir = Path("/var/lib/example/data")
    broker, controller = stopped.kafka.broker_port, stopped.kafka.controller_port

    text = render_server_properties(stopped, data_dir)
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )

    assert settings == {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@localhost:{controller}",
        "listeners": f"PLAINTEXT://localhost:{broker},CONTROLLER://localhost:{controller}",
        "advertised.listeners": f"PLAINTEXT://localhost:{broker}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(data_dir),
        "num.partitions": str(stopped.kafka.partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }


def test_cluster_id_is_a_kafka_uuid() -> None:
    cluster_id = new_cluster_id()

    assert len(cluster_id) == 22
    assert not cluster_id.startswith("-")
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_ensure_topic_rejects_bad_arguments_before_contacting_kafka(stopped: Config) -> None:
    with pytest.raises(UsageError, match="partitions"):
        LocalKafka(stopped).ensure_topic("recsys.events", 0)


def _fake_infra(root: Path, script: str) -> Path:
    infra = root / "infra"
    (infra / "lib").mkdir(parents=True)
    (infra / "pom.xml").write_text("<project/>\n")
    (infra / "fetch-jars.sh").write_text(script)
    return infra


def test_ensure_jars_skips_the_fetch_when_the_stamp_matches_the_pom(
    stopped: Config, tmp_path: Path
) -> None:
    infra = _fake_infra(tmp_path, "exit 1\n")
    (infra / "lib" / "kafka_2.13-3.9.1.jar").write_bytes(b"")
    digest = hashlib.sha256((infra / "pom.xml").read_bytes()).hexdigest()
    (infra / "lib" / ".complete").write_text(digest + "\n")

    assert LocalKafka(stopped, infra=infra).ensure_jars() == infra / "lib"


def test_ensure_jars_reports_why_the_fetch_failed(stopped: Config, tmp_path: Path) -> None:
    infra = _fake_infra(tmp_path, "echo 'fetch-jars: error: Maven not found' >&2; exit 127\n")

    with pytest.raises(StackError, match="exited 127") as caught:
        LocalKafka(stopped, infra=infra).ensure_jars()

    assert caught.value.hint == "fetch-jars: error: Maven not found"


def test_a_stopped_broker_is_reported_unavailable_not_as_a_kafka_traceback(
    stopped: Config,
) -> None:
    broker = LocalKafka(stopped)

    assert broker.answers(timeout_s=1) is False
    with pytest.raises(BrokerUnavailableError, match=f"localhost:{stopped.kafka.broker_port}"):
        broker.topic_partitions("recsys.events")


# -- the Spark standalone cluster (`recsys stack up --spark`), without starting a JVM ---------


def _cluster_config(stopped: Config, **spark: object) -> Config:
    return load_config(
        "local",
        overrides={"lakehouse_root": stopped.lakehouse_root, "spark": spark},
        environ={},
    )


def test_stack_status_reports_a_stopped_spark_cluster(
    stopped: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_cli.show_status(stopped) == stack_cli.EXIT_NOT_RUNNING

    out = capsys.readouterr().out
    assert "spark     | not running (start it with `recsys stack up --spark`)" in out
    assert LocalSparkCluster(stopped).stop() is False
    assert not Path(stopped.lakehouse_root).exists()


def test_up_parses_the_spark_flags() -> None:
    args = _parse(["stack", "up", "--spark", "--spark-timeout", "30"])

    assert (args.spark, args.spark_timeout, args.sql) == (True, 30.0, False)
    assert _parse(["stack", "up"]).spark is False


def test_cluster_daemons_listen_on_the_configured_ports_of_127_0_0_1(stopped: Config) -> None:
    config = _cluster_config(stopped, cluster_port=17077, cluster_ui_port=18090, cluster_workers=2)

    status = LocalSparkCluster(config).status()

    assert status.master_url == "spark://127.0.0.1:17077"
    assert status.ui_url == "http://127.0.0.1:18090"
    assert [(d.name, d.ui_url, d.running) for d in status.daemons] == [
        ("master", "http://127.0.0.1:18090", False),
        ("worker-1", "http://127.0.0.1:18091", False),
        ("worker-2", "http://127.0.0.1:18092", False),
    ]
    assert status.master.log_file == config.stack_dir / "spark" / "master.log"


def test_cluster_ports_that_collide_are_refused_before_anything_starts(stopped: Config) -> None:
    config = _cluster_config(stopped, cluster_port=18091, cluster_ui_port=18090)

    with pytest.raises(StackError, match="collides") as caught:
        LocalSparkCluster(config)

    assert "RECSYS_SPARK__CLUSTER_PORT" in (caught.value.hint or "")


def test_cluster_start_names_the_taken_master_port_and_the_variable_to_change(stopped: Config) -> None:
    port, ui_port = free_port(), free_port()
    config = _cluster_config(stopped, cluster_port=port, cluster_ui_port=ui_port)
    squatter = socket.socket()
    squatter.bind((LOOPBACK, port))
    squatter.listen()
    try:
        with pytest.raises(StackError) as caught:
            LocalSparkCluster(config).start(timeout_s=5)
    finally:
        squatter.close()

    assert f"port {port} (Spark master RPC)" in str(caught.value)
    assert "RECSYS_SPARK__CLUSTER_PORT" in (caught.value.hint or "")
    assert not (config.stack_dir / "spark-master.pid").exists()


def test_a_cluster_pid_file_of_another_process_reads_as_stopped_and_stop_removes_it(
    stopped: Config,
) -> None:
    cluster = LocalSparkCluster(stopped)
    stopped.stack_dir.mkdir(parents=True)
    pid_file = stopped.stack_dir / "spark-worker-1.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Spark worker

    assert cluster.status().workers[0].running is False
    assert cluster.stop() is False
    assert not pid_file.exists()


def test_cluster_daemons_do_not_move_to_another_port_when_theirs_is_taken() -> None:
    assert "spark.port.maxRetries 0" in render_properties("master").splitlines()
    assert "spark.worker.cleanup.enabled true" in render_properties("worker-1").splitlines()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("WORKER_MEMORY", "2 GB", "worker_memory = '2 GB': use a size like 512m or 2g"),
        ("CLUSTER_WORKERS", "0", "cluster_workers and spark.worker_cores must be at least 1"),
        ("CLUSTER_PORT", "x", "spark.cluster_port = 'x' is not a valid int"),
    ],
)
def test_bad_cluster_settings_are_one_line_config_errors(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("local", environ={f"RECSYS_SPARK__{key}": value})


def test_a_local_spark_master_gets_a_driver_its_executors_can_reach(stopped: Config) -> None:
    config = _cluster_config(stopped, master="spark://127.0.0.1:17077")

    conf = session_conf(config)

    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.pyspark.python"] == sys.executable
    assert conf["spark.executorEnv.PYTHONPATH"] == str(Path(spark_jobs.__file__).parents[1])
    assert conf["spark.jars.packages"]  # served to the executors by the driver
    assert local_standalone_master("spark://localhost:7077/") == ("localhost", 7077)
    for remote in ("spark://10.0.0.5:7077", "yarn", "local[2]", "spark://127.0.0.1"):
        assert local_standalone_master(remote) is None
    assert "spark.driver.host" not in session_conf(_cluster_config(stopped, master="spark://10.0.0.5:7077"))


def test_a_local_spark_master_that_does_not_answer_is_a_stack_error_not_a_hang(stopped: Config) -> None:
    config = _cluster_config(stopped, master=f"spark://127.0.0.1:{free_port()}")

    with pytest.raises(StackError, match="no Spark master answers") as caught:
        build_session(config)

    assert "recsys stack up --spark" in (caught.value.hint or "")

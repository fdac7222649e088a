"""The local stack without a JVM: status of a stopped stack, port conflicts, stale pid files."""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import socket
from pathlib import Path

import pytest

from spark_jobs.cli import stack as stack_cli
from spark_jobs.common.config import Config, get_config, load_config
from spark_jobs.common.errors import BrokerUnavailableError, StackError, UsageError
from spark_jobs.stack.kafka import LocalKafka, new_cluster_id, render_server_properties
from spark_jobs.stack.ports import LOOPBACK, free_port

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

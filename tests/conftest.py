"""Shared fixtures: one temp lakehouse, one SparkSession and one real Kafka broker per test session.

The broker is the project's own (``spark_jobs.stack.kafka.LocalKafka``) on free ports, so tests
exercise the same code path as ``recsys stack up``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spark_jobs.common.config import Config, load_config

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOVIELENS_DIR = SHARED_DATA / "ml-100k"


def _free_port() -> int:
    from spark_jobs.stack.ports import free_port

    return free_port()


@pytest.fixture(scope="session")
def lakehouse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def config(lakehouse_root: Path) -> Config:
    """Test configuration: temp lakehouse, free broker ports, small Spark, no UI."""
    broker_port, controller_port = _free_port(), _free_port()
    return load_config(
        "local",
        overrides={
            "lakehouse_root": str(lakehouse_root),
            "kafka": {
                "bootstrap_servers": f"localhost:{broker_port}",
                "broker_port": broker_port,
                "controller_port": controller_port,
                "partitions": 2,
                "max_offsets_per_trigger": 1000,
            },
            "spark": {"master": "local[2]", "shuffle_partitions": 2, "ui_enabled": False},
        },
        environ={k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")},
    )


@pytest.fixture(scope="session")
def spark(config: Config):
    """The one SparkSession of the test run (Delta + Kafka connector, embedded catalog)."""
    from spark_jobs.common import console
    from spark_jobs.common.spark import build_session

    session = build_session(config, app_name="recsys-tests")
    console.spark_log = None  # commands called in-process print their own summaries, not this log
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka(config: Config) -> Iterator[Config]:
    """A real single-node KRaft broker on free ports for the whole run; yields the config."""
    from spark_jobs.stack.kafka import LocalKafka

    broker = LocalKafka(config)
    broker.start()
    try:
        yield config
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    if not (MOVIELENS_DIR / "u.data").is_file():
        pytest.fail(f"MovieLens 100k not found at {MOVIELENS_DIR}: ../shared/data must sit beside the clone")
    return MOVIELENS_DIR


@pytest.fixture()
def fresh_lakehouse(spark, config: Config, tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """A config with its own lakehouse root and Kafka topic, and the catalog pointed at it.

    Tests that write tables get a clean slate without a new SparkSession.
    """
    import dataclasses

    from spark_jobs.common import names
    from spark_jobs.common.spark import register_tables

    topic = "t." + request.node.name.replace("[", "_").replace("]", "")[:60]
    isolated = dataclasses.replace(
        config,
        lakehouse_root=str(tmp_path / "lakehouse"),
        checkpoint_root=str(tmp_path / "lakehouse" / "_checkpoints"),
        kafka=dataclasses.replace(config.kafka, topic=topic),
    )
    for table in names.ALL_TABLES:
        spark.sql(f"DROP TABLE IF EXISTS {isolated.table(table)}")
    register_tables(spark, isolated)
    return isolated


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests run only when ``-m`` names them; ``unit`` means no JVM (``make test-fast``),
    so a unit test that asks for Spark is a mislabel."""
    if "gpu" not in (config.option.markexpr or ""):
        gpu = [item for item in items if item.get_closest_marker("gpu")]
        if gpu:
            config.hook.pytest_deselected(items=gpu)
            items[:] = [item for item in items if not item.get_closest_marker("gpu")]
    for item in items:
        if item.get_closest_marker("unit") and "spark" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid} is marked unit but uses the spark fixture: mark it spark")

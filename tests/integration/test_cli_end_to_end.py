"""The README's commands, run as a user would: separate processes, the real broker, real tables."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spark_jobs.common.config import Config
from spark_jobs.stack.ports import free_port

pytestmark = pytest.mark.integration


def _expected_kinds(n: int, bad: float, dup: float, seed: int = 42) -> tuple[int, int, int]:
    """(good, bad, duplicate) counts the seeded generator makes; they do not depend on the clock."""
    from spark_jobs.produce.synthetic import DUPLICATE, GOOD, build_world, generate_records

    world = build_world(5, 5, seed, 0)
    kinds = [k for _, k in generate_records(world, n, 0, bad_fraction=bad, duplicate_fraction=dup, seed=seed)]
    return kinds.count(GOOD), n - kinds.count(GOOD) - kinds.count(DUPLICATE), kinds.count(DUPLICATE)


# Ivy's resolution report and Spark's log4j lines: never on a command's console unless --verbose.
SPARK_NOISE = re.compile(r"^(:: resolving dependencies|\d\d/\d\d/\d\d \d\d:\d\d:\d\d (WARN|INFO) )", re.M)


def _recsys(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spark_jobs.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.update(values)
    env["RECSYS_SPARK__UI_ENABLED"] = "false"
    env["RECSYS_SPARK__SHUFFLE_PARTITIONS"] = "2"
    return env


def test_produce_ingest_then_sql_from_new_processes(kafka: Config, tmp_path: Path) -> None:
    env = _env(
        RECSYS_HOME=str(tmp_path / "lakehouse"),
        RECSYS_KAFKA_BOOTSTRAP=kafka.kafka.bootstrap_servers,
        RECSYS_KAFKA__TOPIC="t.cli_end_to_end",
        RECSYS_KAFKA__PARTITIONS="2",
    )
    produced = _recsys(
        [
            "produce",
            "synthetic",
            "--events",
            "600",
            "--users",
            "40",
            "--items",
            "30",
            "--bad-fraction",
            "0.05",
            "--duplicate-fraction",
            "0.05",
            "--no-catalog",
        ],
        env,
    )
    assert produced.returncode == 0, produced.stderr
    ingested = _recsys(["ingest", "--once"], env)
    assert ingested.returncode == 0, ingested.stderr
    assert "recsys.events_bronze" in ingested.stdout and "duplicates dropped" in ingested.stdout
    # Quiet by default: Ivy's report and the JVM's log lines went to the log the summary names.
    assert not SPARK_NOISE.search(ingested.stdout + ingested.stderr), ingested.stderr[-2000:]
    log = tmp_path / "lakehouse" / "_logs" / "recsys-ingest.log"
    assert re.search(rf"^Spark's log +\| {re.escape(str(log))} *$", ingested.stdout, re.M), ingested.stdout
    assert SPARK_NOISE.search(log.read_text())

    counts = _recsys(
        [
            "sql",
            "select (select count(*) from recsys.events_bronze) as bronze, "
            "(select count(*) from recsys.events) as silver, "
            "(select count(*) from recsys.events_quarantine) as quarantine, "
            "(select count(distinct event_id) from recsys.events) as ids",
            "--format",
            "csv",
        ],
        env,
    )
    assert counts.returncode == 0, counts.stderr
    row = next(csv.DictReader(io.StringIO(counts.stdout)))
    bronze, silver, quarantine, ids = (int(row[k]) for k in ("bronze", "silver", "quarantine", "ids"))
    good, bad, duplicates = _expected_kinds(600, 0.05, 0.05)
    assert (bronze, silver, quarantine, ids) == (600, good, bad, good)
    assert bronze - silver - quarantine == duplicates > 0

    by_type = _recsys(
        ["sql", "select event_type, count(*) as n from recsys.events group by 1", "--format", "json"], env
    )
    assert by_type.returncode == 0, by_type.stderr
    assert sum(int(line.split('"n": ')[1].rstrip("}\n")) for line in by_type.stdout.splitlines()) == silver


def test_sql_errors_are_one_line(kafka: Config, tmp_path: Path) -> None:
    env = _env(RECSYS_HOME=str(tmp_path / "lakehouse"))
    result = _recsys(["sql", "select * from recsys.no_such_table"], env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-2].startswith("error: query failed:")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end_on_its_own_stack(tmp_path: Path) -> None:
    env = _env(
        RECSYS_HOME=str(tmp_path / "lakehouse"),
        RECSYS_KAFKA__BROKER_PORT=str(free_port()),
        RECSYS_KAFKA__CONTROLLER_PORT=str(free_port()),
        RECSYS_KAFKA__PARTITIONS="2",
    )
    result = _recsys(["demo", "--events", "1500"], env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not SPARK_NOISE.search(result.stdout + result.stderr), result.stderr[-3000:]
    summary = result.stdout.split("demo summary")[-1]
    rows = dict((part.strip() for part in line.split("|", 1)) for line in summary.splitlines() if "|" in line)
    assert rows["records produced"] == "1,500"
    assert rows["recsys.events_bronze"] == "1,500"
    assert rows["nothing lost (bronze = produced)"] == "True"
    good, bad, duplicates = _expected_kinds(1500, 0.01, 0.01)
    assert rows["recsys.events"] == f"{good:,}"
    assert rows["recsys.events_quarantine"] == f"{bad:,}"
    assert rows["duplicates dropped"] == f"{duplicates:,}"
    status = _recsys(["stack", "status"], env)
    assert status.returncode == 3  # the demo stopped its broker

    # `recsys train` ran on the demo data: both models registered as challenger; the gate's
    # printed decision and the champion alias agree (1,500 sparse events may not beat popularity).
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    gate = [line for line in result.stdout.splitlines() if line.split("|")[0].strip() == "gate"]
    assert len(gate) == 1, gate
    promoted = "promoted to champion" in gate[0]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'lakehouse' / 'mlflow.db'}")
    for model in ("recsys_als", "recsys_ranker"):
        assert int(client.get_model_version_by_alias(model, "challenger").version) == 1
        if promoted:
            assert int(client.get_model_version_by_alias(model, "champion").version) == 1
        else:
            with pytest.raises(MlflowException, match="alias champion not found"):
                client.get_model_version_by_alias(model, "champion")

    # `recsys score --once` filled the serving table; the demo printed lists with reasons from SQL.
    printed = result.stdout.split("recommendations for a few users")[-1]
    header = next(line for line in printed.splitlines() if "| reason" in line)
    assert [c.strip() for c in header.split("|") if c.strip()] == [
        "user_id",
        "rank",
        "title",
        "reason",
        "variant",
    ]
    reasons = ("because you watched", "trending", "popular now", "new in")
    assert sum(any(r in line for r in reasons) for line in printed.splitlines()) >= 3

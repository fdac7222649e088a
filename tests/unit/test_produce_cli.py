"""``recsys produce``: argument checks (exit code 2, one clear line) and runs on a fake broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kafka.future import Future

from spark_jobs.cli import produce as produce_cli
from spark_jobs.cli.main import main
from spark_jobs.common.config import Config, load_config
from spark_jobs.contract.events import event_ts_millis
from spark_jobs.produce.kafka_sink import KafkaSink

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synthetic", "--events", "0"], "argument --events: must be greater than 0, got 0"),
        (["synthetic", "--users", "-3"], "argument --users: must be greater than 0, got -3"),
        (["synthetic", "--items", "1.5"], "argument --items: expected a whole number, got '1.5'"),
        (["synthetic", "--rate", "0"], "argument --rate: must be greater than 0, got 0"),
        (["synthetic", "--rate", "inf"], "argument --rate: expected a finite number, got 'inf'"),
        (["synthetic", "--bad-fraction", "1"], "argument --bad-fraction: must be in [0, 1), got 1"),
        (["synthetic", "--bad-fraction", "-0.1"], "must be in [0, 1), got -0.1"),
        (["synthetic", "--duplicate-fraction", "x"], "expected a number, got 'x'"),
        (["synthetic", "--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
        (["movielens"], "the following arguments are required: --path"),
        (["movielens", "--path", "d", "--speedup", "-2"], "must be greater than 0, got -2"),
        (["movielens", "--path", "d", "--limit", "0"], "argument --limit: must be greater than 0"),
        (["file"], "the following arguments are required: --path"),
        ([], "the following arguments are required: SOURCE"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["produce", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_shares_adding_up_to_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["produce", "synthetic", "--bad-fraction", "0.5", "--duplicate-fraction", "0.5"]
    assert main([*argv, "--no-catalog"]) == 2
    assert capsys.readouterr().err == (
        "error: --bad-fraction + --duplicate-fraction must be below 1, got 0.5 + 0.5\n"
    )


@pytest.mark.parametrize("source", ["movielens", "file"])
def test_missing_paths_exit_2(source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    assert main(["produce", source, "--path", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing} does not exist" in err
    assert "hint:" in err


def test_unreachable_broker_exits_1_with_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(produce_cli, "get_config", lambda: _config("127.0.0.1:1"))
    assert main(["produce", "synthetic", "--events", "5", "--no-catalog"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Kafka at 127.0.0.1:1 is not reachable")
    assert "hint: start it with `recsys stack up` or set RECSYS_KAFKA_BOOTSTRAP" in err


class AckingProducer:
    """Acknowledges every record at once; keeps them for inspection."""

    instances: ClassVar[list[AckingProducer]] = []

    def __init__(self, **_settings: Any) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []
        AckingProducer.instances.append(self)

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> Future:
        self.sent.append((key, value))
        return Future().success(None)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture()
def fake_broker(monkeypatch: pytest.MonkeyPatch) -> list[AckingProducer]:
    AckingProducer.instances = []
    config = _config("fake:9092")
    monkeypatch.setattr(produce_cli, "get_config", lambda: config)
    monkeypatch.setattr(
        produce_cli,
        "_open_sink",
        lambda cfg: KafkaSink.from_config(cfg, producer_factory=AckingProducer),
    )
    return AckingProducer.instances


def test_synthetic_run_sends_every_record_and_summarises(
    fake_broker: list[AckingProducer], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["produce", "synthetic", "--users", "20", "--items", "30", "--events", "340"]
    argv += ["--bad-fraction", "0.1", "--duplicate-fraction", "0.05", "--seed", "3", "--no-catalog"]
    assert main(argv) == 0
    (producer,) = fake_broker
    assert len(producer.sent) == 340
    good = [json.loads(v) for k, v in producer.sent if k is not None and v.startswith(b"{")]
    assert all(k == json.loads(v)["user_id"].encode() for k, v in producer.sent if k)
    assert len({e["event_id"] for e in good}) < len(good)  # duplicates were re-sent
    out = capsys.readouterr().out
    assert "recsys produce synthetic" in out
    for row in ("records sent (acked)", "bad injected", "duplicates re-sent", "events/s"):
        assert row in out
    assert "recsys.events @ fake:9092" in out
    assert "catalog" in out and "skipped (--no-catalog)" in out
    assert "recsys ingest --once" in out


def test_same_seed_sends_the_same_bytes(
    fake_broker: list[AckingProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(produce_cli.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    argv = ["produce", "synthetic", "--events", "100", "--bad-fraction", "0.2", "--no-catalog"]
    assert main(argv) == 0
    assert main(argv) == 0
    first, second = fake_broker
    assert first.sent == second.sent


def test_movielens_replay_with_limit(
    fake_broker: list[AckingProducer], movielens_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["produce", "movielens", "--path", str(movielens_dir), "--limit", "25", "--no-catalog"]
    assert main(argv) == 0
    (producer,) = fake_broker
    events = [json.loads(v) for _, v in producer.sent]
    assert [k for k, _ in producer.sent] == [e["user_id"].encode() for e in events]
    assert len(events) == 25
    assert events[0]["event_ts"] == 874_724_710_000
    assert "1997-09-20T03:05:10+00:00" in capsys.readouterr().out


def test_file_sends_lines_byte_for_byte(
    fake_broker: list[AckingProducer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"user_id":"u1"}\nnot json\n\n')
    assert main(["produce", "file", "--path", str(path)]) == 0
    (producer,) = fake_broker
    assert producer.sent == [(b"u1", b'{"user_id":"u1"}'), (None, b"not json")]
    out = capsys.readouterr().out
    assert "blank lines skipped" in out


def _config(bootstrap: str) -> Config:
    return load_config("local", overrides={"kafka": {"bootstrap_servers": bootstrap}}, environ={})


def test_catalog_rows_are_the_same_all_day(
    fake_broker: list[AckingProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-running the producer later the same day must not change recsys.items / users."""
    loads: list[Any] = []

    def capture(config: Config, skip: bool, rows: Any) -> list[tuple[str, object]]:
        loads.append(rows())
        return []

    monkeypatch.setattr(produce_cli, "_maybe_load_catalog", capture)
    for clock_ns in (1_699_950_000_000_000_000, 1_699_990_000_000_000_000):  # 08:20, 19:26 UTC
        monkeypatch.setattr(produce_cli.time, "time_ns", lambda ns=clock_ns: ns)
        assert main(["produce", "synthetic", "--events", "50", "--users", "5", "--items", "4"]) == 0
    assert len(loads) == 2
    assert loads[0] == loads[1]
    assert [r["item_id"] for r in loads[0][0]] == [f"item_{i:06d}" for i in range(4)]


def test_rate_plays_events_in_real_time(fake_broker: list[AckingProducer]) -> None:
    """With --rate, event time is send time: the events sent span the run's wall time."""
    started_ms = time.time_ns() // 1_000_000
    argv = ["produce", "synthetic", "--rate", "100", "--events", "60", "--no-catalog"]
    assert main(argv) == 0
    ended_ms = time.time_ns() // 1_000_000
    stamps = [event_ts_millis(json.loads(v)["event_ts"]) or 0 for _, v in fake_broker[0].sent]
    assert started_ms <= min(stamps) <= max(stamps) <= ended_ms
    assert ended_ms - started_ms >= 0.8 * (max(stamps) - min(stamps))


def test_producers_do_not_import_spark() -> None:
    """--help and --no-catalog runs must start instantly: Spark is imported only for the catalog."""
    code = (
        "import sys, spark_jobs.cli.produce, spark_jobs.produce.synthetic, "
        "spark_jobs.produce.movielens, spark_jobs.produce.jsonl; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'delta')))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

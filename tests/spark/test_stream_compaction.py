"""Streaming sinks compact on their own schedule: every N-th micro-batch, data unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_jobs.common.delta import AUTO_COMPACT_CONF, compact_every

pytestmark = pytest.mark.spark


def _files(spark, path: str) -> int:
    return int(spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["numFiles"])


def test_compaction_runs_on_every_nth_batch_only_and_keeps_the_rows(spark, tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    before = spark.conf.get(AUTO_COMPACT_CONF)
    spark.conf.set(AUTO_COMPACT_CONF, "false")  # as in a streaming sink's session
    try:
        for batch in range(3):
            rows = [(batch, n) for n in range(10)]
            spark.createDataFrame(rows, "batch int, n int").repartition(2).write.format("delta").mode(
                "append"
            ).save(path)
        assert _files(spark, path) == 6
        expected = sorted((b, n) for b in range(3) for n in range(10))

        compact_every(spark, [path], batch_id=1, every=3)  # not its turn
        compact_every(spark, [path], batch_id=2, every=0)  # never
        assert _files(spark, path) == 6
        compact_every(spark, [path], batch_id=2, every=3)  # the 3rd batch: compacted
        assert _files(spark, path) == 1
        got = sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())
        assert got == expected
        history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("operation").collect()
        assert [r.operation for r in history][:2] == ["OPTIMIZE", "WRITE"]
    finally:
        spark.conf.set(AUTO_COMPACT_CONF, before)


def test_a_table_that_cannot_be_compacted_is_logged_not_raised(
    spark, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "not-a-table")
    with caplog.at_level("WARNING", logger="spark_jobs.common.delta"):
        compact_every(spark, [missing], batch_id=0, every=1)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"compaction of {missing} skipped at batch 0"
    ]

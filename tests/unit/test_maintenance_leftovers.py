"""Leftover folders: exactly the old, unknown checkpoint folders and old drift plots go; nothing else."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spark_jobs.common import names
from spark_jobs.common.config import Config, load_config
from spark_jobs.maintenance.leftovers import (
    Folder,
    UnsafeRootError,
    clean_leftovers,
    known_checkpoints,
    stale,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OLD, FRESH = AT - timedelta(days=30), AT - timedelta(hours=1)


def _folder(path: Path, mtime: datetime, files: dict[str, datetime] | None = None) -> None:
    """A folder with files, every mtime set (deepest first, so writing a child does not reset its parent)."""
    path.mkdir(parents=True)
    for name, when in (files or {"part-0": mtime}).items():
        (path / name).write_text("x", encoding="utf-8")
        os.utime(path / name, (when.timestamp(), when.timestamp()))
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))


@pytest.fixture()
def lakehouse(tmp_path: Path) -> Config:
    config = load_config("local", overrides={"lakehouse_root": str(tmp_path / "lakehouse")}, environ={})
    checkpoints, drift = Path(config.checkpoint_root), Path(config.lakehouse_root) / "_drift"
    _folder(checkpoints / names.QUERY_SILVER, OLD)  # a known query, idle for a month: kept
    _folder(checkpoints / "als", OLD)  # training's lineage checkpoints: kept
    _folder(checkpoints / "retired_query", OLD)  # unknown and old: removed
    _folder(checkpoints / "new_query", FRESH)  # unknown but recent: kept
    _folder(checkpoints / "live_inside", OLD, {"offsets": OLD, "commits": FRESH})  # still written: kept
    _folder(tmp_path / "elsewhere", OLD)
    (checkpoints / "link_to_elsewhere").symlink_to(tmp_path / "elsewhere")  # links are never followed
    _folder(drift / "scheduled__2026-01-01", OLD)  # old plots: removed
    _folder(drift / "scheduled__2026-03-02", FRESH)
    return config


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_stale_is_old_and_unknown() -> None:
    folders = [Folder(Path("/c/b"), OLD), Folder(Path("/c/a"), OLD), Folder(Path("/c/k"), OLD)]
    folders.append(Folder(Path("/c/n"), FRESH))
    assert stale(folders, keep={"k"}, cutoff=AT - timedelta(days=7)) == [folders[1], folders[0]]
    assert {
        names.QUERY_BRONZE,
        names.QUERY_SILVER,
        names.QUERY_FEATURES,
        names.QUERY_SCORER,
    } < known_checkpoints()


def test_clean_removes_exactly_the_leftovers_and_dry_run_nothing(lakehouse: Config, tmp_path: Path) -> None:
    before = _tree(tmp_path)

    dry = clean_leftovers(lakehouse, AT, timedelta(days=7), dry_run=True)
    assert _tree(tmp_path) == before
    assert [[f.name for f in r.removed] for r in dry] == [["retired_query"], ["scheduled__2026-01-01"]]

    done = clean_leftovers(lakehouse, AT, timedelta(days=7))
    assert [([f.name for f in r.removed], r.kept, r.errors) for r in done] == [
        (["retired_query"], 4, ()),
        (["scheduled__2026-01-01"], 1, ()),
    ]
    gone = {"_checkpoints/retired_query", "_checkpoints/retired_query/part-0"}
    gone |= {"_drift/scheduled__2026-01-01", "_drift/scheduled__2026-01-01/part-0"}
    assert _tree(tmp_path) == before - {f"lakehouse/{p}" for p in gone}
    assert (tmp_path / "elsewhere" / "part-0").is_file()


def test_missing_roots_are_skipped_and_a_root_holding_the_lakehouse_is_refused(tmp_path: Path) -> None:
    config = load_config("local", overrides={"lakehouse_root": str(tmp_path / "empty")}, environ={})
    assert [r.skipped for r in clean_leftovers(config, AT, timedelta(days=7))] == ["does not exist"] * 2
    unsafe = dataclasses.replace(config, checkpoint_root=str(tmp_path))
    with pytest.raises(UnsafeRootError, match="contains the lakehouse"):
        clean_leftovers(unsafe, AT, timedelta(days=7))


def test_cli_dry_run_lists_the_leftovers(lakehouse: Config, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "recsys"),
            "maintain",
            "--checkpoints",
            "--dry-run",
            "--at",
            AT.isoformat(),
        ],
        env={**env, "RECSYS_HOME": lakehouse.lakehouse_root},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "would remove 1 folder(s), kept 4" in result.stdout
    assert "retired_query (last written 2026-01-31 12:00)" in result.stdout
    assert "scheduled__2026-01-01" in result.stdout
    assert (Path(lakehouse.checkpoint_root) / "retired_query").is_dir()

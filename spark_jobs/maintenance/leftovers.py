"""Leftover folders: checkpoints of streaming queries that no longer exist, old drift plots.

A query renamed or retired leaves its checkpoint folder under ``config.checkpoint_root`` forever;
every drift run leaves a plot folder under ``<lakehouse>/_drift/``. ``stale`` (pure) picks the
folders to remove: not a known query's, and nothing under them written since ``cutoff`` (the
newest modification time of anything inside, so a folder a live query still writes is never
stale). ``clean`` applies it to one root, only to that root's direct sub-folders, never following
links; a dry run lists the same folders and removes nothing.

Only local roots are cleaned: a remote root (``s3://``, ``dbfs:``) is reported and left alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.common.errors import RecsysError

DRIFT_DIR = "_drift"  # spark_jobs.drift.job.default_plot_dir
# Checkpoint folders in use that are not streaming queries: ALS cuts its lineage here while training.
TRAINING_CHECKPOINTS = ("als",)


class UnsafeRootError(RecsysError):
    """A root to clean would take the lakehouse (or more) with it."""


@dataclass(frozen=True)
class Folder:
    """A direct sub-folder of a root and the newest modification time of anything inside it."""

    path: Path
    last_modified: datetime

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class CleanupResult:
    """One root: the folders removed (or, in a dry run, to remove), how many were kept, or why not."""

    root: str
    removed: tuple[Folder, ...] = ()
    kept: int = 0
    dry_run: bool = False
    skipped: str = ""
    errors: tuple[str, ...] = field(default_factory=tuple)


def known_checkpoints() -> frozenset[str]:
    """Checkpoint folders that belong to someone: every ``names.QUERY_*`` and training's."""
    queries = {v for k, v in vars(names).items() if k.startswith("QUERY_") and isinstance(v, str)}
    return frozenset(queries | set(TRAINING_CHECKPOINTS))


def stale(folders: Iterable[Folder], keep: Collection[str], cutoff: datetime) -> list[Folder]:
    """The folders not named in ``keep`` whose newest content is older than ``cutoff``, by path."""
    return sorted(
        (f for f in folders if f.name not in keep and f.last_modified < cutoff), key=lambda f: f.path
    )


def scan(root: Path) -> list[Folder]:
    """Direct sub-folders of ``root`` (links excluded) with their newest modification time."""
    return [Folder(child, _newest_mtime(child)) for child in sorted(root.iterdir()) if _is_real_dir(child)]


def clean(root: str, keep: Collection[str], cutoff: datetime, dry_run: bool = False) -> CleanupResult:
    """Remove the ``stale`` sub-folders of ``root`` (see module docstring)."""
    if _is_remote(root):
        return CleanupResult(root, dry_run=dry_run, skipped="remote root: not cleaned from here")
    base = Path(root)
    if not base.is_dir():
        return CleanupResult(root, dry_run=dry_run, skipped="does not exist")
    folders = scan(base)
    doomed = stale(folders, keep, cutoff)
    removed, errors = [], []
    for folder in doomed:
        if folder.path.parent.resolve() != base.resolve() or not _is_real_dir(folder.path):
            continue  # changed under us: only real direct sub-folders are ever removed
        if not dry_run:
            try:
                shutil.rmtree(folder.path)
            except OSError as err:
                errors.append(f"{folder.path}: {err}")
                continue
        removed.append(folder)
    return CleanupResult(root, tuple(removed), len(folders) - len(doomed), dry_run, errors=tuple(errors))


def clean_leftovers(
    config: Config, at: datetime, older_than: timedelta, dry_run: bool = False
) -> list[CleanupResult]:
    """Unknown checkpoint folders and drift plot folders not written to in ``older_than`` before ``at``."""
    check_roots(config)
    cutoff = at.astimezone(UTC) - older_than
    return [
        clean(config.checkpoint_root, known_checkpoints(), cutoff, dry_run),
        clean(f"{config.lakehouse_root}/{DRIFT_DIR}", frozenset(), cutoff, dry_run),
    ]


def check_roots(config: Config) -> None:
    """Refuse a checkpoint root that is the lakehouse root or one of its parents.

    Its "unknown sub-folders" would then be the tables, MLflow's store and everything else.
    """
    if _is_remote(config.checkpoint_root) or _is_remote(config.lakehouse_root):
        return
    checkpoints, lakehouse = Path(config.checkpoint_root).resolve(), Path(config.lakehouse_root).resolve()
    if checkpoints == lakehouse or checkpoints in lakehouse.parents:
        raise UnsafeRootError(
            f"checkpoint root {checkpoints} contains the lakehouse {lakehouse}: not cleaning it",
            hint="give streaming checkpoints their own folder (RECSYS_CHECKPOINT_ROOT)",
        )


def _newest_mtime(folder: Path) -> datetime:
    newest = folder.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in (*dirnames, *filenames):
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:  # removed while we walk: it no longer counts
                continue
    return datetime.fromtimestamp(newest, UTC)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _is_remote(root: str) -> bool:
    return "://" in root or root.startswith("dbfs:")

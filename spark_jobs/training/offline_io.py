"""Reading and writing the CSV files of ``recsys offline`` (the contract in ARCHITECTURE.md).

Validation happens here, before any model code runs, and every problem is a ``RecsysError``
that names the file, the column and what was expected. Defined behaviour for odd values:

* ``rating`` empty, absent or not a finite number -> 1.0 (an interaction of unit strength);
* ``rating`` <= 0 -> kept as a "the user has it" row (excluded from their recommendations and
  handed to ALS as a confident negative) but never counted as a positive signal;
* ``timestamp`` empty or absent -> unknown; epoch seconds or ISO-8601 strings are accepted;
* extra columns are ignored (``read_train`` reports them); rows with an empty id are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spark_jobs.common.errors import RecsysError
from spark_jobs.training.columns import (
    CATEGORIES,
    GENRES,
    ITEM_ID,
    RANK,
    RATING,
    SCORE,
    STRENGTH,
    TIMESTAMP,
    TITLE,
    USER_ID,
)

TRAIN_COLUMNS = (USER_ID, ITEM_ID, RATING, TIMESTAMP)
ITEMS_COLUMNS = (ITEM_ID, TITLE, GENRES)
OUT_COLUMNS = (USER_ID, RANK, ITEM_ID, SCORE)


class OfflineInputError(RecsysError):
    """An input file of ``recsys offline`` does not follow the documented format."""

    exit_code = 2


@dataclass
class TrainFile:
    """The parsed ``--train`` file and what was done to make it usable."""

    interactions: pd.DataFrame  # user_id, item_id, strength, timestamp
    ignored_columns: list[str] = field(default_factory=list)
    defaulted_ratings: int = 0
    non_positive: int = 0
    dropped_rows: int = 0
    unknown_timestamps: int = 0


def _read_csv(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise OfflineInputError(f"{what} file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise OfflineInputError(f"{what} file {path} is empty (expected a header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise OfflineInputError(f"{what} file {path} is not a readable CSV: {err}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def _timestamps(raw: pd.Series) -> pd.Series:
    """Epoch seconds from numbers or ISO strings; NaN where empty or unparseable."""
    text = raw.astype(str).str.strip()
    numeric = pd.to_numeric(text.where(text != ""), errors="coerce")
    missing = numeric.isna() & (text != "")
    if missing.any():
        parsed = pd.to_datetime(text[missing], errors="coerce", utc=True, format="ISO8601")
        numeric.loc[missing] = (parsed - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
    return numeric.astype(float)


def read_train(path: str | Path) -> TrainFile:
    """Parse ``--train``: header ``user_id,item_id[,rating][,timestamp]`` (see module docstring)."""
    frame = _read_csv(path, "--train")
    missing = [c for c in (USER_ID, ITEM_ID) if c not in frame.columns]
    if missing:
        raise OfflineInputError(
            f"--train file {path} lacks column(s) {missing}; its header is {list(frame.columns)}",
            hint="the header must be user_id,item_id,rating,timestamp (rating, timestamp optional)",
        )
    ignored = [c for c in frame.columns if c not in TRAIN_COLUMNS]
    users = frame[USER_ID].str.strip()
    items = frame[ITEM_ID].str.strip()
    keep = (users != "") & (items != "")
    dropped = int((~keep).sum())
    frame, users, items = frame.loc[keep], users[keep], items[keep]
    if frame.empty:
        raise OfflineInputError(
            f"--train file {path} has no interactions (only a header?)",
            hint="give at least one user_id,item_id row",
        )
    if RATING in frame.columns:
        rating = pd.to_numeric(frame[RATING].str.strip(), errors="coerce")
        rating = rating.where(np.isfinite(rating))
    else:
        rating = pd.Series(np.nan, index=frame.index)
    defaulted = int(rating.isna().sum())
    strength = rating.fillna(1.0).astype(float)
    ts = _timestamps(frame[TIMESTAMP]) if TIMESTAMP in frame.columns else pd.Series(np.nan, index=frame.index)
    unknown_ts = int(ts.isna().sum()) if TIMESTAMP in frame.columns else len(frame)
    interactions = pd.DataFrame(
        {
            USER_ID: users.to_numpy(),
            ITEM_ID: items.to_numpy(),
            STRENGTH: strength.to_numpy(),
            TIMESTAMP: ts.to_numpy(),
        }
    )
    return TrainFile(interactions, ignored, defaulted, int((strength <= 0).sum()), dropped, unknown_ts)


def read_items(path: str | Path) -> pd.DataFrame:
    """Parse ``--items``: header ``item_id,title,genres`` with ``|``-separated genres.

    Returns ``item_id, title, categories`` (a list per item; empty when no genres).
    """
    frame = _read_csv(path, "--items")
    if ITEM_ID not in frame.columns:
        raise OfflineInputError(
            f"--items file {path} lacks column 'item_id'; its header is {list(frame.columns)}",
            hint="the header must be item_id,title,genres",
        )
    ids = frame[ITEM_ID].str.strip()
    frame = frame.loc[ids != ""].assign(**{ITEM_ID: ids[ids != ""]})
    genres = frame[GENRES] if GENRES in frame.columns else pd.Series("", index=frame.index)
    cats = [[g.strip() for g in str(v).split("|") if g.strip()] for v in genres]
    title = frame[TITLE] if TITLE in frame.columns else pd.Series("", index=frame.index)
    out = pd.DataFrame({ITEM_ID: frame[ITEM_ID].to_numpy(), TITLE: title.to_numpy(), CATEGORIES: cats})
    return out.drop_duplicates(ITEM_ID, keep="first").reset_index(drop=True)


def exclude_owned(recs: pd.DataFrame, owned: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop items each user already has (any strength), renumber ranks 1..k."""
    pairs = owned[[USER_ID, ITEM_ID]].drop_duplicates().assign(_own=True)
    merged = recs.merge(pairs, on=[USER_ID, ITEM_ID], how="left")
    kept = merged.loc[merged["_own"].isna()].drop(columns="_own")
    kept = kept.sort_values([USER_ID, RANK], kind="stable")
    kept[RANK] = kept.groupby(USER_ID, sort=False).cumcount() + 1
    return kept.loc[kept[RANK] <= k].reset_index(drop=True)


def write_recommendations(recs: pd.DataFrame, path: str | Path) -> int:
    """Write ``user_id,rank,item_id,score`` sorted by user then rank; returns the row count."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    out = recs.loc[:, list(OUT_COLUMNS)].sort_values([USER_ID, RANK], kind="stable")
    out.to_csv(path, index=False, float_format="%.6g")
    return len(out)

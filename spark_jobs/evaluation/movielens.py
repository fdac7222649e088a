"""Read a MovieLens 100k folder (``u.data``, ``u.item``, ``u.user``) into the frames models use.

Ratings become interaction strengths (``strength = rating``), as ``recsys offline`` treats them:
every rated item is a positive interaction whose confidence grows with the rating.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spark_jobs.common.errors import RecsysError
from spark_jobs.produce.movielens import read_genres
from spark_jobs.training.columns import CATEGORIES, ITEM_ID, RATING, STRENGTH, TIMESTAMP, TITLE, USER_ID


def _require(path: Path) -> Path:
    if not path.is_file():
        raise RecsysError(f"MovieLens file {path} not found", hint="point --path at an ml-100k folder")
    return path


def load_ratings(folder: str | Path) -> pd.DataFrame:
    """``user_id, item_id, rating, timestamp, strength`` from ``u.data`` (ids as strings)."""
    data = pd.read_csv(
        _require(Path(folder) / "u.data"),
        sep="\t",
        names=[USER_ID, ITEM_ID, RATING, TIMESTAMP],
        dtype={USER_ID: str, ITEM_ID: str},
    )
    return data.assign(**{STRENGTH: data[RATING].astype(float)})


def load_items(folder: str | Path) -> pd.DataFrame:
    """``item_id, title, categories`` (genre names) from ``u.item``.

    The genre names and their order come from ``u.genre``, read by the replay's own parser
    (``spark_jobs.produce.movielens.read_genres``): one reading of the dataset's genres.
    """
    genres = read_genres(Path(folder))
    cols = [ITEM_ID, TITLE, "release", "video_release", "url", *genres]
    raw = pd.read_csv(
        _require(Path(folder) / "u.item"), sep="|", names=cols, encoding="latin-1", dtype={ITEM_ID: str}
    )
    flags = raw[genres].to_numpy().astype(bool)
    cats = [[g for g, on in zip(genres, row, strict=True) if on] for row in flags]
    return pd.DataFrame({ITEM_ID: raw[ITEM_ID], TITLE: raw[TITLE], CATEGORIES: cats})


def load_users(folder: str | Path) -> pd.DataFrame:
    """``user_id, age, gender, occupation`` from ``u.user``; the zip code is never read, as in
    the replay (``spark_jobs.produce.movielens.read_users``)."""
    return pd.read_csv(
        _require(Path(folder) / "u.user"),
        sep="|",
        names=[USER_ID, "age", "gender", "occupation", "zip"],
        usecols=[USER_ID, "age", "gender", "occupation"],
        dtype={USER_ID: str},
    )

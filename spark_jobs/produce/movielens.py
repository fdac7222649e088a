"""MovieLens 100k as contract events (ratings) and catalog rows (items, users).

Ratings become ``rating`` events in timestamp order with deterministic ids (uuid5 of
"user-item-ts" under a fixed namespace), so a second replay is dropped by the silver dedup
instead of doubling the data. Users keep age band, gender and occupation; the zip code is
never read into a row (no raw PII downstream). Files are Latin-1, as GroupLens ships them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spark_jobs.common import names
from spark_jobs.common.errors import RecsysError, UsageError
from spark_jobs.contract import events as contract

SOURCE = "movielens"
COUNTRY = "US"
# Fixed forever: changing it would give every replayed rating a new id.
EVENT_NAMESPACE = uuid.UUID("5d1b7c1e-6a0f-4f43-9a57-3f0c2b7d9e11")
FILES = ("u.data", "u.item", "u.user", "u.genre")
ENCODING = "latin-1"
AGE_BANDS = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (55, "45-54"), (65, "55-64"))
OLDEST_BAND = "65+"
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_ITEM_FIXED_FIELDS = 5  # id, title, release date, video release date, IMDb URL


@dataclass(frozen=True, slots=True)
class Rating:
    user_id: str
    item_id: str
    rating: int
    ts_ms: int


def check_folder(path: Path) -> Path:
    """``path`` if it holds every MovieLens 100k file, else a ``UsageError`` naming the gaps."""
    if not path.is_dir():
        raise UsageError(
            f"MovieLens folder {path} does not exist",
            hint="pass the folder that holds u.data, u.item, u.user and u.genre (MovieLens 100k)",
        )
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise UsageError(
            f"MovieLens folder {path} lacks {', '.join(missing)}",
            hint="pass an unpacked MovieLens 100k folder (ml-100k)",
        )
    return path


def read_ratings(path: Path) -> list[Rating]:
    """All ratings of ``u.data``, sorted by time (then user, item) so replays are reproducible."""
    ratings = []
    for line_no, fields in _lines(check_folder(path) / "u.data", "\t", 4):
        try:
            user, item, value, ts = fields[0], fields[1], int(fields[2]), int(fields[3])
        except ValueError:
            raise _malformed(path / "u.data", line_no, "rating and timestamp must be integers") from None
        ratings.append(Rating(user, item, value, ts * 1000))
    ratings.sort(key=lambda r: (r.ts_ms, int(r.user_id), int(r.item_id)))
    return ratings


def event_id(user_id: str, item_id: str, ts_ms: int) -> str:
    """Deterministic id of one rating: the same rating always gets the same id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{user_id}-{item_id}-{ts_ms}"))


def rating_events(path: Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The folder's ``rating`` events in timestamp order (the first ``limit`` if given)."""
    ratings = read_ratings(path)
    return to_events(ratings if limit is None else ratings[:limit])


def to_events(ratings: Iterable[Rating]) -> Iterator[dict[str, Any]]:
    """One contract ``rating`` event per rating, in the given order."""
    for rating in ratings:
        yield {
            names.EVENT_ID: event_id(rating.user_id, rating.item_id, rating.ts_ms),
            names.EVENT_TYPE: "rating",
            names.USER_ID: rating.user_id,
            names.ITEM_ID: rating.item_id,
            names.EVENT_TS: rating.ts_ms,
            names.VALUE: float(rating.rating),
            names.SCHEMA_VERSION: contract.SCHEMA_VERSION,
        }


def read_genres(path: Path) -> list[str]:
    """Genre names by index (``u.genre``: name|index)."""
    genres: dict[int, str] = {}
    for line_no, fields in _lines(check_folder(path) / "u.genre", "|", 2):
        try:
            genres[int(fields[1])] = fields[0]
        except ValueError:
            raise _malformed(path / "u.genre", line_no, "the index must be an integer") from None
    if sorted(genres) != list(range(len(genres))):
        raise _malformed(path / "u.genre", 0, "genre indexes must be 0..n-1")
    return [genres[i] for i in range(len(genres))]


def read_items(path: Path) -> list[dict[str, Any]]:
    """Movies as rows for ``recsys.items``: genre names, release date as ``created_ts``."""
    genres = read_genres(path)
    file = check_folder(path) / "u.item"
    rows = []
    for line_no, fields in _lines(file, "|", _ITEM_FIXED_FIELDS + len(genres)):
        flags = fields[_ITEM_FIXED_FIELDS:]
        if any(flag not in ("0", "1") for flag in flags):
            raise _malformed(file, line_no, "genre flags must be 0 or 1")
        rows.append(
            {
                "item_id": fields[0],
                "title": fields[1],
                "categories": [g for g, flag in zip(genres, flags, strict=True) if flag == "1"],
                "length_s": None,
                "created_ts": _release_date(fields[2], file, line_no),
                "source": SOURCE,
                "imdb_url": fields[4] or None,
            }
        )
    return rows


def read_users(path: Path, first_seen_ms: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Users as rows for ``recsys.users``; ``created_ts`` is their first rating (zip dropped)."""
    if first_seen_ms is None:
        first_seen_ms = first_ratings(read_ratings(path))
    file = check_folder(path) / "u.user"
    rows = []
    for line_no, fields in _lines(file, "|", 5):
        user_id, age, gender, occupation = fields[0], fields[1], fields[2], fields[3]
        if not age.isdigit():
            raise _malformed(file, line_no, "age must be an integer")
        first = first_seen_ms.get(user_id)
        rows.append(
            {
                "user_id": user_id,
                "age_band": age_band(int(age)),
                "gender": gender,
                "occupation": occupation,
                "country": COUNTRY,
                "consent_personalization": True,
                "consent_analytics": True,
                "created_ts": None if first is None else datetime.fromtimestamp(first / 1000, UTC),
                "source": SOURCE,
            }
        )
    return rows


def first_ratings(ratings: list[Rating]) -> dict[str, int]:
    """Each user's first rating time (ms)."""
    first: dict[str, int] = {}
    for rating in ratings:
        if rating.ts_ms < first.get(rating.user_id, rating.ts_ms + 1):
            first[rating.user_id] = rating.ts_ms
    return first


def age_band(age: int) -> str:
    """Coarse age band (the only age kept downstream): ``25-34``, ``<18``, ``65+``."""
    for upper, label in AGE_BANDS:
        if age < upper:
            return label
    return OLDEST_BAND


def _release_date(text: str, file: Path, line_no: int) -> datetime | None:
    if not text:
        return None
    try:
        day, month, year = text.split("-")
        return datetime(int(year), _MONTHS[month], int(day), tzinfo=UTC)
    except (ValueError, KeyError):
        raise _malformed(file, line_no, f"release date {text!r} is not DD-Mon-YYYY") from None


def _lines(file: Path, sep: str, n_fields: int) -> Iterator[tuple[int, list[str]]]:
    """Non-blank lines split on ``sep``, checked to have ``n_fields`` fields."""
    with file.open(encoding=ENCODING) as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split(sep)
            if len(fields) != n_fields:
                raise _malformed(file, line_no, f"expected {n_fields} fields, found {len(fields)}")
            yield line_no, fields


def _malformed(file: Path, line_no: int, what: str) -> RecsysError:
    where = f"{file}:{line_no}" if line_no else str(file)
    return RecsysError(
        f"malformed MovieLens file {where}: {what}",
        hint="re-extract ml-100k.zip; the replay expects the original GroupLens files",
    )

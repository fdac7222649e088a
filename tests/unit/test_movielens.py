"""MovieLens 100k replay: ratings as contract events, items and users as catalog rows."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from spark_jobs.common.errors import RecsysError, UsageError
from spark_jobs.contract.events import validate_event
from spark_jobs.produce import movielens

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def events(movielens_dir: Path) -> list[dict[str, Any]]:
    return list(movielens.rating_events(movielens_dir))


def test_all_ratings_in_non_decreasing_time_order(events: list[dict[str, Any]]) -> None:
    assert len(events) == 100_000
    times = [e["event_ts"] for e in events]
    assert times == sorted(times)
    assert (times[0], times[-1]) == (874_724_710_000, 893_286_638_000)


def test_event_ids_are_stable_and_unique(movielens_dir: Path, events: list[dict[str, Any]]) -> None:
    again = [e["event_id"] for e in movielens.rating_events(movielens_dir, limit=1000)]
    assert again == [e["event_id"] for e in events[:1000]]
    assert len({e["event_id"] for e in events}) == 100_000
    first = events[0]
    assert first["event_id"] == str(
        uuid.uuid5(movielens.EVENT_NAMESPACE, f"{first['user_id']}-{first['item_id']}-874724710000")
    )


def test_first_event_is_exactly_the_first_rating(events: list[dict[str, Any]]) -> None:
    # u.data: "259\t255\t4\t874724710" is the earliest rating (ties broken by user, item)
    assert events[0] == {
        "event_id": movielens.event_id("259", "255", 874_724_710_000),
        "event_type": "rating",
        "user_id": "259",
        "item_id": "255",
        "event_ts": 874_724_710_000,
        "value": 4.0,
        "schema_version": 1,
    }


def test_all_events_pass_the_contract(events: list[dict[str, Any]]) -> None:
    reference = events[-1]["event_ts"]
    assert [e for e in events if validate_event(e, reference)] == []


def test_items_have_genre_arrays(movielens_dir: Path) -> None:
    items = movielens.read_items(movielens_dir)
    assert len(items) == 1682
    assert items[0] == {
        "item_id": "1",
        "title": "Toy Story (1995)",
        "categories": ["Animation", "Children's", "Comedy"],
        "length_s": None,
        "created_ts": datetime(1995, 1, 1, tzinfo=UTC),
        "source": "movielens",
        "imdb_url": "http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)",
    }
    unknown = next(i for i in items if i["item_id"] == "267")
    assert (unknown["title"], unknown["categories"], unknown["created_ts"]) == (
        "unknown",
        ["unknown"],
        None,
    )
    assert all(isinstance(i["categories"], list) and i["categories"] for i in items)


def test_users_without_zip_and_with_first_rating_time(movielens_dir: Path) -> None:
    users = movielens.read_users(movielens_dir)
    assert len(users) == 943
    assert users[0] == {
        "user_id": "1",
        "age_band": "18-24",
        "gender": "M",
        "occupation": "technician",
        "country": "US",
        "consent_personalization": True,
        "consent_analytics": True,
        "created_ts": datetime(1997, 9, 22, 21, 57, 58, tzinfo=UTC),
        "source": "movielens",
    }
    zips = {"85711", "94043", "32067"}
    assert not any(zips & {str(v) for v in u.values()} for u in users)
    assert all(u["created_ts"] is not None for u in users)


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (7, "<18"),
        (17, "<18"),
        (18, "18-24"),
        (24, "18-24"),
        (25, "25-34"),
        (64, "55-64"),
        (73, "65+"),
    ],
)
def test_age_bands(age: int, band: str) -> None:
    assert movielens.age_band(age) == band


def test_missing_folder_and_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        movielens.read_ratings(tmp_path / "nope")
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(UsageError, match=r"lacks u\.item, u\.user, u\.genre"):
        movielens.read_ratings(tmp_path)


def test_malformed_lines_name_file_and_line(movielens_dir: Path, tmp_path: Path) -> None:
    for name in movielens.FILES:
        shutil.copy(movielens_dir / name, tmp_path / name)
    (tmp_path / "u.data").write_text("1\t2\t3\t881250949\n1\t2\tx\t881250950\n")
    with pytest.raises(RecsysError, match=r"u\.data:2: rating and timestamp must be integers"):
        movielens.read_ratings(tmp_path)
    (tmp_path / "u.data").write_text("1\t2\t3\n")
    with pytest.raises(RecsysError, match=r"u\.data:1: expected 4 fields, found 3"):
        movielens.read_ratings(tmp_path)


def test_the_evaluation_frames_and_the_replay_read_the_same_genres_and_no_zip(movielens_dir: Path):
    from spark_jobs.evaluation import movielens as frames

    items = frames.load_items(movielens_dir)
    replayed = {row["item_id"]: row["categories"] for row in movielens.read_items(movielens_dir)}
    assert dict(zip(items["item_id"], items["categories"], strict=True)) == replayed
    users = frames.load_users(movielens_dir)
    assert list(users.columns) == ["user_id", "age", "gender", "occupation"]
    assert len(users) == len(movielens.read_users(movielens_dir)) == 943

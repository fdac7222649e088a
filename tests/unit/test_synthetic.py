"""The synthetic world: determinism, contract validity, injected faults, and tastes in behaviour."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from typing import Any

import pytest

from spark_jobs.contract.events import Limits, event_ts_millis, validate_event
from spark_jobs.produce import malformed, synthetic
from spark_jobs.produce.synthetic import DUPLICATE, GOOD, GeneratedRecord

pytestmark = pytest.mark.unit

START_MS = 1_700_000_000_000
N_RECORDS = 12_000
EPS = 20.0  # simulated traffic: low, so each stream's warm start is cheap


@pytest.fixture(scope="module")
def world() -> synthetic.World:
    return synthetic.build_world(n_users=150, n_items=120, seed=7, created_before_ms=START_MS)


@pytest.fixture(scope="module")
def records(world: synthetic.World) -> list[GeneratedRecord]:
    return list(
        synthetic.generate_records(
            world, N_RECORDS, START_MS, bad_fraction=0.1, duplicate_fraction=0.05, events_per_s=EPS
        )
    )


@pytest.fixture(scope="module")
def clean_events(world: synthetic.World) -> list[dict[str, Any]]:
    return list(synthetic.generate_events(world, N_RECORDS, START_MS, events_per_s=EPS))


def reference_ms(events: list[dict[str, Any]]) -> int:
    """A send time no earlier than the last event: nothing good may look like the future."""
    return max(event_ts_millis(e["event_ts"]) or 0 for e in events)


def test_same_seed_same_world_and_records(world: synthetic.World) -> None:
    again = synthetic.build_world(n_users=150, n_items=120, seed=7, created_before_ms=START_MS)
    assert again == world
    assert synthetic.item_rows(again) == synthetic.item_rows(world)
    assert synthetic.user_rows(again) == synthetic.user_rows(world)

    def first(w: synthetic.World) -> list[GeneratedRecord]:
        gen = synthetic.generate_records(
            w, 2000, START_MS, bad_fraction=0.2, duplicate_fraction=0.1, events_per_s=EPS
        )
        return list(gen)

    assert first(again) == first(world)


def test_kinds_depend_on_the_seed_not_on_the_start(world: synthetic.World) -> None:
    def kinds(start_ms: int) -> list[str]:
        gen = synthetic.generate_records(
            world, 300, start_ms, bad_fraction=0.2, duplicate_fraction=0.1, events_per_s=EPS
        )
        return [r.kind for r in gen]

    assert kinds(START_MS) == kinds(0)


def test_another_seed_or_start_gives_other_events(world: synthetic.World) -> None:
    other = synthetic.build_world(n_users=150, n_items=120, seed=8, created_before_ms=START_MS)
    ids = {e["event_id"] for e in synthetic.generate_events(world, 500, START_MS, events_per_s=EPS)}
    other_ids = {e["event_id"] for e in synthetic.generate_events(other, 500, START_MS, events_per_s=EPS)}
    later_ids = {e["event_id"] for e in synthetic.generate_events(world, 500, START_MS + 1, events_per_s=EPS)}
    assert ids.isdisjoint(other_ids)
    assert ids.isdisjoint(later_ids)


def test_every_good_event_passes_the_contract_in_event_time_order(
    clean_events: list[dict[str, Any]],
) -> None:
    ref = reference_ms(clean_events)
    failures = [(e, r) for e in clean_events if (r := validate_event(e, ref))]
    assert failures == []
    times = [event_ts_millis(e["event_ts"]) for e in clean_events]
    assert times == sorted(times)
    assert START_MS <= times[0] < START_MS + 1000
    assert len({e["event_id"] for e in clean_events}) == len(clean_events)
    assert {e["event_type"] for e in clean_events} == {
        "view",
        "click",
        "dwell",
        "scroll",
        "like",
        "dislike",
        "skip",
        "rating",
        "purchase",
    }


def test_stream_starts_warm_at_the_requested_rate(world: synthetic.World) -> None:
    """No ramp-up: n events span n / rate seconds, in the first half as in the second."""
    events_per_s = 4.0
    events = synthetic.generate_events(world, 6000, START_MS, events_per_s=events_per_s)
    times = [(event_ts_millis(e["event_ts"]) or 0) - START_MS for e in events]
    assert 0 <= times[0] < 10_000
    for half in (times[:3000], times[3000:]):
        rate = len(half) / ((half[-1] - half[0]) / 1000)
        assert 0.8 * events_per_s < rate < 1.25 * events_per_s
    assert synthetic.history_start_ms(START_MS, 6000, events_per_s) == START_MS - 1_500_000


def test_engagement_follows_a_view_of_the_same_item_in_the_session(
    clean_events: list[dict[str, Any]],
) -> None:
    """Except in sessions already under way when the stream starts, which join mid-item."""
    viewed: set[tuple[str, str]] = set()
    joined_mid_item: dict[str, str] = {}  # session -> the item it was on at the start
    orphans = []
    for e in clean_events:
        key = (e["session_id"], e["item_id"])
        first_of_session = e["session_id"] not in joined_mid_item
        if first_of_session:
            joined_mid_item[e["session_id"]] = "" if e["event_type"] == "view" else e["item_id"]
        if e["event_type"] == "view":
            viewed.add(key)
        elif key not in viewed and joined_mid_item[e["session_id"]] != e["item_id"]:
            orphans.append(e)
    assert orphans == []
    assert any(joined_mid_item.values())  # the stream did start warm
    for e in clean_events:
        extra = set(e) - {
            "event_id",
            "event_type",
            "user_id",
            "item_id",
            "session_id",
            "event_ts",
            "context",
            "schema_version",
        }
        expected = {
            "dwell": {"dwell_ms"},
            "scroll": {"scroll_depth"},
            "rating": {"value"},
            "purchase": {"value"},
        }.get(e["event_type"], set())
        assert extra == expected, e
        if e["event_type"] == "rating":
            assert e["value"] in (1.0, 2.0, 3.0, 4.0, 5.0)


def test_each_injected_bad_record_is_rejected_with_its_reason(
    records: list[GeneratedRecord],
) -> None:
    good = [r.record for r in records if r.kind == GOOD]
    ref = reference_ms(good)  # type: ignore[arg-type]
    bad = [r for r in records if r.kind not in (GOOD, DUPLICATE)]
    assert {r.kind for r in bad} == set(malformed.BAD_KINDS)
    mismatches = [(r.kind, validate_event(r.record, ref)) for r in bad]
    assert [m for m in mismatches if m[1] != [m[0]]] == []
    assert all(isinstance(r.record, bytes) for r in bad)


def test_bad_kinds_cover_every_reason_code() -> None:
    codes = {kind.split(":")[0] for kind in malformed.BAD_KINDS}
    assert codes == {
        "oversized",
        "invalid_json",
        "not_an_object",
        "unsupported_schema_version",
        "missing_field",
        "wrong_type",
        "too_long",
        "invalid_format",
        "out_of_range",
        "unknown_event_type",
        "future_event_ts",
    }
    assert {
        "invalid_format:event_id",
        "invalid_format:event_ts",
        "out_of_range:dwell_ms",
        "out_of_range:scroll_depth",
        "out_of_range:context.hour_of_day",
        "out_of_range:context.device",
    } <= set(malformed.BAD_KINDS)


def test_bad_records_respect_configured_limits(clean_events: list[dict[str, Any]]) -> None:
    limits = Limits(max_event_bytes=1000, max_id_length=40)
    event = clean_events[0]
    rng = random.Random(0)
    oversized = malformed.make_bad("oversized", event, rng, limits)
    assert 1000 < len(oversized) < 1500
    too_long = malformed.make_bad("too_long:user_id", event, rng, limits)
    assert validate_event(too_long, START_MS, limits) == ["too_long:user_id"]
    with pytest.raises(ValueError, match="unknown bad-record kind"):
        malformed.make_bad("nope", event, rng, limits)


def test_duplicates_are_exact_copies_of_earlier_good_events(
    records: list[GeneratedRecord],
) -> None:
    seen: dict[str, dict[str, Any]] = {}
    copies = 0
    for record, kind in records:
        if kind == GOOD:
            assert isinstance(record, dict)
            assert record["event_id"] not in seen
            seen[record["event_id"]] = record
        elif kind == DUPLICATE:
            assert isinstance(record, dict)
            assert record == seen[record["event_id"]]
            assert record is not seen[record["event_id"]]
            copies += 1
    assert copies > 0


def test_proportions_are_roughly_the_requested_shares(records: list[GeneratedRecord]) -> None:
    kinds = Counter(r.kind for r in records)
    n_bad = N_RECORDS - kinds[GOOD] - kinds[DUPLICATE]
    assert len(records) == N_RECORDS
    assert abs(n_bad / N_RECORDS - 0.1) < 0.015
    assert abs(kinds[DUPLICATE] / N_RECORDS - 0.05) < 0.01
    per_kind = [n for k, n in kinds.items() if k not in (GOOD, DUPLICATE)]
    assert max(per_kind) - min(per_kind) <= 1  # bad kinds are cycled evenly


def test_injection_only_replaces_good_events(
    records: list[GeneratedRecord], clean_events: list[dict[str, Any]]
) -> None:
    """The good events with faults injected are a subsequence of the clean stream."""
    clean = iter(clean_events)
    good_ids = [r.record["event_id"] for r in records if r.kind == GOOD]  # type: ignore[index]
    assert all(any(e["event_id"] == i for e in clean) for i in good_ids)


def test_users_click_their_top_category_more_than_others(
    world: synthetic.World, clean_events: list[dict[str, Any]]
) -> None:
    users = {u.user_id: u for u in world.users}
    items = {i.item_id: i for i in world.items}
    views: Counter[bool] = Counter()
    clicks: Counter[bool] = Counter()
    clicks_by_user: dict[str, Counter[int]] = defaultdict(Counter)
    for e in clean_events:
        user, item = users[e["user_id"]], items[e["item_id"]]
        top = user.top_category in item.categories
        if e["event_type"] == "view":
            views[top] += 1
        elif e["event_type"] == "click":
            clicks[top] += 1
            for c in item.categories:
                clicks_by_user[user.user_id][c] += 1
    ctr_top, ctr_other = clicks[True] / views[True], clicks[False] / views[False]
    assert ctr_top > 1.5 * ctr_other
    active = [u for u, c in clicks_by_user.items() if sum(c.values()) >= 20]
    agree = [u for u in active if clicks_by_user[u].most_common(1)[0][0] == users[u].top_category]
    assert len(active) >= 50
    assert len(agree) / len(active) > 0.7


def test_popularity_is_skewed(clean_events: list[dict[str, Any]]) -> None:
    """The top tenth of items gets far more than a tenth of the views (30% on this small world,
    40% on the demo's, 43% of MovieLens 100k's ratings), though taste drives most picks."""
    views = Counter(e["item_id"] for e in clean_events if e["event_type"] == "view")
    counts = sorted(views.values(), reverse=True)
    top_tenth = sum(counts[: len(counts) // 10])
    assert top_tenth > 0.25 * sum(counts)


def test_users_view_mostly_their_favourite_styles(
    world: synthetic.World, clean_events: list[dict[str, Any]]
) -> None:
    """Two of the six styles would get a third of the views by chance; a user's two favourites
    get most of theirs (79%; exploration and styles missing from a small category aside)."""
    users = {u.user_id: n for n, u in enumerate(world.users)}
    items = {i.item_id: n for n, i in enumerate(world.items)}
    in_favourites = []
    for e in clean_events:
        if e["event_type"] == "view":
            cum = world.style_cum[users[e["user_id"]]]
            mix = [b - a for a, b in zip((0.0, *cum), cum, strict=False)]
            favourites = sorted(range(synthetic.STYLES), key=mix.__getitem__)[-2:]
            in_favourites.append(world.item_style[items[e["item_id"]]] in favourites)
    assert sum(in_favourites) / len(in_favourites) > 0.7


def test_sessions_keep_to_one_category_and_rarely_repeat_an_item() -> None:
    """A session's views stay mostly in one category (76% here) and seldom show an item again
    (1%). Picking each item's category afresh by taste, the first generator gave 53% and 7%.
    A catalog larger than the module's, whose categories hold two or three items of a style."""
    world = synthetic.build_world(n_users=400, n_items=300, seed=7, created_before_ms=START_MS)
    items = {i.item_id: i for i in world.items}
    sessions: dict[str, list[str]] = defaultdict(list)
    for e in synthetic.generate_events(world, 8000, START_MS, events_per_s=EPS):
        if e["event_type"] == "view":
            sessions[e["session_id"]].append(e["item_id"])
    main_shares = []
    for viewed in sessions.values():
        if len(viewed) >= 3:
            per_category = Counter(c for i in viewed for c in items[i].categories)
            main_shares.append(per_category.most_common(1)[0][1] / len(viewed))
    repeats = sum(len(v) - len(set(v)) for v in sessions.values())
    assert len(main_shares) > 300
    assert sum(main_shares) / len(main_shares) > 0.68
    assert repeats < 0.03 * sum(len(v) for v in sessions.values())


def test_catalog_rows_have_the_table_shape(world: synthetic.World) -> None:
    items, users = synthetic.item_rows(world), synthetic.user_rows(world)
    assert [set(r) for r in items[:1]] == [
        {"item_id", "title", "categories", "length_s", "created_ts", "source"}
    ]
    assert [set(r) for r in users[:1]] == [
        {
            "user_id",
            "age_band",
            "gender",
            "occupation",
            "country",
            "consent_personalization",
            "consent_analytics",
            "created_ts",
            "source",
        }
    ]
    assert len({r["item_id"] for r in items}) == 120
    assert len({r["user_id"] for r in users}) == 150
    assert all(1 <= len(r["categories"]) <= 3 for r in items)
    assert {c for r in items for c in r["categories"]} <= set(synthetic.CATEGORIES)
    assert all(r["created_ts"].timestamp() * 1000 <= START_MS for r in items + users)
    assert {r["source"] for r in items + users} == {"synthetic"}


def test_generation_is_lazy(world: synthetic.World) -> None:
    endless = synthetic.generate_records(world, 10**12, START_MS, bad_fraction=0.5, events_per_s=EPS)
    assert len(list(itertools.islice(endless, 100))) == 100


def test_shares_must_leave_room_for_good_events(world: synthetic.World) -> None:
    with pytest.raises(ValueError, match="below 1"):
        next(synthetic.generate_records(world, 10, START_MS, bad_fraction=0.6, duplicate_fraction=0.5))


def test_world_anchor_is_midnight_utc() -> None:
    # 1_700_000_000_000 = 2023-11-14T22:13:20Z
    assert synthetic.world_anchor_ms(START_MS) == 1_699_920_000_000
    assert synthetic.world_anchor_ms(1_699_920_000_000) == 1_699_920_000_000

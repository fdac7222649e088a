"""A deterministic synthetic world and its event stream, for demos, tests and benchmarks.

The world: categories, items (1-3 categories, one style, Zipf-like popularity), users with
latent tastes (Dirichlet over categories, and over styles), a home country, a preferred device
and an age band. A style is a sub-genre that cuts across categories (format, tone, depth). The
stream: sessions arrive as a Poisson process; a session keeps mostly to one of the user's
categories (drawn by taste) and hardly ever shows an item twice. Each pick draws a category and a
style by the user's tastes, then an item of that category and style by popularity
(``pick_item``); now and then the user explores the globally popular items instead. They react
to each item with probabilities that grow with affinity (taste for the item's categories).
Sessions overlap, and the merged stream is in event-time order.

Taste drives most of a pick, popularity less: on the demo's world (1,000 users, 500 items) the
user's tastes explain about 2 bits of a pick beyond the 0.7 bits popularity explains (log-
likelihood gain of the true pick probabilities, sessions aside), and the views are about as
concentrated on the top tenth of items as MovieLens's ratings (40% vs 43%). The first version
chose within a category by popularity alone (taste 0.7 bits, popularity 1.6, 58% of views on the
top tenth): a collaborative model had too little to learn, and ALS stayed below the popularity
baseline however it was tuned.

Everything is drawn from seeded RNGs: the same seed gives the same world, and the same seed and
``start_ms`` the same events, ids included. A later start gives other ids, so running the
producer twice is not mistaken for a replay by the dedup. Time comes in as ``start_ms``; nothing
reads the clock. Generators are lazy: memory follows the number of concurrent sessions, not
the number of events.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from typing import Any, NamedTuple

from spark_jobs.common import names
from spark_jobs.contract import events as contract
from spark_jobs.produce.malformed import BAD_KINDS, make_bad

SOURCE = "synthetic"
CATEGORIES = (
    "news",
    "sports",
    "music",
    "movies",
    "tech",
    "science",
    "travel",
    "food",
    "fashion",
    "gaming",
    "finance",
    "health",
)
# (country, UTC offset in hours, weight)
COUNTRIES = (
    ("US", -5, 30),
    ("GB", 0, 8),
    ("DE", 1, 8),
    ("FR", 1, 6),
    ("ES", 1, 4),
    ("IN", 5, 14),
    ("BR", -3, 8),
    ("MX", -6, 5),
    ("CA", -5, 4),
    ("JP", 9, 6),
    ("AU", 10, 3),
    ("NG", 1, 4),
)
AGE_BANDS = (
    ("<18", 5),
    ("18-24", 22),
    ("25-34", 30),
    ("35-44", 20),
    ("45-54", 12),
    ("55-64", 7),
    ("65+", 4),
)
GENDERS = (("F", 48), ("M", 48), ("X", 4))
OCCUPATIONS = (
    "student",
    "engineer",
    "educator",
    "artist",
    "healthcare",
    "sales",
    "retired",
    "other",
)
DEVICE_WEIGHTS = (55, 25, 12, 8)  # contract.DEVICES order: mobile, desktop, tablet, tv
REFERRERS = (
    ("home", 40),
    ("recommendation", 25),
    ("search", 15),
    ("notification", 10),
    ("social", 6),
    ("external", 4),
)
_ADJECTIVES = (
    "Quiet",
    "Bright",
    "Hidden",
    "Endless",
    "Golden",
    "Broken",
    "Silent",
    "Wild",
    "Modern",
    "Secret",
    "Lost",
    "Electric",
    "Little",
    "Northern",
    "Final",
    "Open",
)
_NOUNS = (
    "Orbit",
    "River",
    "Kitchen",
    "Signal",
    "Harbor",
    "Garden",
    "Market",
    "Circuit",
    "Journey",
    "Season",
    "Voice",
    "Atlas",
    "Frontier",
    "Canvas",
    "Engine",
    "Summit",
)

TASTE_ALPHA = 0.3  # Dirichlet concentration: < 1 gives users a few strong interests
ZIPF_EXPONENT = 1.3  # views on the top tenth of items: 40% on the demo world (MovieLens 100k: 43%)
EXPLORE_P = 0.05  # share of picks from global popularity, regardless of taste
SESSION_FOCUS = 0.9  # share of a session's taste picks in its own category (the rest: by taste)
STYLES = 6  # every item has one style; every user a mix over them
STYLE_ALPHA = 0.1  # Dirichlet concentration of a user's style mix: most keep to one style
REDRAWS = 10  # a pick the session has shown already is drawn again, up to this many times
MEAN_ITEMS_PER_SESSION = 6.0
# Measured with the behaviour below (mean over 50,000 sessions of five worlds): events per
# session, which sets the session arrival rate. Sessions last 8 minutes on average; 4% of
# events come later than 30 minutes into one.
EVENTS_PER_SESSION = 14.1
WARMUP_MS = 1_800_000
MAX_DWELL_MS = 600_000  # people leave a tab open; dwell beyond 10 minutes is not attention
DEFAULT_EVENTS_PER_S = 100.0
DUPLICATE_WINDOW = 10_000  # duplicates re-send one of the last N good events
GOOD = "good"
DUPLICATE = "duplicate"
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    categories: tuple[int, ...]  # indices into ``CATEGORIES``
    length_s: int
    created_ms: int
    price: float


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    taste: tuple[float, ...]  # one weight per category, sums to 1
    country: str
    utc_offset_h: int
    device: str
    age_band: str
    gender: str
    occupation: str
    consent_personalization: bool
    consent_analytics: bool
    created_ms: int

    @property
    def top_category(self) -> int:
        return max(range(len(self.taste)), key=self.taste.__getitem__)


@dataclass(frozen=True)
class World:
    """Users, items and the sampling tables derived from them (read-only)."""

    seed: int
    users: tuple[User, ...]
    items: tuple[Item, ...]
    popularity: tuple[float, ...]  # per item, unnormalised
    user_activity_cum: tuple[float, ...]
    item_pop_cum: tuple[float, ...]
    category_items: tuple[tuple[int, ...], ...]  # item indices per category
    category_pop_cum: tuple[tuple[float, ...], ...]
    taste_cum: tuple[tuple[float, ...], ...]  # per user
    item_style: tuple[int, ...]  # per item, in ``range(STYLES)``
    style_cum: tuple[tuple[float, ...], ...]  # per user, over styles
    cell_items: tuple[tuple[tuple[int, ...], ...], ...]  # item indices per category, then style
    cell_pop_cum: tuple[tuple[tuple[float, ...], ...], ...]

    def affinity(self, user_index: int, item: Item) -> float:
        """0..1: the user's taste for the item's best category, relative to their favourite."""
        taste = self.users[user_index].taste
        return max(taste[c] for c in item.categories) / max(taste)

    def pick_category(self, rng: random.Random, user_index: int) -> int:
        """A category drawn by the user's taste."""
        return _draw(rng, self.taste_cum[user_index])

    def pick_item(self, rng: random.Random, user_index: int, focus: int | None = None) -> int:
        """An item index. By taste: a category (mostly the session's ``focus``, else one drawn
        by taste) and a style drawn by the user's mix, then an item of both by popularity (of
        the category alone when none has that style). With ``EXPLORE_P``: by global popularity.
        """
        if rng.random() >= EXPLORE_P:
            if focus is not None and rng.random() < SESSION_FOCUS:
                category = focus
            else:
                category = self.pick_category(rng, user_index)
            style = _draw(rng, self.style_cum[user_index])
            pool, weights = self.cell_items[category][style], self.cell_pop_cum[category][style]
            if not pool:
                pool, weights = self.category_items[category], self.category_pop_cum[category]
            if pool:
                return pool[_draw(rng, weights)]
        return _draw(rng, self.item_pop_cum)

    def pick_user(self, rng: random.Random) -> int:
        return _draw(rng, self.user_activity_cum)


class GeneratedRecord(NamedTuple):
    """One record to send and what should become of it.

    ``kind`` is ``GOOD``, ``DUPLICATE`` (an exact copy of an earlier good event) or, for a
    malformed record (bytes), the exact reason ``validate_event`` must report for it.
    """

    record: dict[str, Any] | bytes
    kind: str


def build_world(n_users: int, n_items: int, seed: int, created_before_ms: int) -> World:
    """Draw a world; items and users are created in the years before ``created_before_ms``.

    Pass a stable anchor (``world_anchor_ms``) rather than the exact start of the events, so
    re-running a producer on the same day yields the same catalog rows, and the upsert of
    ``recsys.items`` / ``recsys.users`` changes nothing.
    """
    if n_users < 1 or n_items < 1:
        raise ValueError(f"need at least one user and one item, got {n_users} and {n_items}")
    rng = random.Random(f"world:{seed}")
    # Styles come from their own RNG: the catalog rows are those of a world without them.
    style_rng = random.Random(f"style:{seed}")
    items = tuple(_draw_item(rng, i, created_before_ms) for i in range(n_items))
    ranks = list(range(n_items))
    rng.shuffle(ranks)
    popularity = tuple(1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in ranks)
    users = tuple(_draw_user(rng, u, created_before_ms) for u in range(n_users))
    activity = [rng.lognormvariate(0.0, 1.0) for _ in users]
    category_items = tuple(
        tuple(i for i, item in enumerate(items) if c in item.categories) for c in range(len(CATEGORIES))
    )
    item_style = tuple(style_rng.randrange(STYLES) for _ in items)
    cell_items = tuple(
        tuple(tuple(i for i in pool if item_style[i] == s) for s in range(STYLES)) for pool in category_items
    )
    return World(
        seed=seed,
        users=users,
        items=items,
        popularity=popularity,
        user_activity_cum=tuple(accumulate(activity)),
        item_pop_cum=tuple(accumulate(popularity)),
        category_items=category_items,
        category_pop_cum=tuple(tuple(accumulate(popularity[i] for i in pool)) for pool in category_items),
        taste_cum=tuple(tuple(accumulate(u.taste)) for u in users),
        item_style=item_style,
        style_cum=tuple(tuple(accumulate(_dirichlet(style_rng, STYLE_ALPHA, STYLES))) for _ in users),
        cell_items=cell_items,
        cell_pop_cum=tuple(
            tuple(tuple(accumulate(popularity[i] for i in cell)) for cell in row) for row in cell_items
        ),
    )


def item_rows(world: World) -> list[dict[str, Any]]:
    """Items as plain rows in the shape of ``recsys.items`` (without ``updated_ts``)."""
    return [
        {
            "item_id": item.item_id,
            "title": item.title,
            "categories": [CATEGORIES[c] for c in item.categories],
            "length_s": item.length_s,
            "created_ts": _to_datetime(item.created_ms),
            "source": SOURCE,
        }
        for item in world.items
    ]


def user_rows(world: World) -> list[dict[str, Any]]:
    """Users as plain rows in the shape of ``recsys.users`` (without ``updated_ts``)."""
    return [
        {
            "user_id": user.user_id,
            "age_band": user.age_band,
            "gender": user.gender,
            "occupation": user.occupation,
            "country": user.country,
            "consent_personalization": user.consent_personalization,
            "consent_analytics": user.consent_analytics,
            "created_ts": _to_datetime(user.created_ms),
            "source": SOURCE,
        }
        for user in world.users
    ]


def world_anchor_ms(start_ms: int) -> int:
    """Midnight UTC at or before ``start_ms``: the day's stable ``created_before_ms``."""
    return start_ms - start_ms % _DAY_MS


def history_start_ms(end_ms: int, n_events: int, events_per_s: float = DEFAULT_EVENTS_PER_S) -> int:
    """Where to start the simulated clock so that ``n_events`` end around ``end_ms``.

    A backfill then looks like recent history rather than a future the stream would quarantine.
    """
    return end_ms - int(n_events / events_per_s * 1000)


def generate_events(
    world: World,
    n_events: int | None,
    start_ms: int,
    *,
    seed: int | None = None,
    events_per_s: float = DEFAULT_EVENTS_PER_S,
) -> Iterator[dict[str, Any]]:
    """Valid contract events at or after ``start_ms``, in event-time order (``None``: endless).

    ``events_per_s`` is the simulated traffic: sessions arrive at ``events_per_s /
    EVENTS_PER_SESSION`` per second of event time, so ``n`` events span about
    ``n / events_per_s`` seconds after ``start_ms``. The stream starts warm: sessions begin
    ``WARMUP_MS`` earlier, and those still under way at ``start_ms`` join it mid-flight (their
    earlier events are simulated, not emitted). The rate thus holds from the first second, and
    a paced producer's event times keep up with the wall clock. Memory grows with the number of
    concurrent sessions (about ``30 * events_per_s``), not with ``n``.
    ``seed`` defaults to the world's.
    """
    if events_per_s <= 0:
        raise ValueError(f"events_per_s must be > 0, got {events_per_s}")
    rng = random.Random(f"events:{world.seed if seed is None else seed}:{start_ms}")
    mean_session_gap_ms = 1000.0 * EVENTS_PER_SESSION / events_per_s
    heap: list[tuple[int, int, dict[str, Any], Iterator[tuple[int, dict[str, Any]]]]] = []
    next_start = float(start_ms - WARMUP_MS)
    sequence = 0
    emitted = 0
    while n_events is None or emitted < n_events:
        if not heap or next_start <= heap[0][0]:
            session = _session(world, rng, world.pick_user(rng), int(next_start), start_ms)
            next_start += rng.expovariate(1.0 / mean_session_gap_ms)
            first = next(session, None)
            if first is not None:
                heapq.heappush(heap, (first[0], sequence, first[1], session))
                sequence += 1
            continue
        _, _, event, session = heapq.heappop(heap)
        yield event
        emitted += 1
        following = next(session, None)
        if following is not None:
            heapq.heappush(heap, (following[0], sequence, following[1], session))
            sequence += 1


def generate_records(
    world: World,
    n_records: int,
    start_ms: int,
    *,
    bad_fraction: float = 0.0,
    duplicate_fraction: float = 0.0,
    seed: int | None = None,
    events_per_s: float = DEFAULT_EVENTS_PER_S,
    limits: contract.Limits | None = None,
) -> Iterator[GeneratedRecord]:
    """``n_records`` records: good events, plus malformed ones and duplicates in the given shares.

    Malformed records cycle through every kind in ``BAD_KINDS`` (so each appears once there
    are at least that many), each taking the place of the good event it was made from.
    Duplicates are exact copies of one of the last ``DUPLICATE_WINDOW`` good events. Injection
    draws from its own RNG, seeded by ``seed`` alone: the good events are the clean stream's,
    less those replaced, and the sequence of kinds does not depend on ``start_ms`` (so callers
    can predict the counts of a run stamped with the current time).
    """
    if not (0 <= bad_fraction < 1 and 0 <= duplicate_fraction < 1):
        raise ValueError("bad_fraction and duplicate_fraction must be in [0, 1)")
    if bad_fraction + duplicate_fraction >= 1:
        raise ValueError("bad_fraction + duplicate_fraction must be below 1")
    limits = limits or contract.Limits()
    base_seed = world.seed if seed is None else seed
    inject = random.Random(f"inject:{base_seed}")
    events = generate_events(world, None, start_ms, seed=base_seed, events_per_s=events_per_s)
    recent: list[dict[str, Any]] = []
    bad_count = 0
    for index in range(n_records):
        roll = inject.random()
        if roll < duplicate_fraction and recent:
            original = recent[inject.randrange(len(recent))]
            yield GeneratedRecord(_copy_event(original), DUPLICATE)
        elif duplicate_fraction <= roll < duplicate_fraction + bad_fraction:
            kind = BAD_KINDS[bad_count % len(BAD_KINDS)]
            bad_count += 1
            yield GeneratedRecord(make_bad(kind, next(events), inject, limits), kind)
        else:
            event = next(events)
            if len(recent) < DUPLICATE_WINDOW:
                recent.append(event)
            else:
                recent[index % DUPLICATE_WINDOW] = event
            yield GeneratedRecord(event, GOOD)


def _session(
    world: World, rng: random.Random, user_index: int, start_ms: int, emit_from_ms: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """One user's session: ``(event_ms, event)`` in time order.

    Events before ``emit_from_ms`` are simulated (they move the session's clock) but not
    emitted: a session under way when the stream starts joins it mid-flight, as a real one would.
    """
    user = world.users[user_index]
    device = user.device if rng.random() < 0.8 else rng.choice(contract.DEVICES)
    referrer = _weighted(rng, REFERRERS)
    session_id = _uuid(rng)
    offset_ms = user.utc_offset_h * 3_600_000
    n_items = 1 + int(rng.expovariate(1.0 / (MEAN_ITEMS_PER_SESSION - 1)))
    focus: int | None = world.pick_category(rng, user_index)
    if not world.category_items[focus]:
        focus = None
    t = start_ms
    shown: set[int] = set()
    for _ in range(n_items):
        index = world.pick_item(rng, user_index, focus)
        for _ in range(REDRAWS):
            if index not in shown:
                break
            index = world.pick_item(rng, user_index, focus)
        shown.add(index)
        item = world.items[index]
        reactions, t = _react(rng, item, world.affinity(user_index, item), t)
        for event_type, ts, extra in reactions:
            if ts < emit_from_ms:
                continue
            event = {
                names.EVENT_ID: _uuid(rng),
                names.EVENT_TYPE: event_type,
                names.USER_ID: user.user_id,
                names.ITEM_ID: item.item_id,
                names.SESSION_ID: session_id,
                names.EVENT_TS: _iso(ts),
                **extra,
                names.CONTEXT: {
                    "device": device,
                    "country": user.country,
                    "referrer": referrer,
                    "hour_of_day": (ts + offset_ms) // 3_600_000 % 24,
                },
                names.SCHEMA_VERSION: contract.SCHEMA_VERSION,
            }
            yield ts, event


Reaction = tuple[str, int, dict[str, Any]]


def _react(rng: random.Random, item: Item, affinity: float, t: int) -> tuple[list[Reaction], int]:
    """What a user does with one item shown at ``t``: (event type, time, extra fields) in time
    order, and when they move on. Every engagement probability grows with ``affinity``."""
    out: list[Reaction] = [("view", t, {})]
    if rng.random() < 0.08 + 0.62 * affinity:
        t += int(rng.uniform(400, 4000))
        out.append(("click", t, {}))
        engagement = min(1.0, max(0.02, rng.gauss(0.15 + 0.7 * affinity, 0.15)))
        dwell_ms = min(MAX_DWELL_MS, int(item.length_s * 1000 * engagement))
        if rng.random() < 0.5:
            depth = round(min(1.0, max(0.0, engagement + rng.gauss(0.0, 0.1))), 3)
            out.append(("scroll", t + dwell_ms // 2, {names.SCROLL_DEPTH: depth}))
        t += dwell_ms
        if rng.random() < 0.9:
            out.append(("dwell", t, {names.DWELL_MS: dwell_ms}))
        t += int(rng.uniform(200, 2000))
        if rng.random() < 0.05 + 0.4 * affinity**2:
            out.append(("like", t, {}))
        elif rng.random() < 0.01 + 0.05 * (1 - affinity):
            out.append(("dislike", t, {}))
        if rng.random() < 0.12:
            stars = min(5, max(1, round(1 + 4 * affinity + rng.gauss(0.0, 0.7))))
            out.append(("rating", t, {names.VALUE: float(stars)}))
        if rng.random() < 0.005 + 0.03 * affinity:
            out.append(("purchase", t, {names.VALUE: item.price}))
    elif rng.random() < 0.6 * (1 - affinity):
        t += int(rng.uniform(300, 3000))
        out.append(("skip", t, {}))
    return out, t + int(rng.expovariate(1 / 6000)) + 500


def _draw_item(rng: random.Random, index: int, start_ms: int) -> Item:
    n_categories = _weighted(rng, ((1, 60), (2, 30), (3, 10)))
    categories = tuple(sorted(rng.sample(range(len(CATEGORIES)), n_categories)))
    length_s = int(min(3600, max(15, rng.lognormvariate(math.log(180), 0.8))))
    return Item(
        item_id=f"item_{index:06d}",
        title=f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
        categories=categories,
        length_s=length_s,
        created_ms=start_ms - int(rng.uniform(0, 365) * _DAY_MS),
        price=round(rng.uniform(0.99, 49.99), 2),
    )


def _draw_user(rng: random.Random, index: int, start_ms: int) -> User:
    taste = _dirichlet(rng, TASTE_ALPHA, len(CATEGORIES))
    country, offset, _ = rng.choices(COUNTRIES, weights=[w for *_, w in COUNTRIES])[0]
    return User(
        user_id=f"user_{index:06d}",
        taste=taste,
        country=country,
        utc_offset_h=offset,
        device=rng.choices(contract.DEVICES, weights=DEVICE_WEIGHTS)[0],
        age_band=_weighted(rng, AGE_BANDS),
        gender=_weighted(rng, GENDERS),
        occupation=rng.choice(OCCUPATIONS),
        consent_personalization=rng.random() >= 0.03,
        consent_analytics=rng.random() >= 0.05,
        created_ms=start_ms - int(rng.uniform(0, 730) * _DAY_MS),
    )


def _dirichlet(rng: random.Random, alpha: float, n: int) -> tuple[float, ...]:
    """Weights summing to 1 from a symmetric Dirichlet(``alpha``) (uniform if all draw zero)."""
    raw = [rng.gammavariate(alpha, 1.0) for _ in range(n)]
    total = sum(raw)
    return tuple(x / total for x in raw) if total > 0 else tuple(1 / n for _ in raw)


def _draw(rng: random.Random, cum: tuple[float, ...]) -> int:
    """An index drawn with the weights whose running sums are ``cum``."""
    return min(bisect(cum, rng.random() * cum[-1]), len(cum) - 1)


def _weighted(rng: random.Random, pairs: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([v for v, _ in pairs], weights=[w for _, w in pairs])[0]


def _uuid(rng: random.Random) -> str:
    """A version-4 UUID from ``rng`` (same text as ``uuid.UUID(int=..., version=4)``, faster)."""
    n = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Version 4 in bits 76-79, RFC 4122 variant (0b10) in bits 62-63.
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and ``Z`` (exact: no float rounding)."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def _copy_event(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, names.CONTEXT: dict(event[names.CONTEXT])}

"""Scoring a set of users against the serving state: the pure core of the streaming scorer.

Per user, one of three paths, by how much the data knows about them:

* **regular** (more than ``LIGHT_MAX_EVENTS`` positive items): ALS fold-in on their latest
  strengths, candidates from every source, the champion (or challenger) ranker;
* **light** (1..``LIGHT_MAX_EVENTS``): too little for a personal vector to mean much, so content
  and session neighbours of what they did lead, with a little popularity;
* **cold** (no positive item, or no consent to personalisation): what is trending in their
  country, else popular now.

Then the rules (``rules.py``): nothing already consumed or shown too often, context, MMR under a
category cap, one slot for a new item in a category they like, and a reason for every row. A user
the state knows nothing about (no event, no context) is a cold start, and their reasons say so.

Every user's list depends only on their own rows, the item snapshot and the request, never on who
else is in the chunk: the distributed scorer calls ``score_users`` on any split of the users and
gets the rows one call over all of them would give.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

import numpy as np
import pandas as pd

from spark_jobs.common import names
from spark_jobs.common.config import ServingSettings, parse_hours
from spark_jobs.serving import rules
from spark_jobs.serving.foldin import fold_in
from spark_jobs.serving.models import ModelSet, ServingModel
from spark_jobs.serving.state import COUNTRY, CREATED_TS, LENGTH_S, ServingState
from spark_jobs.serving.tables import LAST_EVENT_TS, SOURCE
from spark_jobs.training.als import AlsFactors
from spark_jobs.training.candidates import recent_items
from spark_jobs.training.columns import STRENGTH
from spark_jobs.training.features import CandidateConfig, build_candidates

LIGHT_MAX_EVENTS = 3
NEW_HERE = "; new here, no history yet"  # appended to the reasons of users with no state
COUNTRY_TREND_TOP = 50  # an item among a country's top-50 trending may be explained as such
SOURCE_HISTORY, SOURCE_NEW, SOURCE_COUNTRY, SOURCE_TREND, SOURCE_POPULAR = (
    "history",
    "new_item",
    "country_trend",
    "trending",
    "popular",
)
OUTPUT_COLUMNS = (
    names.USER_ID,
    names.RANK,
    names.ITEM_ID,
    names.SCORE,
    names.REASON,
    SOURCE,
    names.MODEL_VERSION,
    names.VARIANT,
    LAST_EVENT_TS,
    names.GENERATED_AT,
)


@dataclass(frozen=True)
class ScoringRequest:
    """Who to score and when: ``now_ts`` is the data's "now" (newest event time, epoch seconds),
    ``generated_at`` the wall-clock stamp the I/O layer chose for this batch."""

    users: list[str]
    now_ts: float
    generated_at: datetime
    last_event_ts: pd.Series  # user_id -> newest event time (timestamp) the list accounts for


def rule_settings(settings: ServingSettings) -> rules.RuleSettings:
    return rules.RuleSettings(
        settings.top_n,
        settings.mmr_lambda,
        settings.max_per_category,
        parse_hours(settings.peak_hours),
        settings.mobile_max_length_s,
        settings.mobile_long_penalty,
    )


def score_users(
    state: ServingState, store: ModelSet, request: ScoringRequest, settings: ServingSettings
) -> pd.DataFrame:
    """Top-N rows (``OUTPUT_COLUMNS``) for every user in ``request.users``, grouped by variant.

    ``store`` is anything with ``model(variant)`` and ``has_challenger`` (a ``ModelSet``, or the
    driver's ``ModelStore``); strengths in ``state`` are as of ``request.now_ts``.
    """
    share = settings.challenger_share if store.has_challenger else 0.0
    by_variant: dict[str, list[str]] = {}
    for user in dict.fromkeys(request.users):
        by_variant.setdefault(rules.variant_of(user, share), []).append(user)
    parts = []
    for variant, users in by_variant.items():
        for start in range(0, len(users), settings.chunk_users):
            chunk = users[start : start + settings.chunk_users]
            model = store.model(variant)
            frame = _score_chunk(state, model, chunk, request, settings)
            parts.append(frame.assign(**{names.VARIANT: variant, names.MODEL_VERSION: model.label}))
    if not parts:
        return pd.DataFrame(columns=list(OUTPUT_COLUMNS))
    out = pd.concat(parts, ignore_index=True)
    out[names.GENERATED_AT] = request.generated_at
    out[LAST_EVENT_TS] = out[names.USER_ID].map(request.last_event_ts)
    return out[list(OUTPUT_COLUMNS)]


def _score_chunk(
    state: ServingState,
    model: ServingModel,
    users: list[str],
    request: ScoringRequest,
    settings: ServingSettings,
) -> pd.DataFrame:
    matrix = state.user_matrix(users)
    n_pos = pd.Series(np.asarray(matrix.binary.sum(axis=1)).ravel(), index=matrix.user_ids)
    consent = _consenting(state, users)
    personal = [u for u in users if n_pos.get(u, 0) > 0 and u in consent]
    cold = [u for u in users if u not in set(personal)]
    pool = _personal_pool(state, model, matrix, personal, n_pos, settings)
    pool = pd.concat([pool, _cold_pool(state, cold, settings)], ignore_index=True)
    if pool.empty:
        return pool
    pool = _apply_rules(state, pool, matrix, request, settings)
    return explain(state, model, matrix, pool, request.now_ts, settings)


def _consenting(state: ServingState, users: list[str]) -> set[str]:
    """Users who did not opt out of personalisation (unknown users count as consenting)."""
    col = "consent_personalization"
    if state.users.empty or col not in state.users.columns:
        return set(users)
    refused = set(state.users.loc[state.users[col].eq(False), names.USER_ID].astype(str))
    return {u for u in users if u not in refused}


def folded_factors(state: ServingState, model: ServingModel, users: list[str]) -> AlsFactors | None:
    """The model's factors with fresh user vectors for ``users`` (fold-in on their current pairs)."""
    if model.factors is None or model.yty is None or not users:
        return None
    factors = model.factors
    index = {str(i): n for n, i in enumerate(factors.item_ids)}
    own = state.user_pairs(users)
    own = own.assign(_r=own[names.ITEM_ID].map(index)).dropna(subset=["_r"])
    # Each user's pairs as one slice of arrays sorted by user (no per-user pandas frames).
    unique = list(dict.fromkeys(users))
    codes = pd.Categorical(own[names.USER_ID], categories=unique).codes
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(unique) + 1))
    item_rows = own["_r"].to_numpy(dtype=np.int64)[order]
    values = own[STRENGTH].to_numpy(dtype=np.float64)[order]
    slot = {u: n for n, u in enumerate(unique)}
    rows = [item_rows[bounds[slot[u]] : bounds[slot[u] + 1]] for u in users]
    strengths = [values[bounds[slot[u]] : bounds[slot[u] + 1]] for u in users]
    vectors = fold_in(factors.item_factors, model.yty, factors.params, rows, strengths)
    return AlsFactors(
        np.asarray(users, dtype=object), factors.item_ids, vectors, factors.item_factors, factors.params
    )


def _personal_pool(
    state: ServingState,
    model: ServingModel,
    matrix,  # InteractionMatrix of the chunk's users
    users: list[str],
    n_pos: pd.Series,
    settings: ServingSettings,
) -> pd.DataFrame:
    """Candidates with a ``score`` for users with history (regular: ranker/ALS; light: neighbours)."""
    if not users:
        return pd.DataFrame()
    assert state.sources is not None
    factors = folded_factors(state, model, users)
    cands = build_candidates(
        matrix,
        state.sources,
        factors,
        users,
        state.side,
        config=CandidateConfig(),
        mean_user_n=state.mean_user_n,
    )
    if cands.empty:
        return cands
    light = cands[names.USER_ID].map(n_pos).le(LIGHT_MAX_EVENTS).to_numpy()
    if model.ranker is not None:
        score = model.ranker.score(cands)
    elif factors is not None:
        score = cands["als_score"].to_numpy(dtype=np.float64)
    else:
        score = cands["pop_log"].to_numpy(dtype=np.float64)
    neighbours = (
        cands["cooc_score"].to_numpy() + cands["knn_score"].to_numpy() + cands["content_score"].to_numpy()
    ) + 0.05 * cands["pop_log"].to_numpy()
    cands[names.SCORE] = np.where(light, neighbours, score)
    cands = _drop_consumed(state, cands)
    return _top(cands, settings.pool)


def _cold_pool(state: ServingState, users: list[str], settings: ServingSettings) -> pd.DataFrame:
    """Trending in the user's country when known, else trending + popular, nothing consumed."""
    if not users:
        return pd.DataFrame()
    assert state.sources is not None
    src = state.sources
    base = np.log1p(src.popularity.astype(np.float64)) + np.log1p(src.trend.astype(np.float64))
    parts = []
    country_of = _countries(state)
    for user in users:
        country = country_of(user)
        local = state.country_trend.get(country) if country else None
        score = base + (np.log1p(local) * 2.0 if local is not None else 0.0)
        top = np.argsort(-score, kind="stable")[: settings.pool + 50]
        parts.append(
            pd.DataFrame({names.USER_ID: user, names.ITEM_ID: state.item_ids[top], names.SCORE: score[top]})
        )
    pool = _drop_consumed(state, pd.concat(parts, ignore_index=True))
    return _top(pool, settings.pool)


def _drop_consumed(state: ServingState, pool: pd.DataFrame) -> pd.DataFrame:
    """No item the user already interacted with, positive or negative (skips, dislikes), kept
    pairs and older items alike."""
    keys = state.consumed(list(pool[names.USER_ID].unique()))
    keep = [(u, i) not in keys for u, i in zip(pool[names.USER_ID], pool[names.ITEM_ID], strict=True)]
    return pool.loc[keep]


def _top(pool: pd.DataFrame, n: int) -> pd.DataFrame:
    pool = pool.sort_values([names.USER_ID, names.SCORE], ascending=[True, False], kind="stable")
    return pool.groupby(names.USER_ID, sort=False).head(n).reset_index(drop=True)


def _countries(state: ServingState) -> Callable[[str], str | None]:
    """``user -> country``: the latest event's context, else the profile; one lookup table per
    call instead of a scan of ``state.users`` per user."""
    profile: dict[str, str] = {}
    if not state.users.empty and COUNTRY in state.users.columns:
        known = state.users.loc[state.users[COUNTRY].map(lambda c: isinstance(c, str))]
        profile = dict(zip(known[names.USER_ID].astype(str), known[COUNTRY], strict=True))
    latest: dict[str, str] = {}
    if COUNTRY in state.context.columns:
        ctx = state.context[COUNTRY]
        latest = {str(u): c for u, c in ctx.items() if isinstance(c, str)}

    def country_of(user: str) -> str | None:
        return latest[user] if user in latest else profile.get(user)

    return country_of


def _apply_rules(
    state: ServingState, pool: pd.DataFrame, matrix, request: ScoringRequest, settings: ServingSettings
) -> pd.DataFrame:
    """Fatigue, context, the new-item slot and MMR under the category cap."""
    cfg = rule_settings(settings)
    pool = rules.drop_fatigued(pool, state.impressions, settings.max_impressions)
    pool = rules.scale_relevance(pool)
    peak = [
        u
        for u in pool[names.USER_ID].unique()
        if u in state.context.index
        and rules.is_peak_mobile(
            state.context.at[u, "device"], state.context.at[u, "hour_of_day"], cfg.peak_hours
        )
    ]
    lengths = (
        state.items.set_index(names.ITEM_ID)[LENGTH_S] if LENGTH_S in state.items else pd.Series(dtype=float)
    )
    pool = rules.apply_context(pool, lengths, peak, cfg)
    pos = {i: n for n, i in enumerate(state.item_ids)}
    assert state.primary_category is not None and state.category_vectors is not None
    pool = pool.assign(
        **{rules.PRIMARY_CATEGORY: state.primary_category[pool[names.ITEM_ID].map(pos).to_numpy()]}
    )
    chosen = rules.select_top_n(pool, state.category_vectors, pos, cfg)
    return _new_item_slot(state, chosen, matrix, request.now_ts, settings)


def new_items(state: ServingState, now_ts: float, days: float) -> np.ndarray:
    """Catalog positions of items created within ``days`` of ``now_ts`` that nobody touched yet."""
    assert state.sources is not None
    created = state.items.set_index(names.ITEM_ID)[CREATED_TS].reindex(state.item_ids).to_numpy(dtype=float)
    fresh = np.isfinite(created) & (created >= now_ts - days * 86_400.0) & (created <= now_ts)
    return np.nonzero(fresh & (state.sources.popularity == 0))[0]


def _new_item_slot(
    state: ServingState, chosen: pd.DataFrame, matrix, now_ts: float, settings: ServingSettings
) -> pd.DataFrame:
    """Give the last slot to the newest untouched item in the user's favourite category, so new
    items with metadata reach users before anyone clicked them (cold-start for items)."""
    candidates = new_items(state, now_ts, settings.new_item_days)
    if candidates.size == 0 or chosen.empty or matrix.n_users == 0:
        return chosen
    assert state.sources is not None and state.primary_category is not None
    profile = (matrix.strength @ state.sources.categories).toarray()
    u_index = matrix.user_index()
    created = state.items.set_index(names.ITEM_ID)[CREATED_TS].reindex(state.item_ids[candidates]).to_numpy()
    parts = []
    for user, group in chosen.groupby(names.USER_ID, sort=False):
        row = u_index.get(user)
        if row is None or not profile[row].any():
            parts.append(group)
            continue
        fit = state.category_vectors[candidates] @ profile[row]
        present = set(group[names.ITEM_ID])
        options = [
            (f, c, p)
            for f, c, p in zip(fit, created, candidates, strict=True)
            if f > 0 and state.item_ids[p] not in present
        ]
        if not options:
            parts.append(group)
            continue
        _, _, best = max(options, key=lambda o: (o[0], o[1]))
        ordered = group.sort_values(names.RANK)
        keep = ordered.head(settings.top_n - 1) if len(ordered) >= settings.top_n else ordered
        low = float(keep[names.SCORE].min()) if not keep.empty else 0.0
        slot = pd.DataFrame(
            {
                names.USER_ID: [user],
                names.ITEM_ID: [state.item_ids[best]],
                names.SCORE: [low],
                rules.RELEVANCE: [0.0],
                rules.PRIMARY_CATEGORY: [state.primary_category[best]],
                names.RANK: [len(keep) + 1],
                SOURCE: [SOURCE_NEW],
            }
        )
        parts.append(pd.concat([keep, slot], ignore_index=True))
    return pd.concat(parts, ignore_index=True)


@dataclass
class _Reasons:
    """What every explanation in one ``explain`` call looks up, computed once per call."""

    state: ServingState
    titles: Mapping[str, str]
    fresh: set[int]  # catalog positions of new, untouched items
    trend_top: set[int]
    country_top: dict[str | None, set[int]]

    @classmethod
    def of(cls, state: ServingState, now_ts: float, days: float) -> _Reasons:
        assert state.sources is not None
        return cls(
            state,
            state.titles(),
            set(new_items(state, now_ts, days).tolist()),
            set(np.argsort(-state.sources.trend)[:COUNTRY_TREND_TOP].tolist()),
            {None: set()},
        )

    def local_top(self, country: str | None) -> set[int]:
        if country not in self.country_top:
            local = self.state.country_trend.get(country) if country else None
            top = np.argsort(-local)[:COUNTRY_TREND_TOP].tolist() if local is not None else []
            self.country_top[country] = set(top)
        return self.country_top[country]

    def reason(
        self, item: int, given: object, has_history: bool, because: int, country: str | None
    ) -> tuple[str, str]:
        """(reason, source) of one row, in order of precedence."""
        state = self.state
        assert state.primary_category is not None
        if given == SOURCE_NEW or (item in self.fresh and has_history):
            cat = state.primary_category[item]
            return (f"new in {cat}, a category you like" if cat else "new for you"), SOURCE_NEW
        if because >= 0:
            source_item = state.item_ids[because]
            return f"because you watched {self.titles.get(source_item, source_item)}", SOURCE_HISTORY
        if item in self.local_top(country):
            return f"trending in {country}", SOURCE_COUNTRY
        if item in self.trend_top:
            return "trending now", SOURCE_TREND
        return "popular now", SOURCE_POPULAR


def explain(
    state: ServingState,
    model: ServingModel,
    matrix,
    chosen: pd.DataFrame,
    now_ts: float,
    settings: ServingSettings,
) -> pd.DataFrame:
    """Add ``reason`` and ``source`` to every row: the history item it is most like ("because you
    watched X"), a new item in a liked category, trending in the user's country, or popular now.

    Rows come out grouped by user (first-appearance order). What does not depend on the user
    (titles, trending sets, each country's top) is computed once per call, not per user.
    """
    assert state.sources is not None
    order, bounds = rules.user_groups(chosen[names.USER_ID])
    out = chosen.iloc[order].reset_index(drop=True)
    if out.empty:
        return out.assign(**{names.REASON: pd.Series(dtype=object), SOURCE: pd.Series(dtype=object)})
    lookups = _Reasons.of(state, now_ts, settings.new_item_days)
    pos = {i: n for n, i in enumerate(state.item_ids)}
    items_all = out[names.ITEM_ID].map(pos).to_numpy(dtype=np.int64)
    given = out[SOURCE].to_numpy(dtype=object) if SOURCE in out else np.full(len(out), None, dtype=object)
    u_index = matrix.user_index()
    recent = recent_items(matrix, range(matrix.n_users)) if matrix.n_users else None
    link = (state.sources.knn + state.sources.cooc).tocsr()
    item_f = model.factors.aligned_items(state.item_ids) if model.factors is not None else None
    countries = _countries(state)
    users = out[names.USER_ID].to_numpy(dtype=object)
    known = set(state.pairs[names.USER_ID]) | set(state.context.index)
    rows: list[tuple[str, str]] = []
    for start, end in pairwise(bounds):
        items = items_all[start:end]
        row = u_index.get(users[start])
        history = np.zeros(0, dtype=np.int64)
        if row is not None and recent is not None:
            history = recent.indices[recent.indptr[row] : recent.indptr[row + 1]]
        because = _because(history, items, link, item_f)
        country = countries(users[start])
        note = "" if users[start] in known else NEW_HERE
        rows.extend(
            (reason + note, source)
            for reason, source in (
                lookups.reason(int(item), given[start + n], bool(history.size), int(because[n]), country)
                for n, item in enumerate(items)
            )
        )
    out[names.REASON] = [r for r, _ in rows]
    out[SOURCE] = [source for _, source in rows]
    return out


def _because(history: np.ndarray, items: np.ndarray, link, item_f: np.ndarray | None) -> np.ndarray:
    """For each recommended item, the history item most linked to it (-1 when none is)."""
    if history.size == 0:
        return np.full(len(items), -1)
    sims = np.asarray(link[history][:, items].todense())
    if item_f is not None:
        h, c = item_f[history], item_f[items]
        norms = np.linalg.norm(h, axis=1, keepdims=True) * np.linalg.norm(c, axis=1)[None, :]
        cosine = (h @ c.T) / np.where(norms == 0, 1.0, norms)
        sims = np.where(sims > 0, sims + 1.0, np.maximum(cosine, 0.0) * (cosine > 0.2))
    best = np.argmax(sims, axis=0)
    return np.where(sims[best, np.arange(len(items))] > 0, history[best], -1)

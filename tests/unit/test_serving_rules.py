"""Pure parts of the scorer: fold-in algebra, A/B buckets, MMR with category caps, context, padding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_jobs.common import names
from spark_jobs.serving import rules
from spark_jobs.serving.foldin import fold_in, gram
from spark_jobs.serving.sinks import pad_ranks
from spark_jobs.training.als import AlsParams

pytestmark = pytest.mark.unit

SETTINGS = rules.RuleSettings(
    top_n=3,
    mmr_lambda=0.5,
    max_per_category=2,
    peak_hours=frozenset({8, 18}),
    mobile_max_length_s=600,
    mobile_long_penalty=0.5,
)


def test_fold_in_solves_the_dense_implicit_als_normal_equations():
    rng = np.random.default_rng(7)
    y = rng.normal(size=(30, 4)).astype(np.float32)
    params = AlsParams(rank=4, reg_param=0.1, alpha=2.0)
    rows, strengths = np.array([1, 5, 9]), np.array([3.0, 1.0, -2.0])
    got = fold_in(y, gram(y), params, [rows, np.zeros(0, int)], [strengths, np.zeros(0)])
    # The textbook form over the whole catalog: C = 1 + alpha*|r|, p = r > 0, reg scaled by n_u.
    c = np.ones(30)
    p = np.zeros(30)
    c[rows] += params.alpha * np.abs(strengths)
    p[rows] = strengths > 0
    yd = y.astype(np.float64)
    expected = np.linalg.solve(yd.T @ (c[:, None] * yd) + params.reg_param * 3 * np.eye(4), yd.T @ (c * p))
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)
    assert not got[1].any()  # no history -> zero vector


def test_variant_is_stable_and_follows_the_share():
    users = [f"u{n}" for n in range(4000)]
    first = [rules.variant_of(u, 0.25) for u in users]
    assert first == [rules.variant_of(u, 0.25) for u in users]
    share = first.count(names.VARIANT_CHALLENGER) / len(users)
    assert 0.22 < share < 0.28
    assert {rules.variant_of(u, 0.0) for u in users} == {names.VARIANT_CHAMPION}


def test_mmr_with_lambda_one_is_relevance_order_and_caps_categories():
    vectors = np.eye(3)[[0, 0, 0, 1, 2]]
    relevance = np.array([1.0, 0.9, 0.8, 0.5, 0.1])
    cats = ["a", "a", "a", "b", "c"]
    assert rules.mmr_order(relevance, vectors, cats, 4, 1.0, 0) == [0, 1, 2, 3]
    assert rules.mmr_order(relevance, vectors, cats, 4, 1.0, 2) == [0, 1, 3, 4]
    # Pure diversity after the first pick: every next item comes from a new category.
    assert rules.mmr_order(relevance, vectors, cats, 3, 0.0, 0)[:3] == [0, 3, 4]


def test_select_top_n_ranks_each_user_and_respects_the_cap():
    pool = pd.DataFrame(
        {
            names.USER_ID: ["u1"] * 4 + ["u2"] * 2,
            names.ITEM_ID: ["i0", "i1", "i2", "i3", "i0", "i3"],
            rules.RELEVANCE: [1.0, 0.9, 0.8, 0.1, 0.2, 0.7],
            rules.PRIMARY_CATEGORY: ["a", "a", "a", "b", "a", "b"],
        }
    )
    vectors = np.eye(2)[[0, 0, 0, 1]]
    pos = {"i0": 0, "i1": 1, "i2": 2, "i3": 3}
    out = rules.select_top_n(pool, vectors, pos, SETTINGS)
    got = {u: list(g.sort_values(names.RANK)[names.ITEM_ID]) for u, g in out.groupby(names.USER_ID)}
    assert got["u1"][0] == "i0" and "i2" not in got["u1"] and len(got["u1"]) == 3
    assert got["u2"] == ["i3", "i0"]
    assert out.groupby(names.USER_ID)[names.RANK].apply(list).to_dict() == {"u1": [1, 2, 3], "u2": [1, 2]}


def test_context_demotes_long_items_only_for_mobile_at_peak():
    pool = pd.DataFrame(
        {names.USER_ID: ["m", "m", "d"], names.ITEM_ID: ["long", "short", "long"], rules.RELEVANCE: [1.0] * 3}
    )
    lengths = pd.Series({"long": 3600, "short": 120})
    assert rules.is_peak_mobile("mobile", 18, SETTINGS.peak_hours)
    assert not rules.is_peak_mobile("mobile", 12, SETTINGS.peak_hours)
    assert not rules.is_peak_mobile("desktop", 18, SETTINGS.peak_hours)
    out = rules.apply_context(pool, lengths, ["m"], SETTINGS)
    assert out[rules.RELEVANCE].tolist() == [0.5, 1.0, 1.0]


def test_fatigue_drops_items_shown_too_often():
    pool = pd.DataFrame({names.USER_ID: ["u", "u"], names.ITEM_ID: ["a", "b"]})
    out = rules.drop_fatigued(pool, {("u", "a"): 3, ("u", "b"): 2}, 3)
    assert out[names.ITEM_ID].tolist() == ["b"]


def test_pad_ranks_gives_every_user_all_ranks_with_null_items_beyond_the_list():
    recs = pd.DataFrame(
        {
            names.USER_ID: ["u", "u"],
            names.RANK: [1, 2],
            names.ITEM_ID: ["a", "b"],
            names.SCORE: [2.0, 1.0],
            names.REASON: ["r", "r"],
            "source": ["history"] * 2,
            names.MODEL_VERSION: ["popularity"] * 2,
            names.VARIANT: ["champion"] * 2,
            "last_event_ts": pd.Timestamp("2026-01-01"),
            names.GENERATED_AT: pd.Timestamp("2026-01-02"),
        }
    )
    padded = pad_ranks(recs, 3)
    assert padded[names.RANK].tolist() == [1, 2, 3]
    assert padded[names.ITEM_ID].tolist()[:2] == ["a", "b"] and pd.isna(padded[names.ITEM_ID].iloc[2])


def test_user_groups_keep_first_appearance_and_row_order():
    order, bounds = rules.user_groups(pd.Series(["b", "a", "b", "c", "a"]))
    assert order.tolist() == [0, 2, 1, 4, 3]  # b's rows, then a's, then c's, each in input order
    assert bounds.tolist() == [0, 2, 4, 5]
    empty_order, empty_bounds = rules.user_groups(pd.Series([], dtype=object))
    assert empty_order.tolist() == [] and empty_bounds.tolist() == [0]

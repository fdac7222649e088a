"""The Spark item sources equal the in-memory ones on the same pairs (one definition, two engines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_jobs.features.item_sources import item_sources, item_universe, pair_stats
from spark_jobs.training.candidates import build_sources
from spark_jobs.training.matrix import build_matrix

pytestmark = pytest.mark.spark

DAY = 86_400.0


def _pairs() -> pd.DataFrame:
    """Five users, six items, two sessions for u1 (a gap of two hours), a negative pair, a tie."""
    rows = [
        ("u1", "a", 3.0, 10 * DAY),
        ("u1", "b", 1.0, 10 * DAY + 60),
        ("u1", "c", 2.0, 10 * DAY + 3 * 3600),
        ("u1", "d", 1.0, 10 * DAY + 3 * 3600 + 60),
        ("u2", "a", 2.0, 11 * DAY),
        ("u2", "b", 4.0, 11 * DAY + 120),
        ("u2", "e", -1.0, 11 * DAY + 180),
        ("u3", "b", 1.0, 30 * DAY),
        ("u3", "c", 1.0, 30 * DAY + 10),
        ("u3", "d", 2.5, 30 * DAY + 20),
        ("u4", "a", 1.0, 2 * DAY),
        ("u4", "f", 1.0, 2 * DAY + 5),
        ("u5", "c", 1.0, 40 * DAY),
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "strength", "timestamp"])


def test_spark_sources_equal_in_memory_sources(spark) -> None:
    pairs = _pairs()
    items = pd.DataFrame({"item_id": ["g", "a", "b"], "categories": [["x"], ["x", "y"], ["y"]]})
    matrix = build_matrix(pairs, item_ids=items["item_id"].to_numpy())
    expected = build_sources(matrix, items=items)

    frame = spark.createDataFrame(pairs)
    universe = item_universe(frame, list(items["item_id"]))
    stats = pair_stats(frame)
    got = item_sources(frame, universe, items, stats)

    assert list(universe) == list(matrix.item_ids)
    assert stats.reference_ts == matrix.reference_ts
    assert stats.mean_user_n == pytest.approx(matrix.strength.nnz / matrix.n_users)
    np.testing.assert_allclose(got.popularity, expected.popularity)
    np.testing.assert_allclose(got.mean_strength, expected.mean_strength, rtol=1e-6)
    np.testing.assert_allclose(got.trend, expected.trend, rtol=1e-6)
    np.testing.assert_allclose(got.first_seen, expected.first_seen)
    np.testing.assert_allclose(got.time_share, expected.time_share, rtol=1e-6)
    assert (got.bucket_origin, got.bucket_width_s) == (expected.bucket_origin, expected.bucket_width_s)
    np.testing.assert_allclose(got.knn.toarray(), expected.knn.toarray(), rtol=1e-6)
    np.testing.assert_allclose(got.cooc.toarray(), expected.cooc.toarray(), rtol=1e-6)
    np.testing.assert_allclose(got.categories.toarray(), expected.categories.toarray())
    assert got.category_names == expected.category_names

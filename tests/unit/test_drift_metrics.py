"""PSI, KL and JS on distributions small enough to check by hand."""

from __future__ import annotations

import math

import pytest

from spark_jobs.common.config import load_config
from spark_jobs.common.errors import ConfigError
from spark_jobs.drift import metrics as M

pytestmark = pytest.mark.unit


def test_psi_by_hand() -> None:
    # (0.25-0.5)*ln(0.25/0.5) + (0.75-0.5)*ln(0.75/0.5) = 0.25*ln 2 + 0.25*ln 1.5
    assert M.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert M.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)


def test_psi_is_zero_for_identical_and_symmetric() -> None:
    assert M.psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert M.psi([0.2, 0.8], [0.6, 0.4]) == pytest.approx(M.psi([0.6, 0.4], [0.2, 0.8]))


def test_psi_rejects_zero_cells_and_length_mismatch() -> None:
    with pytest.raises(ValueError, match="smooth"):
        M.psi([1.0, 0.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="same length"):
        M.psi([1.0], [0.5, 0.5])


def test_kl_by_hand_in_bits() -> None:
    # KL([0.5,0.5] || [0.25,0.75]) = 0.5*log2(2) + 0.5*log2(2/3) = 0.5 - 0.5*log2(1.5)
    assert M.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 - 0.5 * math.log2(1.5))
    assert M.kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(1.0)
    assert M.kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf


def test_js_by_hand_bounds_and_symmetry() -> None:
    # m = [0.375, 0.625]; KL(p||m) = 0.0465545, KL(q||m) = 0.0510353; JS = their mean
    assert M.js_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.0487949, abs=1e-6)
    assert M.js_divergence([0.25, 0.75], [0.5, 0.5]) == pytest.approx(0.0487949, abs=1e-6)
    assert M.js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)  # disjoint: the maximum
    assert M.js_divergence([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_align_smooths_missing_categories() -> None:
    categories, ref, cur = M.align({"a": 3, "b": 1}, {"b": 2, "c": 2}, epsilon=0.0)
    assert categories == ("a", "b", "c")
    assert ref == [0.75, 0.25, 0.0]
    assert cur == [0.0, 0.5, 0.5]
    _, ref, cur = M.align({"a": 1}, {"b": 1}, epsilon=0.01)
    # each side: [1+0.01, 0+0.01] / 1.02
    assert ref == pytest.approx([1.01 / 1.02, 0.01 / 1.02])
    assert cur == pytest.approx([0.01 / 1.02, 1.01 / 1.02])


def test_compare_counts() -> None:
    comparison = M.compare({"view": 50, "click": 50}, {"view": 25, "click": 75}, epsilon=0.0)
    assert comparison.categories == ("click", "view")
    assert comparison.psi == pytest.approx(0.274653, abs=1e-6)
    assert comparison.js == pytest.approx(0.0487949, abs=1e-6)
    assert (comparison.reference_total, comparison.current_total) == (100.0, 100.0)


def test_normalise_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="all be zero"):
        M.normalise([0, 0])
    with pytest.raises(ValueError, match="negative"):
        M.normalise([1, -1])


def test_top_k_with_other_keeps_the_heads_of_both_sides() -> None:
    ref = {"a": 10, "b": 5, "c": 1, "d": 1}
    cur = {"a": 1, "e": 9, "c": 1}
    assert M.top_k_with_other(ref, cur, k=1) == (
        {"a": 10.0, "__other__": 7.0},
        {"a": 1.0, "e": 9.0, "__other__": 1.0},
    )


def test_buckets_from_reference_quantiles() -> None:
    edges = M.bucket_edges_from_reference([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], bins=2)
    assert edges == [6]
    assert M.bucketise([1, 5.9, 6, 100], edges) == {"b00": 2.0, "b01": 2.0}
    assert M.bucket_edges_from_reference([], bins=4) == []


def test_relative_drop() -> None:
    assert M.relative_drop(0.2, 0.1) == pytest.approx(0.5)
    assert M.relative_drop(0.1, 0.2) == pytest.approx(-1.0)
    assert M.relative_drop(0.0, 0.2) == 0.0


def test_drift_settings_are_a_typed_config_section() -> None:
    environ = {"RECSYS_DRIFT__PSI_THRESHOLD": "0.25", "RECSYS_DRIFT__MIN_EVENTS": "10"}
    settings = load_config("local", environ=environ).drift
    assert (settings.psi_threshold, settings.min_events, settings.js_threshold) == (0.25, 10, 0.1)
    with pytest.raises(ConfigError, match=r"drift\.min_events"):
        load_config("local", environ={"RECSYS_DRIFT__MIN_EVENTS": "1.5"})
    with pytest.raises(ConfigError, match="negative"):
        load_config("local", environ={"RECSYS_DRIFT__PSI_THRESHOLD": "-1"})
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config("local", environ={"RECSYS_DRIFT__PSI": "0.3"})

"""The suite files in expectations/ parse, name every expectation, and are valid GX suites."""

from __future__ import annotations

import pytest

from spark_jobs.common.errors import ConfigError
from spark_jobs.quality.suites import load_suites, parse_suite, to_gx_suite

pytestmark = pytest.mark.unit


def test_every_suite_file_builds_a_gx_suite() -> None:
    suites = {s.name: s for s in load_suites()}
    assert {name: (s.critical, s.dataset) for name, s in suites.items()} == {
        "serving": (True, "recommendation_checks"),
        "silver_events": (True, "silver_window"),
        "training_interactions": (True, "training_interactions"),
        "user_features": (False, "user_features"),
    }
    for definition in suites.values():
        gx_suite = to_gx_suite(definition)
        assert [e.meta["name"] for e in gx_suite.expectations] == list(definition.expectation_names)


def test_suite_problems_are_named() -> None:
    exp = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}, "meta": {"name": "a"}}
    with pytest.raises(ConfigError, match="used twice"):
        parse_suite({"name": "s", "meta": {"dataset": "silver_window"}, "expectations": [exp, exp]}, "s.json")
    with pytest.raises(ConfigError, match=r"meta\.dataset"):
        parse_suite({"name": "s", "meta": {"dataset": "nope"}, "expectations": [exp]}, "s.json")
    with pytest.raises(ConfigError, match=r"expectation 0 needs type, kwargs and meta\.name"):
        parse_suite({"name": "s", "meta": {"dataset": "silver_window"}, "expectations": [{"type": "x"}]})
    with pytest.raises(ConfigError, match="unknown suite"):
        load_suites(only=["nope"])

"""The promotion gate: thresholds in code, champion moved only when the challenger holds up."""

from __future__ import annotations

import pytest

from spark_jobs.registry.gate import (
    RELATIVE_TOLERANCE,
    GateDecision,
    apply_decision,
    decide,
    mark_challengers,
)

pytestmark = pytest.mark.unit

POP = {"ndcg": 0.20, "precision": 0.18}


def test_first_model_is_promoted_when_it_beats_popularity():
    d = decide({"ndcg": 0.30, "precision": 0.25}, None, POP)
    assert d.promote
    assert "no champion to compare with" in d.reasons


def test_model_worse_than_popularity_is_never_promoted():
    d = decide({"ndcg": 0.19, "precision": 0.25}, None, POP)
    assert not d.promote
    assert any("ndcg 0.1900 < popularity" in r for r in d.reasons)


def test_within_tolerance_of_champion_is_promoted():
    champion = {"ndcg": 0.40, "precision": 0.30}
    slightly_worse = {"ndcg": 0.40 * (1 - RELATIVE_TOLERANCE / 2), "precision": 0.30}
    assert decide(slightly_worse, champion, POP).promote


def test_worse_than_champion_beyond_tolerance_is_rejected():
    champion = {"ndcg": 0.40, "precision": 0.30}
    worse = {"ndcg": 0.40 * (1 - 2 * RELATIVE_TOLERANCE), "precision": 0.31}
    d = decide(worse, champion, POP)
    assert not d.promote
    assert any(r.startswith("ndcg") and "< champion" in r for r in d.reasons)


def test_every_gated_metric_must_hold():
    champion = {"ndcg": 0.40, "precision": 0.30}
    assert not decide({"ndcg": 0.45, "precision": 0.20}, champion, POP).promote


def test_missing_metric_fails_closed():
    assert not decide({"ndcg": 0.5}, None, POP).promote


class FakeClient:
    def __init__(self) -> None:
        self.aliases: dict[tuple[str, str], str] = {}

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[(name, alias)] = version


def test_aliases_move_only_on_promotion():
    client = FakeClient()
    versions = {"recsys_als": "3", "recsys_ranker": "3"}
    mark_challengers(client, versions)
    assert apply_decision(client, GateDecision(False, ("no",)), versions) == []
    assert client.aliases == {("recsys_als", "challenger"): "3", ("recsys_ranker", "challenger"): "3"}
    moved = apply_decision(client, GateDecision(True, ("yes",)), versions)
    assert moved == ["recsys_als", "recsys_ranker"]
    assert client.aliases[("recsys_als", "champion")] == "3"
    assert client.aliases[("recsys_ranker", "champion")] == "3"

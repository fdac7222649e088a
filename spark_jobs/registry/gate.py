"""The promotion gate: when does a challenger become the champion? Thresholds are code, here.

The gate only compares figures measured on the *same* evaluation data (the caller scores the
champion and the challenger on one holdout). Rules, all of which must hold to promote:

1. the challenger is at least as good as the popularity baseline on ``GATED_METRICS``
   (a model that loses to "most popular" is broken, whatever the champion does);
2. when a champion exists, the challenger is not worse than it by more than ``tolerance``
   (relative) on every metric in ``GATED_METRICS``.

With no champion (first run, or a champion that can no longer be scored) rule 1 alone decides.
``decide`` is pure; ``apply_decision`` is the one function that moves the ``champion`` alias.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spark_jobs.common import names

GATED_METRICS: tuple[str, ...] = ("ndcg", "precision")
RELATIVE_TOLERANCE = 0.02  # challenger may be up to 2% (relative) below the champion
BASELINE_MARGIN = 0.0  # ... and must not be below popularity at all


@dataclass(frozen=True)
class GateThresholds:
    metrics: tuple[str, ...] = GATED_METRICS
    tolerance: float = RELATIVE_TOLERANCE
    baseline_margin: float = BASELINE_MARGIN


@dataclass(frozen=True)
class GateDecision:
    """``promote`` plus the human-readable reasons (one per rule checked)."""

    promote: bool
    reasons: tuple[str, ...]
    challenger: Mapping[str, float] = field(default_factory=dict)
    champion: Mapping[str, float] | None = None


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baseline: Mapping[str, float] | None = None,
    thresholds: GateThresholds = GateThresholds(),
) -> GateDecision:
    """Apply the rules of the module docstring. Missing metrics count as failures (fail closed)."""
    reasons: list[str] = []
    ok = True
    for metric in thresholds.metrics:
        value = challenger.get(metric)
        if value is None:
            return GateDecision(False, (f"challenger has no {metric}",), challenger, champion)
        if baseline is not None and metric in baseline:
            floor = baseline[metric] + thresholds.baseline_margin
            passed = value >= floor
            ok &= passed
            reasons.append(f"{metric} {value:.4f} {'>=' if passed else '<'} popularity {floor:.4f}")
        if champion is not None:
            if metric not in champion:
                reasons.append(f"champion has no {metric}: not compared")
                continue
            floor = champion[metric] * (1.0 - thresholds.tolerance)
            passed = value >= floor
            ok &= passed
            reasons.append(
                f"{metric} {value:.4f} {'>=' if passed else '<'} champion {champion[metric]:.4f}"
                f" - {thresholds.tolerance:.0%}"
            )
    if champion is None:
        reasons.append("no champion to compare with")
    return GateDecision(ok, tuple(reasons), challenger, champion)


def apply_decision(
    client: Any,
    decision: GateDecision,
    versions: Mapping[str, str],
    champion_alias: str = names.ALIAS_CHAMPION,
) -> list[str]:
    """Point ``champion`` at the given versions (``{model_name: version}``) when promoting.

    The models are promoted together (ALS and the ranker trained on its candidates are a pair).
    Returns the names whose alias moved.
    """
    if not decision.promote:
        return []
    moved = []
    for model_name, version in versions.items():
        client.set_registered_model_alias(model_name, champion_alias, str(version))
        moved.append(model_name)
    return moved


def mark_challengers(
    client: Any, versions: Mapping[str, str], alias: str = names.ALIAS_CHALLENGER
) -> Sequence[str]:
    """Every newly registered version becomes the ``challenger`` (moving the alias)."""
    for model_name, version in versions.items():
        client.set_registered_model_alias(model_name, alias, str(version))
    return list(versions)

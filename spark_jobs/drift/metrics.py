"""Distribution distances as pure functions (no Spark, no numpy needed): PSI, KL and JS.

Inputs are *counts* keyed by category (event type, item, activity bucket...). ``align`` turns
two count maps into probability vectors over the union of their categories, adding ``epsilon``
to every cell first so that a category missing on one side gives a large but finite distance
instead of a division by zero (the usual PSI convention).

Conventions, fixed because thresholds depend on them:
* PSI uses the natural log: ``sum((c - r) * ln(c / r))``; 0.1 "moderate", 0.2 "significant".
* KL and JS use log base 2, so JS lies in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_EPSILON = 1e-4


@dataclass(frozen=True)
class Comparison:
    """Two aligned distributions and their distances."""

    categories: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    psi: float
    js: float
    reference_total: float
    current_total: float


def normalise(counts: Sequence[float], epsilon: float = 0.0) -> list[float]:
    """Probabilities from non-negative counts, each cell smoothed by ``epsilon`` (share units)."""
    if any(c < 0 for c in counts):
        raise ValueError("counts must not be negative")
    total = float(sum(counts))
    if total <= 0:
        raise ValueError("counts must not all be zero")
    probs = [c / total for c in counts]
    if epsilon:
        probs = [p + epsilon for p in probs]
        norm = sum(probs)
        probs = [p / norm for p in probs]
    return probs


def align(
    reference: Mapping[str, float], current: Mapping[str, float], epsilon: float = DEFAULT_EPSILON
) -> tuple[tuple[str, ...], list[float], list[float]]:
    """Categories (sorted union) and the two smoothed probability vectors over them."""
    categories = tuple(sorted(set(reference) | set(current)))
    ref = normalise([float(reference.get(k, 0.0)) for k in categories], epsilon)
    cur = normalise([float(current.get(k, 0.0)) for k in categories], epsilon)
    return categories, ref, cur


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """Population stability index of two probability vectors (natural log)."""
    _check_pair(reference, current)
    return sum((c - r) * math.log(c / r) for r, c in zip(reference, current, strict=True))


def kl_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """KL(p || q) in bits; cells where p is 0 contribute nothing; q must be > 0 where p > 0."""
    if len(p) != len(q):
        raise ValueError("distributions must have the same length")
    total = 0.0
    for pi, qi in zip(p, q, strict=True):
        if pi > 0:
            if qi <= 0:
                return math.inf
            total += pi * math.log2(pi / qi)
    return total


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits: symmetric, bounded by 1, defined with zeros."""
    if len(p) != len(q):
        raise ValueError("distributions must have the same length")
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


def compare(
    reference: Mapping[str, float], current: Mapping[str, float], epsilon: float = DEFAULT_EPSILON
) -> Comparison:
    """PSI and JS of two count maps (see ``align``)."""
    categories, ref, cur = align(reference, current, epsilon)
    return Comparison(
        categories=categories,
        reference=tuple(ref),
        current=tuple(cur),
        psi=psi(ref, cur),
        js=js_divergence(ref, cur),
        reference_total=float(sum(reference.values())),
        current_total=float(sum(current.values())),
    )


def top_k_with_other(
    reference: Mapping[str, float], current: Mapping[str, float], k: int, other: str = "__other__"
) -> tuple[dict[str, float], dict[str, float]]:
    """Keep the ``k`` largest categories of each side (their union), fold the rest into ``other``.

    Item popularity has thousands of mostly tiny cells; comparing the head plus one tail bucket
    measures a shift in *what is popular* without the tail's noise dominating PSI.
    """

    def head(counts: Mapping[str, float]) -> set[str]:
        return {key for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]}

    keep = head(reference) | head(current)

    def fold(counts: Mapping[str, float]) -> dict[str, float]:
        folded = {key: float(v) for key, v in counts.items() if key in keep}
        rest = sum(float(v) for key, v in counts.items() if key not in keep)
        if rest:
            folded[other] = rest
        return folded

    return fold(reference), fold(current)


def bucket_edges_from_reference(values: Sequence[float], bins: int = 10) -> list[float]:
    """Inner quantile edges of the reference sample (deduplicated, ascending)."""
    if not values:
        return []
    ordered = sorted(values)
    edges = {ordered[min(len(ordered) - 1, (len(ordered) * i) // bins)] for i in range(1, bins)}
    return sorted(edges)


def bucketise(values: Sequence[float], edges: Sequence[float]) -> dict[str, float]:
    """Counts per bucket ``b00``..``bNN`` for the given inner edges (value < edge -> that bucket)."""
    counts: dict[str, float] = {}
    for v in values:
        index = sum(1 for e in edges if v >= e)
        key = f"b{index:02d}"
        counts[key] = counts.get(key, 0.0) + 1
    return counts


def relative_drop(reference: float, current: float) -> float:
    """``(reference - current) / reference``; 0 when the reference is 0 (nothing to lose)."""
    return 0.0 if reference <= 0 else (reference - current) / reference


def _check_pair(reference: Sequence[float], current: Sequence[float]) -> None:
    if len(reference) != len(current):
        raise ValueError("distributions must have the same length")
    if any(r <= 0 for r in reference) or any(c <= 0 for c in current):
        raise ValueError("PSI needs strictly positive probabilities: smooth with align()")

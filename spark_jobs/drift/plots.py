"""Bar charts of compared distributions (reference vs current), saved as PNG files."""

from __future__ import annotations

from pathlib import Path

from spark_jobs.drift.metrics import Comparison

MAX_BARS = 40


def save_comparison(comparison: Comparison, title: str, path: Path) -> Path:
    """Save a grouped bar chart of the two distributions (largest buckets first) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(
        range(len(comparison.categories)),
        key=lambda i: -(comparison.reference[i] + comparison.current[i]),
    )[:MAX_BARS]
    labels = [comparison.categories[i] for i in order]
    xs = range(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(labels) + 2), 4))
    try:
        ax.bar([x - 0.2 for x in xs], [comparison.reference[i] for i in order], width=0.4, label="reference")
        ax.bar([x + 0.2 for x in xs], [comparison.current[i] for i in order], width=0.4, label="current")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("share")
        ax.set_title(f"{title}: PSI {comparison.psi:.3f}, JS {comparison.js:.3f}")
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
    finally:
        plt.close(fig)
    return path

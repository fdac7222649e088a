"""Top-K ranking metrics on pandas frames, with binary relevance.

Definitions (the ones the Microsoft Recommenders benchmark table uses, so our figures compare):

* a user is evaluated when the truth frame has at least one relevant item for them; a user with
  no recommendations scores 0 on every metric (they are not silently dropped);
* ``hits@K`` = relevant items among the first K recommendations;
* Precision@K = hits / K; Recall@K = hits / |relevant|;
* nDCG@K = DCG / IDCG, gain 1 per hit at rank r discounted by ``1 / log2(r + 1)``, IDCG the DCG
  of min(K, |relevant|) hits at the top;
* MAP@K = sum of Precision@r over the ranks r <= K that hold a hit, / min(K, |relevant|);
* catalog coverage = distinct recommended items / catalog size;
* intra-list diversity = mean over users of the mean pairwise (1 - Jaccard) distance between the
  category sets of their top-K items (items without categories are skipped).

Everything is averaged over evaluated users (macro average).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from spark_jobs.common.errors import require_columns
from spark_jobs.training.columns import DEFAULT_K, ITEM_ID, RANK, SCORE, USER_ID

METRIC_NAMES = ("ndcg", "precision", "recall", "map")


def with_rank(recommendations: pd.DataFrame) -> pd.DataFrame:
    """Add ``rank`` (1 = best) from ``score`` when the frame has no rank yet."""
    if RANK in recommendations.columns:
        return recommendations
    require_columns(recommendations, (USER_ID, ITEM_ID, SCORE), "recommendations")
    ranked = recommendations.sort_values([USER_ID, SCORE], ascending=[True, False], kind="stable")
    ranked = ranked.assign(**{RANK: ranked.groupby(USER_ID, sort=False).cumcount() + 1})
    return ranked


def per_user_metrics(recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = DEFAULT_K) -> pd.DataFrame:
    """One row per evaluated user: ``user_id, n_relevant, hits, ndcg, precision, recall, map``.

    ``recommendations``: ``user_id, item_id`` and ``rank`` (or ``score``); ``truth``: ``user_id,
    item_id`` of relevant items (duplicates ignored).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    require_columns(truth, (USER_ID, ITEM_ID), "truth")
    recs = with_rank(recommendations)
    recs = recs.loc[recs[RANK] <= k, [USER_ID, ITEM_ID, RANK]]
    rel = truth[[USER_ID, ITEM_ID]].drop_duplicates()
    n_rel = rel.groupby(USER_ID).size().rename("n_relevant")

    hits = recs.merge(rel.assign(_hit=1), on=[USER_ID, ITEM_ID], how="inner")
    hits = hits.sort_values([USER_ID, RANK])
    hits["_disc"] = 1.0 / np.log2(hits[RANK].to_numpy(dtype=float) + 1.0)
    hits["_cum"] = hits.groupby(USER_ID).cumcount() + 1
    hits["_prec_at_r"] = hits["_cum"] / hits[RANK]
    agg = hits.groupby(USER_ID).agg(hits=("_hit", "sum"), dcg=("_disc", "sum"), ap_sum=("_prec_at_r", "sum"))
    out = n_rel.to_frame().join(agg, how="left").fillna({"hits": 0, "dcg": 0.0, "ap_sum": 0.0})
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2, dtype=float)))
    capped = np.minimum(out["n_relevant"].to_numpy(), k)
    out["ndcg"] = out["dcg"].to_numpy() / ideal[capped - 1]
    out["precision"] = out["hits"] / k
    out["recall"] = out["hits"] / out["n_relevant"]
    out["map"] = out["ap_sum"].to_numpy() / capped
    out["hits"] = out["hits"].astype(int)
    return out.reset_index()[[USER_ID, "n_relevant", "hits", *METRIC_NAMES]]


def ranking_metrics(
    recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = DEFAULT_K
) -> dict[str, float]:
    """Macro averages ``{ndcg, precision, recall, map}`` over users with relevant items."""
    table = per_user_metrics(recommendations, truth, k)
    if table.empty:
        return dict.fromkeys(METRIC_NAMES, 0.0)
    return {name: float(table[name].mean()) for name in METRIC_NAMES}


def catalog_coverage(recommendations: pd.DataFrame, catalog_size: int, k: int = DEFAULT_K) -> float:
    """Share of the catalog that appears in at least one user's top-K."""
    if catalog_size <= 0:
        return 0.0
    recs = with_rank(recommendations)
    return float(recs.loc[recs[RANK] <= k, ITEM_ID].nunique() / catalog_size)


def intra_list_diversity(
    recommendations: pd.DataFrame,
    item_categories: Mapping[str, Iterable[str]],
    k: int = DEFAULT_K,
) -> float:
    """Mean pairwise Jaccard distance of category sets within each top-K list, averaged over users.

    Lists with fewer than two items that have categories carry no information and are skipped;
    returns NaN when no list qualifies (no metadata at all).
    """
    values = list(per_user_diversity(recommendations, item_categories, k).values())
    return float(np.mean(values)) if values else float("nan")


def per_user_diversity(
    recommendations: pd.DataFrame,
    item_categories: Mapping[str, Iterable[str]],
    k: int = DEFAULT_K,
) -> dict[str, float]:
    """``user_id -> intra-list diversity`` of the users whose top-K has two or more items with
    categories (the others carry no information and are left out)."""
    recs = with_rank(recommendations)
    recs = recs.loc[recs[RANK] <= k]
    sets = {str(i): frozenset(c) for i, c in item_categories.items() if c is not None and len(c)}
    values = {}
    for user, items in recs.groupby(USER_ID)[ITEM_ID]:
        cats = [sets[str(i)] for i in items if str(i) in sets]
        if len(cats) < 2:
            continue
        dists = [1.0 - len(a & b) / len(a | b) for idx, a in enumerate(cats) for b in cats[idx + 1 :]]
        values[str(user)] = float(np.mean(dists))
    return values


def metrics_at_ks(recommendations: pd.DataFrame, truth: pd.DataFrame, ks: Iterable[int]) -> pd.DataFrame:
    """Metrics for several cut-offs (for the nDCG@K curve): one row per K."""
    rows = [{"k": k, **ranking_metrics(recommendations, truth, k)} for k in ks]
    return pd.DataFrame(rows)

"""The drift job: read two windows, compare their distributions, record and plot the verdict.

``run_drift`` is the I/O shell: it cuts the windows, collects the small count tables of
``distributions``, compares them with the pure ``metrics``, MERGEs one row per metric into
``recsys.drift_reports`` (key ``(run_id, metric)``: a retried run replaces its rows) and saves one
plot per distribution. Live quality of what was served comes from the exposure log (CTR of
served items, nDCG@10 of the served lists against what users liked afterwards). Sources that do
not exist yet (no items, no serving table, first run without a champion) give rows with status
``skipped`` and a reason, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_jobs.common import names
from spark_jobs.common.config import Config, DriftSettings
from spark_jobs.common.delta import ensure_table
from spark_jobs.drift import distributions as D
from spark_jobs.drift import metrics as M

STATUS_OK, STATUS_DRIFTED, STATUS_SKIPPED = "ok", "drifted", "skipped"
GENERATED_AT = names.GENERATED_AT
CTR_METRIC = "live_ctr.relative_drop"
NDCG_METRIC = "live_ndcg.relative_drop"

DRIFT_REPORTS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), nullable=False),
        T.StructField("metric", T.StringType(), nullable=False),
        T.StructField("reference_start", T.TimestampType(), nullable=False),
        T.StructField("reference_end", T.TimestampType(), nullable=False),
        T.StructField("current_start", T.TimestampType(), nullable=False),
        T.StructField("current_end", T.TimestampType(), nullable=False),
        T.StructField("statistic", T.DoubleType()),
        T.StructField("threshold", T.DoubleType(), nullable=False),
        T.StructField("drifted", T.BooleanType(), nullable=False),
        T.StructField("status", T.StringType(), nullable=False),
        T.StructField("detail", T.StringType()),
        T.StructField("plot_path", T.StringType()),
        T.StructField("checked_at", T.TimestampType(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Windows:
    """Half-open ``[start, end)`` reference and current windows (UTC) and where the reference came from."""

    reference_start: datetime
    reference_end: datetime
    current_start: datetime
    current_end: datetime
    reference_source: str = "settings"


@dataclass(frozen=True)
class MetricRow:
    metric: str
    statistic: float | None
    threshold: float
    status: str
    detail: str = ""
    plot_path: str | None = None

    @property
    def drifted(self) -> bool:
        return self.status == STATUS_DRIFTED


@dataclass(frozen=True)
class DriftReport:
    run_id: str
    windows: Windows
    rows: tuple[MetricRow, ...] = field(default_factory=tuple)

    @property
    def drifted(self) -> bool:
        return any(r.drifted for r in self.rows)


def default_windows(
    at: datetime, settings: DriftSettings, reference: tuple[datetime, datetime] | None = None
) -> Windows:
    """Current = the ``current_hours`` before ``at``; reference = given, else the hours before that."""
    at = _utc(at)
    current_start = at - timedelta(hours=settings.current_hours)
    if reference is not None:
        return Windows(_utc(reference[0]), _utc(reference[1]), current_start, at, "champion")
    return Windows(
        current_start - timedelta(hours=settings.reference_hours), current_start, current_start, at
    )


def judge(
    metric: str, statistic: float, threshold: float, detail: str = "", plot: str | None = None
) -> MetricRow:
    """A metric row: drifted when the statistic exceeds its threshold."""
    status = STATUS_DRIFTED if statistic > threshold else STATUS_OK
    return MetricRow(metric, statistic, threshold, status, detail, plot)


def distribution_rows(
    name: str, comparison: M.Comparison, settings: DriftSettings, plot: str | None
) -> list[MetricRow]:
    """The PSI and JS rows of one compared distribution."""
    detail = (
        f"{len(comparison.categories)} buckets; reference n={comparison.reference_total:.0f}, "
        f"current n={comparison.current_total:.0f}"
    )
    return [
        judge(f"{name}.psi", comparison.psi, settings.psi_threshold, detail, plot),
        judge(f"{name}.js", comparison.js, settings.js_threshold, detail, plot),
    ]


def skipped_rows(name: str, settings: DriftSettings, reason: str) -> list[MetricRow]:
    return [
        MetricRow(f"{name}.psi", None, settings.psi_threshold, STATUS_SKIPPED, reason),
        MetricRow(f"{name}.js", None, settings.js_threshold, STATUS_SKIPPED, reason),
    ]


def run_drift(
    spark: SparkSession,
    config: Config,
    run_id: str,
    at: datetime,
    settings: DriftSettings | None = None,
    windows: Windows | None = None,
    plot_dir: Path | None = None,
) -> DriftReport:
    """Compare the windows on every distribution, MERGE the rows, save the plots."""
    settings = settings or config.drift
    windows = windows or default_windows(at, settings, champion_reference_window(config))
    plot_dir = plot_dir if plot_dir is not None else default_plot_dir(config, run_id)
    events = _table(spark, config, names.EVENTS)
    rows: list[MetricRow] = []
    if events is None:
        reason = f"{config.table(names.EVENTS)} does not exist"
        for dist in ("item_popularity", "event_type_mix", "category_mix", "user_activity"):
            rows += skipped_rows(dist, settings, reason)
    else:
        ref = D.in_window(
            events, names.EVENT_TS, _naive(windows.reference_start), _naive(windows.reference_end)
        ).cache()
        cur = D.in_window(
            events, names.EVENT_TS, _naive(windows.current_start), _naive(windows.current_end)
        ).cache()
        try:
            rows += _event_rows(spark, config, ref, cur, settings, plot_dir)
        finally:
            ref.unpersist()
            cur.unpersist()
    rows += _serving_rows(spark, config, events, windows, settings, plot_dir)
    report = DriftReport(run_id, windows, tuple(rows))
    write_report(spark, config, report, at)
    return report


def _event_rows(
    spark: SparkSession,
    config: Config,
    ref: DataFrame,
    cur: DataFrame,
    settings: DriftSettings,
    plot_dir: Path | None,
) -> list[MetricRow]:
    n_ref, n_cur = ref.count(), cur.count()
    if min(n_ref, n_cur) < settings.min_events:
        reason = (
            f"too little data: reference window has {n_ref} events, current {n_cur} "
            f"(min_events={settings.min_events})"
        )
        return [
            r
            for dist in ("item_popularity", "event_type_mix", "category_mix", "user_activity")
            for r in skipped_rows(dist, settings, reason)
        ]
    rows: list[MetricRow] = []

    def add(name: str, ref_counts: dict[str, float], cur_counts: dict[str, float]) -> None:
        comparison = M.compare(ref_counts, cur_counts, settings.epsilon)
        rows.extend(distribution_rows(name, comparison, settings, _plot(plot_dir, name, comparison)))

    add(
        "item_popularity",
        *M.top_k_with_other(
            D.collect_counts(D.item_counts(ref)), D.collect_counts(D.item_counts(cur)), settings.top_items
        ),
    )
    add(
        "event_type_mix",
        D.collect_counts(D.event_type_counts(ref)),
        D.collect_counts(D.event_type_counts(cur)),
    )
    items = _table(spark, config, names.ITEMS)
    if items is None:
        rows += skipped_rows("category_mix", settings, f"{config.table(names.ITEMS)} does not exist")
    else:
        add(
            "category_mix",
            D.collect_counts(D.category_counts(ref, items)),
            D.collect_counts(D.category_counts(cur, items)),
        )
    add(
        "user_activity",
        D.collect_counts(D.user_activity_counts(ref)),
        D.collect_counts(D.user_activity_counts(cur)),
    )
    return rows


def _serving_rows(
    spark: SparkSession,
    config: Config,
    events: DataFrame | None,
    windows: Windows,
    settings: DriftSettings,
    plot_dir: Path | None,
) -> list[MetricRow]:
    """Champion score distribution, live CTR and live nDCG of the served lists.

    Served lists come from ``recsys.recommendation_log`` (every list served), or from
    ``recsys.recommendations`` (the current lists only) where the log does not exist yet.
    """
    served, source = _served(spark, config)
    if served is None:
        reason = f"{config.table(names.RECOMMENDATIONS)} does not exist yet (no champion serving)"
        return [
            *skipped_rows("champion_score", settings, reason),
            MetricRow(CTR_METRIC, None, settings.ctr_drop_threshold, STATUS_SKIPPED, reason),
            MetricRow(NDCG_METRIC, None, settings.ndcg_drop_threshold, STATUS_SKIPPED, reason),
        ]
    rows: list[MetricRow] = []
    ref_recs = D.in_window(
        served, GENERATED_AT, _naive(windows.reference_start), _naive(windows.reference_end)
    )
    cur_recs = D.in_window(served, GENERATED_AT, _naive(windows.current_start), _naive(windows.current_end))
    if "score" not in served.columns or ref_recs.limit(1).count() == 0 or cur_recs.limit(1).count() == 0:
        rows += skipped_rows(
            "champion_score", settings, f"no recommendations generated in one of the windows ({source})"
        )
    else:
        probabilities = [i / settings.score_bins for i in range(1, settings.score_bins)]
        edges = sorted(set(ref_recs.approxQuantile("score", probabilities, 0.001)))
        comparison = M.compare(
            D.collect_counts(D.score_bucket_counts(ref_recs, edges)),
            D.collect_counts(D.score_bucket_counts(cur_recs, edges)),
            settings.epsilon,
        )
        rows += distribution_rows(
            "champion_score", comparison, settings, _plot(plot_dir, "champion_score", comparison)
        )
    rows.append(_ctr_row(events, served, windows, settings, source))
    rows.append(_ndcg_row(events, served, windows, settings, source))
    return rows


def _served(spark: SparkSession, config: Config) -> tuple[DataFrame | None, str]:
    """Every served list (the exposure log), else the current lists; None when neither exists."""
    for table in (names.RECOMMENDATION_LOG, names.RECOMMENDATIONS):
        frame = _table(spark, config, table)
        if frame is not None and GENERATED_AT in frame.columns:
            return frame, config.table(table)
    return None, ""


def _window_pairs(windows: Windows) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    return (
        (_naive(windows.reference_start), _naive(windows.reference_end)),
        (_naive(windows.current_start), _naive(windows.current_end)),
    )


def _ctr_row(
    events: DataFrame | None, served: DataFrame, windows: Windows, settings: DriftSettings, source: str
) -> MetricRow:
    """Relative drop of the CTR of served items (clicks / views after the item was served)."""
    if events is None:
        return MetricRow(CTR_METRIC, None, settings.ctr_drop_threshold, STATUS_SKIPPED, "no events table")
    rates = []
    for start, end in _window_pairs(windows):
        row = D.click_through(D.in_window(events, names.EVENT_TS, start, end), served).first()
        impressions, clicks = (row["impressions"] or 0, row["clicks"] or 0) if row else (0, 0)
        rates.append((impressions, clicks))
    (ref_imp, ref_clk), (cur_imp, cur_clk) = rates
    if min(ref_imp, cur_imp) == 0:
        return MetricRow(
            CTR_METRIC,
            None,
            settings.ctr_drop_threshold,
            STATUS_SKIPPED,
            f"no impressions of served items (reference {ref_imp}, current {cur_imp}; {source})",
        )
    ref_ctr, cur_ctr = ref_clk / ref_imp, cur_clk / cur_imp
    return judge(
        CTR_METRIC,
        M.relative_drop(ref_ctr, cur_ctr),
        settings.ctr_drop_threshold,
        f"CTR reference {ref_ctr:.4f} ({ref_imp} impressions), current {cur_ctr:.4f} ({cur_imp}); {source}",
    )


def _ndcg_row(
    events: DataFrame | None, served: DataFrame, windows: Windows, settings: DriftSettings, source: str
) -> MetricRow:
    """Relative drop of the mean live nDCG@k of the lists served in each window (``list_ndcg``)."""
    if events is None:
        return MetricRow(NDCG_METRIC, None, settings.ndcg_drop_threshold, STATUS_SKIPPED, "no events table")
    means = []
    for start, end in _window_pairs(windows):
        per_list = D.list_ndcg(
            D.in_window(served, GENERATED_AT, start, end),
            D.in_window(events, names.EVENT_TS, start, end),
            settings.ndcg_k,
            settings.positive_rating,
        )
        row = D.mean_ndcg(per_list).first()
        means.append((int(row[D.LISTS]), float(row[D.NDCG] or 0.0)) if row else (0, 0.0))
    (ref_lists, ref_ndcg), (cur_lists, cur_ndcg) = means
    if min(ref_lists, cur_lists) == 0:
        return MetricRow(
            NDCG_METRIC,
            None,
            settings.ndcg_drop_threshold,
            STATUS_SKIPPED,
            f"no served list followed by a liked item (reference {ref_lists}, current {cur_lists}; {source})",
        )
    return judge(
        NDCG_METRIC,
        M.relative_drop(ref_ndcg, cur_ndcg),
        settings.ndcg_drop_threshold,
        f"nDCG@{settings.ndcg_k} reference {ref_ndcg:.4f} ({ref_lists} lists), current {cur_ndcg:.4f} "
        f"({cur_lists}); {source}",
    )


def report_frame(spark: SparkSession, report: DriftReport, checked_at: datetime) -> DataFrame:
    w = report.windows
    rows = [
        (
            report.run_id,
            r.metric,
            _naive(w.reference_start),
            _naive(w.reference_end),
            _naive(w.current_start),
            _naive(w.current_end),
            r.statistic,
            r.threshold,
            r.drifted,
            r.status,
            r.detail or None,
            r.plot_path,
            _naive(checked_at),
        )
        for r in report.rows
    ]
    return spark.createDataFrame(rows, DRIFT_REPORTS_SCHEMA)


def write_report(spark: SparkSession, config: Config, report: DriftReport, checked_at: datetime) -> None:
    """MERGE the rows on (run_id, metric)."""
    from delta.tables import DeltaTable

    ensure_table(spark, config, names.DRIFT_REPORTS, DRIFT_REPORTS_SCHEMA)
    if not report.rows:
        return
    (
        DeltaTable.forPath(spark, config.table_path(names.DRIFT_REPORTS))
        .alias("t")
        .merge(
            report_frame(spark, report, checked_at).alias("s"), "t.run_id = s.run_id AND t.metric = s.metric"
        )
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


def champion_reference_window(config: Config) -> tuple[datetime, datetime] | None:
    """The training window recorded with the champion (model version tags), if any.

    Reads the tags ``recsys train`` sets (``train_window_start`` / ``train_window_end``, ISO-8601
    UTC; ``spark_jobs.registry.store.window_tags``) of the ``champion`` version of
    ``recsys_als``. No registry, no champion (first run) or no tags: None, and the default
    reference window applies.
    """
    uri = config.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    try:
        from mlflow.tracking import MlflowClient

        from spark_jobs.registry.store import window_from_tags

        version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(
            names.MODEL_ALS, names.ALIAS_CHAMPION
        )
        return window_from_tags(version.tags or {})
    except Exception:
        return None


def default_plot_dir(config: Config, run_id: str) -> Path | None:
    """``<lakehouse>/_drift/<run_id>/`` for local roots; None (no plots) for remote roots."""
    root = config.lakehouse_root
    if "://" in root or root.startswith("dbfs:"):
        return None
    return Path(root) / "_drift" / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def _plot(plot_dir: Path | None, name: str, comparison: M.Comparison) -> str | None:
    if plot_dir is None:
        return None
    from spark_jobs.drift.plots import save_comparison

    return str(save_comparison(comparison, name, plot_dir / f"{name}.png"))


def _table(spark: SparkSession, config: Config, table: str) -> DataFrame | None:
    from delta.tables import DeltaTable

    path = config.table_path(table)
    return spark.read.format("delta").load(path) if DeltaTable.isDeltaTable(spark, path) else None


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def _naive(ts: datetime) -> datetime:
    """Naive UTC for Spark literals and TIMESTAMP columns (session time zone is UTC)."""
    return _utc(ts).replace(tzinfo=None)


def metric_names(rows: Sequence[MetricRow]) -> list[str]:
    return [r.metric for r in rows]

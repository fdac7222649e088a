"""XGBoost LambdaMART ranker (``rank:ndcg``) over candidate pairs grouped by user.

One code path for CPU and GPU: ``detect_accelerator`` looks for a CUDA device (through XGBoost
itself) and for RAPIDS cuDF at run time; with both, the feature matrix is moved to cuDF and the
booster trains with ``device="cuda"``, otherwise pandas and CPU ``hist``. What ran is logged and
returned so benchmarks and MLflow record it. ``fit_ranker_spark`` is the distributed variant
(``xgboost.spark.SparkXGBRanker``) for cluster runs on a Spark DataFrame of the same columns.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from spark_jobs.training.columns import LABEL, SEED, USER_ID
from spark_jobs.training.features import FEATURE_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankerParams:
    """LambdaMART settings; ``n_estimators`` is an upper bound (early stopping on held-out users)."""

    n_estimators: int = 300
    learning_rate: float = 0.1
    max_depth: int = 4
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 30
    eval_fraction: float = 0.15
    monotone: bool = True
    # Residual learning: trees start from ``base_margin x als_score`` and learn corrections. The
    # ranker trains on ALS fitted to a history subset but serves ALS fitted to all training data,
    # which is more accurate; anchoring on the ALS score keeps it from under-trusting ALS then.
    base_margin: float = 3.0
    seed: int = SEED

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Signals the ranker may only use in the direction that makes sense: a better ALS or neighbour
# score never lowers a candidate. Keeps the ensemble from carving noise out of its best features.
MONOTONE = {"als_score": 1, "als_rank": -1, "als_gap": -1, "knn_score": 1, "knn_rank": -1, "knn_share": 1}


@dataclass(frozen=True)
class Accelerator:
    """What the ranker runs on: ``device`` for XGBoost, ``dataframe`` for feature prep."""

    device: str  # "cuda" or "cpu"
    dataframe: str  # "cudf" or "pandas"
    reason: str


@cache
def detect_accelerator() -> Accelerator:
    """CUDA + cuDF when both are usable, else CPU + pandas; never raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _probe()


def _probe() -> Accelerator:
    try:
        import xgboost as xgb

        if not xgb.build_info().get("USE_CUDA", False):
            return Accelerator("cpu", "pandas", "xgboost built without CUDA")
        probe = xgb.DMatrix(np.zeros((2, 1)), label=np.zeros(2))
        booster = xgb.train(
            {"device": "cuda", "tree_method": "hist", "fail_on_invalid_gpu_id": True},
            probe,
            num_boost_round=1,
        )
        device = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
        if not str(device).startswith("cuda"):
            return Accelerator("cpu", "pandas", "no visible CUDA device")
    except Exception as err:
        return Accelerator("cpu", "pandas", f"no usable CUDA device ({type(err).__name__})")
    try:
        import cudf  # noqa: F401
    except Exception:
        return Accelerator("cuda", "pandas", "CUDA device found; cuDF not installed")
    return Accelerator("cuda", "cudf", "CUDA device and cuDF found")


def booster_device(booster: Any) -> str:
    """The device a fitted ``XGBRanker``/``Booster`` is set to: XGBoost silently falls back to
    ``cpu`` when ``cuda`` was asked for and no GPU is visible, so only this says what ran."""
    inner = booster.get_booster() if hasattr(booster, "get_booster") else booster
    return str(json.loads(inner.save_config())["learner"]["generic_param"]["device"])


def _to_frame(features: pd.DataFrame, accel: Accelerator) -> Any:
    matrix = features[list(FEATURE_COLUMNS)].astype(np.float32)
    if accel.dataframe == "cudf":
        import cudf

        return cudf.from_pandas(matrix)
    return matrix


@dataclass
class RankerModel:
    """A fitted booster plus the facts a reader of the registry needs about how it was trained."""

    booster: Any  # xgboost.XGBRanker
    params: RankerParams
    accelerator: Accelerator
    fit_seconds: float
    best_iteration: int
    metrics: dict[str, float] = field(default_factory=dict)

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """Ranking scores of candidate rows (higher is better); CPU inference is fine here."""
        if features.empty:
            return np.zeros(0)
        matrix = features[list(FEATURE_COLUMNS)].astype(np.float32)
        self.booster.set_params(device="cpu")
        margin = _margin(features, self.params) if self.params.base_margin else None
        return np.asarray(self.booster.predict(matrix, base_margin=margin), dtype=np.float64)

    def feature_importance(self) -> pd.Series:
        gains = self.booster.get_booster().get_score(importance_type="gain")
        return pd.Series({c: gains.get(c, 0.0) for c in FEATURE_COLUMNS}).sort_values(ascending=False)


def _margin(frame: pd.DataFrame, params: RankerParams) -> np.ndarray:
    return params.base_margin * frame["als_score"].to_numpy(dtype=np.float64)


def _grouped(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    codes, _ = pd.factorize(frame[USER_ID])
    order = np.argsort(codes, kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    return frame, codes[order]


def trainable_groups(candidates: pd.DataFrame) -> pd.DataFrame:
    """Only users with at least one positive and one negative candidate teach a ranker anything."""
    stats = candidates.groupby(USER_ID)[LABEL].agg(["sum", "size"])
    keep = stats.index[(stats["sum"] > 0) & (stats["sum"] < stats["size"])]
    return candidates.loc[candidates[USER_ID].isin(keep)]


def fit_ranker(
    candidates: pd.DataFrame,
    params: RankerParams = RankerParams(),
    accelerator: Accelerator | None = None,
) -> RankerModel:
    """Fit LambdaMART on labelled candidates (``FEATURE_COLUMNS`` + ``label``, grouped by user).

    A seeded ``eval_fraction`` of users is held out for early stopping on nDCG@10.
    Raises ``ValueError`` when no user has both a positive and a negative candidate.
    """
    import xgboost as xgb

    accel = accelerator or detect_accelerator()
    usable = trainable_groups(candidates)
    if usable.empty:
        raise ValueError("no user has both positive and negative candidates; cannot train a ranker")
    users = np.array(sorted(usable[USER_ID].astype(str).unique()), dtype=object)
    rng = np.random.default_rng(params.seed)
    n_eval = (
        int(len(users) * params.eval_fraction) if len(users) >= 10 and params.early_stopping_rounds else 0
    )
    eval_users = set(rng.choice(users, size=n_eval, replace=False)) if n_eval else set()
    is_eval = usable[USER_ID].astype(str).isin(eval_users)
    train, train_qid = _grouped(usable.loc[~is_eval])
    settings = ranker_settings(params, accel.device, bool(eval_users))
    model = xgb.XGBRanker(**settings, n_jobs=0)
    fit_kwargs: dict[str, Any] = {"qid": train_qid, "verbose": False}
    if params.base_margin:
        fit_kwargs["base_margin"] = _margin(train, params)
    if eval_users:
        valid, valid_qid = _grouped(usable.loc[is_eval])
        fit_kwargs["eval_set"] = [(_to_frame(valid, accel), valid[LABEL].to_numpy())]
        fit_kwargs["eval_qid"] = [valid_qid]
        if params.base_margin:
            fit_kwargs["base_margin_eval_set"] = [_margin(valid, params)]
    started = time.perf_counter()
    model.fit(_to_frame(train, accel), train[LABEL].to_numpy(), **fit_kwargs)
    seconds = time.perf_counter() - started
    ran_on = booster_device(model)
    if not ran_on.startswith(accel.device):
        accel = Accelerator(ran_on, accel.dataframe, f"{accel.device} requested, XGBoost ran on {ran_on}")
    best = int(getattr(model, "best_iteration", params.n_estimators - 1) or 0)
    log.info(
        "ranker trained on %s/%s in %.1fs (%s), best iteration %d",
        accel.device,
        accel.dataframe,
        seconds,
        accel.reason,
        best,
    )
    metrics = {"ranker_train_rows": float(len(train)), "ranker_users": float(len(users))}
    if eval_users:
        history = model.evals_result()["validation_0"]["ndcg@10"]
        metrics["ranker_valid_ndcg10"] = float(history[best])
    return RankerModel(model, params, accel, seconds, best, metrics)


def rank_candidates(model: RankerModel, candidates: pd.DataFrame, k: int) -> pd.DataFrame:
    """Top-``k`` per user by ranker score: ``user_id, item_id, score, rank``."""
    from spark_jobs.training.columns import ITEM_ID, RANK, SCORE

    if candidates.empty:
        return pd.DataFrame(columns=[USER_ID, ITEM_ID, SCORE, RANK])
    scored = candidates[[USER_ID, ITEM_ID]].assign(**{SCORE: model.score(candidates)})
    scored = scored.sort_values([USER_ID, SCORE], ascending=[True, False], kind="stable")
    scored[RANK] = scored.groupby(USER_ID, sort=False).cumcount() + 1
    return scored.loc[scored[RANK] <= k].reset_index(drop=True)


USERS_PER_WORKER = 5_000


def ranker_settings(params: RankerParams, device: str, early_stopping: bool) -> dict[str, Any]:
    """XGBoost settings shared by the in-memory and the Spark fit, so both learn the same model."""
    return {
        "objective": "rank:ndcg",
        "eval_metric": "ndcg@10",
        "tree_method": "hist",
        "device": device,
        "n_estimators": params.n_estimators,
        "learning_rate": params.learning_rate,
        "max_depth": params.max_depth,
        "min_child_weight": params.min_child_weight,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "reg_lambda": params.reg_lambda,
        "random_state": params.seed,
        "lambdarank_pair_method": "topk",
        "lambdarank_num_pair_per_sample": 10,
        "early_stopping_rounds": params.early_stopping_rounds if early_stopping else None,
        "monotone_constraints": (
            "(" + ",".join(str(MONOTONE.get(c, 0)) for c in FEATURE_COLUMNS) + ")"
            if params.monotone
            else None
        ),
    }


def fit_ranker_spark(
    candidates: SparkDataFrame,
    params: RankerParams = RankerParams(),
    accelerator: Accelerator | None = None,
    num_workers: int | None = None,
) -> RankerModel:
    """LambdaMART on a Spark DataFrame of labelled candidates, trained by ``SparkXGBRanker``.

    The same objective and settings as ``fit_ranker``: only users with a positive and a negative
    candidate, a seeded ``eval_fraction`` of them (by a hash of the user id, so no list of users
    is built) held out for early stopping, ``base_margin x als_score`` as the starting margin.
    ``num_workers`` defaults to one per ``USERS_PER_WORKER`` users (at most the cluster's
    parallelism); ``device="cuda"`` when the
    accelerator says so (executors with GPUs). Raises ``ValueError`` when no user can teach.
    """
    import xgboost as xgb
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from xgboost.spark import SparkXGBRanker

    accel = accelerator or detect_accelerator()
    per_user = Window.partitionBy(USER_ID)
    positives, size = F.sum(LABEL).over(per_user), F.count(F.lit(1)).over(per_user)
    usable = (
        candidates.withColumn("_pos", positives)
        .withColumn("_n", size)
        .where((F.col("_pos") > 0) & (F.col("_pos") < F.col("_n")))
        .drop("_pos", "_n")
        .cache()
    )
    n_users = usable.select(USER_ID).distinct().count()
    if n_users == 0:
        raise ValueError("no user has both positive and negative candidates; cannot train a ranker")
    early = n_users >= 10 and bool(params.early_stopping_rounds)
    bucket = F.pmod(F.xxhash64(F.col(USER_ID), F.lit(params.seed)), F.lit(10_000))
    # A non-negative 32-bit group id: XGBoost reads qid as unsigned, and sorts on it per task.
    qid = F.pmod(F.xxhash64(USER_ID), F.lit(2_147_483_647)).cast("int")
    frame = usable.withColumn("qid", qid).withColumn(
        "is_eval", (bucket < int(params.eval_fraction * 10_000)) if early else F.lit(False)
    )
    if params.base_margin:
        frame = frame.withColumn("margin", F.col("als_score") * float(params.base_margin))
    # One array column, not ``features_col=[...]``: with a list of columns, XGBoost's Spark reader
    # (3.1.2, ``append_m``) raises KeyError('values') on any Arrow batch whose training or
    # early-stopping part is empty, which depends on how rows fall into batches (seen in CI).
    # Missing values stay NaN (``missing=nan``), as in the per-column path.
    nan = F.lit(float("nan")).cast("float")
    frame = frame.withColumn(
        "features", F.array(*(F.coalesce(F.col(c).cast("float"), nan) for c in FEATURE_COLUMNS))
    )
    spark = candidates.sparkSession
    # One XGBoost worker per ``USERS_PER_WORKER`` users, up to the cluster's parallelism: every
    # worker then holds enough users for its share of the early-stopping set (XGBoost's Spark
    # reader fails on a worker without validation rows) and small data is not spread thin.
    workers = num_workers or max(1, min(spark.sparkContext.defaultParallelism, n_users // USERS_PER_WORKER))
    settings = ranker_settings(params, accel.device, early)
    ranker = SparkXGBRanker(
        features_col="features",
        label_col=LABEL,
        qid_col="qid",
        num_workers=workers,
        validation_indicator_col="is_eval" if early else None,
        base_margin_col="margin" if params.base_margin else None,
        **{k: v for k, v in settings.items() if v is not None},
    )
    started = time.perf_counter()
    try:
        fitted = ranker.fit(frame)
    finally:
        usable.unpersist()
    seconds = time.perf_counter() - started
    booster = fitted.get_booster()
    model = xgb.XGBRanker(**{k: v for k, v in settings.items() if k != "early_stopping_rounds"})
    model.load_model(bytearray(booster.save_raw("ubj")))
    model.get_booster().feature_names = list(FEATURE_COLUMNS)
    ran_on = booster_device(model)
    if not ran_on.startswith(accel.device):
        accel = Accelerator(ran_on, accel.dataframe, f"{accel.device} requested, XGBoost ran on {ran_on}")
    best = (
        int(booster.best_iteration) if early and booster.attr("best_iteration") else params.n_estimators - 1
    )
    metrics = {"ranker_users": float(n_users), "ranker_workers": float(workers)}
    history = fitted.training_summary.validation_objective_history if fitted.training_summary else {}
    if history.get("ndcg@10"):
        metrics["ranker_valid_ndcg10"] = float(history["ndcg@10"][min(best, len(history["ndcg@10"]) - 1)])
    log.info(
        "ranker trained by %d Spark workers on %s in %.1fs, best iteration %d", workers, ran_on, seconds, best
    )
    return RankerModel(model, params, accel, seconds, best, metrics)

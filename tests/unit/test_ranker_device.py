"""The device the ranker trained on is what its booster ran on, and that is what MLflow records.

XGBoost falls back to CPU without a word when ``cuda`` is asked for and no GPU is visible, so a
run that asked for the GPU must not be recorded as a GPU run.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from spark_jobs.training.columns import LABEL, USER_ID
from spark_jobs.training.features import FEATURE_COLUMNS
from spark_jobs.training.ranker import (
    Accelerator,
    RankerModel,
    RankerParams,
    booster_device,
    fit_ranker,
)

pytestmark = pytest.mark.unit

TINY = RankerParams(n_estimators=3, early_stopping_rounds=0)


def _candidates(users: int = 20, per_user: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = users * per_user
    frame = pd.DataFrame(rng.random((n, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    frame[USER_ID] = np.repeat([f"u{i}" for i in range(users)], per_user)
    frame[LABEL] = (np.arange(n) % per_user < 2).astype(int)
    return frame


def test_cpu_fit_records_cpu_and_keeps_the_reason():
    model = fit_ranker(_candidates(), TINY, Accelerator("cpu", "pandas", "asked for cpu"))
    assert booster_device(model.booster) == "cpu"
    assert model.accelerator == Accelerator("cpu", "pandas", "asked for cpu")


@pytest.mark.filterwarnings("ignore:.*GPU:UserWarning")
def test_cuda_asked_for_without_a_gpu_is_recorded_as_what_ran():
    import xgboost as xgb

    model = fit_ranker(_candidates(), TINY, Accelerator("cuda", "pandas", "forced"))
    ran_on = booster_device(model.booster)
    assert ran_on.startswith(model.accelerator.device)
    if not ran_on.startswith("cuda"):
        assert model.accelerator == Accelerator("cpu", "pandas", "cuda requested, XGBoost ran on cpu")
    assert isinstance(model.booster, xgb.XGBRanker)


def test_training_run_logs_the_rankers_device_dataframe_and_reason(tmp_path: Path, monkeypatch):
    import mlflow

    from spark_jobs.registry import store as registry

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", tmp_path.joinpath("a").as_uri()))
    # The device facts are the subject here, not the model flavour (tested in integration).
    monkeypatch.setattr(registry, "_log_ranker", lambda ranker, model, register: {})
    accel = Accelerator("cuda", "cudf", "CUDA device and cuDF found")
    ranker = RankerModel(booster=None, params=TINY, accelerator=accel, fit_seconds=1.0, best_iteration=2)
    trained = SimpleNamespace(has_als=False, ranker=ranker)

    logged = registry.log_training_run(trained, {}, {"k": 10}, register=False)

    run = mlflow.get_run(logged.run_id)
    assert run.data.params == {"k": "10", "ranker_device": "cuda", "ranker_dataframe": "cudf"}
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    assert tags == {
        "ranker_device": "cuda",
        "ranker_dataframe": "cudf",
        "ranker_accelerator_reason": "CUDA device and cuDF found",
    }

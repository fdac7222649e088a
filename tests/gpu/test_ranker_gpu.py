"""The ranker really trains on the GPU when asked to (run on a machine with one: ``pytest -m gpu``).

Deselected by default (``-m "not gpu"`` in setup.cfg), never skipped: on a machine without a GPU,
``pytest -m gpu`` fails here, because XGBoost would quietly train on the CPU instead.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from benchmarks.gpu_check import synthetic_candidates
from spark_jobs.training.ranker import Accelerator, RankerParams, booster_device, fit_ranker

pytestmark = pytest.mark.gpu

PARAMS = RankerParams(n_estimators=20, early_stopping_rounds=0)


def test_ranker_fitted_with_device_cuda_runs_on_cuda():
    dataframe = "cudf" if importlib.util.find_spec("cudf") else "pandas"
    candidates = synthetic_candidates(rows=20_000, per_query=50)

    model = fit_ranker(candidates, PARAMS, Accelerator("cuda", dataframe, "gpu test"))

    assert booster_device(model.booster).startswith("cuda")
    assert model.accelerator == Accelerator("cuda", dataframe, "gpu test")
    cpu = fit_ranker(candidates, PARAMS, Accelerator("cpu", "pandas", "gpu test, CPU twin"))
    sample = candidates.head(2_000)
    # Same data and settings: the GPU model ranks like the CPU one (hist differs in float detail).
    assert np.corrcoef(model.score(sample), cpu.score(sample))[0, 1] > 0.95

"""The scorer refuses a ranker whose features are not the ones it computes, naming the difference."""

from __future__ import annotations

import numpy as np
import pytest

from spark_jobs.serving.models import ModelContractError, check_features
from spark_jobs.training.features import FEATURE_COLUMNS

pytestmark = pytest.mark.unit


def _booster(feature_names: list[str]):
    import xgboost as xgb

    rng = np.random.default_rng(3)
    data = xgb.DMatrix(rng.normal(size=(40, len(feature_names))), label=rng.integers(0, 2, 40))
    data.feature_names = feature_names
    return xgb.train({"objective": "binary:logistic", "nthread": 1}, data, num_boost_round=2)


def test_the_scorers_own_feature_set_is_accepted():
    check_features(_booster(list(FEATURE_COLUMNS)), "recsys_ranker", "7")


def test_a_ranker_trained_on_other_features_is_refused_with_the_difference():
    names = [*FEATURE_COLUMNS[1:], "legacy_feature"]
    with pytest.raises(ModelContractError) as err:
        check_features(_booster(names), "recsys_ranker", "7")
    message = str(err.value)
    assert "recsys_ranker v7 was trained on a different feature set" in message
    assert f"missing ['{FEATURE_COLUMNS[0]}']" in message and "unexpected ['legacy_feature']" in message
    assert err.value.hint and "recsys train" in err.value.hint


def test_the_same_features_in_another_order_are_refused_too():
    with pytest.raises(ModelContractError, match="order differs"):
        check_features(_booster(list(reversed(FEATURE_COLUMNS))), "recsys_ranker", "2")

"""The typed config: every section from the same layers, unknown keys and bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_jobs.common.config import load_config, project_root
from spark_jobs.common.errors import ConfigError
from spark_jobs.contract.events import Limits

pytestmark = pytest.mark.unit


def test_drift_quality_and_data_are_sections_of_the_one_config() -> None:
    environ = {
        "RECSYS_DRIFT__JS_THRESHOLD": "0.05",
        "RECSYS_QUALITY__WINDOW_HOURS": "12",
        "RECSYS_DATA__MOVIELENS_DIR": "/data/ml-100k",
    }
    config = load_config("local", environ=environ)
    assert (config.drift.js_threshold, config.quality.window_hours) == (0.05, 12.0)
    assert config.movielens_dir == Path("/data/ml-100k")
    beside_the_clone = project_root().parent / "shared" / "data" / "ml-100k"
    assert load_config("local", environ={}).movielens_dir == beside_the_clone


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RECSYS_MOVIELENS_DIR": "/x"}, "unknown config key(s) ['movielens_dir']"),
        ({"RECSYS_QUALITY__TOP_N": "3"}, "unknown config key(s) ['quality.top_n']"),
        ({"RECSYS_DRIFT__CURRENT_HOURS": "-2"}, "config key drift.current_hours = -2.0 must not be negative"),
        ({"RECSYS_QUALITY__MIN_EVENT_TS": "last year"}, "config key quality.min_event_ts = 'last year'"),
    ],
)
def test_a_bad_key_or_value_is_one_clear_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("local", environ=environ)
    assert str(error.value).startswith(message)


def test_the_contract_limits_are_the_ingest_settings() -> None:
    assert Limits.from_config(load_config("local", environ={})) == Limits()
    configured = load_config("local", environ={"RECSYS_INGEST__MAX_EVENT_BYTES": "512"})
    assert Limits.from_config(configured).max_event_bytes == 512

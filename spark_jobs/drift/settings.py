"""Drift thresholds and windows: code, next to the checks they judge; env may override.

Overrides: ``RECSYSDRIFT_<FIELD>`` (``RECSYSDRIFT_PSI_THRESHOLD=0.25``). Not ``RECSYS_...``:
``load_config`` rejects unknown ``RECSYS_*`` variables. These belong in the typed config
(``spark_jobs.common.config``) as a ``drift`` section, which would make them ``RECSYS_DRIFT__*``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spark_jobs.common.errors import ConfigError


@dataclass(frozen=True)
class DriftSettings:
    """What counts as drift, and which windows are compared by default.

    ``psi_threshold`` 0.2 is the conventional "significant shift"; ``js_threshold`` 0.1 bits is
    of the same order for the distributions we compare. ``ctr_drop_threshold``: relative drop of
    live CTR that counts as drift; ``ndcg_drop_threshold`` the same for the live nDCG@``ndcg_k``
    of the served lists (a rating counts as liked from ``positive_rating``). A window with fewer
    than ``min_events`` events is *skipped*
    (too little data to judge), never reported as drift. Without a reference window recorded
    with the champion, the reference is the ``reference_hours`` before the current window.
    """

    psi_threshold: float = 0.2
    js_threshold: float = 0.1
    ctr_drop_threshold: float = 0.3
    ndcg_drop_threshold: float = 0.3
    ndcg_k: int = 10
    positive_rating: float = 4.0
    current_hours: float = 24.0
    reference_hours: float = 168.0
    min_events: int = 50
    top_items: int = 50
    score_bins: int = 10
    epsilon: float = 1e-4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DriftSettings:
        return settings_from_env(cls, "RECSYSDRIFT_", os.environ if environ is None else environ)


def settings_from_env(cls: type, prefix: str, environ: Mapping[str, str]) -> Any:
    """A frozen settings dataclass with ``<PREFIX><FIELD>`` overrides, each checked for its type."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = environ.get(prefix + f.name.upper())
        if raw is None:
            continue
        kind = type(f.default)
        try:
            parsed = raw if kind is str else json.loads(raw)
            if kind is int and (isinstance(parsed, bool) or not float(parsed).is_integer()):
                raise ValueError
            values[f.name] = kind(parsed)
        except (ValueError, TypeError):
            raise ConfigError(f"{prefix}{f.name.upper()} = {raw!r} is not a valid {kind.__name__}") from None
        if kind in (int, float) and values[f.name] < 0:
            raise ConfigError(f"{prefix}{f.name.upper()} must not be negative")
    return cls(**values)

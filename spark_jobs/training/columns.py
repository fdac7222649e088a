"""Column names and defaults of the modelling stage that are not part of a table contract.

Table and event-field names live in ``spark_jobs.common.names``; these are the extra columns the
training and evaluation code passes between its own transforms (interaction strength, ranks,
scores) plus the shared defaults (``DEFAULT_K``, ``SEED``) used as argument defaults everywhere,
so a benchmark, the CLI and the tests agree on what "top-10, seed 42" means.
"""

from __future__ import annotations

from spark_jobs.common import names

USER_ID = names.USER_ID
ITEM_ID = names.ITEM_ID
EVENT_TS = names.EVENT_TS
RATING = "rating"
TIMESTAMP = "timestamp"
STRENGTH = "strength"  # aggregated, decayed confidence of one user-item pair (>0 positive)
N_EVENTS = "n_events"
LAST_TS = "last_ts"
RANK = "rank"
SCORE = "score"
LABEL = "label"
TITLE = names.TITLE
GENRES = "genres"
CATEGORIES = names.CATEGORIES

DEFAULT_K = 10
SEED = 42

# The recommenders compared offline (a column of the evaluation table). Not the registered
# MLflow models: those are ``names.MODEL_ALS`` / ``names.MODEL_RANKER``.
STRATEGY_POPULARITY = "popularity"
STRATEGY_ALS = "als"
STRATEGY_HYBRID = "hybrid"
STRATEGIES = (STRATEGY_POPULARITY, STRATEGY_ALS, STRATEGY_HYBRID)

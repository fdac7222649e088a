"""The views of database ``recsys``: what people and BI tools query instead of raw tables.

``user_top_n`` is each user's current list with item titles; ``ctr_by_variant`` compares the
A/B variants on everything ever served. The SQL is built from ``names`` and the configured
database only (pure, checkable without Spark). ``register_views`` creates the views whose base
tables exist; ``register_tables`` calls it, so every session, ``recsys sql`` and the Thrift
server see them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spark_jobs.common import names
from spark_jobs.common.config import Config
from spark_jobs.contract.events import CLICK_EVENT_TYPES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

TITLE = names.TITLE
CATEGORIES = names.CATEGORIES


def user_top_n_sql(database: str) -> str:
    """Current recommendations with the item's title and categories (null for unknown items)."""
    recs, items = names.qualified(names.RECOMMENDATIONS, database), names.qualified(names.ITEMS, database)
    return f"""SELECT r.{names.USER_ID}, r.{names.RANK}, r.{names.ITEM_ID}, i.{TITLE}, i.{CATEGORIES},
       r.{names.SCORE}, r.{names.REASON}, r.{names.VARIANT}, r.{names.MODEL_VERSION},
       r.{names.GENERATED_AT}
FROM {recs} AS r
LEFT JOIN {items} AS i ON i.{names.ITEM_ID} = r.{names.ITEM_ID}"""


def ctr_by_variant_sql(database: str) -> str:
    """Users, exposures, clicks and CTR per variant over the whole exposure log.

    An exposure is a distinct (variant, user, item) ever served; it counts as clicked when that
    user has a click, like or purchase event on that item at or after the exposure was first
    served. An item shown again later is still one exposure, so CTR is per item, not per view.
    """
    log = names.qualified(names.RECOMMENDATION_LOG, database)
    events = names.qualified(names.EVENTS, database)
    user, item, variant = names.USER_ID, names.ITEM_ID, names.VARIANT
    clicks = ", ".join(f"'{t}'" for t in CLICK_EVENT_TYPES)
    return f"""WITH exposures AS (
  SELECT {variant}, {user}, {item}, MIN({names.GENERATED_AT}) AS first_served_at
  FROM {log}
  GROUP BY {variant}, {user}, {item}
),
outcomes AS (
  SELECT x.{variant}, x.{user}, x.{item},
         MAX(CASE WHEN e.{names.EVENT_TS} >= x.first_served_at THEN 1 ELSE 0 END) AS clicked
  FROM exposures AS x
  LEFT JOIN {events} AS e
    ON e.{user} = x.{user} AND e.{item} = x.{item} AND e.{names.EVENT_TYPE} IN ({clicks})
  GROUP BY x.{variant}, x.{user}, x.{item}
)
SELECT {variant}, COUNT(DISTINCT {user}) AS users, COUNT(*) AS exposures,
       CAST(SUM(clicked) AS BIGINT) AS clicks, SUM(clicked) / COUNT(*) AS ctr
FROM outcomes
GROUP BY {variant}"""


@dataclass(frozen=True)
class View:
    """A view of database ``recsys``: its name, the tables it reads and its SELECT."""

    name: str
    base_tables: tuple[str, ...]
    select: Callable[[str], str]  # database -> SELECT text

    def create_statement(self, config: Config) -> str:
        return f"CREATE OR REPLACE VIEW {config.table(self.name)} AS\n{self.select(config.database)}"


VIEWS = (
    View(names.VIEW_USER_TOP_N, (names.RECOMMENDATIONS, names.ITEMS), user_top_n_sql),
    View(names.VIEW_CTR_BY_VARIANT, (names.RECOMMENDATION_LOG, names.EVENTS), ctr_by_variant_sql),
)


def register_views(spark: SparkSession, config: Config) -> list[str]:
    """(Re)create every view whose base tables exist and drop the others; returns those created.

    Dropping keeps a view from outliving its tables (the catalog re-pointed at another lakehouse
    root), which would fail every query on it instead of saying the view does not exist. A view
    its tables cannot back (a column missing) is dropped with a warning: every session start
    runs this, and one view must not stop the ingest stream from starting.
    """
    from pyspark.errors import AnalysisException

    created = []
    for view in VIEWS:
        name = config.table(view.name)
        if all(spark.catalog.tableExists(config.table(table)) for table in view.base_tables):
            try:
                spark.sql(view.create_statement(config))
            except AnalysisException as err:
                log.warning("view %s not created: %s", name, str(err).strip().splitlines()[0])
            else:
                created.append(view.name)
                continue
        spark.sql(f"DROP VIEW IF EXISTS {name}")
    return created

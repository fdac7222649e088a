"""Running one suite on one Spark DataFrame through a GX checkpoint, with data docs.

The GX project lives under the lakehouse root (``<root>/_quality/gx``): suites, validation
definitions and checkpoints are (re)written there on every run from ``expectations/*.json``, so
the JSON files stay the single source, and the data docs HTML site sits next to the data it
describes (``<root>/_quality/gx/uncommitted/data_docs/local_site/index.html``). Roots that are
not local paths (cloud) get an ephemeral context: same checks, no local HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame

from spark_jobs.quality.suites import SuiteDefinition, to_gx_suite

DATASOURCE = "recsys_spark"
STATISTIC_KEYS = (
    "evaluated_expectations",
    "successful_expectations",
    "unsuccessful_expectations",
    "success_percent",
)


@dataclass(frozen=True)
class SuiteOutcome:
    """The result of one suite run, in the shape ``recsys.quality_results`` stores."""

    suite: str
    critical: bool
    success: bool | None  # None: skipped (its table does not exist yet)
    failed_expectations: tuple[str, ...] = ()
    statistics: Mapping[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "skipped" if self.success is None else ("passed" if self.success else "failed")


def quality_home(lakehouse_root: str) -> Path | None:
    """Local folder of the GX project, or None for a remote root."""
    if "://" in lakehouse_root or lakehouse_root.startswith("dbfs:"):
        return None
    return Path(lakehouse_root) / "_quality"


def data_docs_index(lakehouse_root: str) -> Path | None:
    home = quality_home(lakehouse_root)
    return None if home is None else home / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def gx_context(lakehouse_root: str) -> Any:
    """A file GX context under the lakehouse root (local), else an ephemeral one."""
    import great_expectations as gx

    home = quality_home(lakehouse_root)
    if home is None:
        return gx.get_context(mode="ephemeral")
    home.mkdir(parents=True, exist_ok=True)
    return gx.get_context(mode="file", project_root_dir=str(home))


def run_suite(
    context: Any,
    definition: SuiteDefinition,
    frame: DataFrame,
    parameters: Mapping[str, Any],
    run_id: str,
) -> SuiteOutcome:
    """Validate ``frame`` against the suite through a checkpoint that also updates data docs."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    source = context.data_sources.add_or_update_spark(name=DATASOURCE)
    try:
        asset = source.get_asset(definition.name)
    except LookupError:
        asset = source.add_dataframe_asset(name=definition.name)
    try:
        batch = asset.get_batch_definition("whole")
    except (LookupError, KeyError):
        batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add_or_update(to_gx_suite(definition))
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=definition.name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{definition.name}_checkpoint",
            validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=dict(parameters),
        run_id=RunIdentifier(run_name=run_id),
    )
    (validation_result,) = result.run_results.values()
    failed = tuple(r.expectation_config.meta["name"] for r in validation_result.results if not r.success)
    stats = validation_result.statistics
    return SuiteOutcome(
        suite=definition.name,
        critical=definition.critical,
        success=bool(validation_result.success),
        failed_expectations=failed,
        statistics={k: float(stats[k] or 0.0) for k in STATISTIC_KEYS if k in stats},
    )

"""Suite definitions: ``expectations/<suite>.json`` files, parsed into plain, typed objects.

A suite file is GX 1.x's own suite JSON (``name``, ``expectations`` with ``type``/``kwargs``)
plus two keys of ours in ``meta``: ``critical`` (a failure stops the pipeline step that depends
on it) and ``dataset`` (which frame of ``spark_jobs.quality.frames`` it is checked against).
Every expectation carries ``meta.name``: the stable name a failure is reported by.
Kwargs may refer to run parameters as ``{"$PARAMETER": "top_n"}`` (GX suite parameters).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_jobs.common.config import Config, project_root
from spark_jobs.common.errors import ConfigError

DATASETS = ("silver_window", "training_interactions", "user_features", "recommendation_checks")


@dataclass(frozen=True)
class SuiteDefinition:
    """One suite as written in its file."""

    name: str
    critical: bool
    dataset: str
    expectations: tuple[Mapping[str, Any], ...]

    @property
    def expectation_names(self) -> tuple[str, ...]:
        return tuple(e["meta"]["name"] for e in self.expectations)


def expectations_dir(config: Config | None = None) -> Path:
    """``data.expectations_dir`` if set; else ``expectations/`` of the source tree, else the copy an
    installed wheel ships in ``<prefix>/share/recsys-lakehouse/expectations`` (a Databricks job)."""
    if config is not None and config.data.expectations_dir:
        return Path(config.data.expectations_dir)
    source_tree = project_root() / "expectations"
    if source_tree.is_dir():
        return source_tree
    return Path(sys.prefix) / "share" / "recsys-lakehouse" / "expectations"


def parse_suite(data: Mapping[str, Any], source: str = "<suite>") -> SuiteDefinition:
    """Validate one suite document; raises ``ConfigError`` naming the file and the problem."""
    meta = data.get("meta") or {}
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: suite has no name")
    dataset = meta.get("dataset")
    if dataset not in DATASETS:
        raise ConfigError(f"{source}: meta.dataset {dataset!r} is not one of {', '.join(DATASETS)}")
    expectations = data.get("expectations") or []
    seen: set[str] = set()
    for index, exp in enumerate(expectations):
        exp_name = (exp.get("meta") or {}).get("name")
        if not exp.get("type") or not isinstance(exp.get("kwargs"), dict) or not exp_name:
            raise ConfigError(f"{source}: expectation {index} needs type, kwargs and meta.name")
        if exp_name in seen:
            raise ConfigError(f"{source}: expectation name {exp_name!r} is used twice")
        seen.add(exp_name)
    return SuiteDefinition(name, bool(meta.get("critical", False)), dataset, tuple(expectations))


def load_suites(directory: Path | None = None, only: Sequence[str] | None = None) -> list[SuiteDefinition]:
    """Every ``*.json`` suite in ``directory`` (sorted by name), or only those named in ``only``."""
    directory = directory or expectations_dir()
    if not directory.is_dir():
        raise ConfigError(
            f"expectations folder {directory} does not exist", hint="set RECSYS_DATA__EXPECTATIONS_DIR"
        )
    suites = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from err
        suites.append(parse_suite(data, str(path)))
    if only:
        unknown = sorted(set(only) - {s.name for s in suites})
        if unknown:
            raise ConfigError(
                f"unknown suite(s) {', '.join(unknown)}",
                hint=f"suites in {directory}: {', '.join(s.name for s in suites)}",
            )
        suites = [s for s in suites if s.name in only]
    return suites


def to_gx_suite(definition: SuiteDefinition) -> Any:
    """The GX ``ExpectationSuite`` of a definition (GX imported lazily: it is heavy)."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return gx.ExpectationSuite(
        name=definition.name,
        expectations=[
            ExpectationConfiguration(
                type=e["type"], kwargs=dict(e["kwargs"]), meta=dict(e["meta"])
            ).to_domain_obj()
            for e in definition.expectations
        ],
        meta={"critical": definition.critical, "dataset": definition.dataset},
    )

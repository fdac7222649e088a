"""One typed configuration, chosen by environment.

Resolution order (later wins):

1. the profile's defaults in ``PROFILES`` (``local`` unless ``RECSYS_ENV`` says ``cluster``);
2. the profile's table in a TOML file (``RECSYS_CONFIG``, else ``recsys.toml`` in the project root),
   e.g. ``[cluster.kafka] bootstrap_servers = "broker-1:9092"``;
3. environment variables ``RECSYS_<FIELD>`` for top-level fields and ``RECSYS_<SECTION>__<FIELD>``
   for sections (``RECSYS_KAFKA__BOOTSTRAP_SERVERS``), plus the short forms in ``ENV_ALIASES``;
4. explicit ``overrides`` (tests, benchmarks).

Profiles are data, not branches in code: the jobs read the same fields in every environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from spark_jobs.common import names
from spark_jobs.common.errors import ConfigError

ENVIRONMENTS = ("local", "cluster")


@dataclass(frozen=True)
class KafkaSettings:
    """Where events come from. ``broker_*`` fields only matter for the local broker.

    An empty ``bootstrap_servers`` means the local broker: ``localhost:<broker_port>``.
    """

    bootstrap_servers: str = ""
    topic: str = names.TOPIC_EVENTS
    partitions: int = 4
    replication_factor: int = 1
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int = 200_000
    security_protocol: str = "PLAINTEXT"
    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap: str = "512m"


@dataclass(frozen=True)
class SparkSettings:
    """How sessions are built. ``master = ""`` leaves the master to spark-submit or the cluster."""

    master: str = "local[*]"
    app_name: str = "recsys"
    shuffle_partitions: int = 4
    driver_memory: str = "4g"
    # Resolve Delta and the Kafka connector from Maven Central; off where the platform ships them.
    resolve_packages: bool = True
    # "embedded": tables are registered by location at session start (no metastore process, so
    # any number of local sessions see them at once); "external": the platform's metastore holds them.
    catalog: str = "embedded"
    ui_enabled: bool = True
    log_level: str = "WARN"
    # Spark's own output (Ivy's resolution report, the JVM's WARN lines) goes to
    # <lakehouse>/_logs/<app>.log instead of the console when Python starts Spark itself;
    # `recsys --verbose` (or false here) shows it.
    quiet: bool = True
    # Port of the local Spark Thrift server (JDBC/ODBC, `recsys stack up --sql`), on localhost only.
    sql_port: int = 10000
    # Streaming sinks (ingest, scorer) compact the tables they append to every N micro-batches,
    # instead of Delta's auto compaction, which rewrites after nearly every small commit and sits
    # on the latency path. 0 = never (leave it to `recsys maintain --optimize`).
    stream_compact_every: int = 50
    # The local standalone cluster (`recsys stack up --spark`), on 127.0.0.1 only; jobs use it
    # with master = "spark://127.0.0.1:<cluster_port>". Its web UI (JSON status at /json/) is on
    # cluster_ui_port, the workers' UIs on the ports right after it; not 8080, Airflow's UI port.
    cluster_port: int = 7077
    cluster_ui_port: int = 8090
    cluster_workers: int = 2
    worker_cores: int = 1  # each worker's cores and memory are what executors can take from it
    worker_memory: str = "2g"


@dataclass(frozen=True)
class IngestSettings:
    """Validation limits and trigger of the ingest stream."""

    trigger_interval: str = "2 seconds"
    max_event_bytes: int = 16_384
    max_id_length: int = 128
    max_future_skew_hours: float = 24.0
    dedup_horizon_hours: int = 72


@dataclass(frozen=True)
class ServingSettings:
    """The streaming scorer: list size, business rules, A/B split and the trigger.

    ``challenger_share`` of users (by a stable hash of the user id) are served by the
    ``challenger`` models when they exist; ``mmr_lambda`` 1.0 is pure relevance, 0.0 pure
    diversity; hours are the user's local ``hour_of_day`` from the event context.
    """

    top_n: int = 10
    pool: int = 60  # ranked candidates the rules and MMR choose the top-N from
    mmr_lambda: float = 0.7
    max_per_category: int = 4
    max_impressions: int = 3  # an item shown this often without a positive reaction is dropped
    challenger_share: float = 0.2
    active_days: float = 30.0  # --once scores users with events in the last N days of data
    new_item_days: float = 14.0
    peak_hours: str = "7-9,17-21"  # inclusive ranges of local hours
    mobile_max_length_s: int = 600  # longer items are demoted on mobile at peak hours
    mobile_long_penalty: float = 0.5
    half_life_days: float = 90.0
    trigger_interval: str = "1 second"
    sources_refresh_batches: int = 30  # rebuild popularity/trend/neighbours every N batches
    chunk_users: int = 512
    max_history: int = 500  # (user, item) pairs kept per user in the scorer's state, most recent first
    max_seen_items: int = 5000  # items per user kept (as ids) so consumed ones are never served back
    state_buckets: int = 64  # the scorer stream's state groups: a few per core (fixed at its first start)


@dataclass(frozen=True)
class FeatureSettings:
    """Decay, window and trigger of the feature stream (``recsys.user_features`` / ``item_features``).

    Half-lives are in hours of event time. ``watermark`` is how far behind the newest event time
    an event may arrive before it counts as late; late events are still folded in (see
    ``spark_jobs.features``). CTR is smoothed as ``(clicks + prior_clicks) / (views + prior_views)``.
    """

    trigger_interval: str = "10 seconds"
    watermark: str = "1 hour"
    affinity_half_life_hours: float = 168.0
    popularity_half_life_hours: float = 168.0
    trending_half_life_hours: float = 6.0
    last_n: int = 20
    ctr_prior_clicks: float = 1.0
    ctr_prior_views: float = 20.0


@dataclass(frozen=True)
class MlflowSettings:
    """Tracking and registry. Empty URIs mean "derive from the lakehouse root" (SQLite + files)."""

    tracking_uri: str = ""
    artifact_root: str = ""
    experiment: str = "recsys"


@dataclass(frozen=True)
class DriftSettings:
    """What counts as drift, and which windows are compared by default.

    ``psi_threshold`` 0.2 is the conventional "significant shift"; ``js_threshold`` 0.1 bits is
    of the same order for the distributions we compare. ``ctr_drop_threshold``: relative drop of
    live CTR that counts as drift; ``ndcg_drop_threshold`` the same for the live nDCG@``ndcg_k``
    of the served lists (a rating counts as liked from ``positive_rating``). A window with fewer
    than ``min_events`` events is *skipped* (too little data to judge), never reported as drift.
    Without a reference window recorded with the champion, the reference is the
    ``reference_hours`` before the current window.
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


@dataclass(frozen=True)
class QualitySettings:
    """Parameters of the Great Expectations suites.

    ``window_hours``: how far back (by arrival) the silver suite looks; ``min_event_ts``: the
    earliest plausible event time (MovieLens starts in 1997). The serving suite's list length is
    ``serving.top_n`` and the future skew ``ingest.max_future_skew_hours``: one source each.
    """

    window_hours: float = 24.0
    min_event_ts: str = "1995-01-01T00:00:00+00:00"
    min_training_users: int = 2
    min_training_items: int = 2


@dataclass(frozen=True)
class DataSettings:
    """Folders of input data. Empty means the default beside the project.

    ``movielens_dir``: an unpacked MovieLens 100k (default ``../shared/data/ml-100k`` beside the
    clone; benchmarks and the quality figures read it). ``expectations_dir``: the suite files
    (default: the ``expectations`` folder shipped with the package).
    """

    movielens_dir: str = ""
    expectations_dir: str = ""


@dataclass(frozen=True)
class Config:
    """Everything a job needs to know about where things are. Immutable; build with ``load_config``."""

    env: str = "local"
    lakehouse_root: str = ""
    checkpoint_root: str = ""
    database: str = names.DATABASE
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    data: DataSettings = field(default_factory=DataSettings)

    @property
    def movielens_dir(self) -> Path:
        """``data.movielens_dir``, else ``../shared/data/ml-100k`` beside the project."""
        explicit = self.data.movielens_dir
        return Path(explicit) if explicit else project_root().parent / "shared" / "data" / "ml-100k"

    def table_path(self, table: str) -> str:
        """Storage location of a Delta table of ``names``."""
        return f"{self.lakehouse_root}/tables/{table}"

    def checkpoint(self, query: str) -> str:
        """Checkpoint folder of one streaming query; one per query, never shared."""
        return f"{self.checkpoint_root}/{query}"

    def table(self, table: str) -> str:
        """Qualified table name, ``recsys.events``."""
        return names.qualified(table, self.database)

    @property
    def stack_dir(self) -> Path:
        """State of the local stack (broker data, logs, pid files). Local profile only."""
        return Path(self.lakehouse_root) / "_stack"

    @property
    def warehouse_dir(self) -> str:
        return f"{self.lakehouse_root}/warehouse"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.lakehouse_root}/mlflow.db"

    @property
    def artifact_root(self) -> str:
        return self.mlflow.artifact_root or f"{self.lakehouse_root}/mlruns"


def project_root() -> Path:
    """The repository root when the package is installed in editable mode, else the cwd."""
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "setup.cfg").is_file() and (candidate / "spark_jobs").is_dir():
        return candidate
    return Path.cwd()


PROFILES: dict[str, dict[str, Any]] = {
    "local": {},
    "cluster": {
        # Clusters bring their own master, metastore and jars; the root is a cloud path.
        "spark": {
            "master": "",
            "shuffle_partitions": 200,
            "resolve_packages": False,
            "catalog": "external",
        },
        "kafka": {"partitions": 24, "replication_factor": 3, "max_offsets_per_trigger": 2_000_000},
        "ingest": {"trigger_interval": "10 seconds"},
        "serving": {"trigger_interval": "5 seconds", "chunk_users": 4096},
    },
}

ENV_ALIASES = {
    "RECSYS_HOME": ("lakehouse_root",),
    "RECSYS_KAFKA_BOOTSTRAP": ("kafka", "bootstrap_servers"),
    "RECSYS_SPARK_MASTER": ("spark", "master"),
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
}


def load_config(
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the configuration for ``env`` (default ``RECSYS_ENV`` or ``local``).

    ``overrides`` uses the TOML shape: ``{"kafka": {"topic": "t"}, "lakehouse_root": "/x"}``.
    Raises ``ConfigError`` naming the offending key and value.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get("RECSYS_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment {env!r}",
            hint=f"set RECSYS_ENV to one of {', '.join(ENVIRONMENTS)}",
        )
    layers: list[Mapping[str, Any]] = [
        PROFILES[env],
        _file_layer(env, environ),
        _env_layer(environ),
    ]
    if overrides:
        layers.append(overrides)
    merged: dict[str, Any] = {}
    for layer in layers:
        _deep_merge(merged, layer)
    merged["env"] = env
    config = _build(Config, merged, prefix="")
    return _with_derived_paths(config)


@cache
def get_config() -> Config:
    """The process-wide configuration from the environment (cached)."""
    return load_config()


def _with_derived_paths(config: Config) -> Config:
    root = config.lakehouse_root or str(project_root() / "lakehouse")
    if "://" not in root and not root.startswith("dbfs:"):
        root = str(Path(root).expanduser().resolve())
    checkpoints = config.checkpoint_root or f"{root}/_checkpoints"
    kafka = config.kafka
    if not kafka.bootstrap_servers:
        kafka = dataclasses.replace(kafka, bootstrap_servers=f"localhost:{kafka.broker_port}")
    return dataclasses.replace(config, lakehouse_root=root, checkpoint_root=checkpoints, kafka=kafka)


def _file_layer(env: str, environ: Mapping[str, str]) -> Mapping[str, Any]:
    explicit = environ.get("RECSYS_CONFIG")
    path = Path(explicit) if explicit else project_root() / "recsys.toml"
    if not path.is_file():
        if explicit:
            raise ConfigError(f"config file {path} does not exist", hint="fix or unset RECSYS_CONFIG")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    unknown = set(data) - set(ENVIRONMENTS)
    if unknown:
        raise ConfigError(
            f"config file {path} has unknown top-level tables {sorted(unknown)}",
            hint=f"put settings under [{'] or ['.join(ENVIRONMENTS)}]",
        )
    return data.get(env, {})


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key, raw in environ.items():
        if key in ENV_ALIASES:
            path = ENV_ALIASES[key]
        elif key.startswith("RECSYS_") and key not in ("RECSYS_ENV", "RECSYS_CONFIG"):
            path = tuple(part.lower() for part in key.removeprefix("RECSYS_").split("__"))
        else:
            continue
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = raw
    return layer


def _deep_merge(target: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping):
            _deep_merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"unknown config key(s) {sorted(prefix + k for k in unknown)} ({where})",
            hint=f"known keys there: {', '.join(sorted(known))}",
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {prefix}{name} must be a table of settings")
            kwargs[name] = _build(kind, value, prefix=f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, kind)
    built = cls(**kwargs)
    _validate(built, prefix)
    return built


def _coerce(key: str, value: Any, kind: Any) -> Any:
    if isinstance(kind, types.UnionType):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key} = {value!r} is not a valid {kind.__name__}") from None


def _validate(section: Any, prefix: str) -> None:
    """No negative numbers anywhere; then the checks of the section's own kind."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"config key {prefix}{f.name} = {value} must not be negative")
    check = _SECTION_CHECKS.get(type(section))
    if check is not None:
        check(section, prefix)


def _check_spark(section: SparkSettings, prefix: str) -> None:
    if section.catalog not in ("embedded", "external"):
        raise ConfigError(f"config key {prefix}catalog = {section.catalog!r}: use embedded or external")
    if section.cluster_workers < 1 or section.worker_cores < 1:
        raise ConfigError(f"config keys {prefix}cluster_workers and {prefix}worker_cores must be at least 1")
    if not re.fullmatch(r"[1-9][0-9]*[kmgt]", section.worker_memory.lower()):
        raise ConfigError(
            f"config key {prefix}worker_memory = {section.worker_memory!r}: use a size like 512m or 2g"
        )


def _check_serving(section: ServingSettings, prefix: str) -> None:
    for name in ("mmr_lambda", "challenger_share"):
        if not 0.0 <= getattr(section, name) <= 1.0:
            raise ConfigError(f"config key {prefix}{name} = {getattr(section, name)} must be in [0, 1]")
    if section.top_n < 1 or section.pool < section.top_n:
        raise ConfigError(f"config key {prefix}pool must be at least top_n (>= 1)")
    parse_hours(section.peak_hours, f"{prefix}peak_hours")


def _check_kafka(section: KafkaSettings, prefix: str) -> None:
    if section.partitions < 1:
        raise ConfigError(f"config key {prefix}partitions must be at least 1")


def _check_features(section: FeatureSettings, prefix: str) -> None:
    for name in ("affinity_half_life_hours", "popularity_half_life_hours", "trending_half_life_hours"):
        if getattr(section, name) <= 0:
            raise ConfigError(f"config key {prefix}{name} = {getattr(section, name)} must be positive")
    if section.last_n < 1 or section.ctr_prior_views <= 0:
        raise ConfigError(f"config keys {prefix}last_n and {prefix}ctr_prior_views must be positive")


def _check_quality(section: QualitySettings, prefix: str) -> None:
    try:
        datetime.fromisoformat(section.min_event_ts)
    except ValueError:
        raise ConfigError(
            f"config key {prefix}min_event_ts = {section.min_event_ts!r}: use an ISO-8601 time"
        ) from None


_SECTION_CHECKS: dict[type, Any] = {
    SparkSettings: _check_spark,
    ServingSettings: _check_serving,
    KafkaSettings: _check_kafka,
    FeatureSettings: _check_features,
    QualitySettings: _check_quality,
}


def parse_hours(text: str, key: str = "peak_hours") -> frozenset[int]:
    """``"7-9,17-21"`` -> {7, 8, 9, 17, ..., 21}; a clear ``ConfigError`` for anything else."""
    hours: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        try:
            start, end = int(low), int(high or low)
        except ValueError:
            raise ConfigError(f"config key {key} = {text!r}: use hour ranges like 7-9,17-21") from None
        if not 0 <= start <= end <= 23:
            raise ConfigError(f"config key {key} = {text!r}: hours are 0..23, ranges low-high")
        hours.update(range(start, end + 1))
    return frozenset(hours)

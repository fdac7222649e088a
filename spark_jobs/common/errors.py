"""Named errors. The CLI turns each into a one-line message plus a hint, never a traceback."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class RecsysError(Exception):
    """An error a user can act on: ``str(err)`` says what went wrong, ``hint`` what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(RecsysError):
    """A configuration value (file or environment) is missing or malformed."""

    exit_code = 2


class UsageError(RecsysError):
    """Command-line arguments that cannot work together or are out of range."""

    exit_code = 2


class JavaNotFoundError(RecsysError):
    """No usable Java runtime for Spark or Kafka."""


class BrokerUnavailableError(RecsysError):
    """The configured Kafka bootstrap servers do not answer."""


class StackError(RecsysError):
    """The local stack (broker processes, jars) could not be started or stopped."""


class DataFrameMissingColumnError(RecsysError):
    """A DataFrame handed to a transform lacks columns the transform needs."""

    exit_code = 2


def require_columns(df: Any, columns: Iterable[str], where: str) -> None:
    """Fail fast, naming what is missing, before Spark (or pandas) gives a less helpful error.

    ``df`` is a Spark or a pandas DataFrame: both list their ``columns``.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFrameMissingColumnError(f"{where}: missing column(s) {missing}; got {list(df.columns)}")

"""Wall-clock time for the I/O layer: jobs and sinks stamp rows with it; transforms never read it.

Every job that stamps rows (``updated_ts``, ``generated_at``) takes a ``Clock`` argument defaulting
to ``utc_now``, so a test pins time by passing its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)

"""Pacing of producers: a fixed rate, or event-time gaps compressed by a speed-up factor.

Time is read through a ``PacingClock`` so tests can run a paced replay without sleeping: a fake
clock whose ``sleep`` just advances ``monotonic``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")

# Below this lead (seconds) a producer does not sleep: sleeping is coarser than that anyway.
MIN_SLEEP_S = 0.002


class PacingClock(Protocol):
    """What pacing needs from time."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def pace_rate(items: Iterable[T], rate: float | None, clock: PacingClock | None = None) -> Iterator[T]:
    """Yield ``items`` at about ``rate`` per second (``None``: as fast as they come)."""
    if rate is None:
        yield from items
        return
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    clock = clock or SystemClock()
    started = clock.monotonic()
    for index, item in enumerate(items):
        _wait_until(clock, started + index / rate)
        yield item


def pace_event_time(
    items: Iterable[T],
    event_ms: Callable[[T], int],
    speedup: float | None,
    clock: PacingClock | None = None,
    origin_ms: int | None = None,
) -> Iterator[T]:
    """Yield ``items`` so that their event-time gaps, divided by ``speedup``, pass in real time.

    ``speedup=None`` means as fast as possible; ``speedup=60`` plays an hour of events in a
    minute. Event time ``origin_ms`` (default: the first item's) maps to the moment iteration
    starts, so time spent producing the first item is caught up rather than carried as lag.
    Items are expected in event-time order; one that is due already is yielded at once.
    """
    if speedup is None:
        yield from items
        return
    if speedup <= 0:
        raise ValueError(f"speedup must be > 0, got {speedup}")
    clock = clock or SystemClock()
    started = clock.monotonic()
    for item in items:
        ts = event_ms(item)
        if origin_ms is None:
            origin_ms = ts
        _wait_until(clock, started + (ts - origin_ms) / 1000.0 / speedup)
        yield item


def _wait_until(clock: PacingClock, target: float) -> None:
    lead = target - clock.monotonic()
    if lead > MIN_SLEEP_S:
        clock.sleep(lead)

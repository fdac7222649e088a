"""Pacing by rate and by compressed event time, on a fake clock (no real sleeping)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from spark_jobs.produce.pacing import pace_event_time, pace_rate

pytestmark = pytest.mark.unit


class FakeClock:
    """Advances only when asked to sleep, and records the sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_speedup_compresses_event_time_gaps_without_real_sleeping() -> None:
    stamps = [0, 0, 10_000, 10_500, 70_000]
    clock = FakeClock()
    out = list(pace_event_time(stamps, lambda ms: ms, speedup=10, clock=clock))
    assert out == stamps
    assert clock.sleeps == [1.0, 0.05, 5.95]
    assert clock.now == pytest.approx(107.0)


def test_no_speedup_means_no_sleeping() -> None:
    clock = FakeClock()
    assert list(pace_event_time([0, 10**9], lambda ms: ms, speedup=None, clock=clock)) == [0, 10**9]
    assert clock.sleeps == []


def test_rate_spaces_items_evenly() -> None:
    clock = FakeClock()
    assert list(pace_rate(range(5), rate=4, clock=clock)) == [0, 1, 2, 3, 4]
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25]


def test_rate_does_not_sleep_when_behind() -> None:
    clock = FakeClock()
    items = []
    for item in pace_rate(range(3), rate=1000, clock=clock):
        clock.now += 1.0  # the consumer is slower than the rate
        items.append(item)
    assert (items, clock.sleeps) == ([0, 1, 2], [])


@pytest.mark.parametrize("bad", [0, -1.0])
def test_non_positive_pacing_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        list(pace_rate([1], rate=bad))
    with pytest.raises(ValueError, match="must be > 0"):
        list(pace_event_time([1], lambda ms: ms, speedup=bad))


def test_origin_lets_a_slow_start_catch_up() -> None:
    """Items due at origin + 0.5s and + 2s, the first produced 1s late: no wait, then 1s."""
    clock = FakeClock()

    def slow_first() -> Iterator[int]:
        clock.now += 1.0
        yield 500
        yield 2000

    out = list(pace_event_time(slow_first(), lambda ms: ms, speedup=1, clock=clock, origin_ms=0))
    assert (out, clock.sleeps) == ([500, 2000], [1.0])

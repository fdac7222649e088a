"""Progress lines and end-of-command summaries, so long commands are never silent."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import TextIO


def step(message: str, stream: TextIO | None = None) -> None:
    """Announce a stage of work: ``==> message``."""
    print(f"==> {message}", file=stream or sys.stdout, flush=True)


def info(message: str, stream: TextIO | None = None) -> None:
    print(f"    {message}", file=stream or sys.stdout, flush=True)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain aligned text table (no dependency, stable for tests and logs)."""
    text_rows = [[_fmt(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in text_rows]
    return "\n".join(out)


# Where this process's Spark wrote its own output (set by ``common.spark`` when it started the JVM
# quietly); every summary names it, so Ivy's report and the JVM's warnings stay one look away.
spark_log: str | None = None


def summary(title: str, rows: Sequence[tuple[str, object]], next_steps: Sequence[str] = ()) -> str:
    """The one-screen summary every long command ends with; returns the text it printed."""
    if spark_log is not None:
        rows = [*rows, ("Spark's log", spark_log)]
    text = [f"\n{title}", render_table(("what", "value"), rows)]
    if next_steps:
        text.append("next:")
        text += [f"  {s}" for s in next_steps]
    rendered = "\n".join(text)
    print(rendered, flush=True)
    return rendered


class Progress:
    """Counts work and prints a rate line at most every ``every_s`` seconds."""

    def __init__(self, label: str, total: int | None = None, every_s: float = 2.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.count = 0
        self.started = time.monotonic()
        self._last = self.started

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._print(now)

    def done(self) -> float:
        """Print the final line and return the rate (items per second)."""
        now = time.monotonic()
        self._print(now)
        return self.rate(now)

    def rate(self, now: float | None = None) -> float:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        return self.count / elapsed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _print(self, now: float) -> None:
        of = f"/{self.total:,}" if self.total else ""
        info(f"{self.label}: {self.count:,}{of} ({self.rate(now):,.0f}/s)")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)

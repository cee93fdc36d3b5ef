"""A progress line for the sidecar queue while it drains: N of M images, the rate and an ETA."""

from __future__ import annotations

import time
from collections.abc import Callable


class DrainProgress:
    """Told before each extraction pass, then fed the images it handled and those still pending;
    says a line after the first pass, then at most every `every` seconds, and once when the queue
    is empty."""

    def __init__(self, every: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._start: float | None = None
        self._last = 0.0
        self._done = 0

    def before_pass(self) -> None:
        if self._start is None:
            self._start, self._done, self._last = self.clock(), 0, float("-inf")

    def step(self, handled: int, remaining: int) -> str | None:
        now = self.clock()
        if self._start is None or (handled == 0 and self._done == 0):
            self._start = None  # nothing was pending
            return None
        self._done += handled
        total = self._done + remaining
        elapsed = max(now - self._start, 1e-6)
        rate = self._done / elapsed
        if remaining == 0:
            self._start = None
            return f"sidecars: {total} of {total} images done in {_dur(elapsed)} ({rate:.2f} img/s)"
        if now - self._last < self.every:
            return None
        self._last = now
        eta = _dur(remaining / rate) if rate > 0 else "unknown"
        return f"sidecars: {self._done} of {total} images, {rate:.2f} img/s, ETA {eta}"


def _dur(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"

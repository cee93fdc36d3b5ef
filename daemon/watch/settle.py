"""Wait for files to stop changing, without a polling loop.

One thread sleeps on a condition until the earliest deadline, then posts FileSettled events.
With nothing pending it blocks indefinitely, so an idle daemon uses no CPU.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from pathlib import Path

from core.events import Event, FileSettled


class Settler:
    def __init__(self, out: queue.Queue[Event]) -> None:
        self.out = out
        self._heap: list[tuple[float, int, Path]] = []
        self._due: dict[Path, float] = {}
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="bestshot-settle", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def schedule(self, path: Path, delay: float) -> None:
        """(Re)arm `path` to settle after `delay` seconds; a later call replaces an earlier one."""
        due = time.monotonic() + delay
        with self._cond:
            self._due[path] = due
            heapq.heappush(self._heap, (due, next(self._counter), path))
            self._cond.notify()

    def cancel(self, path: Path) -> None:
        with self._cond:
            self._due.pop(path, None)

    def pending(self) -> set[Path]:
        with self._cond:
            return set(self._due)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        with self._cond:
            while not self._stop:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, path = self._heap[0]
                now = time.monotonic()
                if due > now:
                    self._cond.wait(timeout=due - now)
                    continue
                heapq.heappop(self._heap)
                if self._due.get(path) == due:
                    del self._due[path]
                    self.out.put(FileSettled(path))

"""One daemon (one writer) per root, and who holds it.

The holder writes one JSON line into `<root>/.bestshot.lock` (pid, since, command, mode) while it
holds an exclusive flock; `bestshot status` reads it without importing anything heavy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from core.errors import BestshotError

LOCK_NAME = ".bestshot.lock"
# `holder()` takes a shared lock for an instant to test the file; a daemon starting in that
# instant waits this long for it instead of failing.
_ACQUIRE_PATIENCE_S = 2.0


@dataclass(frozen=True)
class Holder:
    pid: int | None
    since: float | None
    command: str
    mode: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else "an unknown time"
        return f"pid {self.pid}, since {when} (`bestshot {self.command}`, mode {self.mode})"


class InstanceLock:
    """A second `run`, `scan` or `undo` on the same root fails clearly instead of racing."""

    def __init__(self, root: Path, command: str = "run", mode: str = "auto") -> None:
        self.path = root / LOCK_NAME
        self.command = command
        self.mode = mode
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        deadline = time.monotonic() + _ACQUIRE_PATIENCE_S
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as e:
                fh.seek(0)
                other = _parse(fh.read())
                if other is not None or time.monotonic() > deadline:
                    fh.close()
                    who = other.describe() if other else "another process"
                    raise BestshotError(self.path, f"root is in use by {who}; stop it first") from e
                time.sleep(0.05)  # a status probe holds the lock for an instant
        fh.seek(0)
        fh.truncate()
        doc = {"pid": os.getpid(), "since": time.time(), "command": self.command, "mode": self.mode}
        fh.write(json.dumps(doc) + "\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            # Emptied before unlocking: a stale line must never read as a live daemon.
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.flush()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def holder(root: Path) -> Holder | None:
    """Who holds this root's lock now; None when nobody does. Creates nothing."""
    try:
        fh = (root / LOCK_NAME).open("r", encoding="utf-8")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(fh.read()) or Holder(None, None, "?", "?")
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def _parse(text: str) -> Holder | None:
    text = text.strip()
    if not text:
        return None
    try:
        d = json.loads(text)
    except ValueError:
        return Holder(int(text), None, "?", "?") if text.isdigit() else None  # written by an older version
    if not isinstance(d, dict):
        return None
    return Holder(d.get("pid"), d.get("since"), str(d.get("command", "?")), str(d.get("mode", "?")))

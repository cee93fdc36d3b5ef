"""Write failures (a full disk, a read-only volume) made visible and retried.

When the disk is full the database cannot record that it is full. The daemon therefore keeps a
small file in the root, `.bestshot.health`, whose blocks are allocated while there is room and
later only overwritten in place, so it can still say "writes are failing" when nothing else can
be written; `bestshot status` reads it. Work that failed to write is kept in memory with its
original time and retried as soon as a write succeeds again (see Engine.retry_failed and
DecisionTracker.evaluate).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HEALTH_FILE = ".bestshot.health"
_SIZE = 4096
_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})
_SQLITE_PHRASES = ("database or disk is full", "disk i/o error", "attempt to write a readonly database")


def write_failure(e: BaseException) -> str | None:
    """The reason, when `e` (or what caused it) is the storage refusing a write; else None."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in _ERRNOS:
            return f"{cur.strerror or os.strerror(cur.errno or 0)} (errno {cur.errno})"
        if isinstance(cur, sqlite3.OperationalError) and any(p in str(cur).lower() for p in _SQLITE_PHRASES):
            return f"database: {cur}"
        orig = getattr(cur, "orig", None)  # sqlalchemy's DBAPIError wraps the driver's error
        cur = orig if isinstance(orig, BaseException) else (cur.__cause__ or cur.__context__)
    return None


class Health:
    """The daemon's view of whether writes work, mirrored into `<root>/.bestshot.health`."""

    def __init__(self, root: Path) -> None:
        self.path = root / HEALTH_FILE
        self.since: float | None = None
        self.reason: str | None = None
        self.failures = 0  # write failures seen by this process; a caller compares before/after
        try:
            if not self.path.exists() or self.path.stat().st_size < _SIZE:
                self._write({})
        except OSError as e:
            log.warning("cannot prepare %s (%s): a full disk will show only in the daemon's log", self.path, e)

    @property
    def failing(self) -> bool:
        return self.since is not None

    def failed(self, what: str, reason: str) -> None:
        self.failures += 1
        if self.since is None or reason != self.reason:
            if self.since is None:
                self.since = time.time()
                log.error("writes are failing (%s): %s; work is kept and retried", what, reason)
            self.reason = reason
            self._try_write({"write_failing_since": self.since, "what": what, "reason": reason})

    def recovered(self) -> None:
        if self.since is None:
            return
        log.warning("writes work again (they failed for %.0f s)", time.time() - self.since)
        self.since, self.reason = None, None
        self._try_write({})

    def _try_write(self, doc: dict[str, Any]) -> None:
        try:
            self._write(doc)
        except OSError as e:
            log.warning("cannot update %s: %s", self.path, e)

    def _write(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()[: _SIZE - 1].ljust(_SIZE - 1) + b"\n"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # In place, same length: no new blocks are needed once the file exists.
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)


def read_health(root: Path) -> dict[str, Any] | None:
    """What the daemon last wrote: {"write_failing_since", "what", "reason"} while writes fail."""
    try:
        text = (root / HEALTH_FILE).read_text(encoding="utf-8").strip()
        doc = json.loads(text) if text else {}
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("write_failing_since") else None


def note_write_failure(health: Health | None, what: str, e: BaseException) -> bool:
    """True (and the condition recorded) when `e` is a write failure the caller should retry."""
    reason = write_failure(e)
    if reason is None:
        return False
    if health is not None:
        health.failed(what, reason)
    else:
        log.error("%s: writes are failing: %s", what, reason)
    return True

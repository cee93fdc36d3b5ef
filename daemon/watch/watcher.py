"""watchdog → typed events on a queue. The observer thread does nothing else."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from core.events import DirChanged, Event, FileChanged, FileDeleted, FileMoved, LearnedFilesChanged

log = logging.getLogger(__name__)


def _p(raw: str | bytes) -> Path:
    # Non-UTF-8 names arrive as bytes on some platforms; keep them lossless via surrogateescape.
    return Path(raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw)


class _Handler(FileSystemEventHandler):
    def __init__(
        self, out: queue.Queue[Event], relevant: Callable[[Path], bool], learned: Callable[[Path], bool]
    ) -> None:
        self.out = out
        self.relevant = relevant
        self.learned = learned

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = _p(event.src_path)
        dst = _p(event.dest_path) if kind == "moved" else None
        if not event.is_directory and kind != "deleted":
            # Model files land by temp + rename: the final name (no leading dot) is what counts.
            final = dst if dst is not None else src
            if self.learned(final) and not final.name.startswith("."):
                self.out.put(LearnedFilesChanged(final))
                return
        # The database, logs and sidecars live under the root too; their churn must not wake the worker.
        if not self.relevant(src) and (dst is None or not self.relevant(dst)):
            return
        if isinstance(event, DirMovedEvent) and dst is not None and not self.relevant(dst):
            self.out.put(FileDeleted(src))  # a folder moved out of the watched areas: what was in it left
            return
        if isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            self.out.put(DirChanged(_p(event.dest_path) if kind == "moved" else src))
            return
        if event.is_directory:
            if kind == "deleted":
                self.out.put(FileDeleted(src))
            return
        if kind in ("created", "modified", "closed", "attrib"):  # attrib: tags (xattrs) changed
            self.out.put(FileChanged(src))
        elif kind == "moved":
            self.out.put(FileMoved(src, _p(event.dest_path)))
        elif kind == "deleted":
            self.out.put(FileDeleted(src))


def start_observer(
    root: Path,
    out: queue.Queue[Event],
    relevant: Callable[[Path], bool],
    learned: Callable[[Path], bool] = lambda _p: False,
) -> BaseObserver:
    """Watch `root` recursively; only events for which `relevant(path)` holds are queued, and a
    file written where `learned(path)` holds (the models folder) comes as LearnedFilesChanged."""
    observer = Observer()
    observer.schedule(_Handler(out, relevant, learned), str(root), recursive=True)
    observer.daemon = True
    observer.start()
    log.info("watching %s with %s", root, type(observer).__name__)
    return observer

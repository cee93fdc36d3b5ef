"""Build the shared context from a config: store (migrated), file ops, extractors."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from core.config import Config
from core.errors import BestshotError
from core.extractors.registry import build_extractors
from daemon.calibration import load_calibration
from daemon.context import Ctx
from daemon.fileops import FileOps
from daemon.store.db import open_store

FOLDERS = ("inbox", "raw", "approved", "to_crop", "cropped", "rejected", "review_queue", "sidecar", "labels",
           "models", "logs")


def ensure_layout(cfg: Config) -> None:
    for name in FOLDERS:
        cfg.path(name).mkdir(parents=True, exist_ok=True)
    (cfg.path("labels") / "sessions").mkdir(parents=True, exist_ok=True)
    (cfg.path("labels") / "crops").mkdir(parents=True, exist_ok=True)


def build_ctx(cfg: Config, *, with_extractors: bool = True) -> Ctx:
    ensure_layout(cfg)
    store = open_store(cfg.db_url)
    extractors = build_extractors(cfg.extractors, cfg.path("models"), cfg.anomaly, cfg.crop) if with_extractors else []
    ctx = Ctx(cfg=cfg, store=store, fileops=FileOps(store, cfg.root), extractors=extractors)
    load_calibration(ctx)  # the user's calibration of the anomaly cues, once one is learned
    return ctx


class InstanceLock:
    """One daemon (one writer) per root; a second `run` or `scan` fails clearly instead of racing."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".bestshot.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            fh.seek(0)
            other = fh.read().strip() or "another process"
            fh.close()
            raise BestshotError(self.path, f"root is in use by pid {other}; stop it first") from e
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

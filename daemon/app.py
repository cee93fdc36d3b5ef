"""Build the shared context from a config: store (migrated), file ops, extractors."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from core.anomaly.calibration import CalibratedScorer
from core.config import Config
from core.errors import BestshotError
from core.extractors.analysis import AnomaliesExtractor
from core.extractors.registry import build_extractors
from daemon.calibration import calibration_in_force
from daemon.context import Ctx
from daemon.fileops import FileOps
from daemon.hand_learning import hand_model_in_force
from daemon.store.db import open_store

FOLDERS = (
    "inbox",
    "raw",
    "approved",
    "to_crop",
    "cropped",
    "rejected",
    "review_queue",
    "sidecar",
    "labels",
    "models",
    "logs",
)


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
    _load_learned(ctx)
    return ctx


def _load_learned(ctx: Ctx) -> None:
    """What the daemon learned for the anomaly report, into the live extractor: the user's
    calibration of the cues and the hand model, once each exists."""
    ext = ctx.extractor("anomalies")
    if not isinstance(ext, AnomaliesExtractor):
        return
    with ctx.store.read() as conn:
        cal = calibration_in_force(ctx.cfg, conn)
        ext.scorer = CalibratedScorer(cal) if cal is not None else None
        ext.hand_model = hand_model_in_force(ctx.cfg, conn)


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

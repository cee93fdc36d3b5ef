"""Logging configuration: only the entry point calls this."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Config


def configure(cfg: Config | None, *, to_file: bool, verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else getattr(logging, cfg.logging.level if cfg else "INFO")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    root.addHandler(err)
    if to_file and cfg is not None:
        log_dir: Path = cfg.path("logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            log_dir / "bestshot.log",
            maxBytes=cfg.logging.file_max_bytes,
            backupCount=cfg.logging.file_backups,
            encoding="utf-8",
        )
        fh.setFormatter(fmt)
        root.addHandler(fh)
    for noisy in ("watchdog", "apscheduler", "PIL", "matplotlib", "urllib3", "filelock", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

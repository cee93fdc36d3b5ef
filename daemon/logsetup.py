"""Logging configuration: only the entry point calls this."""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Config

NATIVE_LOG = "native.log"


def configure(cfg: Config | None, *, to_file: bool, verbose: bool = False, service: bool = False) -> None:
    """`service`: started by launchd or systemd (`run --service`); stderr is then a file the
    service manager never rotates, so log records go to the rotated file only."""
    level = logging.DEBUG if verbose else getattr(logging, cfg.logging.level if cfg else "INFO")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_only = to_file and cfg is not None and service
    if not file_only:
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
    logging.getLogger("absl").setLevel(logging.ERROR)  # mediapipe's Python side


def divert_native_output(cfg: Config, *, service: bool = False) -> Path:
    """Send what C++ libraries write straight to file descriptor 2 (MediaPipe's and TensorFlow
    Lite's start-up and per-graph warnings, which ignore GLOG_minloglevel before absl is
    initialised) to `<root>/logs/native.log`; Python's own stderr keeps the terminal (or, under
    launchd, launchd's file). Call before `configure`, so the log handler writes to the terminal.
    """
    log_dir = cfg.path("logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    limit = cfg.logging.file_max_bytes
    target = log_dir / NATIVE_LOG
    if target.is_file() and target.stat().st_size > limit:
        target.replace(target.with_name(NATIVE_LOG + ".1"))  # one generation is plenty for noise
    st = os.fstat(2)
    if service and stat.S_ISREG(st.st_mode) and st.st_size > limit:
        # launchd's StandardErrorPath: opened for appending at every spawn and never rotated.
        os.ftruncate(2, 0)
    sys.stderr.flush()
    terminal = os.dup(2)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    return target

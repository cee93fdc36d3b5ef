"""The one way bestshot replaces a whole file: a crash or power loss leaves the old file or the new
one, never half of either.

Temp file in the same folder, written and fsynced, renamed over the target, then the folder
fsynced so the rename itself is durable. The temp name starts with a dot and ends in .tmp, so
the watcher and reconcile never take it for an image.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def user_file_mode() -> int:
    """The mode a plain `open(..., "w")` would give: 0666 less the user's umask (mkstemp gives 0600)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux says it without changing it (no window in which another thread sees 022)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # macOS: no read-only query; set and restore at once
    os.umask(mask)
    return mask


def mkstemp_user(path: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A temp file beside `path` for an atomic write, already carrying the user's file mode."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, user_file_mode())
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Replace `path` with `data`, or with what `data(file)` writes (e.g. a parquet writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp_user(path, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)

"""Model files as JSON objects: written atomically, read back with a typed error naming the file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from core.errors import BestshotError


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


def write_json_atomic(path: Path, obj: Any, indent: int | None = None) -> None:
    """Temp file in the same folder, then a rename: a crash never leaves half a file."""
    fd, tmp = mkstemp_user(path, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_object(path: Path, what: str, error: type[BestshotError]) -> dict[str, Any]:
    """The file's JSON object; `error(path, reason)` when it is unreadable, not JSON or not an object."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise error(path, f"cannot read {what}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise error(path, f"{what} is not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise error(path, f"{what} file is not a JSON object")
    return d

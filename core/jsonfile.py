"""Model files as JSON objects: written atomically, read back with a typed error naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.atomicfile import atomic_write
from core.errors import BestshotError


def write_json_atomic(path: Path, obj: Any, indent: int | None = None) -> None:
    atomic_write(path, json.dumps(obj, indent=indent).encode("utf-8"))


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

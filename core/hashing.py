"""Content identity: an image is its sha256.

Kept apart from core.imaging (which loads OpenCV and Pillow) so that the file operations, and
through them `bestshot status`, can check content without importing any image library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

"""Scan's read-ahead: the next few inbox files are read, hashed and decoded on a small thread
pool while the worker thread registers the current one.

The stages stay the single place that decides (daemon/ingest/register.py): they take a file's
prefetched bytes only while its size and mtime are still the ones the read saw, and its pixels
only for the same content; a decode error is raised by the decode stage as if it had decoded
there. Each file is still decoded once. Pillow, OpenCV, zlib and hashlib release the GIL for
the heavy part, so the threads overlap for real; nothing here touches the store.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from core.config import IngestSettings
from core.errors import BestshotError
from core.hashing import sha256_bytes
from core.imaging import DecodedImage, decode, read_bytes


@dataclass(frozen=True)
class Prefetched:
    size: int  # of the file as it was read (lstat just before)
    mtime_ns: int
    data: bytes
    sha256: str
    image: DecodedImage | None
    error: BestshotError | None  # what decoding these bytes raised


def prefetch(path: Path, ing: IngestSettings) -> Prefetched | None:
    """Read, hash and decode one file; None when it cannot even be read (its stages say why)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > ing.max_file_bytes:
            return None  # the stat stage refuses it
        data = read_bytes(path)
    except (OSError, BestshotError):
        return None
    sha = sha256_bytes(data)
    try:
        img = decode(path, data, max_pixels=ing.max_pixels, accept_formats=tuple(ing.accept_formats), sha256=sha)
    except BestshotError as e:
        return Prefetched(st.st_size, st.st_mtime_ns, data, sha, None, e)
    except Exception:  # not ours to judge: the decode stage decodes again and reports it
        return Prefetched(st.st_size, st.st_mtime_ns, data, sha, None, None)
    return Prefetched(st.st_size, st.st_mtime_ns, data, sha, img, None)


def each_prefetched(
    paths: Iterable[Path], ing: IngestSettings, workers: int, stop: Callable[[], bool]
) -> Iterable[tuple[Path, Prefetched | None]]:
    """The paths in order, each with its prefetched content; at most `workers + 1` files are read
    ahead (each holds its pixels until its turn)."""
    it = iter(paths)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bestshot-prefetch") as pool:
        ahead: deque[tuple[Path, Future[Prefetched | None]]] = deque()
        try:
            for p in it:
                ahead.append((p, pool.submit(prefetch, p, ing)))
                if len(ahead) > workers:
                    break
            while ahead:
                p, fut = ahead.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    ahead.append((nxt, pool.submit(prefetch, nxt, ing)))
                yield p, fut.result()
                if stop():
                    return
        finally:
            for _p, fut in ahead:
                fut.cancel()

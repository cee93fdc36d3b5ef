"""The one spelling of a folder that file-system events use.

FSEvents reports real paths: `/tmp/x` arrives as `/private/tmp/x`, a root reached through a
symlink arrives as its target, and on a case-insensitive volume a root typed `~/BestShot`
arrives as `~/bestshot` if that is how the folder is named on disk (APFS and HFS+ also ignore
Unicode normalization: typed NFC may be stored NFD). An event path that does not start with the
configured root is outside it, so the root is resolved to that spelling once, at config load.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def entry_named(name: str, entries: Iterable[str]) -> str | None:
    """The on-disk spelling of `name` among a folder's `entries`: itself when present exactly,
    else the one entry equal to it ignoring case and Unicode normalization, else None (none, or
    several: a case-sensitive volume with both spellings, where the typed one is meant)."""
    listed = list(entries)
    if name in listed:
        return name
    same = [e for e in listed if _fold(e) == _fold(name)]
    return same[0] if len(same) == 1 else None


def canonical_path(p: Path) -> Path:
    """`p` with `~`, `.`, `..` and symlinks resolved and each existing component spelled as on
    disk. Components that do not exist yet are kept as typed."""
    real = Path(os.path.realpath(p.expanduser()))
    out = Path(real.anchor)
    for i, part in enumerate(real.parts[1:], start=1):
        try:
            spelled = entry_named(part, os.listdir(out))
        except OSError:  # not a folder yet, or not listable (no permission): keep the rest as typed
            return out.joinpath(*real.parts[i:])
        if spelled is None or not os.path.lexists(out / part):
            return out.joinpath(*real.parts[i:])
        out = out / spelled
    return out

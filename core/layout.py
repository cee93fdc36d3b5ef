"""Where a path sits in the watched root: which area, which set folder, which tag subfolder."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from core.config import Config

AREAS = ("inbox", "raw", "approved", "to_crop", "cropped", "rejected", "review_queue")
DECISION_AREAS = ("approved", "to_crop", "cropped", "rejected")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
IGNORED_PREFIXES = (".", "~$", "._")  # dotfiles, Office temp files, AppleDouble
# The crop preview bestshot writes next to a proposed winner (raw/set_<id>/<stem>.crop-preview.jpg)
# is its own output, not an image of the user's: never ingested, tracked or taken for a crop.
PREVIEW_SUFFIX = ".crop-preview.jpg"


@dataclass(frozen=True)
class Place:
    area: str | None  # one of AREAS, or None when outside every watched area
    rel: Path  # path relative to the root
    subfolder: str | None  # first folder below the area (a set folder, or a tag like extra_fingers)


def area_roots(cfg: Config) -> dict[str, Path]:
    return {a: cfg.path(a) for a in AREAS}


@functools.lru_cache(maxsize=8)
def _areas_longest_first(root: Path, folders: tuple[str, ...]) -> tuple[tuple[str, Path], ...]:
    # Longest area path first, so exports/approved wins over a hypothetical exports area.
    bases = [(a, p if p.is_absolute() else root / p) for a, p in zip(AREAS, map(Path, folders), strict=True)]
    return tuple(sorted(bases, key=lambda kv: -len(kv[1].parts)))


def locate(cfg: Config, path: Path) -> Place:
    path = Path(path)
    try:
        rel = path.relative_to(cfg.root)
    except ValueError:
        return Place(None, path, None)
    # Worked out once per configuration: ingest locates every file it reads or moves.
    for area, base in _areas_longest_first(cfg.root, tuple(str(getattr(cfg.paths, a)) for a in AREAS)):
        try:
            below = path.relative_to(base)
        except ValueError:
            continue
        sub = below.parts[0] if len(below.parts) > 1 else None
        return Place(area, rel, sub)
    return Place(None, rel, None)


def is_image_name(name: str) -> bool:
    return (
        not name.startswith(IGNORED_PREFIXES)
        and Path(name).suffix.lower() in IMAGE_SUFFIXES
        and not name.endswith(PREVIEW_SUFFIX)
    )


def is_finder_leftover(name: str) -> bool:
    """Finder's own files: folder view state (.DS_Store) and AppleDouble (._name) on volumes
    without extended attributes. They never keep an emptied folder alive."""
    return name == ".DS_Store" or name.startswith("._")


def is_ignored_name(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES) or name.endswith((".tmp", ".part", ".crdownload", ".download"))


NAME_MAX = 255  # bytes in one file name (APFS, HFS+, ext4)


def fits_name(name: str) -> bool:
    """Whether a file may have this name: a valid long name plus a suffix may not."""
    return len(os.fsencode(name)) <= NAME_MAX


def fit_name(stem: str, tail: str) -> str:
    """`stem + tail`, the stem cut short (at a character boundary) so the name fits NAME_MAX."""
    room = NAME_MAX - len(os.fsencode(tail))
    raw = os.fsencode(stem)
    if len(raw) <= room:
        return stem + tail
    cut = raw[: max(room, 1)]
    if (raw[len(cut)] & 0xC0) == 0x80:  # the cut falls inside a multi-byte character: drop all of it
        while cut and (cut[-1] & 0xC0) == 0x80:
            cut = cut[:-1]
        cut = cut[:-1]
    return os.fsdecode(cut) + tail


_RAW_MARK = "%b:"


def to_db_path(rel: str) -> str:
    """A relative path as stored in the database (TEXT must be valid UTF-8).

    Names that are not valid UTF-8 reach Python with surrogate escapes; they are stored
    percent-encoded behind a marker so they round-trip exactly.
    """
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        from urllib.parse import quote_from_bytes

        return _RAW_MARK + quote_from_bytes(os.fsencode(rel), safe="/")


def from_db_path(stored: str) -> str:
    if stored.startswith(_RAW_MARK):
        from urllib.parse import unquote_to_bytes

        return os.fsdecode(unquote_to_bytes(stored[len(_RAW_MARK) :]))
    return stored

"""Anomaly tags: the byte formats of Finder and xdg tags, and tag subfolders.

- macOS keeps Finder tags in the extended attribute `com.apple.metadata:_kMDItemUserTags`:
  a binary property list holding an array of strings, each `name` or `name\\n<colour>` with
  colour 0-7 (none, grey, green, purple, blue, yellow, red, orange).
- Linux desktops (KDE Dolphin/Baloo, Caja) keep tags in `user.xdg.tags`: UTF-8, comma-separated.
  The de-facto convention has no escaping, so a tag containing a comma cannot be stored there;
  readers split on commas and trim spaces (KDE writes ", ").
- A folder below an export area is a tag too: `rejected/extra_fingers/img.png` is tagged
  `extra_fingers`.

Tags are kept exactly as the user spelled them (unknown ones included); only exact duplicates
are dropped.
"""

from __future__ import annotations

import plistlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from xml.parsers.expat import ExpatError

from core.errors import BestshotError

FINDER_COLOURS = ("none", "grey", "green", "purple", "blue", "yellow", "red", "orange")


class TagFormatError(BestshotError):
    """A tag attribute's bytes are not in the expected format, or a tag cannot be encoded."""

    kind = "tags"


@dataclass(frozen=True)
class FinderTag:
    name: str
    # 0-7 as in FINDER_COLOURS; None when the entry had no "\n<colour>" suffix (kept for round trips).
    colour: int | None = None

    def encode(self) -> str:
        return self.name if self.colour is None else f"{self.name}\n{self.colour}"

    @classmethod
    def decode(cls, entry: str) -> FinderTag:
        name, sep, colour = entry.rpartition("\n")
        if sep and colour.isdigit():
            return cls(name, int(colour))
        return cls(entry)


def unique(tags: Iterable[str]) -> tuple[str, ...]:
    """Drop empty strings and exact duplicates, keeping first-seen order."""
    return tuple(dict.fromkeys(t for t in tags if t))


def decode_mac_tags(data: bytes) -> list[FinderTag]:
    try:
        value = plistlib.loads(data)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, struct.error, ExpatError) as e:
        raise TagFormatError(None, f"Finder tags are not a property list: {e}") from e
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TagFormatError(None, f"Finder tags should be an array of strings, got {value!r:.200}")
    return [t for t in map(FinderTag.decode, value) if t.name]


def encode_mac_tags(tags: Iterable[FinderTag | str]) -> bytes:
    """Binary plist, as Finder writes it (plain strings get no colour suffix)."""
    entries: list[str] = []
    for tag in tags:
        t = FinderTag(tag) if isinstance(tag, str) else tag
        if not t.name or "\n" in t.name:
            raise TagFormatError(None, f"Finder tag names cannot be empty or contain a newline: {t.name!r}")
        if t.colour is not None and not 0 <= t.colour < len(FINDER_COLOURS):
            raise TagFormatError(None, f"Finder tag colour must be 0-7, got {t.colour}")
        entries.append(t.encode())
    return plistlib.dumps(entries, fmt=plistlib.FMT_BINARY)


def decode_xdg_tags(data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TagFormatError(None, f"user.xdg.tags is not UTF-8: {e}") from e
    return list(unique(part.strip() for part in text.replace("\x00", "").split(",")))


def encode_xdg_tags(tags: Iterable[str]) -> bytes:
    clean = unique(t.strip() for t in tags)
    bad = [t for t in clean if "," in t]
    if bad:
        raise TagFormatError(None, f"user.xdg.tags is comma-separated without escaping; cannot store {bad}")
    return ",".join(clean).encode("utf-8")


def subfolder_tags(path: PurePath, area_root: PurePath) -> tuple[str, ...]:
    """Folders between an export area and the file: rejected/bad_hands/extra_fingers/x.png ->
    ("bad_hands", "extra_fingers"). Empty when the file sits directly in the area (or outside it)."""
    try:
        rel = path.relative_to(area_root)
    except ValueError:
        return ()
    return unique(rel.parts[:-1])

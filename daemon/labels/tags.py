"""Read and write tags in files' extended attributes; never opens the file's content.

Attributes read (tags from all of them are merged, macOS first):
- macOS: `com.apple.metadata:_kMDItemUserTags` (Finder tags, binary plist) and `user.xdg.tags`;
- Linux: `user.xdg.tags`, and `user.com.apple.metadata:_kMDItemUserTags`, the name under which
  Linux tools keep the Finder attribute (Linux only allows names in a namespace such as `user.`).

Python's os.getxattr family exists on Linux only, so macOS goes through libc with ctypes.
Reading a file on a filesystem without extended attributes gives no tags (none can be there);
writing there raises XattrUnsupportedError. On platforms with neither API, reads give [] and
`xattr_support()` says why.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import TypeVar

from core.errors import BestshotError, FileOpError, UnreadableError, VanishedError
from core.labels.tags import (
    FinderTag,
    TagFormatError,
    decode_mac_tags,
    decode_xdg_tags,
    encode_mac_tags,
    encode_xdg_tags,
    unique,
)

T = TypeVar("T")

OWN_TAG_PREFIX = "bestshot:"  # bestshot's own proposal tags: never the user's labels
MAC_ATTR = "com.apple.metadata:_kMDItemUserTags"
LINUX_MAC_ATTR = "user." + MAC_ATTR
XDG_ATTR = "user.xdg.tags"

_NO_ATTR = {errno.ENODATA, getattr(errno, "ENOATTR", errno.ENODATA)}
_UNSUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP}


class XattrUnsupportedError(BestshotError):
    """The filesystem (or platform) refuses extended attributes, so tags cannot be stored."""

    kind = "xattr_unsupported"


def mac_attr_name(platform: str = sys.platform) -> str:
    """Where Finder tags live on this platform."""
    return MAC_ATTR if platform == "darwin" else LINUX_MAC_ATTR


@cache
def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    lib.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.getxattr.argtypes += [ctypes.c_uint32, ctypes.c_int]
    lib.getxattr.restype = ctypes.c_ssize_t
    lib.setxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.setxattr.argtypes += [ctypes.c_uint32, ctypes.c_int]
    lib.setxattr.restype = ctypes.c_int
    lib.removexattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.removexattr.restype = ctypes.c_int
    return lib


def _raise_errno(path: Path, name: str) -> None:
    e = ctypes.get_errno()
    raise OSError(e, f"{os.strerror(e)} ({name})", str(path))


def _darwin_get(path: Path, name: str) -> bytes:
    lib, p, n = _libc(), os.fsencode(path), name.encode()
    while True:
        size = lib.getxattr(p, n, None, 0, 0, 0)
        if size < 0:
            _raise_errno(path, name)
        buf = ctypes.create_string_buffer(max(size, 1))
        got = lib.getxattr(p, n, buf, size, 0, 0)
        if got >= 0:
            return buf.raw[:got]
        if ctypes.get_errno() != errno.ERANGE:  # ERANGE: it grew in between; ask again
            _raise_errno(path, name)


def _darwin_set(path: Path, name: str, value: bytes) -> None:
    if _libc().setxattr(os.fsencode(path), name.encode(), value, len(value), 0, 0) != 0:
        _raise_errno(path, name)


def _darwin_remove(path: Path, name: str) -> None:
    if _libc().removexattr(os.fsencode(path), name.encode(), 0) != 0:
        _raise_errno(path, name)


def xattr_support(platform: str = sys.platform) -> tuple[bool, str]:
    """(available, reason): whether this platform has an extended-attribute API at all."""
    if platform == "darwin" or hasattr(os, "getxattr"):
        return True, ""
    return False, f"no extended-attribute API on {platform}: Finder/xdg tags cannot be read (use tag subfolders)"


def _get(path: Path, name: str) -> bytes | None:
    """The attribute's bytes, or None when absent or when the filesystem has no xattrs."""
    try:
        if sys.platform == "darwin":
            return _darwin_get(path, name)
        if not hasattr(os, "getxattr"):
            return None
        return os.getxattr(path, name)
    except OSError as e:
        if e.errno in _NO_ATTR or e.errno in _UNSUPPORTED:
            return None
        if e.errno == errno.ENOENT:
            raise VanishedError(path, "file disappeared before its tags could be read") from e
        if e.errno in (errno.EACCES, errno.EPERM):
            raise UnreadableError(path, f"permission denied reading {name}") from e
        raise UnreadableError(path, f"cannot read {name}: {e.strerror or e}") from e


def _write_error(path: Path, name: str, e: OSError) -> BestshotError:
    if e.errno in _UNSUPPORTED:
        return XattrUnsupportedError(path, f"the filesystem refuses the extended attribute {name}: {e.strerror}")
    if e.errno == errno.ENOENT:
        return VanishedError(path, "file disappeared before its tags could be written")
    return FileOpError(path, f"cannot write {name}: {e.strerror or e}")


def _set(path: Path, name: str, value: bytes | None) -> None:
    """Set the attribute, or remove it when `value` is None (absent already is fine)."""
    if sys.platform != "darwin" and not hasattr(os, "setxattr"):
        raise XattrUnsupportedError(path, xattr_support()[1])
    try:
        if value is None:
            (_darwin_remove if sys.platform == "darwin" else os.removexattr)(path, name)
        elif sys.platform == "darwin":
            _darwin_set(path, name, value)
        else:
            os.setxattr(path, name, value)
    except OSError as e:
        if value is None and e.errno in _NO_ATTR:
            return
        raise _write_error(path, name, e) from e


def _read(path: Path, attr: str, decode: Callable[[bytes], list[T]]) -> list[T]:
    """The decoded attribute; [] when it is absent. Bad bytes raise TagFormatError naming `path`."""
    data = _get(path, attr)
    if data is None:
        return []
    try:
        return decode(data)
    except TagFormatError as e:
        raise TagFormatError(path, e.reason) from e


def read_finder_tags(path: Path, attr: str | None = None) -> list[FinderTag]:
    """Finder tags with their colours; [] when there are none. Raises TagFormatError on bad bytes."""
    return _read(path, attr or mac_attr_name(), decode_mac_tags)


def read_xdg_tags(path: Path) -> list[str]:
    return _read(path, XDG_ATTR, decode_xdg_tags)


def read_tags(path: Path) -> list[str]:
    """Tag names from every tag attribute of `path`, Finder's first, duplicates dropped."""
    return list(unique([t.name for t in read_finder_tags(path)] + read_xdg_tags(path)))


def write_finder_tags(path: Path, tags: Iterable[FinderTag | str], attr: str | None = None) -> None:
    """Replace the Finder tags (binary plist, Finder's own format); an empty list removes them."""
    items = list(tags)
    _set(path, attr or mac_attr_name(), encode_mac_tags(items) if items else None)


def write_xdg_tags(path: Path, tags: Iterable[str]) -> None:
    """Replace `user.xdg.tags`; an empty list removes it."""
    items = list(tags)
    _set(path, XDG_ATTR, encode_xdg_tags(items) if items else None)


def write_tags(path: Path, tags: Iterable[str]) -> None:
    """Write tags where this platform's file manager shows them: Finder on macOS, xdg elsewhere."""
    if sys.platform == "darwin":
        write_finder_tags(path, tags)
    else:
        write_xdg_tags(path, tags)


def replace_prefixed_tags(path: Path, prefix: str, wanted: Iterable[str], platform: str = sys.platform) -> None:
    """Set this program's own tags (those starting with `prefix`) and leave the user's exactly as
    they are, Finder colours included."""
    new = list(wanted)
    if platform == "darwin":
        kept_f = [t for t in read_finder_tags(path) if not t.name.startswith(prefix)]
        write_finder_tags(path, [*kept_f, *new])
    else:
        kept_x = [t for t in read_xdg_tags(path) if not t.startswith(prefix)]
        write_xdg_tags(path, [*kept_x, *new])


def remove_prefixed_tags(path: Path, prefix: str, platform: str = sys.platform) -> bool:
    """Take this program's own tags off `path`, the user's left exactly as they are; writes only
    when there was one. Returns whether any was removed."""
    tags = [t.name for t in read_finder_tags(path)] if platform == "darwin" else read_xdg_tags(path)
    if not any(t.startswith(prefix) for t in tags):
        return False
    replace_prefixed_tags(path, prefix, [], platform)
    return True

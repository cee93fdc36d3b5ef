"""Tags through real extended attributes on real files, in the real byte formats."""

from __future__ import annotations

import errno
import hashlib
import os
import plistlib
import sys
import uuid
from pathlib import Path

import pytest

from core.errors import VanishedError
from core.labels.tags import FinderTag, TagFormatError
from daemon.labels.tags import (
    MAC_ATTR,
    XDG_ATTR,
    XattrUnsupportedError,
    mac_attr_name,
    read_finder_tags,
    read_tags,
    read_xdg_tags,
    write_finder_tags,
    write_tags,
    write_xdg_tags,
)

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    sys.platform not in ("linux", "darwin"), reason="extended attributes are only wired for Linux and macOS"
)


def _raw_get(path: Path, name: str) -> bytes:
    if sys.platform == "darwin":
        from daemon.labels.tags import _darwin_get

        return _darwin_get(path, name)
    return os.getxattr(path, name)


def _supports_user_xattrs(folder: Path) -> bool:
    probe = folder / f".xattr-probe-{uuid.uuid4().hex}"
    probe.write_bytes(b"")
    try:
        if sys.platform == "darwin":
            return True
        os.setxattr(probe, "user.bestshot.probe", b"1")
        return True
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    finally:
        probe.unlink()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A PNG-named file in a folder whose filesystem takes user xattrs (tmp, else inside the repo)."""
    folder = tmp_path
    if not _supports_user_xattrs(folder):
        folder = REPO / ".pytest-xattr-tmp" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        if not _supports_user_xattrs(folder):
            pytest.skip(f"neither {tmp_path} nor {folder} supports user extended attributes")
    path = folder / "img_0001.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
    return path


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_finder_tags_round_trip_in_finder_format(image: Path) -> None:
    before = _fingerprint(image)
    write_finder_tags(image, [FinderTag("extra_fingers", 6), "bad hands", FinderTag("Très bien ✓", 0)])
    raw = _raw_get(image, mac_attr_name())
    assert raw.startswith(b"bplist00")
    assert plistlib.loads(raw) == ["extra_fingers\n6", "bad hands", "Très bien ✓\n0"]
    assert read_finder_tags(image) == [
        FinderTag("extra_fingers", 6),
        FinderTag("bad hands"),
        FinderTag("Très bien ✓", 0),
    ]
    assert read_tags(image) == ["extra_fingers", "bad hands", "Très bien ✓"]
    assert _fingerprint(image) == before  # content and mtime untouched


def test_finder_tags_written_as_finder_does_are_read(image: Path) -> None:
    # The exact bytes Finder stores: a binary plist array of "name\ncolour" strings.
    value = plistlib.dumps(["Red\n6", "extra_fingers\n0"], fmt=plistlib.FMT_BINARY)
    if sys.platform == "darwin":
        from daemon.labels.tags import _darwin_set

        _darwin_set(image, MAC_ATTR, value)
    else:
        os.setxattr(image, mac_attr_name(), value)
    assert read_tags(image) == ["Red", "extra_fingers"]


def test_xdg_tags_round_trip_and_merge_with_finder_tags(image: Path) -> None:
    before = _fingerprint(image)
    write_xdg_tags(image, ["missing_limb", "bad hands"])
    assert _raw_get(image, XDG_ATTR) == b"missing_limb,bad hands"
    assert read_xdg_tags(image) == ["missing_limb", "bad hands"]
    write_finder_tags(image, ["bad hands", "Purple"])
    assert read_tags(image) == ["bad hands", "Purple", "missing_limb"]
    assert _fingerprint(image) == before


def test_kde_written_xdg_tags_are_read(image: Path) -> None:
    if sys.platform == "darwin":
        pytest.skip("KDE writes user.xdg.tags on Linux")
    os.setxattr(image, XDG_ATTR, "extra_fingers, Ünknown".encode())
    assert read_tags(image) == ["extra_fingers", "Ünknown"]


def test_write_tags_uses_the_platforms_file_manager_attribute(image: Path) -> None:
    write_tags(image, ["extra_fingers"])
    attr = MAC_ATTR if sys.platform == "darwin" else XDG_ATTR
    assert _raw_get(image, attr)
    assert read_tags(image) == ["extra_fingers"]


def test_empty_list_removes_the_attribute_and_untagged_reads_empty(image: Path) -> None:
    assert read_tags(image) == []
    write_finder_tags(image, ["x"])
    write_xdg_tags(image, ["y"])
    write_finder_tags(image, [])
    write_xdg_tags(image, [])
    write_xdg_tags(image, [])  # removing what is absent is fine
    assert read_tags(image) == []
    if sys.platform != "darwin":
        assert not [n for n in os.listxattr(image) if "tags" in n.lower() or "Tags" in n]


def test_garbage_in_the_attribute_is_a_typed_error_naming_the_file(image: Path) -> None:
    if sys.platform == "darwin":
        from daemon.labels.tags import _darwin_set

        _darwin_set(image, MAC_ATTR, b"garbage")
    else:
        os.setxattr(image, mac_attr_name(), b"garbage")
    with pytest.raises(TagFormatError) as info:
        read_tags(image)
    assert info.value.path == image


def test_filesystem_refusal_is_a_clear_error(image: Path) -> None:
    if sys.platform == "darwin":
        pytest.skip("macOS accepts any attribute name; the refusal path is exercised on Linux")
    # Linux refuses attribute names outside its namespaces: a real refusal by the filesystem layer.
    with pytest.raises(XattrUnsupportedError) as info:
        write_finder_tags(image, ["x"], attr=MAC_ATTR)
    assert info.value.path == image and MAC_ATTR in info.value.reason
    # Reading such a name finds no tags rather than failing: none can exist there.
    assert read_finder_tags(image, attr=MAC_ATTR) == []


def test_vanished_file(tmp_path: Path) -> None:
    with pytest.raises(VanishedError):
        read_tags(tmp_path / "gone.png")


def test_replacing_own_tags_keeps_the_users_with_colours(tmp_path: Path) -> None:
    from core.labels.tags import FinderTag
    from daemon.labels.tags import (
        read_finder_tags,
        read_xdg_tags,
        replace_prefixed_tags,
        write_finder_tags,
        write_xdg_tags,
    )

    f = tmp_path / "img.png"
    f.write_bytes(b"pixels")
    write_xdg_tags(f, ["keep", "bestshot:winner"])
    replace_prefixed_tags(f, "bestshot:", ["bestshot:check"], platform="linux")
    assert read_xdg_tags(f) == ["keep", "bestshot:check"]
    write_finder_tags(f, [FinderTag("Red", 6), "bestshot:winner"])
    replace_prefixed_tags(f, "bestshot:", ["bestshot:crop"], platform="darwin")
    assert read_finder_tags(f) == [FinderTag("Red", 6), FinderTag("bestshot:crop", None)]
    assert f.read_bytes() == b"pixels"

"""Tag byte formats (Finder binary plist, xdg comma list) and tag subfolders, without files."""

from __future__ import annotations

import plistlib
from pathlib import PurePosixPath

import pytest

from core.labels.tags import (
    FinderTag,
    TagFormatError,
    decode_mac_tags,
    decode_xdg_tags,
    encode_mac_tags,
    encode_xdg_tags,
    subfolder_tags,
)


def test_finder_format_is_a_binary_plist_of_name_newline_colour() -> None:
    data = encode_mac_tags([FinderTag("Red", 6), "extra_fingers", FinderTag("hands", 0)])
    assert data.startswith(b"bplist00")
    assert plistlib.loads(data) == ["Red\n6", "extra_fingers", "hands\n0"]
    assert decode_mac_tags(data) == [FinderTag("Red", 6), FinderTag("extra_fingers"), FinderTag("hands", 0)]


def test_finder_tags_written_by_others_decode() -> None:
    # XML plists (older tools) and names that contain newlines without a colour are accepted.
    xml = plistlib.dumps(["Important\n4", "two\nlines", ""], fmt=plistlib.FMT_XML)
    assert decode_mac_tags(xml) == [FinderTag("Important", 4), FinderTag("two\nlines")]


@pytest.mark.parametrize(
    "data",
    [b"", b"not a plist", plistlib.dumps({"a": 1}, fmt=plistlib.FMT_BINARY), plistlib.dumps([1, "x"])],
)
def test_bad_finder_bytes_raise(data: bytes) -> None:
    with pytest.raises(TagFormatError):
        decode_mac_tags(data)


def test_finder_encoding_refuses_what_finder_cannot_show() -> None:
    with pytest.raises(TagFormatError):
        encode_mac_tags([FinderTag("x", 9)])
    with pytest.raises(TagFormatError):
        encode_mac_tags(["a\nb"])


def test_xdg_is_comma_separated_and_reads_kde_spacing() -> None:
    assert encode_xdg_tags(["bad hands", "extra_fingers", "bad hands"]) == b"bad hands,extra_fingers"
    assert decode_xdg_tags("bad hands, extra_fingers,,Ünknown ✓".encode()) == [
        "bad hands",
        "extra_fingers",
        "Ünknown ✓",
    ]
    assert decode_xdg_tags(b"") == []
    with pytest.raises(TagFormatError, match="comma"):
        encode_xdg_tags(["a,b"])
    with pytest.raises(TagFormatError, match="UTF-8"):
        decode_xdg_tags(b"\xff\xfe")


def test_subfolders_below_an_area_are_tags() -> None:
    area = PurePosixPath("/r/exports/rejected")
    assert subfolder_tags(area / "extra_fingers" / "x.png", area) == ("extra_fingers",)
    assert subfolder_tags(area / "hands" / "extra_fingers" / "x.png", area) == ("hands", "extra_fingers")
    assert subfolder_tags(area / "x.png", area) == ()
    assert subfolder_tags(PurePosixPath("/elsewhere/a/x.png"), area) == ()

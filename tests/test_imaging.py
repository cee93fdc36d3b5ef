from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import DecodeError, NotReadyError, TooLargeError, UnsupportedFormatError, VanishedError
from core.imaging import decode, load
from tests.helpers import textured, write_png


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_decodes_png_and_shares_views(tmp_path: Path) -> None:
    p = write_png(tmp_path / "a.png", textured(1), {"parameters": "hello"})
    img = load(p)
    assert (img.width, img.height, img.format) == (96, 128, "PNG")
    assert img.text["parameters"] == "hello"
    assert img.gray() is img.gray()
    small, scale = img.fit(64)
    assert small.shape[0] == 64 and scale == pytest.approx(0.5)
    assert img.fit(64)[0] is small
    assert not img.gray().flags.writeable


def test_empty_and_truncated_are_not_ready(tmp_path: Path) -> None:
    data = png_bytes(textured(2))
    with pytest.raises(NotReadyError, match="empty"):
        decode(tmp_path / "z.png", b"")
    with pytest.raises(NotReadyError, match="IEND"):
        decode(tmp_path / "t.png", data[: len(data) // 2])


def test_corrupt_but_complete_png_is_a_decode_error(tmp_path: Path) -> None:
    data = bytearray(png_bytes(textured(3)))
    mid = len(data) // 2
    data[mid : mid + 40] = b"\x00" * 40
    with pytest.raises(DecodeError):
        decode(tmp_path / "c.png", bytes(data))


def test_text_file_named_png(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match="not a PNG"):
        decode(tmp_path / "fake.png", b"hello, I am text\n")


def test_jpeg_accepted_or_refused_by_config(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(textured(4)).save(buf, format="JPEG")
    assert decode(tmp_path / "a.jpg", buf.getvalue()).format == "JPEG"
    with pytest.raises(UnsupportedFormatError, match="JPEG images are not accepted"):
        decode(tmp_path / "a.jpg", buf.getvalue(), accept_formats=("PNG",))


def test_pixel_limit(tmp_path: Path) -> None:
    data = png_bytes(np.zeros((300, 300, 3), np.uint8))
    with pytest.raises(TooLargeError, match="max_pixels"):
        decode(tmp_path / "big.png", data, max_pixels=10_000)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    assert decode(tmp_path / "a.png", buf.getvalue()).rgb[0, 0].tolist() == [255, 255, 255]


def test_vanished(tmp_path: Path) -> None:
    with pytest.raises(VanishedError):
        load(tmp_path / "nope.png")

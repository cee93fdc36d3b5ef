"""Read an image file once: its bytes give the identity (sha256) and the pixels.

Derived views (grey, resized copies) are memoised on the DecodedImage so that every
extractor of a pass shares one decode and one colour conversion.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from core.errors import (
    DecodeError,
    NotReadyError,
    TooLargeError,
    UnreadableError,
    UnsupportedFormatError,
    VanishedError,
)
from core.hashing import sha256_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
DEFAULT_MAX_PIXELS = 80_000_000


@dataclass(eq=False)
class DecodedImage:
    """One decoded image. `rgb` is HxWx3 uint8, C-contiguous, never modified in place."""

    sha256: str
    path: Path
    rgb: np.ndarray
    format: str
    text: Mapping[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    _views: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def _memo(self, key: Any, make: Callable[[], np.ndarray]) -> np.ndarray:
        view = self._views.get(key)
        if view is None:
            view = make()
            view.setflags(write=False)
            self._views[key] = view
        return view

    def gray(self) -> np.ndarray:
        return self._memo("gray", lambda: cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY))

    def fit(self, max_side: int) -> tuple[np.ndarray, float]:
        """RGB resized so its longer side is at most `max_side`; returns (pixels, scale new/orig)."""
        scale = min(1.0, max_side / max(self.width, self.height))
        if scale >= 1.0:
            return self.rgb, 1.0
        w, h = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        view = self._memo(("fit", max_side), lambda: cv2.resize(self.rgb, (w, h), interpolation=cv2.INTER_AREA))
        return view, scale

    def square(self, size: int) -> np.ndarray:
        """RGB resized (not cropped) to size x size, as fixed-input models want."""
        return self._memo(("square", size), lambda: cv2.resize(self.rgb, (size, size), interpolation=cv2.INTER_AREA))


def _check_complete(path: Path, data: bytes) -> str:
    """Return the container format, raising NotReadyError while the file is visibly incomplete."""
    if len(data) == 0:
        raise NotReadyError(path, "file is empty (0 bytes)")
    if data.startswith(PNG_SIGNATURE):
        if not data.endswith(PNG_IEND):
            raise NotReadyError(path, "PNG has no IEND chunk: truncated or still being written")
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
            raise NotReadyError(path, "JPEG has no end-of-image marker: truncated or still being written")
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            raise NotReadyError(path, f"WebP is {len(data)} bytes but declares {declared}: truncated")
        return "WEBP"
    raise UnsupportedFormatError(path, f"not a PNG, JPEG or WebP image (starts with {data[:8]!r})")


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise VanishedError(path, "file disappeared before it could be read") from e
    except PermissionError as e:
        raise UnreadableError(path, f"permission denied: {e.strerror}") from e
    except IsADirectoryError as e:
        raise UnreadableError(path, "is a directory") from e
    except OSError as e:
        raise UnreadableError(path, f"cannot read: {e.strerror or e}") from e


_decodes = 0
_decodes_lock = threading.Lock()  # scan decodes ahead on a few threads (daemon/ingest/prefetch.py)


def decodes_so_far() -> int:
    """Full decodes this process has done: what "each image is decoded once" is measured by."""
    return _decodes


def decode(
    path: Path,
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    accept_formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP"),
    sha256: str | None = None,
) -> DecodedImage:
    """Decode `data` (the whole file) completely. Never trusts the extension. `sha256`: the
    caller already hashed `data`."""
    fmt = _check_complete(path, data)
    if fmt not in accept_formats:
        raise UnsupportedFormatError(
            path, f"{fmt} images are not accepted (ingest.accept_formats = {list(accept_formats)})"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise TooLargeError(path, f"{w}x{h} = {w * h} pixels exceeds ingest.max_pixels = {max_pixels}")
            im.load()
    except TooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLargeError(path, f"decompression bomb refused: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DecodeError(path, f"{fmt} does not decode: {e}") from e
    text = {str(k): str(v) for k, v in getattr(im, "text", {}).items()} if fmt == "PNG" else {}
    rgb = _to_rgb8(im)
    global _decodes
    with _decodes_lock:
        _decodes += 1
    return DecodedImage(
        sha256=sha256 or sha256_bytes(data), path=path, rgb=rgb, format=fmt, text=text, size_bytes=len(data)
    )


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        # Generators emit straight alpha; composite on white so hidden RGB junk never reaches models.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    if im.mode in ("I;16", "I;16B", "I"):
        arr16 = np.asarray(im, dtype=np.uint32)
        arr = (arr16 >> 8).astype(np.uint8) if arr16.max() > 255 else arr16.astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def load(path: Path, **kwargs: Any) -> DecodedImage:
    return decode(path, read_bytes(path), **kwargs)

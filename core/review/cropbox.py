"""Crop boxes on the review page: the exact original aspect, whole pixels, inside the image.

An image of W x H reduces to a:b (g = gcd(W, H)); the exact crops are k*a x k*b for k = 1..g.
A box the user drags is snapped to the nearest such size (by width), then moved inside the
image. The page's script does the same arithmetic, so the box it shows is the box written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class IntBox:
    x: int
    y: int
    w: int
    h: int

    def to_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


class CropBoxError(ValueError):
    """A box that is not an exact-aspect, whole-pixel box inside the image; says why."""


def ratio(width: int, height: int) -> tuple[int, int, int]:
    """(a, b, g): the reduced ratio and how many exact sizes there are."""
    if width <= 0 or height <= 0:
        raise CropBoxError(f"image size {width}x{height} is not positive")
    g = math.gcd(width, height)
    return width // g, height // g, g


def snap(width: int, height: int, x: float, y: float, w: float, h: float) -> IntBox:
    """The exact-aspect box nearest to a dragged one: size by the mean of the two sides' wishes,
    centre kept where possible, then shifted inside the image."""
    a, b, g = ratio(width, height)
    wish = (w / a + h / b) / 2 if a and b else 1.0
    k = min(g, max(1, round(wish)))
    cw, ch = k * a, k * b
    cx, cy = x + w / 2, y + h / 2
    nx = min(max(round(cx - cw / 2), 0), width - cw)
    ny = min(max(round(cy - ch / 2), 0), height - ch)
    return IntBox(int(nx), int(ny), cw, ch)


def check(width: int, height: int, box: IntBox) -> IntBox:
    """`box` itself when it is an exact-aspect crop inside the image; CropBoxError otherwise."""
    a, b, _g = ratio(width, height)
    if box.w <= 0 or box.h <= 0:
        raise CropBoxError(f"box {box.w}x{box.h} is empty")
    if box.w * b != box.h * a or box.w % a:
        raise CropBoxError(f"box {box.w}x{box.h} does not keep the image's {a}:{b} aspect exactly")
    if box.x < 0 or box.y < 0 or box.x + box.w > width or box.y + box.h > height:
        raise CropBoxError(f"box {box.to_dict()} is not inside the {width}x{height} image")
    return box


def parse(width: int, height: int, data: object) -> IntBox:
    """A request's {"x","y","w","h"} (integers only) as a checked box."""
    if not isinstance(data, dict) or set(data) != {"x", "y", "w", "h"}:
        raise CropBoxError("crop box must be an object with exactly x, y, w, h")
    vals = [data[k] for k in ("x", "y", "w", "h")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise CropBoxError("crop box values must be whole pixels (integers)")
    return check(width, height, IntBox(*vals))

"""Small vector helpers shared by the hand and limb cues."""

from __future__ import annotations

import numpy as np

from core.sidecar_types import Box


def dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def bend_deg(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """How far the chain a->b->c turns at b: 0 when straight, 180 when it folds back."""
    u = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    v = np.asarray(c, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 0.0
    return float(np.degrees(np.arccos(np.clip(float(u @ v) / (nu * nv), -1.0, 1.0))))


def interior_deg(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Angle a-b-c at b (180 when straight)."""
    return 180.0 - bend_deg(a, b, c)


def points_box(pts: np.ndarray, pad_px: float, width: int, height: int) -> Box | None:
    """Bounding box of 2D points grown by `pad_px`, clipped to the image; None when outside it."""
    p = np.asarray(pts, dtype=np.float64)[:, :2]
    x0 = max(0.0, float(p[:, 0].min()) - pad_px)
    y0 = max(0.0, float(p[:, 1].min()) - pad_px)
    x1 = min(float(width), float(p[:, 0].max()) + pad_px)
    y1 = min(float(height), float(p[:, 1].max()) + pad_px)
    if x1 <= x0 or y1 <= y0:
        return None
    return Box(x0, y0, x1 - x0, y1 - y0)


def clip_box(box: Box, width: int, height: int) -> Box | None:
    x0, y0 = max(0.0, box.x), max(0.0, box.y)
    x1, y1 = min(float(width), box.x2), min(float(height), box.y2)
    if x1 <= x0 or y1 <= y0:
        return None
    return Box(x0, y0, x1 - x0, y1 - y0)


def inside_fraction(pts: np.ndarray, width: int, height: int) -> float:
    p = np.asarray(pts)[:, :2]
    ok = (p[:, 0] >= 0) & (p[:, 0] < width) & (p[:, 1] >= 0) & (p[:, 1] < height)
    return float(ok.mean()) if len(p) else 0.0

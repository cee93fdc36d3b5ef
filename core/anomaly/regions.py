"""Descriptors of hand and limb regions that exist without any learned embedding weights.

Each region gets one fixed-length vector, `APPEARANCE_DIM` appearance values then
`GEOMETRY_DIM` geometry values:

- appearance: the region's square crop at `CROP` px, grey: a histogram of oriented gradients
  (3x3 overlapping blocks of 2x2 cells, 9 orientations), plus colour and texture statistics
  (Lab mean and spread, log Laplacian variance, mean gradient magnitude). Generated hands that
  no landmark cue catches (fused or extra fingers, mushy knuckles) change these.
- geometry, hands: every finger segment over the palm scale, each finger's 2D bends and 3D
  flexions, adjacent fingertip gaps, the world landmarks' segment ratios and the image/world
  disagreement (core.anomaly.world), and the detector score. Limbs: segment length over the
  body scale, visibility and direction; the rest is zero.

They feed the learned region scorer (core.anomaly.hand_model), which uses a CLIP crop embedding
as well when one exists.
"""

from __future__ import annotations

import itertools
from typing import Final

import cv2
import numpy as np

from core.anomaly.geometry import bend_deg, dist
from core.anomaly.hands import palm_scale, points_3d
from core.anomaly.limbs import SEGMENTS, PoseView
from core.anomaly.world import palm_normal_angle_deg, proximal_over_palm
from core.sidecar_types import HAND_FINGERS, HAND_WRIST, Hand, Pose

DESCRIPTOR_VERSION: Final = 1
CROP: Final = 64
_HOG = cv2.HOGDescriptor((CROP, CROP), (32, 32), (16, 16), (16, 16), 9)
HOG_DIM: Final = int(_HOG.getDescriptorSize())
APPEARANCE_DIM: Final = HOG_DIM + 8
_FINGER_NAMES = tuple(HAND_FINGERS)
_LONG = ("index", "middle", "ring", "pinky")
# 15 segments, 10 bends, 12 flexions, 4 gaps, 15 world segments, 2 world checks, 1 score.
GEOMETRY_DIM: Final = 15 + 10 + 12 + 4 + 15 + 2 + 1
DIM: Final = APPEARANCE_DIM + GEOMETRY_DIM
# Hand crop margin on every side (fraction of the landmarks' longer side), as hand_clip's crop.
HAND_MARGIN: Final = 0.25
# A limb crop spans this many segment lengths around the segment's middle.
LIMB_SPAN: Final = 1.2
LIMB_MIN_VISIBILITY: Final = 0.5


def square_around(pts: np.ndarray, margin: float, width: int, height: int, min_side: int = 16) -> tuple[int, int, int]:
    """(x, y, side) of the square crop around 2D points, inside the image."""
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    want = max(float(max(x1 - x0, y1 - y0)) * (1 + 2 * margin), float(min_side))
    side = max(1, min(round(want), width, height))
    cx, cy = float(x0 + x1) / 2, float(y0 + y1) / 2
    x = min(max(round(cx - side / 2), 0), width - side)
    y = min(max(round(cy - side / 2), 0), height - side)
    return int(x), int(y), int(side)


def appearance(rgb: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    x, y, side = box
    crop = rgb[y : y + side, x : x + side]
    interp = cv2.INTER_AREA if side > CROP else cv2.INTER_LINEAR
    crop = cv2.resize(np.ascontiguousarray(crop), (CROP, CROP), interpolation=interp)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    hog = np.asarray(_HOG.compute(grey), dtype=np.float64).reshape(-1)
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64) / 255.0
    g = grey.astype(np.float64) / 255.0
    lap = cv2.Laplacian(g, cv2.CV_64F)
    gx, gy = cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1)
    stats = [
        *lab.mean(axis=0),
        *lab.std(axis=0),
        float(np.log(lap.var() + 1e-6)),
        float(np.hypot(gx, gy).mean()),
    ]
    return np.concatenate([hog, np.asarray(stats, dtype=np.float64)])


def hand_geometry(hand: Hand, width: int, world: np.ndarray | None) -> np.ndarray:
    p3 = points_3d(hand, width)
    p2 = p3[:, :2]
    scale = max(palm_scale(p3), 1e-6)
    seg: list[float] = []
    bends: list[float] = []
    for name in _FINGER_NAMES:
        a, b, c, t = HAND_FINGERS[name]
        seg += [dist(p2[a], p2[b]) / scale, dist(p2[b], p2[c]) / scale, dist(p2[c], p2[t]) / scale]
        bends += [bend_deg(p2[a], p2[b], p2[c]) / 180.0, bend_deg(p2[b], p2[c], p2[t]) / 180.0]
    flex: list[float] = []
    for name in _LONG:
        mcp, pip, dip, tip = HAND_FINGERS[name]
        flex += [
            bend_deg(p3[HAND_WRIST], p3[mcp], p3[pip]) / 180.0,
            bend_deg(p3[mcp], p3[pip], p3[dip]) / 180.0,
            bend_deg(p3[pip], p3[dip], p3[tip]) / 180.0,
        ]
    gaps = [dist(p2[HAND_FINGERS[f][3]], p2[HAND_FINGERS[g][3]]) / scale for f, g in itertools.pairwise(_FINGER_NAMES)]
    wseg = [0.0] * 15
    checks = [0.0, 0.0]
    if world is not None:
        wscale = max(dist(world[HAND_WRIST], world[9]), 1e-9)
        wseg = []
        for name in _FINGER_NAMES:
            a, b, c, t = HAND_FINGERS[name]
            wseg += [
                dist(world[a], world[b]) / wscale,
                dist(world[b], world[c]) / wscale,
                dist(world[c], world[t]) / wscale,
            ]
        r = proximal_over_palm(world)
        ang = palm_normal_angle_deg(p3, world)
        checks = [r if r is not None else 0.0, (ang / 180.0) if ang is not None else 0.0]
    out = np.asarray([*seg, *bends, *flex, *gaps, *wseg, *checks, hand.score], dtype=np.float64)
    return np.clip(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), -10.0, 10.0)


def hand_descriptor(rgb: np.ndarray, hand: Hand, world: np.ndarray | None) -> tuple[np.ndarray, tuple[int, int, int]]:
    h, w = rgb.shape[:2]
    box = square_around(hand.landmarks[:, :2], HAND_MARGIN, w, h)
    return np.concatenate([appearance(rgb, box), hand_geometry(hand, w, world)]), box


def limb_descriptors(
    rgb: np.ndarray, pose: Pose, index: int, body_scale: float | None
) -> list[tuple[str, np.ndarray, tuple[int, int, int]]]:
    """(source, descriptor, crop box) per limb segment of one pose with both ends visible."""
    h, w = rgb.shape[:2]
    v = PoseView(pose, w, h, LIMB_MIN_VISIBILITY)
    out: list[tuple[str, np.ndarray, tuple[int, int, int]]] = []
    for seg, sides in SEGMENTS.items():
        for side, (a, b) in zip(("left", "right"), sides, strict=True):
            if not v.ok(a, b):
                continue
            pa, pb = v.xy(a), v.xy(b)
            length = dist(pa, pb)
            if length < 4.0:
                continue
            mid = (pa + pb) / 2
            half = LIMB_SPAN * length / 2
            box = square_around(np.stack([mid - half, mid + half]), 0.0, w, h)
            d = (pb - pa) / length
            geo = np.zeros(GEOMETRY_DIM)
            geo[:4] = [
                length / body_scale if body_scale else 0.0,
                min(v.visibility(a), v.visibility(b)),
                float(d[0]),
                float(d[1]),
            ]
            out.append((f"pose:{index}:{side}_{seg}", np.concatenate([appearance(rgb, box), geo]), box))
    return out

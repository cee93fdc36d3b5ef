"""Is one detected hand anatomically possible? Measurements on MediaPipe's world landmarks.

The world head reads the hand in 3D (metres, camera-aligned, origin near the hand's centre), so
angles and lengths there are free of the image's foreshortening. A human hand has limits: a
finger joint bends backwards only a little (hyperextension), the phalanges keep roughly fixed
proportions, and two fingers cannot occupy the same space. These readings measure how far a hand
goes beyond those limits or away from a typical hand; they are image-level evidence for `core.anomaly.parts` (whose fit
decides whether they help), not cues that flag a region by themselves.

Sign convention, measured on the hands MediaPipe finds in generated images: with the lateral
axis from the index to the pinky knuckle (5 -> 17), a joint that bends towards the palm turns
its chain one way for a hand labelled "Left" (the subject's own left, after the hands extractor's
swap) and the other way for "Right", for about 90% of joints of either label.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from core.anomaly.geometry import dist
from core.sidecar_types import HAND_FINGERS, HAND_WRIST

_LONG: Final = ("index", "middle", "ring", "pinky")
_INDEX_MCP, _MIDDLE_MCP, _PINKY_MCP = 5, 9, 17
# How far each joint of a long finger can bend backwards (degrees) in a relaxed adult hand:
# metacarpophalangeal about 30-45, proximal interphalangeal almost none, distal up to about 20.
HYPEREXTENSION_LIMIT_DEG: Final = {"mcp": 45.0, "pip": 10.0, "dip": 25.0}
# Proportions between landmarks as MediaPipe's world head draws a typical hand: its landmark
# conventions are not the anatomist's (its middle phalanx comes out about as long as its proximal
# one, where bone lengths give 0.6), so the reference is its own reading. Rounded medians over the
# 195 hands it found in the 120 anatomy_dev images (no labels used), which agree with the shared
# real photos' few hands; a hand far from them in either direction is drawn unlike a hand.
REFERENCE_RATIOS: Final = {
    "middle_over_proximal": 0.93,  # long fingers, PIP->DIP over MCP->PIP
    "distal_over_proximal": 0.93,  # long fingers, DIP->tip over MCP->PIP
    "thumb_proximal_over_metacarpal": 1.07,  # thumb MCP->IP over CMC->MCP
    "thumb_distal_over_proximal": 0.88,  # thumb IP->tip over MCP->IP
    "middle_finger_over_palm": 0.91,  # middle MCP->tip over wrist->middle MCP
    "palm_width_over_length": 0.53,  # index MCP->pinky MCP over wrist->middle MCP
}
# Two long fingers that are not neighbours (index-ring, index-pinky, middle-pinky) can only meet
# by crossing over the finger between them: their bones' centre lines closer than this many palm
# lengths (about 7 mm on a 9 cm palm; a finger is about 16 mm thick) pass through each other.
# The thumb is left out: pinch grips bring it to any finger.
CROSSING_PALMS: Final = 0.08
_NON_ADJACENT: Final = (("index", "ring"), ("index", "pinky"), ("middle", "pinky"))


def signed_flexions(world: np.ndarray, handedness: str) -> dict[str, np.ndarray]:
    """Per long finger, the bend (degrees) at its MCP, PIP and DIP joints: positive towards the
    palm, negative backwards (hyperextension)."""
    lateral = world[_PINKY_MCP] - world[_INDEX_MCP]
    norm = float(np.linalg.norm(lateral))
    sign = 1.0 if handedness == "Left" else -1.0
    out: dict[str, np.ndarray] = {}
    for name in _LONG:
        mcp, pip, dip, tip = HAND_FINGERS[name]
        chain = (world[HAND_WRIST], world[mcp], world[pip], world[dip], world[tip])
        angles = []
        for a, b, c in zip(chain, chain[1:], chain[2:], strict=False):
            u, v = b - a, c - b
            cross = np.cross(u, v)
            ang = float(np.degrees(np.arctan2(np.linalg.norm(cross), float(u @ v))))
            direction = float(cross @ lateral) / norm if norm > 1e-12 else 0.0
            angles.append(ang if direction * sign >= 0 else -ang)
        out[name] = np.asarray(angles)
    return out


def hyperextension_deg(world: np.ndarray, handedness: str) -> float:
    """The largest backward bend of any long-finger joint beyond its limit (0 when none)."""
    worst = 0.0
    for flex in signed_flexions(world, handedness).values():
        for ang, limit in zip(flex, HYPEREXTENSION_LIMIT_DEG.values(), strict=True):
            worst = max(worst, -ang - limit)
    return worst


def proportions(world: np.ndarray) -> dict[str, float]:
    """The hand's own values of `REFERENCE_RATIOS` (long-finger ratios averaged over fingers);
    a ratio whose denominator has no length is left out."""
    palm = dist(world[HAND_WRIST], world[_MIDDLE_MCP])
    ratios: dict[str, list[float]] = {k: [] for k in REFERENCE_RATIOS}
    for name in _LONG:
        a, b, c, t = HAND_FINGERS[name]
        p1 = dist(world[a], world[b])
        if p1 > 1e-6:
            ratios["middle_over_proximal"].append(dist(world[b], world[c]) / p1)
            ratios["distal_over_proximal"].append(dist(world[c], world[t]) / p1)
    cmc, mcp, ip, tip = HAND_FINGERS["thumb"]
    meta, prox = dist(world[cmc], world[mcp]), dist(world[mcp], world[ip])
    if meta > 1e-6:
        ratios["thumb_proximal_over_metacarpal"].append(prox / meta)
    if prox > 1e-6:
        ratios["thumb_distal_over_proximal"].append(dist(world[ip], world[tip]) / prox)
    if palm > 1e-6:
        a, b, c, t = HAND_FINGERS["middle"]
        ratios["middle_finger_over_palm"].append(
            (dist(world[a], world[b]) + dist(world[b], world[c]) + dist(world[c], world[t])) / palm
        )
        ratios["palm_width_over_length"].append(dist(world[_INDEX_MCP], world[_PINKY_MCP]) / palm)
    return {k: float(np.mean(v)) for k, v in ratios.items() if v}


def proportion_deviation(world: np.ndarray) -> float:
    """The largest |log(ratio / human reference)| over the hand's proportions (0 when none)."""
    own = proportions(world)
    return max(
        (abs(float(np.log(v / REFERENCE_RATIOS[k]))) for k, v in own.items() if v > 0),
        default=0.0,
    )


def _segment_distance(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> float:
    """Closest distance between two 3D segments (sampled: exact enough at landmark scale)."""
    t = np.linspace(0.0, 1.0, 9)[:, None]
    a = p0 + t * (p1 - p0)
    b = q0 + t * (q1 - q0)
    return float(np.min(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)))


def finger_crossings(world: np.ndarray, limit_palms: float = CROSSING_PALMS) -> int:
    """Pairs of non-neighbouring long fingers whose phalanges pass through each other."""
    palm = dist(world[HAND_WRIST], world[_MIDDLE_MCP])
    if palm <= 1e-6:
        return 0
    count = 0
    for f, g in _NON_ADJACENT:
        pf, pg = HAND_FINGERS[f], HAND_FINGERS[g]
        near = min(
            _segment_distance(world[pf[k]], world[pf[k + 1]], world[pg[m]], world[pg[m + 1]])
            for k in range(3)
            for m in range(3)
        )
        count += near / palm < limit_palms
    return count

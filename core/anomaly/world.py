"""The hand network's two readings of one hand, checked against each other.

MediaPipe's hand landmark network has two output heads: image landmarks (x, y in pixels, z
relative depth) and world landmarks (3D, metres, camera-aligned axes, origin near the hand's
centre). On a hand it can read, the two agree: the same palm orientation, and a 3D skeleton
with every phalanx. On some malformed generated hands the 2D head still draws a tidy hand
while the 3D head collapses (fingers springing straight from the knuckles, no proximal
phalanx) or turns the palm the other way. Both mean the network has no consistent reading of
the hand, so its landmarks (and every geometric cue on them) cannot be trusted: the hand is
`uncertain` (`hand_low_confidence`), never clean.

Why not landmark stability under test-time augmentation (flip, 30-degree rotation, rescale,
re-detection in a crop)? Measured on the shared images (mean landmark shift in palm lengths):
the malformed hands that no cue catches moved 0.03-0.06 when flipped and 0.02-0.24 when
rotated, while the one detectable real hand (two clasped hands, GAIC 342407) moved 0.30 and
0.35-0.36, more than any generated hand, and was not re-detected in a crop at all. It would
cost a full inference per augmentation (25-70 ms per image here) and flag the wrong hands.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from core.anomaly.geometry import dist
from core.anomaly.model import Anomaly, evidence, excess_score
from core.anomaly.settings import UncertainSettings
from core.sidecar_types import HAND_FINGERS, HAND_WRIST, Box

# Landmarks: 5 = index MCP, 9 = middle MCP, 17 = pinky MCP.
_INDEX_MCP, _MIDDLE_MCP, _PINKY_MCP = 5, 9, 17
_LONG_FINGERS = ("index", "middle", "ring", "pinky")


def hand_world_from_payload(payload: dict[str, Any]) -> list[np.ndarray | None]:
    """One (21, 3) world-landmark array per hand of a hands sidecar, in the order of
    `hands_from_payload`; None for a hand without them (sidecars before hands version 2)."""
    out: list[np.ndarray | None] = []
    for h in payload.get("hands", []):
        w = h.get("world_landmarks")
        out.append(None if w is None else np.asarray(w, dtype=np.float64).reshape(21, 3))
    return out


def proximal_over_palm(world: np.ndarray) -> float | None:
    """Mean 3D proximal phalanx (MCP->PIP) of the four long fingers over the palm length
    (wrist->middle MCP); None when the palm has no length."""
    palm = dist(world[HAND_WRIST], world[_MIDDLE_MCP])
    if palm <= 1e-6:
        return None
    return float(np.mean([dist(world[HAND_FINGERS[f][0]], world[HAND_FINGERS[f][1]]) for f in _LONG_FINGERS]) / palm)


def palm_normal_angle_deg(image_pts: np.ndarray, world: np.ndarray) -> float | None:
    """Angle between the palm normals of the image reading (x, y, z in pixels) and the world
    reading; None when either palm is degenerate (its three points on a line)."""
    normals = []
    for p in (np.asarray(image_pts, dtype=np.float64), world):
        n = np.cross(p[_INDEX_MCP] - p[HAND_WRIST], p[_PINKY_MCP] - p[HAND_WRIST])
        norm = float(np.linalg.norm(n))
        if norm <= 1e-12:
            return None
        normals.append(n / norm)
    return float(np.degrees(np.arccos(np.clip(float(normals[0] @ normals[1]), -1.0, 1.0))))


def world_cues(image_pts: np.ndarray, world: np.ndarray, box: Box, source: str, s: UncertainSettings) -> list[Anomaly]:
    """`hand_low_confidence` regions where the two readings contradict each other.
    `image_pts` are the image landmarks with z in pixels (`core.anomaly.hands.points_3d`)."""
    out: list[Anomaly] = []
    r = proximal_over_palm(world)
    if r is not None and r < s.world_proximal_over_palm_min:
        out.append(
            Anomaly(
                "hand_low_confidence",
                box,
                excess_score(-r, -s.world_proximal_over_palm_min, 0.0),
                evidence("world_proximal_phalanx_over_palm", r, s.world_proximal_over_palm_min),
                source,
            )
        )
    ang = palm_normal_angle_deg(image_pts, world)
    if ang is not None and ang > s.heads_palm_normal_max_deg:
        out.append(
            Anomaly(
                "hand_low_confidence",
                box,
                excess_score(ang, s.heads_palm_normal_max_deg, 180.0),
                evidence("image_vs_world_palm_normal_deg", ang, s.heads_palm_normal_max_deg),
                source,
            )
        )
    if len(out) < 2:
        return out
    # One region per hand: the stronger contradiction, the other kept in its evidence.
    out.sort(key=lambda a: -a.score)
    return [dataclasses.replace(out[0], evidence={**out[0].evidence, "also": [a.evidence for a in out[1:]]})]

"""Geometry cues on one detected hand (21 MediaPipe landmarks).

The user's vocabulary has one finger tag, `extra_fingers`; every finger malformation maps to it
(wrong phalanx proportions, a joint folded past its range, two landmark fingers on one drawn
finger). The count itself is not observable: the landmark model always returns five fingers.
Oversized hands and fingers are `long_hand`; a hand not attached where the arm ends is
`limb_misaligned`; a hand bent off the forearm beyond a wrist's range is `warped_wrist`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.anomaly.geometry import bend_deg, dist, inside_fraction
from core.anomaly.model import Anomaly, evidence, excess_score
from core.anomaly.settings import AnomalySettings, HandCueSettings
from core.sidecar_types import HAND_FINGERS, HAND_WRIST, Box, Hand

FINGERS = ("index", "middle", "ring", "pinky")
ADJACENT = (("index", "middle"), ("middle", "ring"), ("ring", "pinky"))
_Add = Callable[[str, float, dict[str, Any]], None]


@dataclass(frozen=True)
class HandContext:
    """What the rest of the image says about one hand (None where unknown)."""

    face_width: float | None = None
    shoulder_width: float | None = None  # the person's body scale (shoulder-joint width estimate)
    pose_wrist: np.ndarray | None = None  # (2,) the pose wrist this hand was matched to
    pose_elbow: np.ndarray | None = None  # (2,) that arm's elbow, when visible
    side: str | None = None  # "left" | "right": which pose arm


def points_3d(hand: Hand, width: int) -> np.ndarray:
    """Landmarks with z in pixels: MediaPipe reports z on the scale of normalised x."""
    p = np.array(hand.landmarks, dtype=np.float64)
    p[:, 2] *= width
    return p


def palm_scale(pts: np.ndarray) -> float:
    """Palm length estimate robust to foreshortening along either palm axis.

    Wrist->middle MCP is the palm length; the MCP row is about 0.78 of it, wrist->pinky MCP about
    0.9. Taking the largest estimate survives a palm turned sideways or tilted away.
    """
    p = pts[:, :2]
    return max(
        dist(p[0], p[9]),
        dist(p[0], p[5]),
        dist(p[0], p[17]) / 0.9,
        dist(p[5], p[17]) / 0.78,
    )


def hand_cues(
    hand: Hand, index: int, ctx: HandContext, width: int, height: int, s: AnomalySettings, box: Box
) -> tuple[list[Anomaly], list[str]]:
    """Anomalies on this hand, plus notes on what could not be measured."""
    hs = s.hand
    src = f"hand:{index}"
    notes: list[str] = []
    out: list[Anomaly] = []
    p3 = points_3d(hand, width)
    p2 = p3[:, :2]
    scale = palm_scale(p3)
    if scale <= 1.0:
        return [], [f"{src}: degenerate landmarks (palm under 1 px), not measured"]

    def add(tag: str, score: float, ev: dict[str, Any]) -> None:
        out.append(Anomaly(tag, box, score, ev, src))

    outside = 1.0 - inside_fraction(p2, width, height)
    if outside > hs.max_outside_fraction:
        notes.append(f"{src}: {outside:.0%} of landmarks outside the frame; finger geometry not measured")
    else:
        _finger_cues(p2, p3, scale, hs, add)

    if ctx.face_width:
        r = scale / ctx.face_width
        if r > hs.palm_over_face_max:
            add(
                "long_hand",
                excess_score(r, hs.palm_over_face_max, 2 * hs.palm_over_face_max),
                evidence("palm_over_face_width", r, hs.palm_over_face_max, palm_px=scale),
            )
    if ctx.shoulder_width:
        r = scale / ctx.shoulder_width
        if r > hs.palm_over_shoulder_max:
            add(
                "long_hand",
                excess_score(r, hs.palm_over_shoulder_max, 2 * hs.palm_over_shoulder_max),
                evidence("palm_over_shoulder_width", r, hs.palm_over_shoulder_max, palm_px=scale),
            )
    if ctx.pose_wrist is not None:
        off = dist(p2[HAND_WRIST], ctx.pose_wrist) / scale
        if off > hs.wrist_offset_max_palms:
            add(
                "limb_misaligned",
                excess_score(off, hs.wrist_offset_max_palms, 3 * hs.wrist_offset_max_palms),
                evidence("hand_wrist_to_pose_wrist_palms", off, hs.wrist_offset_max_palms, side=ctx.side),
            )
        if ctx.pose_elbow is not None and dist(ctx.pose_elbow, ctx.pose_wrist) > scale * 0.5:
            # Forearm from the pose, hand direction from the hand's own wrist to middle MCP.
            ang = bend_deg(ctx.pose_elbow, ctx.pose_wrist, ctx.pose_wrist + (p2[9] - p2[HAND_WRIST]))
            if ang > hs.wrist_bend_max_deg:
                add(
                    "warped_wrist",
                    excess_score(ang, hs.wrist_bend_max_deg, 180.0),
                    evidence("wrist_bend_deg", ang, hs.wrist_bend_max_deg, side=ctx.side),
                )
    return out, notes


def _finger_cues(p2: np.ndarray, p3: np.ndarray, scale: float, hs: HandCueSettings, add: _Add) -> None:
    wrist = p3[HAND_WRIST]
    straight: dict[str, bool] = {}
    length2d: dict[str, float] = {}
    for name, (a, b, c, t) in HAND_FINGERS.items():
        s1, s2, s3 = dist(p2[a], p2[b]), dist(p2[b], p2[c]), dist(p2[c], p2[t])
        length2d[name] = s1 + s2 + s3
        bends = (bend_deg(p2[a], p2[b], p2[c]), bend_deg(p2[b], p2[c], p2[t]))
        straight[name] = max(bends) < hs.straight_max_bend_deg
        if not straight[name] or s1 < 0.12 * scale:
            continue  # curled or pointing at the camera: proportions are not observable
        if name == "thumb":
            r = max(s2, s3) / s1
            if r > hs.thumb_phalanx_over_metacarpal_max:
                add(
                    "extra_fingers",
                    excess_score(r, hs.thumb_phalanx_over_metacarpal_max, 2 * hs.thumb_phalanx_over_metacarpal_max),
                    evidence("thumb_phalanx_over_metacarpal", r, hs.thumb_phalanx_over_metacarpal_max, finger=name),
                )
            continue
        for label, val, thr in (
            ("middle_over_proximal_phalanx", s2 / s1, hs.middle_over_proximal_max),
            ("distal_over_proximal_phalanx", s3 / s1, hs.distal_over_proximal_max),
        ):
            if val > thr:
                add("extra_fingers", excess_score(val, thr, 2 * thr), evidence(label, val, thr, finger=name))
        r = length2d[name] / scale
        if r > hs.finger_over_palm_max:
            add(
                "long_hand",
                excess_score(r, hs.finger_over_palm_max, 1.6 * hs.finger_over_palm_max),
                evidence("finger_over_palm", r, hs.finger_over_palm_max, finger=name),
            )

    for name in FINGERS:
        mcp, pip, dip, tip = HAND_FINGERS[name]
        for joint, (a, b, c), limit in (
            ("mcp", (wrist, p3[mcp], p3[pip]), hs.mcp_flex_max_deg),
            ("pip", (p3[mcp], p3[pip], p3[dip]), hs.pip_flex_max_deg),
            ("dip", (p3[pip], p3[dip], p3[tip]), hs.dip_flex_max_deg),
        ):
            ang = bend_deg(a, b, c)
            if ang > limit:
                add(
                    "extra_fingers",
                    excess_score(ang, limit, 180.0),
                    evidence(f"{joint}_flexion_deg", ang, limit, finger=name),
                )

    for fa, fb in ADJACENT:
        _, _, dip_a, tip_a = HAND_FINGERS[fa]
        _, _, dip_b, tip_b = HAND_FINGERS[fb]
        flen = 0.5 * (length2d[fa] + length2d[fb])
        extended = all(
            dist(p2[HAND_FINGERS[f][3]], p2[HAND_WRIST]) > 1.3 * dist(p2[HAND_FINGERS[f][0]], p2[HAND_WRIST])
            for f in (fa, fb)
        )
        if not extended or flen < 0.3 * scale:
            continue
        gap = max(dist(p2[tip_a], p2[tip_b]), dist(p2[dip_a], p2[dip_b])) / flen
        if gap < hs.fused_finger_max_gap:
            add(
                "extra_fingers",
                excess_score(-gap, -hs.fused_finger_max_gap, 0.0),
                evidence("adjacent_finger_gap_over_length", gap, hs.fused_finger_max_gap, fingers=f"{fa}+{fb}"),
            )

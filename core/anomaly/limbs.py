"""Geometry cues on one pose (33 BlazePose landmarks): arms, legs and feet, in 2D.

Foreshortening only shortens a segment, so a segment longer than the body allows is real
evidence, while a short one is evidence only when its partner is seen at full length. Lengths
are in body scales (see `PoseView.body_scale`) against adult proportions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from core.anomaly.geometry import dist, interior_deg, points_box
from core.anomaly.model import Anomaly, evidence, excess_score
from core.anomaly.settings import AnomalySettings
from core.sidecar_types import POSE, Pose

_Add = Callable[[str, tuple[str, ...], float, dict[str, Any], str], None]

SEGMENTS = {
    "upper_arm": (("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow")),
    "forearm": (("left_elbow", "left_wrist"), ("right_elbow", "right_wrist")),
    "thigh": (("left_hip", "left_knee"), ("right_hip", "right_knee")),
    "shin": (("left_knee", "left_ankle"), ("right_knee", "right_ankle")),
}
# Adult segment lengths in shoulder-joint widths (joint centres about 35 cm apart).
EXPECTED = {"upper_arm": 0.85, "forearm": 0.7, "thigh": 1.15, "shin": 1.15}
# Shoulder-joint width is about 2.3 face-box widths; 2.2 keeps the estimate on the low side.
SHOULDERS_PER_FACE = 2.2


class PoseView:
    """Landmark access with visibility and in-frame checks."""

    def __init__(self, pose: Pose, width: int, height: int, min_visibility: float) -> None:
        self.p = np.asarray(pose.landmarks, dtype=np.float64)
        self.width, self.height = width, height
        self.min_visibility = min_visibility

    def ok(self, *names: str) -> bool:
        for n in names:
            x, y, _, v = self.p[POSE[n]]
            if v < self.min_visibility or not (0 <= x < self.width and 0 <= y < self.height):
                return False
        return True

    def xy(self, name: str) -> np.ndarray:
        return self.p[POSE[name], :2]

    def visibility(self, name: str) -> float:
        return float(self.p[POSE[name], 3])

    def body_scale(self, face_width: float | None = None) -> float | None:
        """Shoulder-joint width, robust to a turned body: the largest of the shoulder distance,
        0.75 torso lengths and 2.2 face widths (each shrinks under a different rotation)."""
        cands: list[float] = []
        if self.ok("left_shoulder", "right_shoulder"):
            cands.append(dist(self.xy("left_shoulder"), self.xy("right_shoulder")))
            if self.ok("left_hip", "right_hip"):
                mid_s = 0.5 * (self.xy("left_shoulder") + self.xy("right_shoulder"))
                mid_h = 0.5 * (self.xy("left_hip") + self.xy("right_hip"))
                cands.append(0.75 * dist(mid_s, mid_h))
        if face_width:
            cands.append(SHOULDERS_PER_FACE * face_width)
        s = max(cands, default=0.0)
        return s if s > 1.0 else None


def limb_cues(
    pose: Pose, index: int, width: int, height: int, s: AnomalySettings, face_width: float | None = None
) -> tuple[list[Anomaly], list[str]]:
    ls = s.limb
    v = PoseView(pose, width, height, ls.min_visibility)
    scale = v.body_scale(face_width)
    if scale is None or not v.ok("left_shoulder", "right_shoulder"):
        return [], [f"pose:{index}: shoulders not both visible in frame, limbs not measured"]
    if scale < ls.min_body_scale_frac * max(width, height):
        return [], [f"pose:{index}: person too small ({scale:.0f} px body scale), limbs not measured"]
    out: list[Anomaly] = []
    pad = s.limb_box_pad * scale
    min_seg = ls.min_segment_over_scale * scale

    def add(tag: str, names: tuple[str, ...], score: float, ev: dict[str, Any], part: str) -> None:
        box = points_box(np.stack([v.xy(n) for n in names]), pad, width, height)
        if box is not None:
            out.append(Anomaly(tag, box, score, dict(ev), f"pose:{index}:{part}"))

    for seg, (left, right) in SEGMENTS.items():
        if not v.ok(*left, *right):
            continue
        ll, lr = dist(v.xy(left[0]), v.xy(left[1])), dist(v.xy(right[0]), v.xy(right[1]))
        if max(ll, lr) < min_seg:
            continue
        r = max(ll, lr) / max(min(ll, lr), 1e-6)
        overlong = max(ll, lr) / (EXPECTED[seg] * scale)
        if r > ls.asymmetry_max and overlong > ls.overlong_min:
            longer, side = (left, "left") if ll > lr else (right, "right")
            add(
                "limb_misaligned",
                longer,
                excess_score(r, ls.asymmetry_max, 2 * ls.asymmetry_max),
                evidence(
                    f"{seg}_left_right_ratio", r, ls.asymmetry_max, longer_side=side, longer_over_expected=overlong
                ),
                f"{side}_{seg}",
            )

    for side in ("left", "right"):
        _arm_cues(v, side, scale, s, add)
        _leg_cues(v, side, scale, min_seg, s, add)
    return out, []


def _arm_cues(v: PoseView, side: str, scale: float, s: AnomalySettings, add: _Add) -> None:
    ls = s.limb
    sh, el, wr = f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist"
    if not v.ok(sh, el, wr):
        return
    upper, fore = dist(v.xy(sh), v.xy(el)), dist(v.xy(el), v.xy(wr))
    fore_full = EXPECTED["forearm"] * scale
    upper_full = EXPECTED["upper_arm"] * scale
    if fore >= ls.in_plane_min * fore_full and upper / fore < ls.upper_over_forearm_min:
        r = upper / fore
        add(
            "foreshortened_upper_arm",
            (sh, el),
            excess_score(-r, -ls.upper_over_forearm_min, 0.0),
            evidence("upper_arm_over_forearm", r, ls.upper_over_forearm_min, side=side),
            f"{side}_arm",
        )
    if fore >= fore_full and upper >= upper_full:
        ang = interior_deg(v.xy(sh), v.xy(el), v.xy(wr))
        if ang < ls.elbow_min_deg:
            add(
                "limb_misaligned",
                (sh, el, wr),
                excess_score(-ang, -ls.elbow_min_deg, 0.0),
                evidence("elbow_interior_deg", ang, ls.elbow_min_deg, side=side),
                f"{side}_arm",
            )


def _leg_cues(v: PoseView, side: str, scale: float, min_seg: float, s: AnomalySettings, add: _Add) -> None:
    ls = s.limb
    hip, knee, ankle = f"{side}_hip", f"{side}_knee", f"{side}_ankle"
    heel, toe = f"{side}_heel", f"{side}_foot_index"
    if not v.ok(knee, ankle, heel, toe):
        return
    shin = dist(v.xy(knee), v.xy(ankle))
    foot = v.xy(toe) - v.xy(heel)
    if v.ok(hip):
        d = v.xy(ankle) - v.xy(hip)
        n = np.array([-d[1], d[0]])
        thigh = dist(v.xy(hip), v.xy(knee))
        # Only a leg seen from the side tells flexion from hyperextension: the foot must point
        # across the hip-ankle line; a real knee only ever bends towards the toes.
        across = abs(float(foot @ n)) > 0.5 * float(np.linalg.norm(foot) * np.linalg.norm(n))
        if min(thigh, shin) >= min_seg and across:
            knee_side = float((v.xy(knee) - v.xy(hip)) @ n)
            bend = 180.0 - interior_deg(v.xy(hip), v.xy(knee), v.xy(ankle))
            if knee_side * float(foot @ n) < 0 and bend > ls.knee_hyperextension_max_deg:
                add(
                    "limb_misaligned",
                    (hip, knee, ankle),
                    excess_score(bend, ls.knee_hyperextension_max_deg, 3 * ls.knee_hyperextension_max_deg),
                    evidence("knee_hyperextension_deg", bend, ls.knee_hyperextension_max_deg, side=side),
                    f"{side}_leg",
                )
    if shin >= ls.in_plane_min * EXPECTED["shin"] * scale:
        r = float(np.linalg.norm(foot)) / shin
        if r > ls.foot_over_shin_max:
            add(
                "long_foot",
                (ankle, heel, toe),
                excess_score(r, ls.foot_over_shin_max, 2 * ls.foot_over_shin_max),
                evidence("foot_over_shin", r, ls.foot_over_shin_max, side=side),
                f"{side}_foot",
            )

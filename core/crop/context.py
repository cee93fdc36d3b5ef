"""Everything the objective needs about one image, as flat numpy arrays.

Built once per image from the sidecars; the search then scores thousands of windows against it
without touching Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from core.anomaly.model import PERSON_TAGS, AnomalyReport
from core.crop.settings import CropSettings
from core.sidecar_types import POSE, Box, Face, Pose, SubjectMask

JOINTS = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
HEAD_POINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Target:
    """A region the crop should leave out: an anomaly, or an uncertain hand."""

    id: int  # index in the report's list of its kind (anomalies or uncertain_regions)
    kind: str  # "anomaly" | "uncertain"
    tag: str
    source: str
    box: Box
    weight: float

    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "tag": self.tag, "source": self.source}


def _boxes(boxes: Sequence[Box]) -> np.ndarray:
    return np.array([[b.x, b.y, b.x2, b.y2] for b in boxes], dtype=np.float64).reshape(-1, 4)


@dataclass
class CropContext:
    width: int
    height: int
    sat: np.ndarray  # (mh+1, mw+1) summed-area table of the subject map
    sat_scale: float  # map pixels per original pixel
    sat_total: float
    targets: list[Target]
    t_box: np.ndarray  # (T, 4) x1, y1, x2, y2
    t_weight: np.ndarray  # (T,)
    t_is_anomaly: np.ndarray  # (T,) bool
    h_box: np.ndarray  # (F, 4) head boxes
    h_weight: np.ndarray  # (F,)
    h_primary: np.ndarray  # (F,) bool
    h_eyes: np.ndarray  # (F, 2, 2) eye points (nan when unknown)
    boxes: np.ndarray  # (T + F + E, 4) targets, heads, known eyes as 1 px boxes: one overlap pass
    e_weight: np.ndarray  # (E,) weight of each known eye (its head's weight)
    j_xy: np.ndarray  # (J, 2) joints
    j_margin: np.ndarray  # (J,)
    j_weight: np.ndarray  # (J,)
    body_span: np.ndarray  # (B, 2) top, bottom y of full-body people
    notes: list[str] = field(default_factory=list)


def build_context(
    width: int,
    height: int,
    report: AnomalyReport | None,
    faces: Sequence[Face],
    poses: Sequence[Pose],
    subject: SubjectMask | None,
    s: CropSettings,
) -> CropContext:
    notes: list[str] = []
    targets = _targets(report, width, height, s)
    heads, weights, primary, eyes = _heads(faces, poses, s, width, height)
    joints, margins, jw = _joints(poses, s)
    spans = _bodies(poses, height)
    if subject is not None and subject.mask.size and float(subject.mask.sum()) > 0:
        smap, scale = np.asarray(subject.mask, dtype=np.float32), float(subject.scale)
    else:
        why = "no subject mask sidecar" if subject is None else "subject mask is empty"
        notes.append(f"saliency: {why}; using a prior from faces, pose and hands")
        smap, scale = _prior(width, height, poses, heads, s.prior_side)
    sat = cv2.integral(np.ascontiguousarray(smap, dtype=np.float32), sdepth=cv2.CV_64F)
    t_box = _boxes([t.box for t in targets])
    eye_pts = eyes.reshape(-1, 2)
    with np.errstate(invalid="ignore"):  # nan marks an unknown eye
        known = (eye_pts[:, 0] >= 0) & (eye_pts[:, 0] < width) & (eye_pts[:, 1] >= 0) & (eye_pts[:, 1] < height)
    e_box = np.concatenate([eye_pts[known] - 0.5, eye_pts[known] + 0.5], axis=1)
    e_weight = np.repeat(weights, 2)[known]
    return CropContext(
        width,
        height,
        sat,
        scale,
        float(sat[-1, -1]),
        targets,
        t_box,
        np.array([t.weight for t in targets], dtype=np.float64),
        np.array([t.kind == "anomaly" for t in targets], dtype=bool),
        heads,
        weights,
        primary,
        eyes,
        np.concatenate([t_box, heads, e_box]).reshape(-1, 4),
        e_weight,
        joints,
        margins,
        jw,
        spans,
        notes,
    )


def _targets(report: AnomalyReport | None, width: int, height: int, s: CropSettings) -> list[Target]:
    if report is None:
        return []
    out: list[Target] = []
    items = [("anomaly", i, a, 1.0) for i, a in enumerate(report.anomalies)]
    if s.remove_uncertain:
        # A person nobody could check is routed to the user, not cut out of the picture.
        items += [
            ("uncertain", i, a, s.uncertain_weight)
            for i, a in enumerate(report.uncertain_regions)
            if a.tag not in PERSON_TAGS
        ]
    for kind, i, a, w in items:
        b = a.box
        x1, y1 = max(0.0, b.x), max(0.0, b.y)
        x2, y2 = min(float(width), b.x2), min(float(height), b.y2)
        if x2 - x1 < 0.5 or y2 - y1 < 0.5:
            continue  # outside the frame (or under half a pixel): nothing to crop away
        out.append(Target(i, kind, a.tag, a.source, Box(x1, y1, x2 - x1, y2 - y1), w * max(a.score, 0.05)))
    return out


def _pose_head(pose: Pose) -> tuple[np.ndarray, np.ndarray] | None:
    """Head box from pose face points when the face detector found none (face cut by the frame)."""
    lm = pose.landmarks
    idx = [POSE[n] for n in HEAD_POINTS]
    vis = lm[idx, 3] >= 0.5
    if vis.sum() < 3:
        return None
    pts = lm[idx][vis, :2]
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    size = max(x1 - x0, y1 - y0, 1.0)
    # Face points span eyes to mouth; a head is about 1.6x that around them.
    box = np.array([x0 - 0.3 * size, y0 - 0.5 * size, x1 + 0.3 * size, y1 + 0.4 * size])
    eyes = lm[[POSE["right_eye"], POSE["left_eye"]], :2].copy()
    eyes[lm[[POSE["right_eye"], POSE["left_eye"]], 3] < 0.5] = np.nan
    return box, eyes


def _heads(
    faces: Sequence[Face], poses: Sequence[Pose], s: CropSettings, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    boxes: list[np.ndarray] = []
    eyes: list[np.ndarray] = []
    for f in faces:
        b = f.box
        boxes.append(np.array([b.x, b.y - s.forehead_extend * b.h, b.x2, b.y2]))
        e = np.full((2, 2), np.nan)
        if len(f.keypoints) >= 2:
            e[:] = f.keypoints[:2]
        eyes.append(e)
    for p in poses:
        nose = p.landmarks[POSE["nose"], :2]
        covered = any(bx[0] <= nose[0] <= bx[2] and bx[1] <= nose[1] <= bx[3] for bx in boxes)
        got = None if covered else _pose_head(p)
        if got is not None:
            boxes.append(got[0])
            eyes.append(got[1])
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=bool), np.zeros((0, 2, 2))
    # Only the part inside the frame can be kept; the rest was cut by the original framing.
    hb = np.clip(np.stack(boxes), 0, [width, height, width, height])
    widths = hb[:, 2] - hb[:, 0]
    inside = (widths > 0.5) & (hb[:, 3] - hb[:, 1] > 0.5)
    hb, widths, eyes = hb[inside], widths[inside], [e for e, k in zip(eyes, inside, strict=True) if k]
    if not len(hb):
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=bool), np.zeros((0, 2, 2))
    rel = widths / widths.max()
    # Background faces matter less: weight falls with relative size squared.
    return hb, rel**2, rel >= s.primary_face_min_rel, np.stack(eyes)


def _joints(poses: Sequence[Pose], s: CropSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xy: list[np.ndarray] = []
    margin: list[float] = []
    weight: list[float] = []
    for p in poses:
        lm = p.landmarks
        ls, rs = lm[POSE["left_shoulder"]], lm[POSE["right_shoulder"]]
        scale = float(np.hypot(*(ls[:2] - rs[:2])))
        if ls[3] >= 0.5 and lm[POSE["left_hip"], 3] >= 0.5:
            scale = max(scale, 0.75 * float(np.hypot(*(ls[:2] - lm[POSE["left_hip"], :2]))))
        if scale <= 1.0:
            continue
        for j in JOINTS:
            for side in ("left", "right"):
                pt = lm[POSE[f"{side}_{j}"]]
                if pt[3] >= s.joint_min_visibility:
                    xy.append(pt[:2])
                    margin.append(s.joint_margin * scale)
                    weight.append(float(pt[3]))
    if not xy:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    return np.stack(xy), np.array(margin), np.array(weight)


def _bodies(poses: Sequence[Pose], height: int) -> np.ndarray:
    """Vertical extent of people shown head to foot (the 1/3 body-height rule applies to them)."""
    spans: list[tuple[float, float]] = []
    for p in poses:
        lm = p.landmarks
        nose = lm[POSE["nose"]]
        feet = [lm[POSE[n]] for n in ("left_ankle", "right_ankle", "left_heel", "right_heel")]
        feet = [f for f in feet if f[3] >= 0.5 and 0 <= f[1] < height]
        sh = [lm[POSE[n]] for n in ("left_shoulder", "right_shoulder") if lm[POSE[n], 3] >= 0.5]
        if nose[3] < 0.5 or not feet or not sh:
            continue
        neck = float(np.mean([q[1] for q in sh])) - float(nose[1])
        top = float(nose[1]) - 0.8 * max(neck, 1.0)  # crown is about 0.8 nose-to-shoulder above the nose
        bottom = max(float(f[1]) for f in feet)
        if bottom > top:
            spans.append((top, bottom))
    return np.array(spans, dtype=np.float64).reshape(-1, 2)


def _prior(width: int, height: int, poses: Sequence[Pose], heads: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """Coarse subject map: heads strongest, pose body hull next, a weak centre bias underneath."""
    scale = side / max(width, height)
    mw, mh = max(1, round(width * scale)), max(1, round(height * scale))
    yy, xx = np.mgrid[0:mh, 0:mw]
    m = 0.15 * np.exp(-(((xx - mw / 2) / (0.5 * mw)) ** 2 + ((yy - mh / 2) / (0.5 * mh)) ** 2))
    for p in poses:
        pts = p.landmarks[p.landmarks[:, 3] >= 0.5, :2] * scale
        if len(pts) >= 3:
            hull = cv2.convexHull(pts.astype(np.float32)).astype(np.int32)
            body = np.zeros((mh, mw), np.float32)
            cv2.fillConvexPoly(body, hull, (0.6,))
            m = np.maximum(m, cv2.GaussianBlur(body, (0, 0), max(1.0, 0.02 * side)))
    for hb in heads:
        x0, y0, x1, y1 = (hb * scale).round().astype(int)
        m[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 1.0
    return m.astype(np.float32), scale

"""Where each person is: body regions from faces, square crops around pose hands, and which
poses are the same person. Pure geometry, in original pixels; the pose and hands extractors
run their models on these regions, the anomaly cues report the people nobody could check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.sidecar_types import POSE, Box, Face, Pose

# A standing adult is about 7.5 face heights tall and, arms out, about 6 face widths wide; the
# region reaches a little above the head and covers a full body below it. Generous on purpose:
# the pose detector finds the person inside the region, a tight one cuts hands and feet off.
BODY_WIDTH_PER_FACE = 6.0
BODY_BELOW_PER_FACE = 8.5
BODY_ABOVE_PER_FACE = 1.0
# In a crowd the wide region shows a larger neighbour, whom the detector prefers; a region about
# as wide as the shoulders is tried next.
BODY_NARROW_WIDTH_PER_FACE = 3.0
# Pose landmarks used to tell two readings of one person apart from two people.
_ANCHORS = [POSE[n] for n in ("nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip")]
# Landmarks of one hand on the pose (wrist, pinky, index, thumb).
HAND_POINTS = {side: [POSE[f"{side}_{k}"] for k in ("wrist", "pinky", "index", "thumb")] for side in ("left", "right")}


@dataclass(frozen=True)
class Crop:
    """A square or rectangular window in original pixels (may reach outside the image)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    def pixels(self, rgb: np.ndarray) -> np.ndarray:
        """The window's pixels; parts outside the image are black (so a square stays square)."""
        h, w = rgb.shape[:2]
        out = np.zeros((self.h, self.w, 3), dtype=np.uint8)
        sx0, sy0, sx1, sy1 = max(0, self.x0), max(0, self.y0), min(w, self.x1), min(h, self.y1)
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - self.y0 : sy1 - self.y0, sx0 - self.x0 : sx1 - self.x0] = rgb[sy0:sy1, sx0:sx1]
        return out

    def to_image(self, xy_norm: np.ndarray) -> np.ndarray:
        """Window-normalised (x, y) rows to original pixels."""
        out = np.array(xy_norm, dtype=np.float64, copy=True)
        out[:, 0] = self.x0 + out[:, 0] * self.w
        out[:, 1] = self.y0 + out[:, 1] * self.h
        return out

    def box(self) -> Box:
        return Box(float(self.x0), float(self.y0), float(self.w), float(self.h))


def body_region(face: Box, width: int, height: int, width_per_face: float = BODY_WIDTH_PER_FACE) -> Crop:
    """Where the body of the person with this face can be, clipped to the image."""
    s = max(face.w, face.h)
    cx = face.x + face.w / 2
    x0 = max(0, int(cx - width_per_face * s / 2))
    x1 = min(width, int(np.ceil(cx + width_per_face * s / 2)))
    y0 = max(0, int(face.y - BODY_ABOVE_PER_FACE * s))
    y1 = min(height, int(np.ceil(face.y + face.h + BODY_BELOW_PER_FACE * s)))
    return Crop(x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))


def pose_has_face(pose: Pose, face: Face, min_visibility: float = 0.3) -> bool:
    """The pose's nose (or eyes) lie in the face box grown by half its size."""
    b = face.box
    pad = 0.5 * max(b.w, b.h)
    for name in ("nose", "left_eye", "right_eye"):
        x, y, v = pose.point(name)
        if v >= min_visibility and b.x - pad <= x <= b.x2 + pad and b.y - pad <= y <= b.y2 + pad:
            return True
    return False


def torso_scale(pose: Pose) -> float:
    lm = pose.landmarks
    sh = float(np.linalg.norm(lm[POSE["left_shoulder"], :2] - lm[POSE["right_shoulder"], :2]))
    mid_s = (lm[POSE["left_shoulder"], :2] + lm[POSE["right_shoulder"], :2]) / 2
    mid_h = (lm[POSE["left_hip"], :2] + lm[POSE["right_hip"], :2]) / 2
    return max(sh, 0.75 * float(np.linalg.norm(mid_s - mid_h)), 1.0)


def same_person(a: Pose, b: Pose, tolerance: float = 0.35) -> bool:
    """Two readings of one person: head, shoulders and hips within `tolerance` torso scales."""
    d = np.linalg.norm(a.landmarks[_ANCHORS, :2] - b.landmarks[_ANCHORS, :2], axis=1)
    return float(np.median(d)) <= tolerance * min(torso_scale(a), torso_scale(b))


def hand_window(pose: Pose, side: str, min_side: int = 32) -> Crop | None:
    """A square around the pose's hand points, about two hand lengths wide, or None when the
    pose gives no usable size (shoulders and elbow collapsed to a point)."""
    lm = pose.landmarks
    pts = lm[HAND_POINTS[side], :2]
    centre = pts.mean(axis=0)
    wrist = lm[POSE[f"{side}_wrist"], :2]
    elbow = lm[POSE[f"{side}_elbow"], :2]
    forearm = float(np.linalg.norm(wrist - elbow))
    shoulders = float(np.linalg.norm(lm[POSE["left_shoulder"], :2] - lm[POSE["right_shoulder"], :2]))
    # A hand is about 0.75 forearm (0.5 shoulder widths) long; foreshortening shrinks one of
    # the two, so the larger reading sizes the window.
    hand_len = max(0.75 * forearm, 0.5 * shoulders)
    side_px = max(2.2 * hand_len, float(min_side))
    if not np.isfinite(side_px) or hand_len <= 1.0:
        return None
    half = side_px / 2
    x0, y0 = round(float(centre[0]) - half), round(float(centre[1]) - half)
    n = round(side_px)
    return Crop(x0, y0, x0 + n, y0 + n)


def wrist_in_frame(pose: Pose, side: str, width: int, height: int) -> bool:
    x, y, _ = pose.point(f"{side}_wrist")
    return 0 <= x < width and 0 <= y < height


def face_of(pose: Pose, faces: Sequence[Face]) -> int | None:
    """The face this pose's head is on: among the faces it reaches (`pose_has_face`), the one
    whose centre is nearest its nose. One pose accounts for one face: two heads close together
    (a hug) are two people even when one pose's eyes reach both faces."""
    nose = pose.landmarks[POSE["nose"], :2]
    near = [i for i, f in enumerate(faces) if pose_has_face(pose, f)]

    def gap(i: int) -> float:
        b = faces[i].box
        return float(np.hypot(b.x + b.w / 2 - nose[0], b.y + b.h / 2 - nose[1]))

    return min(near, key=gap) if near else None


def unposed_faces(faces: Sequence[Face], poses: Sequence[Pose]) -> list[int]:
    """Indices of faces no pose accounts for."""
    posed = {face_of(p, faces) for p in poses}
    return [i for i in range(len(faces)) if i not in posed]


# Tiles for the people neither the frame pass nor a face found (faces turned away, too small for
# the face detector): half the image wide, at full height, overlapping by half, since people in
# group shots stand side by side.
TILE_WIDTH = 0.5
TILE_COUNT = 3
# A pose read in a tile counts only with its head and shoulders visible and away from the tile's
# border: a person cut by the tile is read better by another tile or not at all.
TILE_MIN_VISIBILITY = 0.5
TILE_BORDER = 0.05


def tiles(width: int, height: int) -> list[Crop]:
    tw = round(TILE_WIDTH * width)
    xs = np.linspace(0, width - tw, TILE_COUNT)
    return [Crop(int(x), 0, int(x) + tw, height) for x in xs]


def tile_accepts(pose: Pose, tile: Crop) -> bool:
    mx, my = TILE_BORDER * tile.w, TILE_BORDER * tile.h
    for name in ("nose", "left_shoulder", "right_shoulder"):
        x, y, v = pose.point(name)
        if v < TILE_MIN_VISIBILITY or not (tile.x0 + mx <= x <= tile.x1 - mx and tile.y0 + my <= y <= tile.y1 - my):
            return False
    return True


def nose_duplicate(a: Pose, b: Pose) -> bool:
    """One head read twice: noses within half the smaller shoulder width."""
    lm_a, lm_b = a.landmarks, b.landmarks
    sh = min(
        float(np.linalg.norm(lm[POSE["left_shoulder"], :2] - lm[POSE["right_shoulder"], :2])) for lm in (lm_a, lm_b)
    )
    return float(np.linalg.norm(lm_a[POSE["nose"], :2] - lm_b[POSE["nose"], :2])) < 0.5 * max(sh, 1.0)


def head_window(pose: Pose) -> Crop | None:
    """A square around the pose's head, about three head widths wide."""
    lm = pose.landmarks
    ears = float(np.linalg.norm(lm[POSE["left_ear"], :2] - lm[POSE["right_ear"], :2]))
    shoulders = float(np.linalg.norm(lm[POSE["left_shoulder"], :2] - lm[POSE["right_shoulder"], :2]))
    # A head is about 1.2 ear distances and half a shoulder width wide; a turned head shrinks one.
    head = max(1.2 * ears, 0.5 * shoulders)
    if not np.isfinite(head) or head < 4.0:
        return None
    cx, cy = lm[POSE["nose"], :2]
    half = 1.5 * head
    x0, y0 = round(float(cx) - half), round(float(cy) - half)
    n = max(round(2 * half), 16)
    return Crop(x0, y0, x0 + n, y0 + n)

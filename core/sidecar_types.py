"""Typed views of extractor outputs, shared by anomaly cues, crops and ranking.

All coordinates are in ORIGINAL image pixels (x right, y down). Payloads are the JSON
dicts extractors return and the store keeps; `from_payload` is the one parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# MediaPipe Pose landmark indices (33-point BlazePose topology).
POSE = {
    "nose": 0, "left_eye_inner": 1, "left_eye": 2, "left_eye_outer": 3, "right_eye_inner": 4,
    "right_eye": 5, "right_eye_outer": 6, "left_ear": 7, "right_ear": 8, "mouth_left": 9,
    "mouth_right": 10, "left_shoulder": 11, "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14,
    "left_wrist": 15, "right_wrist": 16, "left_pinky": 17, "right_pinky": 18, "left_index": 19,
    "right_index": 20, "left_thumb": 21, "right_thumb": 22, "left_hip": 23, "right_hip": 24,
    "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28, "left_heel": 29,
    "right_heel": 30, "left_foot_index": 31, "right_foot_index": 32,
}  # fmt: skip

# MediaPipe Hands landmark indices (21 points): wrist, then 4 per finger from base to tip.
HAND_WRIST = 0
HAND_FINGERS = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "pinky": (17, 18, 19, 20),
}


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    def to_dict(self) -> dict[str, float]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Box:
        return cls(float(d["x"]), float(d["y"]), float(d["w"]), float(d["h"]))

    def intersection(self, other: Box) -> float:
        return max(0.0, min(self.x2, other.x2) - max(self.x, other.x)) * max(
            0.0, min(self.y2, other.y2) - max(self.y, other.y)
        )

    def iou(self, other: Box) -> float:
        inter = self.intersection(other)
        union = self.w * self.h + other.w * other.h - inter
        return inter / union if union > 0 else 0.0

    @property
    def x2(self) -> float:
        return self.x + self.w

    @property
    def y2(self) -> float:
        return self.y + self.h


@dataclass(frozen=True)
class Hand:
    landmarks: np.ndarray  # (21, 3): x, y in pixels; z relative depth (MediaPipe units)
    handedness: str  # "Left" | "Right" as MediaPipe reports for a non-mirrored image
    score: float
    # Set when the hand was found in a crop around a pose's hand (hands version 3): the pose's
    # index in the pose sidecar and which of its hands ("left" | "right") was looked for.
    pose: int | None = None
    side: str | None = None

    def box(self, pad: float = 0.15) -> Box:
        return _pad_box(self.landmarks[:, :2], pad)


@dataclass(frozen=True)
class Pose:
    landmarks: np.ndarray  # (33, 4): x, y pixels, z, visibility in [0, 1]

    def point(self, name: str) -> tuple[float, float, float]:
        """(x, y, visibility) of a named landmark."""
        p = self.landmarks[POSE[name]]
        return float(p[0]), float(p[1]), float(p[3])


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    keypoints: np.ndarray  # (6, 2): right eye, left eye, nose tip, mouth, right ear, left ear


@dataclass(frozen=True)
class SubjectMask:
    mask: np.ndarray  # (h, w) float32 in [0, 1] at reduced resolution
    scale: float  # mask pixels per original pixel (mask = original * scale)


def _pad_box(pts: np.ndarray, pad: float) -> Box:
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    w, h = x1 - x0, y1 - y0
    return Box(float(x0 - pad * w), float(y0 - pad * h), float(w * (1 + 2 * pad)), float(h * (1 + 2 * pad)))


def hands_from_payload(payload: dict[str, Any]) -> list[Hand]:
    return [
        Hand(
            np.asarray(h["landmarks"], dtype=np.float64).reshape(21, 3),
            str(h["handedness"]),
            float(h["score"]),
            int(h["pose"]) if h.get("pose") is not None else None,
            str(h["side"]) if h.get("side") is not None else None,
        )
        for h in payload.get("hands", [])
    ]


def hands_to_payload(hands: list[Hand], width: int, height: int) -> dict[str, Any]:
    return {
        "image_size": [width, height],
        "hands": [
            {
                "landmarks": np.round(h.landmarks, 2).tolist(),
                "handedness": h.handedness,
                "score": round(h.score, 4),
                **({"pose": h.pose, "side": h.side} if h.pose is not None else {}),
            }
            for h in hands
        ],
    }


def poses_from_payload(payload: dict[str, Any]) -> list[Pose]:
    return [Pose(np.asarray(p["landmarks"], dtype=np.float64).reshape(33, 4)) for p in payload.get("poses", [])]


def poses_to_payload(poses: list[Pose], width: int, height: int) -> dict[str, Any]:
    return {"image_size": [width, height], "poses": [{"landmarks": np.round(p.landmarks, 3).tolist()} for p in poses]}


def faces_from_payload(payload: dict[str, Any]) -> list[Face]:
    return [
        Face(Box.from_dict(f["box"]), float(f["score"]), np.asarray(f["keypoints"], dtype=np.float64).reshape(-1, 2))
        for f in payload.get("faces", [])
    ]


def faces_to_payload(faces: list[Face], width: int, height: int) -> dict[str, Any]:
    return {
        "image_size": [width, height],
        "faces": [
            {"box": f.box.to_dict(), "score": round(f.score, 4), "keypoints": np.round(f.keypoints, 2).tolist()}
            for f in faces
        ],
    }

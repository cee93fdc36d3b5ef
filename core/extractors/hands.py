"""MediaPipe Hands in static-image mode: 21 landmarks per hand in original pixels.

Besides the image landmarks each hand carries the model's world landmarks (`world_landmarks`,
21 x 3 metres, camera-aligned, origin near the hand centre): a second head of the same network
that reads the hand in 3D. They come out of the same inference, so they cost nothing, and
`core.anomaly.world` checks the two readings against each other. The key is added next to the
existing ones, so `core.sidecar_types.hands_from_payload` reads version-2 payloads unchanged.

Pose-guided hands (version 3): the frame pass sees a group's small hands at a few dozen pixels,
below what the palm detector finds. For every pose hand (`pose` sidecar, one per person) with a
visible wrist and no hand found near it, a square about two hand lengths wide is cut from the
original pixels around the pose's wrist/pinky/index/thumb points, resized to `hand_crop_side`,
and read by a second Hands graph; the hand nearest the pose wrist is mapped back. Such a hand
records which person and side it was looked for (`pose`, `side`, `found: "pose_crop"`), which the
anomaly cues use to attach it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from core.extractors.base import Output, SidecarResult
from core.extractors.mp_base import MediaPipeExtractor, to_pixels
from core.imaging import DecodedImage
from core.persons import Crop, hand_window, wrist_in_frame
from core.sidecar_types import Box, Hand, Pose, hands_to_payload, poses_from_payload

# MediaPipe labels handedness as if the image were a mirrored selfie; generated images are not
# mirrored, so the label is swapped to name the subject's own hand.
_SWAP = {"Left": "Right", "Right": "Left"}


class HandsExtractor(MediaPipeExtractor):
    name = "hands"
    version = 3  # 2: per-hand `world_landmarks`; 3: pose-guided crops find each person's hands
    optional = ("pose",)
    outputs = (Output("json", file="hands/{sha}.keypoints.json"),)
    model_files = ("palm_detection/palm_detection_full.tflite", "hand_landmark/hand_landmark_full.tflite")

    def _build(self) -> list[Any]:
        from core.extractors.mp_import import import_mediapipe

        mp = import_mediapipe()

        def graph(max_hands: int) -> Any:
            return mp.solutions.hands.Hands(
                static_image_mode=True,
                max_num_hands=max_hands,
                model_complexity=1,
                min_detection_confidence=self.settings.hand_min_confidence,
            )

        # The crop graph keeps two: the person's other hand or a neighbour's may be in the crop.
        return [graph(self.settings.max_hands), graph(2)]

    def _detect(
        self, solutions: list[Any], view: np.ndarray, image: DecodedImage, dep: Mapping[str, SidecarResult]
    ) -> SidecarResult:
        w, h = image.width, image.height
        found = _read(solutions[0], view, Crop(0, 0, w, h), w)
        pose_result = dep.get("pose")
        poses = poses_from_payload(pose_result.payload) if pose_result is not None else []
        for j, pose in enumerate(poses):
            for side in ("left", "right"):
                got = self._pose_hand(solutions[1], image, pose, side, [f[0] for f in found])
                if got is not None:
                    hand, world = got
                    found.append((hand, world, {"pose": j, "side": side, "found": "pose_crop"}))
        payload = hands_to_payload([f[0] for f in found], w, h)
        for entry, (_, world, extra) in zip(payload["hands"], found, strict=True):
            if world is not None:
                entry["world_landmarks"] = world
            entry.update(extra)
        return SidecarResult(payload)

    def _pose_hand(
        self, graph: Any, image: DecodedImage, pose: Pose, side: str, hands: list[Hand]
    ) -> tuple[Hand, list[list[float]] | None] | None:
        """The hand at this pose wrist, read in a crop, when the wrist is visible and in frame
        and no hand found so far covers it."""
        x, y, vis = pose.point(f"{side}_wrist")
        if vis < self.settings.hand_crop_min_visibility or not wrist_in_frame(pose, side, image.width, image.height):
            return None
        window = hand_window(pose, side)
        if window is None:
            return None
        wrist = np.array([x, y])
        reach = 0.35 * window.w  # about one hand length from the pose wrist
        if any(_near(hd, wrist, reach) for hd in hands):
            return None
        pixels = window.pixels(image.rgb)
        n = self.settings.hand_crop_side
        interp = cv2.INTER_AREA if window.w > n else cv2.INTER_LINEAR
        got = _read(graph, cv2.resize(pixels, (n, n), interpolation=interp), window, image.width)
        near = [(float(np.linalg.norm(hd.landmarks[0, :2] - wrist)), hd, wl) for hd, wl, _ in got]
        near = [c for c in near if c[0] <= reach and not any(_overlaps(c[1], o) for o in hands)]
        if not near:
            return None
        _, hand, world = min(near, key=lambda c: c[0])
        return hand, world


def _read(
    graph: Any, rgb: np.ndarray, window: Crop, width: int
) -> list[tuple[Hand, list[list[float]] | None, dict[str, Any]]]:
    """Hands the graph finds in `rgb`, which shows `window` of the image, in image pixels."""
    res = graph.process(np.ascontiguousarray(rgb))
    lms_all = res.multi_hand_landmarks or []
    # The world list runs parallel to the image landmarks (same loop in the graph); a length
    # mismatch would pair hands wrongly, so then no hand gets world landmarks.
    worlds = res.multi_hand_world_landmarks or []
    paired = len(worlds) == len(lms_all)
    out: list[tuple[Hand, list[list[float]] | None, dict[str, Any]]] = []
    for k, (lms, handed) in enumerate(zip(lms_all, res.multi_handedness or [], strict=False)):
        cls = handed.classification[0]
        pts = to_pixels(lms, 1, 1)
        pts[:, :2] = window.to_image(pts[:, :2])
        # z comes on the scale of the window's width, as x does; the sidecar keeps the image's.
        pts[:, 2] *= window.w / max(width, 1)
        hand = Hand(pts, _SWAP.get(cls.label, cls.label), float(cls.score))
        out.append((hand, _world(worlds[k]) if paired else None, {}))
    return out


def _near(hand: Hand, point: np.ndarray, reach: float) -> bool:
    box = hand.box(0.25)
    inside = box.x <= point[0] <= box.x2 and box.y <= point[1] <= box.y2
    return inside or float(np.linalg.norm(hand.landmarks[0, :2] - point)) <= reach


def _overlaps(a: Hand, b: Hand, min_iou: float = 0.3) -> bool:
    return Box.iou(a.box(0.0), b.box(0.0)) > min_iou


def _world(landmarks: Any) -> list[list[float]]:
    # 0.1 mm resolution: far below the model's own error, and keeps the sidecar small.
    pts = np.array([[lm.x, lm.y, lm.z] for lm in landmarks.landmark], dtype=np.float64)
    return np.round(pts, 4).tolist()  # type: ignore[no-any-return]

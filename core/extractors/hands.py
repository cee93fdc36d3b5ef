"""MediaPipe Hands in static-image mode: 21 landmarks per hand in original pixels.

Besides the image landmarks each hand carries the model's world landmarks (`world_landmarks`,
21 x 3 metres, camera-aligned, origin near the hand centre): a second head of the same network
that reads the hand in 3D. They come out of the same inference, so they cost nothing, and
`core.anomaly.world` checks the two readings against each other. The key is added next to the
existing ones, so `core.sidecar_types.hands_from_payload` reads version-2 payloads unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.extractors.base import SidecarResult
from core.extractors.mp_base import MediaPipeExtractor, to_pixels
from core.imaging import DecodedImage
from core.sidecar_types import Hand, hands_to_payload

# MediaPipe labels handedness as if the image were a mirrored selfie; generated images are not
# mirrored, so the label is swapped to name the subject's own hand.
_SWAP = {"Left": "Right", "Right": "Left"}


class HandsExtractor(MediaPipeExtractor):
    name = "hands"
    version = 2  # 2: per-hand `world_landmarks`
    model_files = ("palm_detection/palm_detection_full.tflite", "hand_landmark/hand_landmark_full.tflite")

    def _build(self) -> list[Any]:
        import mediapipe as mp

        return [
            mp.solutions.hands.Hands(
                static_image_mode=True,
                max_num_hands=self.settings.max_hands,
                model_complexity=1,
                min_detection_confidence=self.settings.hand_min_confidence,
            )
        ]

    def _detect(self, solutions: list[Any], view: np.ndarray, image: DecodedImage) -> SidecarResult:
        res = solutions[0].process(view)
        hands: list[Hand] = []
        world: list[list[list[float]] | None] = []
        lms_all = res.multi_hand_landmarks or []
        # The world list runs parallel to the image landmarks (same loop in the graph); a length
        # mismatch would pair hands wrongly, so then no hand gets world landmarks.
        worlds = res.multi_hand_world_landmarks or []
        paired = len(worlds) == len(lms_all)
        for k, (lms, handed) in enumerate(zip(lms_all, res.multi_handedness or [], strict=False)):
            cls = handed.classification[0]
            hands.append(
                Hand(to_pixels(lms, image.width, image.height), _SWAP.get(cls.label, cls.label), float(cls.score))
            )
            world.append(_world(worlds[k]) if paired else None)
        payload = hands_to_payload(hands, image.width, image.height)
        for entry, w in zip(payload["hands"], world, strict=True):
            if w is not None:
                entry["world_landmarks"] = w
        return SidecarResult(payload)


def _world(landmarks: Any) -> list[list[float]]:
    # 0.1 mm resolution: far below the model's own error, and keeps the sidecar small.
    pts = np.array([[lm.x, lm.y, lm.z] for lm in landmarks.landmark], dtype=np.float64)
    return np.round(pts, 4).tolist()  # type: ignore[no-any-return]

"""MediaPipe Hands in static-image mode: 21 landmarks per hand in original pixels."""

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
    version = 1
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
        hands = []
        for lms, handed in zip(res.multi_hand_landmarks or [], res.multi_handedness or [], strict=False):
            cls = handed.classification[0]
            hands.append(
                Hand(to_pixels(lms, image.width, image.height), _SWAP.get(cls.label, cls.label), float(cls.score))
            )
        return SidecarResult(hands_to_payload(hands, image.width, image.height))

"""MediaPipe Pose in static-image mode: 33 landmarks with visibility, in original pixels.

Segmentation stays off: the saliency extractor takes its person mask from SelfieSegmentation,
which covers every person in the frame, where the pose mask covers only the one pose found.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.extractors.base import SidecarResult
from core.extractors.mp_base import MediaPipeExtractor, to_pixels
from core.extractors.weights import POSE_LANDMARK_FILES
from core.imaging import DecodedImage
from core.sidecar_types import Pose, poses_to_payload


class PoseExtractor(MediaPipeExtractor):
    name = "pose"
    version = 1

    def required_files(self) -> tuple[str, ...]:
        landmark = POSE_LANDMARK_FILES[self.settings.pose_model_complexity]
        return ("pose_detection/pose_detection.tflite", f"pose_landmark/{landmark}")

    def missing_fix(self) -> str:
        if self.settings.pose_model_complexity == 1:
            return super().missing_fix()
        landmark = POSE_LANDMARK_FILES[self.settings.pose_model_complexity]
        return (
            "set extractors.pose_model_complexity: 1 (the model the wheel ships), or copy "
            f"{landmark} from https://storage.googleapis.com/mediapipe-assets/ into mediapipe/modules/pose_landmark/"
        )

    def _build(self) -> list[Any]:
        import mediapipe as mp

        return [
            mp.solutions.pose.Pose(
                static_image_mode=True,
                model_complexity=self.settings.pose_model_complexity,
                enable_segmentation=False,
                min_detection_confidence=self.settings.pose_min_confidence,
            )
        ]

    def _detect(self, solutions: list[Any], view: np.ndarray, image: DecodedImage) -> SidecarResult:
        res = solutions[0].process(view)
        poses = []
        if res.pose_landmarks is not None:
            poses.append(Pose(to_pixels(res.pose_landmarks, image.width, image.height, extra="visibility")))
        payload = poses_to_payload(poses, image.width, image.height)
        payload["model_complexity"] = self.settings.pose_model_complexity
        return SidecarResult(payload)

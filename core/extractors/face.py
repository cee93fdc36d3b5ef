"""MediaPipe face detection: boxes and 6 keypoints in original pixels.

The full-range model finds the small faces of whole-body shots; the short-range one is meant
for selfies. With `face_model: both` both run (a few ms each) and overlapping boxes are merged,
keeping the more confident one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.extractors.base import Output, SidecarResult
from core.extractors.mp_base import MediaPipeExtractor
from core.imaging import DecodedImage
from core.sidecar_types import Box, Face, faces_to_payload

_FILES = {
    "short": ("face_detection/face_detection_short_range.tflite",),
    "full": ("face_detection/face_detection_full_range_sparse.tflite",),
}
# Boxes from the two models overlapping more than this are the same face.
MERGE_IOU = 0.3


def iou(a: Box, b: Box) -> float:
    return a.iou(b)


def merge_faces(faces: list[Face], min_iou: float = MERGE_IOU) -> list[Face]:
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: -f.score):
        if all(iou(f.box, k.box) <= min_iou for k in kept):
            kept.append(f)
    return kept


class FaceExtractor(MediaPipeExtractor):
    name = "face"
    version = 1
    outputs = (Output("facefoot", file="det/{sha}.facefoot.json"),)

    def _models(self) -> list[str]:
        return ["short", "full"] if self.settings.face_model == "both" else [self.settings.face_model]

    def required_files(self) -> tuple[str, ...]:
        return tuple(f for m in self._models() for f in _FILES[m])

    def _build(self) -> list[Any]:
        from core.extractors.mp_import import import_mediapipe

        mp = import_mediapipe()

        return [
            mp.solutions.face_detection.FaceDetection(
                model_selection=0 if m == "short" else 1, min_detection_confidence=self.settings.face_min_confidence
            )
            for m in self._models()
        ]

    def _detect(
        self, solutions: list[Any], view: np.ndarray, image: DecodedImage, dep: Mapping[str, SidecarResult]
    ) -> SidecarResult:
        w, h = image.width, image.height
        faces = []
        for sol in solutions:
            for det in sol.process(view).detections or []:
                loc = det.location_data
                bb = loc.relative_bounding_box
                box = Box(*(round(v, 2) for v in (bb.xmin * w, bb.ymin * h, bb.width * w, bb.height * h)))
                kps = np.asarray([[k.x * w, k.y * h] for k in loc.relative_keypoints], dtype=np.float64)
                faces.append(Face(box, float(det.score[0]), kps.reshape(-1, 2)))
        payload = faces_to_payload(merge_faces(faces), w, h)
        payload["models"] = self._models()
        return SidecarResult(payload)

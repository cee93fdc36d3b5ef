"""Every person's pose: 33 landmarks with visibility per person, in original pixels.

The legacy one-person graph reads the most prominent person as before; then a multi-person
PoseLandmarker (`core.extractors.mp_tasks`) reads the others:
1. the whole frame, which finds the people large enough for the detector's 224-pixel input;
2. one body region per detected face that no pose of pass 1 accounts for (`core.persons`), cut
   from the original pixels, so the small people of group and crowd images get a pose too. The
   pose whose head lies on that face is kept, mapped back to image coordinates;
3. three overlapping half-width tiles, for the people whose face was not found (too small for
   the frame-wide face detector); a pose counts there only with head and shoulders inside the
   tile and a face found on its nose in a crop around its head (the landmarker also reads
   people into arms and hands when a tile shows part of someone).
Poses that repeat a person already found are dropped. Each pose records where it came from
(`source`: "frame", "face:<i>" or "tile:<k>") and the region it was read in. Segmentation stays
off: the saliency extractor covers every person in the frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from core.extractors.base import Output, SidecarResult
from core.extractors.mp_base import MediaPipeExtractor, to_pixels
from core.extractors.mp_tasks import detect_poses, pose_bundle, pose_landmarker
from core.extractors.weights import POSE_LANDMARK_FILES
from core.imaging import DecodedImage
from core.persons import (
    BODY_NARROW_WIDTH_PER_FACE,
    BODY_WIDTH_PER_FACE,
    Crop,
    body_region,
    face_of,
    head_window,
    nose_duplicate,
    same_person,
    tile_accepts,
    tiles,
    unposed_faces,
)
from core.sidecar_types import POSE, Pose, faces_from_payload, poses_to_payload

# Regions are read at this longest side at most: the detector sees 224 px and the landmark
# model 256 px of the person, so more pixels only cost time.
REGION_MAX_SIDE = 640
# Head crops are read by the face detector at this side.
HEAD_SIDE = 192
# Views and regions narrower than this hold no person the models can read.
MIN_SIDE = 32


class PoseExtractor(MediaPipeExtractor):
    rebuild_after_failure = True
    name = "pose"
    version = 2  # 2: every person (multi-person landmarker on the frame, per unposed face, per tile)
    optional = ("face",)
    outputs = (Output("facefoot", file="det/{sha}.facefoot.json"),)

    def required_files(self) -> tuple[str, ...]:
        landmark = POSE_LANDMARK_FILES[self.settings.pose_model_complexity]
        return (
            "pose_detection/pose_detection.tflite",
            f"pose_landmark/{landmark}",
            "face_detection/face_detection_short_range.tflite",
        )

    def missing_fix(self) -> str:
        if self.settings.pose_model_complexity == 1:
            return super().missing_fix()
        landmark = POSE_LANDMARK_FILES[self.settings.pose_model_complexity]
        return (
            "set extractors.pose_model_complexity: 1 (the model the wheel ships), or copy "
            f"{landmark} from https://storage.googleapis.com/mediapipe-assets/ into mediapipe/modules/pose_landmark/"
        )

    def _build(self) -> list[Any]:
        bundle = pose_bundle(POSE_LANDMARK_FILES[self.settings.pose_model_complexity])
        conf = self.settings.pose_min_confidence
        # A region holds its person and parts of the neighbours: two poses let the right one win.
        from core.extractors.mp_import import import_mediapipe

        mp = import_mediapipe()

        # Confirms the head of a pose read in a tile: the landmarker also "finds" people in arms
        # and hands when a tile shows only part of someone (a portrait's arm read as a second person).
        faces = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
        # The legacy one-person graph reads the most prominent person exactly as before version 2
        # (the cue thresholds were measured on its landmarks; the Tasks graph differs by a few
        # pixels, enough to move borderline readings); the Tasks graph adds the others.
        legacy = mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=self.settings.pose_model_complexity,
            enable_segmentation=False,
            min_detection_confidence=conf,
        )
        return [
            legacy,
            pose_landmarker(bundle, self.settings.max_persons, conf),
            pose_landmarker(bundle, 2, conf),
            faces,
        ]

    def _detect(
        self, solutions: list[Any], view: np.ndarray, image: DecodedImage, dep: Mapping[str, SidecarResult]
    ) -> SidecarResult:
        legacy, frame, regional, face_check = solutions
        w, h = image.width, image.height
        poses: list[Pose] = []
        sources: list[tuple[str, Crop]] = []
        whole = Crop(0, 0, w, h)
        if min(view.shape[:2]) < MIN_SIDE:  # the Tasks graph fails on an empty detection ROI
            return SidecarResult(
                {**poses_to_payload([], w, h), "model_complexity": self.settings.pose_model_complexity}
            )
        main = legacy.process(view).pose_landmarks
        if main is not None:
            poses.append(Pose(to_pixels(main, w, h, extra="visibility")))
            sources.append(("frame", whole))
        for lms in detect_poses(frame, view):
            pose = Pose(_to_pixels(lms, whole, w))
            # The landmarker can return one person twice (two overlapping detections).
            if not any(_duplicate(pose, q) for q in poses):
                poses.append(pose)
                sources.append(("frame", whole))
        face_result = dep.get("face")
        faces = faces_from_payload(face_result.payload) if face_result is not None else []
        # Largest faces first: when the budget runs out, the people most in view have a pose.
        order = sorted(range(len(faces)), key=lambda i: -faces[i].box.w * faces[i].box.h)
        for i in order:
            if len(poses) >= self.settings.max_persons:
                break
            face = faces[i]
            if i not in unposed_faces(faces, poses):
                continue
            for width_per_face in (BODY_WIDTH_PER_FACE, BODY_NARROW_WIDTH_PER_FACE):
                region = body_region(face.box, w, h, width_per_face)
                if min(region.w, region.h) < MIN_SIDE:
                    break
                pixels = _fit(region.pixels(image.rgb), REGION_MAX_SIDE)
                found = [Pose(_to_pixels(lms, region, w)) for lms in detect_poses(regional, pixels)]
                mine = [p for p in found if face_of(p, faces) == i and not any(_duplicate(p, q) for q in poses)]
                if mine:
                    poses.append(mine[0])
                    sources.append((f"face:{i}", region))
                    break
        for k, tile in enumerate(tiles(w, h)):
            if len(poses) >= self.settings.max_persons or min(tile.w, tile.h) < MIN_SIDE:
                break
            for lms in detect_poses(regional, _fit(tile.pixels(image.rgb), REGION_MAX_SIDE)):
                pose = Pose(_to_pixels(lms, tile, w))
                if (
                    tile_accepts(pose, tile)
                    and not any(_duplicate(pose, q) for q in poses)
                    and _face_at_head(face_check, image.rgb, pose)
                ):
                    poses.append(pose)
                    sources.append((f"tile:{k}", tile))
        payload = poses_to_payload(poses, w, h)
        for entry, (source, region) in zip(payload["poses"], sources, strict=True):
            entry["source"] = source
            entry["region"] = region.box().to_dict()
        payload["model_complexity"] = self.settings.pose_model_complexity
        return SidecarResult(payload)


def _face_at_head(detector: Any, rgb: np.ndarray, pose: Pose) -> bool:
    """Whether the face detector finds a face on the pose's nose, in a crop around the head."""
    window = head_window(pose)
    if window is None:
        return False
    res = detector.process(np.ascontiguousarray(cv2.resize(window.pixels(rgb), (HEAD_SIDE, HEAD_SIDE))))
    nose = pose.landmarks[POSE["nose"], :2]
    for det in res.detections or []:
        bb = det.location_data.relative_bounding_box
        x0, y0 = window.to_image(np.array([[bb.xmin, bb.ymin]]))[0]
        x1, y1 = window.to_image(np.array([[bb.xmin + bb.width, bb.ymin + bb.height]]))[0]
        if x0 <= nose[0] <= x1 and y0 <= nose[1] <= y1:
            return True
    return False


def _duplicate(a: Pose, b: Pose) -> bool:
    return same_person(a, b) or nose_duplicate(a, b)


def _fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    scale = max_side / max(rgb.shape[:2])
    if scale >= 1.0:
        return rgb
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _to_pixels(landmarks: Any, window: Crop, width: int) -> np.ndarray:
    """Tasks landmarks normalised to `window` as rows (x px, y px, z, visibility) of the image;
    z keeps the legacy scale (relative to the image width)."""
    rows = np.array([[lm.x, lm.y, lm.z, lm.visibility or 0.0] for lm in landmarks], dtype=np.float64)
    rows[:, :2] = window.to_image(rows[:, :2])
    rows[:, 2] *= window.w / max(width, 1)
    return rows

"""A multi-person MediaPipe PoseLandmarker (Tasks API) from the model files the wheel ships.

The legacy `mp.solutions.pose` graph keeps one person per image. The Tasks PoseLandmarker keeps
up to `num_poses`, but it loads a `.task` bundle that the mediapipe 0.10.21 wheel does not ship.
The bundle is only a zip of the same two networks the legacy graph runs
(`pose_detection.tflite`, `pose_landmark_full.tflite`) with input-normalisation metadata, so it
is assembled in memory from the shipped files with mediapipe's own metadata writer: nothing is
downloaded, nothing is written to site-packages.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from core.errors import ModelUnavailableError
from core.extractors.mp_import import import_mediapipe
from core.extractors.weights import mediapipe_module_file

# (file under mediapipe/modules, name inside the bundle, input range, number of outputs). The
# ranges are those the legacy graphs feed each network (pose_detection_cpu.pbtxt: [-1, 1],
# pose_landmark_by_roi_cpu.pbtxt: [0, 1]).
_POSE_PARTS = (
    ("pose_detection/pose_detection.tflite", "pose_detector.tflite", (-1.0, 1.0), 2),
    ("pose_landmark/{landmark}", "pose_landmarks_detector.tflite", (0.0, 1.0), 5),
)


def _with_metadata(model: bytes, value_range: tuple[float, float], outputs: int) -> bytes:
    import_mediapipe()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    lo, hi = value_range
    std = 255.0 / (hi - lo)
    writer = metadata_writer.MetadataWriter.create(bytearray(model)).add_general_info("bestshot", "from the wheel")
    writer.add_image_input(norm_mean=[-lo * std], norm_std=[std])
    for _ in range(outputs):
        writer.add_feature_output()
    out, _ = writer.populate()
    return bytes(out)


def pose_bundle(landmark_file: str) -> bytes:
    """The `.task` bundle bytes for the PoseLandmarker, from the wheel's files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rel, inner, value_range, outputs in _POSE_PARTS:
            path = mediapipe_module_file(rel.format(landmark=landmark_file))
            if path is None or not path.is_file():
                raise ModelUnavailableError(path, "mediapipe pose model file missing", "reinstall mediapipe==0.10.21")
            z.writestr(inner, _with_metadata(path.read_bytes(), value_range, outputs))
    return buf.getvalue()


def pose_landmarker(bundle: bytes, num_poses: int, min_confidence: float) -> Any:
    import_mediapipe()
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_buffer=bundle),
        running_mode=vision.RunningMode.IMAGE,
        num_poses=num_poses,
        min_pose_detection_confidence=min_confidence,
        min_pose_presence_confidence=min_confidence,
        output_segmentation_masks=False,
    )
    return vision.PoseLandmarker.create_from_options(opts)


def detect_poses(landmarker: Any, rgb: Any) -> list[Any]:
    """Per person, the 33 normalised landmarks (with visibility) the landmarker found."""
    import numpy as np

    mp = import_mediapipe()

    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
    return list(landmarker.detect(image).pose_landmarks)

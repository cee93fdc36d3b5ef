"""Extractor settings (section `extractors` of the config)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClipSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"
    # A local checkpoint file (.safetensors/.bin/.pt) wins over the hub cache when set.
    checkpoint: Path | None = None
    batch_size: int = Field(16, ge=1, le=256)


class ExtractorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: Literal["auto", "mps", "cuda", "cpu"] = "auto"
    enabled: list[str] = Field(
        default_factory=lambda: [
            "phash",
            "clip",
            "hands",
            "hand_clip",
            "pose",
            "regions",
            "face",
            "saliency",
            "quality",
            "anomalies",
            "crop",
        ]
    )
    clip: ClipSettings = Field(default_factory=ClipSettings)
    max_hands: int = Field(4, ge=1, le=8)
    hand_min_confidence: float = Field(0.3, ge=0.0, le=1.0)
    pose_min_confidence: float = Field(0.3, ge=0.0, le=1.0)
    # People given a pose per image (the frame pass, then one body region per unposed face).
    max_persons: int = Field(8, ge=1, le=32)
    # Pose hands looked for again in a crop around the pose's hand points when the frame pass
    # found no hand there, from this wrist visibility up (below the 0.75 at which the anomaly
    # cues call a wrist without a hand uncertain, so that most of those get a second look).
    hand_crop_min_visibility: float = Field(0.5, ge=0.0, le=1.0)
    # Side of the square each pose-guided hand crop is resized to before the hand model reads it.
    hand_crop_side: int = Field(256, ge=128, le=1024)
    face_min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    # Longest side fed to the detectors; landmarks are mapped back to original pixels.
    detector_max_side: int = Field(1024, ge=256, le=4096)
    saliency_mask_side: int = Field(320, ge=64, le=1024)
    images_per_pass: int = Field(16, ge=1, le=256)
    # Models are unloaded after this long without an image to extract, and load again (a few
    # seconds) with the next one.
    unload_idle_seconds: float = Field(300.0, gt=0, le=86400)
    # Only the "full" landmark model (1) ships in the mediapipe 0.10.21 wheel; 0 (lite) and 2 (heavy)
    # need pose_landmark_{lite,heavy}.tflite placed in mediapipe/modules/pose_landmark/ by hand,
    # because mediapipe would otherwise try to download them at run time.
    pose_model_complexity: Literal[0, 1, 2] = 1
    # "full" (5 m range) finds the small faces of whole-body shots that "short" (2 m, selfie) misses
    # (COCO: 1/4 vs 0/4 faces; generated portraits: 6/6 both). "both" adds the short-range model and
    # merges: it found no extra face on the shared images and added one false positive.
    face_model: Literal["short", "full", "both"] = "full"
    # Selfie segmentation model: 0 = general (256x256, suits portrait frames), 1 = landscape (144x256).
    selfie_model: Literal[0, 1] = 0
    # BRISQUE runs on the image shrunk to at most this long side. Its model was fitted on unresampled
    # photos and shrinking hides noise (a 1024x1360 portrait with sigma-12 noise: 44 native, 16 at
    # 1024 px), so typical generator sizes are scored natively; only larger images are shrunk, to cap
    # the cost (~100 ms per 1.4 MP on the 2-core dev box).
    brisque_max_side: int = Field(2048, ge=128, le=8192)
    # Subject-mask value above which a pixel counts as subject (fractions, bbox, subject sharpness).
    subject_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # Pixels at or below / at or above these grey levels count as clipped shadows / highlights.
    clip_dark_level: int = Field(2, ge=0, le=254)
    clip_bright_level: int = Field(253, ge=1, le=255)

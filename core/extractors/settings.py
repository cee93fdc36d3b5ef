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
        default_factory=lambda: ["phash", "clip", "hands", "pose", "face", "saliency", "quality"]
    )
    clip: ClipSettings = Field(default_factory=ClipSettings)
    max_hands: int = Field(4, ge=1, le=8)
    hand_min_confidence: float = Field(0.3, ge=0.0, le=1.0)
    pose_min_confidence: float = Field(0.3, ge=0.0, le=1.0)
    face_min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    # Longest side fed to the detectors; landmarks are mapped back to original pixels.
    detector_max_side: int = Field(1024, ge=256, le=4096)
    saliency_mask_side: int = Field(320, ge=64, le=1024)
    images_per_pass: int = Field(16, ge=1, le=256)

"""Crop proposer weights (section `crop`). Filled in by the crop issue."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CropSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

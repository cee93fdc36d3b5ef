"""Anomaly cue thresholds (section `anomaly`). Filled in by the anomaly issue."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AnomalySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

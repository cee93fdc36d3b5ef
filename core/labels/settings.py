"""Decision-observation settings (section `labels`). Filled in by the watch-and-log issue."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LabelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

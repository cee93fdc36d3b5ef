"""Ranking and mode settings (section `rank`). Filled in by the ranking issue."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RankSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

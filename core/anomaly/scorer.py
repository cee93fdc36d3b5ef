"""Per-region scoring: the geometric cue score now, a learned model later.

A learned scorer (trained on the user's anomaly tags) sees the same candidate regions and the
pixels, and returns its own probability per region; `detect_anomalies` keeps whatever it says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from core.anomaly.model import Anomaly


@runtime_checkable
class RegionScorer(Protocol):
    name: str

    def score(self, candidates: Sequence[Anomaly], rgb: np.ndarray | None) -> list[float]:
        """One score in [0, 1] per candidate, in order. `rgb` is the image when available."""
        ...


class GeometricScorer:
    """Keeps each cue's own score: how far its measurement lies past the threshold."""

    name = "geometric"

    def score(self, candidates: Sequence[Anomaly], rgb: np.ndarray | None) -> list[float]:
        return [a.score for a in candidates]

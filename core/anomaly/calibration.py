"""The user's own decisions calibrate each anomaly cue: a learned score per region.

Every flagged region of a decided image is an outcome. The user removed it (cropped it away, or
rejected the image with the region's tag) or kept it (approved the image with the region in it,
or cropped around it). Outcomes are counted per cue (the evidence's `measurement`, e.g.
`pip_flexion_deg`), and a region's calibrated score is the posterior mean of "the user removes
it" under a Beta prior centred on the cue's own geometric score and worth `prior_strength`
observations:

    score = (removed + prior_strength * cue_score) / (removed + kept + prior_strength)

So a cue the user keeps ignoring fades below `AnomalySettings.min_score` and stops flagging (no
more crops proposed for it), a cue whose regions the user always cuts away gains confidence, and
a cue with fewer than `min_observations` outcomes keeps its geometric score. Suppressed regions
stay in the report (`AnomalyReport.suppressed`), so their outcomes keep being counted and a cue
comes back if the user starts removing its regions.

Outcomes only come from regions a cue flagged: a malformation no cue fires on produces none,
which is why this calibrates precision and cannot add detections.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from core.anomaly.model import Anomaly, AnomalyReport
from core.anomaly.settings import CalibrationSettings
from core.sidecar_types import Box

Role = Literal["approved", "cropped", "rejected", "other"]
FORMAT = 1


@dataclass(frozen=True)
class RegionOutcome:
    cue: str
    removed: bool


def cue_of(a: Anomaly) -> str:
    return str(a.evidence.get("measurement", a.tag))


def cue_score(a: Anomaly) -> float:
    """The cue's own (geometric) score, before any calibration."""
    return float(a.evidence.get("cue_score", a.score))


def box_inside_fraction(region: Box, crop: Box) -> float:
    area = region.w * region.h
    return region.intersection(crop) / area if area > 0 else 0.0


def outcomes_for_image(
    report: AnomalyReport, role: Role, crop_box: Box | None, tags: Iterable[str], s: CalibrationSettings
) -> list[RegionOutcome]:
    """What the user's decision says about each flagged region (anomalies and suppressed ones).

    - approved without a crop: every region kept;
    - cropped: regions (almost) outside the crop removed, (almost) inside kept, cut ones unknown;
    - rejected with tags: regions whose tag the user gave removed; others unknown (any of them may
      be why the image went); rejected without tags and losers say nothing about regions.
    """
    tagset = set(tags)
    out: list[RegionOutcome] = []
    for a in (*report.anomalies, *report.suppressed):
        if role == "approved":
            out.append(RegionOutcome(cue_of(a), False))
        elif role == "cropped" and crop_box is not None:
            inside = box_inside_fraction(a.box, crop_box)
            if inside >= s.kept_inside_min:
                out.append(RegionOutcome(cue_of(a), False))
            elif inside <= s.cut_inside_max:
                out.append(RegionOutcome(cue_of(a), True))
        elif role == "rejected" and a.tag in tagset:
            out.append(RegionOutcome(cue_of(a), True))
    return out


@dataclass(frozen=True)
class CueCalibration:
    """Per-cue outcome counts: cue -> (removed, kept)."""

    counts: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    prior_strength: float = 4.0
    min_observations: int = 5

    @property
    def version(self) -> str:
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        return f"cal-{digest}"

    @property
    def observations(self) -> int:
        return sum(r + k for r, k in self.counts.values())

    def effective(self) -> dict[str, tuple[int, int]]:
        """The counts that change scores: cues with at least `min_observations` outcomes."""
        return {c: rk for c, rk in self.counts.items() if sum(rk) >= self.min_observations}

    def score(self, cue: str, geometric: float) -> float:
        removed, kept = self.counts.get(cue, (0, 0))
        n = removed + kept
        if n < self.min_observations:
            return geometric
        return (removed + self.prior_strength * geometric) / (n + self.prior_strength)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "prior_strength": self.prior_strength,
            "min_observations": self.min_observations,
            "counts": {c: {"removed": r, "kept": k} for c, (r, k) in sorted(self.counts.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CueCalibration:
        if d.get("format") != FORMAT:
            raise ValueError(f"calibration format {d.get('format')!r}, expected {FORMAT}")
        counts = {str(c): (int(v["removed"]), int(v["kept"])) for c, v in d["counts"].items()}
        return cls(counts, float(d["prior_strength"]), int(d["min_observations"]))


def fit_calibration(outcomes: Iterable[RegionOutcome], s: CalibrationSettings) -> CueCalibration:
    counts: dict[str, list[int]] = {}
    for o in outcomes:
        c = counts.setdefault(o.cue, [0, 0])
        c[0 if o.removed else 1] += 1
    return CueCalibration({k: (v[0], v[1]) for k, v in counts.items()}, s.prior_strength, s.min_observations)


class CalibratedScorer:
    """A RegionScorer: each candidate's cue score moved towards what the user did with that cue."""

    def __init__(self, calibration: CueCalibration) -> None:
        self.calibration = calibration
        self.name = f"calibrated:{calibration.version}"

    def score(self, candidates: Sequence[Anomaly], rgb: np.ndarray | None) -> list[float]:
        return [self.calibration.score(cue_of(a), cue_score(a)) for a in candidates]

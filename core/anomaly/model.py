"""Anomaly records and the per-image report stored as `sidecar/anomalies/<image>.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

# Defined in core.anomaly.tags (no numpy, for the config); re-exported where they always were.
from core.anomaly.tags import PERSON_TAGS as PERSON_TAGS
from core.anomaly.tags import TAGS as TAGS
from core.anomaly.tags import UNCERTAIN_TAGS as UNCERTAIN_TAGS
from core.anomaly.tags import UNDETECTABLE_TAGS as UNDETECTABLE_TAGS
from core.sidecar_types import Box

REPORT_VERSION: Final = 3  # 2: `suppressed`; 3: `parts`


@dataclass(frozen=True)
class Anomaly:
    """One flagged region. `evidence` holds at least measurement, value and threshold."""

    tag: str
    box: Box
    score: float
    evidence: dict[str, Any]
    # Which detection it concerns ("hand:1", "pose:0:left_leg"), so cues on one region group.
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "box": {k: round(v, 1) for k, v in self.box.to_dict().items()},
            "score": round(self.score, 4),
            "evidence": self.evidence,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Anomaly:
        return cls(
            tag=str(d["tag"]),
            box=Box.from_dict(d["box"]),
            score=float(d["score"]),
            evidence=dict(d.get("evidence", {})),
            source=str(d.get("source", "")),
        )


@dataclass(frozen=True)
class AnomalyReport:
    width: int
    height: int
    anomalies: list[Anomaly] = field(default_factory=list)
    # Hands that should be there but are undetected or low confidence; boxes where to look.
    uncertain_regions: list[Anomaly] = field(default_factory=list)
    uncertain: bool = False
    reasons: list[str] = field(default_factory=list)
    scorer: str = "geometric"
    # Cues the region scorer put below `min_score`: not anomalies, kept so the user's decisions
    # on those regions still count (core.anomaly.calibration).
    suppressed: list[Anomaly] = field(default_factory=list)
    # P(error) per body part from the fitted image-level model (core.anomaly.parts):
    # {"hands": {"score": p, "flag": bool, "threshold": t}, ...}; empty when not scored.
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.anomalies and not self.uncertain and not self.flagged_parts()

    def flagged_parts(self) -> list[str]:
        return [name for name, p in self.parts.items() if p.get("flag")]

    def tags(self) -> list[str]:
        return sorted({a.tag for a in self.anomalies})

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "image_size": [self.width, self.height],
            "anomalies": [a.to_dict() for a in self.anomalies],
            "uncertain_regions": [a.to_dict() for a in self.uncertain_regions],
            "uncertain": self.uncertain,
            "reasons": list(self.reasons),
            "scorer": self.scorer,
            "suppressed": [a.to_dict() for a in self.suppressed],
            "parts": {k: dict(v) for k, v in self.parts.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnomalyReport:
        w, h = d["image_size"]
        return cls(
            width=int(w),
            height=int(h),
            anomalies=[Anomaly.from_dict(a) for a in d.get("anomalies", [])],
            uncertain_regions=[Anomaly.from_dict(a) for a in d.get("uncertain_regions", [])],
            uncertain=bool(d.get("uncertain", False)),
            reasons=[str(r) for r in d.get("reasons", [])],
            scorer=str(d.get("scorer", "geometric")),
            suppressed=[Anomaly.from_dict(a) for a in d.get("suppressed", [])],
            parts={str(k): dict(v) for k, v in d.get("parts", {}).items()},
        )

    @classmethod
    def from_json(cls, text: str) -> AnomalyReport:
        return cls.from_dict(json.loads(text))


def evidence(measurement: str, value: float, threshold: float, **extra: Any) -> dict[str, Any]:
    """The evidence dict every cue attaches; extra keys add context (finger, side, ...)."""
    out: dict[str, Any] = {
        "measurement": measurement,
        "value": round(float(value), 4),
        "threshold": round(float(threshold), 4),
    }
    for k, v in extra.items():
        out[k] = round(float(v), 4) if isinstance(v, float) else v
    return out


def excess_score(value: float, threshold: float, saturate: float) -> float:
    """0.5 exactly at the threshold rising linearly to 1.0 at `saturate` (either side of it)."""
    span = saturate - threshold
    if span == 0:
        return 1.0
    frac = (value - threshold) / span
    return float(min(1.0, max(0.0, 0.5 + 0.5 * frac)))

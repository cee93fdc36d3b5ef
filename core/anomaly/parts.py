"""Image-level evidence per body part: P(this part has an error), weighed by labelled data.

The geometric cues flag regions; on real generated images none of them alone separates images
with hand, limb or foot errors from those without. This module turns one image's detections and
its anomaly report into a handful of interpretable features (how many people, visible wrists,
hands found, wrists without a hand, each cue family's strongest score, ...) and scores each part
with a small L2 logistic model. The weights, the features kept and the flag threshold per part are
fitted by `scripts/fit_judgement.py` on a labelled set and shipped as `parts_model.json`, with a
model card (`parts_model.md`) giving the data and the leave-one-prompt-out figures.

A part whose score reaches its fitted threshold is flagged: the image is then not clean, even
when no single region crossed a cue threshold.

`part_scores(report dict)` is the one reader of a stored report's part evidence for everything
downstream (ranking features, benchmarks): the fitted `parts` field, or, for reports written
before it existed (report version < 3), the strongest region of each part.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import numpy as np

from core.anomaly.detect import hand_contexts
from core.anomaly.geometry import bend_deg, dist
from core.anomaly.hands import HandContext, palm_scale, points_3d
from core.anomaly.model import Anomaly, AnomalyReport
from core.anomaly.plausibility import finger_crossings, hyperextension_deg, proportion_deviation
from core.anomaly.settings import AnomalySettings
from core.anomaly.world import palm_normal_angle_deg, proximal_over_palm
from core.errors import BestshotError
from core.sidecar_types import HAND_FINGERS, POSE, Face, Hand, Pose

PARTS: Final = ("hands", "limbs", "feet")
MODEL_RESOURCE: Final = "anomaly/parts_model.json"
FORMAT: Final = 1
# A pose landmark counts as visible at this visibility, inside the frame.
VISIBLE: Final = 0.5
_FOOT_POINTS = ("ankle", "heel", "foot_index")
_LIMB_JOINTS = ("elbow", "knee")
_STRAIGHT_DEG = 25.0  # as HandCueSettings.straight_max_bend_deg: only straight fingers show proportions
_WORLD_MEASUREMENTS = ("world_proximal_phalanx_over_palm", "image_vs_world_palm_normal_deg")
# An adult's palm (wrist to middle knuckle, about 9-10 cm) over the forearm (elbow to wrist, about
# 25 cm) and over the face width (about 14-15 cm): the sizes a hand is judged against.
PALM_OVER_FOREARM: Final = 0.38
PALM_OVER_FACE: Final = 0.65

# Every candidate feature, with what it measures; the fit keeps a subset per part.
FEATURES: Final = {
    "people": "log(1 + people): the larger of faces and poses found",
    "visible_wrists": "log(1 + pose wrists visible in the frame)",
    "hands": "log(1 + hands detected)",
    "wrists_without_hands": "log(1 + visible pose wrists without a detected hand)",
    "hand_low_score": "1 - the lowest hand detector score (0 without hands)",
    "hand_cue": "strongest hand geometry cue score, suppressed ones included (0 when none)",
    "hand_cues": "log(1 + hand geometry cues)",
    "world_disagreement": "hands whose image and world landmarks contradict each other",
    "unposed_faces": "log(1 + faces without a pose): people nobody checked",
    "finger_ratio": "largest middle or distal over proximal phalanx of a straight finger, any hand (0 without)",
    "world_collapse": "largest 0.4 - world proximal phalanx over palm, any hand (0 without world landmarks)",
    "world_palm_flip": "largest angle between the image and world palm normals / 180, any hand",
    "limb_joints": "log(1 + elbows and knees visible in the frame)",
    "limb_cue": "strongest limb cue score (arms, legs), suppressed ones included",
    "foot_points": "log(1 + ankle, heel and toe points visible in the frame)",
    "foot_cue": "strongest foot cue score (long_foot), suppressed ones included",
    # Single joints, counted over every person: how much of that limb is on show (exposure, as
    # the ranker's wrists/knees/ankles_visible); the sums above mix joints of different limbs.
    "visible_elbows": "log(1 + pose elbows visible in the frame)",
    "visible_knees": "log(1 + pose knees visible in the frame)",
    "visible_ankles": "log(1 + pose ankles visible in the frame)",
    # Hand plausibility (issue 10): what each detected hand says about itself and its person.
    "hand_mean_low_score": "mean over hands of 1 - the detector score (0 without hands)",
    "hands_per_person": "hands detected per person found, over 2 (at most 1.5; 0 without people)",
    "handedness_mismatch": "log(1 + hands labelled the other hand than the pose arm they attach to)",
    "hand_over_forearm": f"largest |log(palm / forearm / {PALM_OVER_FOREARM})| over hands on an arm with a visible elbow",
    "hand_over_face": f"largest |log(palm / face width / {PALM_OVER_FACE})| over hands with their person's face",
    "world_hyperextension": "largest backward bend of a long-finger joint beyond its limit / 90 deg, any hand",
    "world_proportions": "largest |log(world proportion / a typical hand's)| of any hand (core.anomaly.plausibility)",
    "world_crossings": "log(1 + pairs of non-neighbouring long fingers passing through each other, all hands)",
}


class PartModelError(BestshotError):
    kind = "parts_model"


def _visible(p: np.ndarray, name: str, width: int, height: int) -> bool:
    x, y, _, v = p[POSE[name]]
    return bool(v >= VISIBLE and 0 <= x < width and 0 <= y < height)


def _cue_score(a: Anomaly) -> float:
    return float(a.evidence.get("cue_score", a.score))


def _finger_ratio(hand: Hand) -> float:
    p = hand.landmarks[:, :2]
    best = 0.0
    for name in ("index", "middle", "ring", "pinky"):
        a, b, c, t = HAND_FINGERS[name]
        if max(bend_deg(p[a], p[b], p[c]), bend_deg(p[b], p[c], p[t])) >= _STRAIGHT_DEG:
            continue
        s1 = dist(p[a], p[b])
        if s1 > 1.0:
            best = max(best, dist(p[b], p[c]) / s1, dist(p[c], p[t]) / s1)
    return min(best, 5.0)


def _world_readings(
    hands: Sequence[Hand], world: Sequence[np.ndarray | None] | None, width: int
) -> tuple[float, float]:
    collapse = flip = 0.0
    for hand, wl in zip(hands, world or [None] * len(hands), strict=True):
        if wl is None:
            continue
        r = proximal_over_palm(wl)
        if r is not None:
            collapse = max(collapse, 0.4 - r)
        ang = palm_normal_angle_deg(points_3d(hand, width), wl)
        if ang is not None:
            flip = max(flip, ang / 180.0)
    return collapse, flip


def _plausibility(
    hands: Sequence[Hand], contexts: Sequence[HandContext], world: Sequence[np.ndarray | None] | None, width: int
) -> dict[str, float]:
    mismatch = crossings = 0
    forearm = face = hyper = prop = 0.0
    for hand, ctx, wl in zip(hands, contexts, world or [None] * len(hands), strict=True):
        palm = palm_scale(points_3d(hand, width))
        if ctx.side is not None and hand.handedness.lower() != ctx.side:
            mismatch += 1
        if palm > 1.0 and ctx.pose_elbow is not None and ctx.pose_wrist is not None:
            fore = dist(ctx.pose_elbow, ctx.pose_wrist)
            if fore > 0.5 * palm:  # an arm pointing at the camera has no measurable length
                forearm = max(forearm, abs(math.log(palm / fore / PALM_OVER_FOREARM)))
        if palm > 1.0 and ctx.face_width:
            face = max(face, abs(math.log(palm / ctx.face_width / PALM_OVER_FACE)))
        if wl is not None:
            hyper = max(hyper, hyperextension_deg(wl, hand.handedness) / 90.0)
            prop = max(prop, proportion_deviation(wl))
            crossings += finger_crossings(wl)
    return {
        "handedness_mismatch": math.log1p(mismatch),
        "hand_over_forearm": forearm,
        "hand_over_face": face,
        "world_hyperextension": hyper,
        "world_proportions": prop,
        "world_crossings": math.log1p(crossings),
    }


def part_features(
    hands: Sequence[Hand],
    poses: Sequence[Pose],
    faces: Sequence[Face],
    report: AnomalyReport,
    hand_world: Sequence[np.ndarray | None] | None,
    settings: AnomalySettings,
) -> dict[str, float]:
    """Every candidate feature of one image (`FEATURES`), from its detections and report; the
    settings attach hands to their person as the cues do."""
    w, h = report.width, report.height
    wrists = limb = feet = elbows = knees = ankles = 0
    for pose in poses:
        p = np.asarray(pose.landmarks, dtype=np.float64)
        for side in ("left", "right"):
            wrists += _visible(p, f"{side}_wrist", w, h)
            elbows += _visible(p, f"{side}_elbow", w, h)
            knees += _visible(p, f"{side}_knee", w, h)
            ankles += _visible(p, f"{side}_ankle", w, h)
            limb += sum(_visible(p, f"{side}_{j}", w, h) for j in _LIMB_JOINTS)
            feet += sum(_visible(p, f"{side}_{j}", w, h) for j in _FOOT_POINTS)
    cues = [*report.anomalies, *report.suppressed]
    hand_cues = [a for a in cues if a.source.startswith("hand:")]
    limb_cues = [a for a in cues if a.source.startswith("pose:") and not a.source.endswith("_foot")]
    foot_cues = [a for a in cues if a.source.endswith("_foot")]
    world = {
        a.source
        for a in report.uncertain_regions
        if a.evidence.get("measurement") in _WORLD_MEASUREMENTS
        or any(e.get("measurement") in _WORLD_MEASUREMENTS for e in a.evidence.get("also", []))
    }
    unposed = max(0, len(faces) - len(poses))
    collapse, flip = _world_readings(hands, hand_world, w)
    people = max(len(faces), len(poses))
    contexts = hand_contexts(hands, poses, faces, w, h, settings)
    return {
        "people": math.log1p(people),
        "visible_wrists": math.log1p(wrists),
        "hands": math.log1p(len(hands)),
        "wrists_without_hands": math.log1p(max(0, wrists - len(hands))),
        "hand_low_score": 1.0 - min((hd.score for hd in hands), default=1.0),
        "hand_cue": max((_cue_score(a) for a in hand_cues), default=0.0),
        "hand_cues": math.log1p(len(hand_cues)),
        "world_disagreement": float(len(world)),
        "unposed_faces": math.log1p(unposed),
        "finger_ratio": max((_finger_ratio(hd) for hd in hands), default=0.0),
        "world_collapse": collapse,
        "world_palm_flip": flip,
        "limb_joints": math.log1p(limb),
        "limb_cue": max((_cue_score(a) for a in limb_cues), default=0.0),
        "foot_points": math.log1p(feet),
        "foot_cue": max((_cue_score(a) for a in foot_cues), default=0.0),
        "visible_elbows": math.log1p(elbows),
        "visible_knees": math.log1p(knees),
        "visible_ankles": math.log1p(ankles),
        "hand_mean_low_score": float(np.mean([1.0 - hd.score for hd in hands])) if hands else 0.0,
        "hands_per_person": min(len(hands) / (2 * people), 1.5) if people else 0.0,
        **_plausibility(hands, contexts, hand_world, w),
    }


def _sigmoid(u: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-500.0, min(500.0, u))))


@dataclass(frozen=True)
class PartModel:
    """One part's fitted logistic model on standardised features, and its flag threshold."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float

    def probability(self, feats: Mapping[str, float]) -> float:
        u = self.bias + sum(
            w * (feats[f] - m) / s
            for f, m, s, w in zip(self.features, self.mean, self.scale, self.weights, strict=True)
        )
        return _sigmoid(u)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartModel:
        feats = tuple(str(f) for f in d["features"])
        unknown = [f for f in feats if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}")
        cols = [tuple(float(v) for v in d[k]) for k in ("mean", "scale", "weights")]
        if any(len(c) != len(feats) for c in cols) or any(s <= 0 for s in cols[1]):
            raise ValueError("mean/scale/weights do not match the features (or a scale is not positive)")
        return cls(feats, cols[0], cols[1], cols[2], float(d["bias"]), float(d["threshold"]))


@dataclass(frozen=True)
class PartsModel:
    version: str
    parts: dict[str, PartModel]

    def score(self, feats: Mapping[str, float]) -> dict[str, dict[str, Any]]:
        """The report's `parts` field: {part: {"score": p, "flag": p >= threshold, "threshold": t}}."""
        out: dict[str, dict[str, Any]] = {}
        for name, m in self.parts.items():
            p = m.probability(feats)
            out[name] = {"score": round(p, 4), "flag": p >= m.threshold, "threshold": round(m.threshold, 4)}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartsModel:
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, this version reads {FORMAT}")
            return cls(str(d["version"]), {str(k): PartModel.from_dict(v) for k, v in d["parts"].items()})
        except (KeyError, TypeError, ValueError) as e:
            raise PartModelError(None, f"not a valid parts model: {e}") from e


def shipped_parts_model() -> PartsModel:
    """The model fitted by scripts/fit_judgement.py and shipped with the code."""
    text = resources.files("core").joinpath(MODEL_RESOURCE).read_text(encoding="utf-8")
    return PartsModel.from_dict(json.loads(text))


# Tags whose part does not follow from the region's source.
_TAG_PART = {
    "extra_fingers": "hands",
    "warped_wrist": "hands",
    "long_hand": "hands",
    "malformed_phone_grip": "hands",
    "hand_undetected": "hands",
    "hand_low_confidence": "hands",
    "hand_suspect": "hands",
    "long_foot": "feet",
    "wrong_toes_count": "feet",
    "foreshortened_upper_arm": "limbs",
    "limb_misaligned": "limbs",
}


@dataclass(frozen=True)
class PartScore:
    score: float  # in [0, 1]; higher = more likely wrong
    flagged: bool  # the report flags this part
    regions: int  # anomalies + uncertain regions of this part


def part_of(record: Mapping[str, Any]) -> str | None:
    """The part a report record concerns: by its tag, else by the pose region in its source."""
    part = _TAG_PART.get(str(record.get("tag", "")))
    if part is not None:
        return part
    src = str(record.get("source", ""))
    if src.startswith("hand:"):
        return "hands"
    if src.startswith("pose:") and src.count(":") >= 2:
        region = src.split(":", 2)[2]
        if "foot" in region or "ankle" in region or "heel" in region:
            return "feet"
        if "hand" in region or "wrist" in region:
            return "hands"
        return "limbs"
    return None


def part_scores(report: Mapping[str, Any]) -> dict[str, PartScore]:
    """Per part: the fitted P(error) and flag of the report's `parts`; a report without them
    (written before report version 3) gives the strongest score among that part's anomalies and
    uncertain regions, flagged when an anomaly (not only an uncertain region) concerns it."""
    best = {p: 0.0 for p in PARTS}
    flagged = {p: False for p in PARTS}
    regions = {p: 0 for p in PARTS}
    for key, is_flag in (("anomalies", True), ("uncertain_regions", False)):
        for rec in report.get(key, []) or []:
            part = part_of(rec)
            if part not in best:
                continue
            best[part] = max(best[part], float(rec.get("score", 0.0)))
            flagged[part] = flagged[part] or is_flag
            regions[part] += 1
    fitted = report.get("parts") or {}
    if fitted:
        return {
            p: PartScore(float(fitted[p]["score"]), bool(fitted[p]["flag"]), regions[p])
            if p in fitted
            # A part the fitted model does not score keeps the region reading.
            else PartScore(best[p], flagged[p], regions[p])
            for p in PARTS
        }
    return {p: PartScore(best[p], flagged[p], regions[p]) for p in PARTS}

"""A set's proposal: winner, per-image score and probability, margin, confidence, reasons, routing.

Reasons come from the features that moved the winner above the runner-up most (weight times
feature difference, in utility units) and from the anomaly summaries of the other members.
A proposal is `uncertain` (reviewed first) when the probability margin is small, the posterior
cannot order the top two, the winner's anomaly check is incomplete, or members were measured unequally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.rank.features import ImageSignals, missing_sources
from core.rank.model import RankModel
from core.rank.settings import RankSettings

# feature -> (said when the winner has more of it, said when it has less)
PHRASES: dict[str, tuple[str, str]] = {
    "sharpness_log": ("sharper", "softer"),
    "subject_sharpness_log": ("sharper subject", "softer subject"),
    "contrast": ("more contrast", "less contrast"),
    "exposure_dev": ("exposure further from mid-grey", "better exposed"),
    "clipping": ("more clipped highlights/shadows", "less clipping"),
    "noise": ("noisier", "less noise"),
    "brisque": ("worse BRISQUE quality", "better BRISQUE quality"),
    "subject_fraction": ("larger subject", "smaller subject"),
    "face_present": ("face visible", "no face"),
    "face_size": ("larger face", "smaller face"),
    "hands_visible": ("more hands visible", "fewer hands visible"),
    "pose_completeness": ("more complete pose", "less of the body visible"),
    "anomaly_count": ("more anomalies", "fewer anomalies"),
    "anomaly_score_sum": ("stronger anomaly cues", "weaker anomaly cues"),
    "anomaly_score_max": ("a stronger worst anomaly", "a milder worst anomaly"),
    "anomaly_uncertain": ("less certain anomaly check", "clearer anomaly check"),
    # the part evidence (core.anomaly.parts): P(this part has an error)
    "anomaly_hands": ("likelier hand errors", "less likely hand errors"),
    "anomaly_limbs": ("likelier limb errors", "less likely limb errors"),
    "anomaly_feet": ("likelier foot errors", "less likely foot errors"),
    "near_duplicate": ("a near-duplicate", "not a near-duplicate"),
}
_LOOK = "closer to the look you usually pick"


@dataclass(frozen=True)
class Member:
    image_id: str
    name: str  # file name, used in reasons and proposal.json
    signals: ImageSignals


@dataclass(frozen=True)
class ImageScore:
    image_id: str
    name: str
    score: float  # posterior-mean utility (comparable within the set only)
    probability: float  # P(the user picks it), over the posterior


@dataclass(frozen=True)
class SetRanking:
    set_id: str
    winner: str  # image id
    winner_name: str
    images: tuple[ImageScore, ...]  # best first
    margin: float  # P(winner) - P(runner-up)
    confidence: float  # P(winner)
    source: str  # "model" | "prior"
    model_version: str
    reasons: tuple[str, ...]
    residual_anomalies: tuple[str, ...]  # what the anomaly check still flags on the winner
    uncertain: bool
    uncertain_reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "set_id": self.set_id,
            "winner": self.winner_name,
            "winner_id": self.winner,
            "images": [
                {
                    "name": s.name,
                    "image_id": s.image_id,
                    "score": round(s.score, 4),
                    "probability": round(s.probability, 4),
                }
                for s in self.images
            ],
            "margin": round(self.margin, 4),
            "confidence": round(self.confidence, 4),
            "source": self.source,
            "model_version": self.model_version,
            "reasons": list(self.reasons),
            "residual_anomalies": list(self.residual_anomalies),
            "uncertain": self.uncertain,
            "uncertain_reasons": list(self.uncertain_reasons),
        }


def _plural(n: int) -> str:
    return "anomaly" if n == 1 else "anomalies"


def anomaly_phrases(name: str, summary: Mapping[str, Any] | None) -> list[str]:
    """ "2 anomalies on the left hand in img_003", one per body part when parts are known."""
    if not summary or not summary.get("count"):
        return []
    parts = summary.get("by_part") or {}
    if parts:
        return [f"{int(n)} {_plural(int(n))} on the {part} in {name}" for part, n in parts.items() if n]
    n = int(summary["count"])
    return [f"{n} {_plural(n)} in {name}"]


def _feature_reasons(model: RankModel, x: np.ndarray, a: int, b: int, s: RankSettings) -> list[str]:
    diff = x[a] - x[b]
    contrib = model.weights * diff
    found: list[tuple[float, str]] = []
    look = 0.0
    for j, name in enumerate(model.space.names):
        if name.startswith("emb_"):
            look += contrib[j]
        elif name in PHRASES and contrib[j] >= s.reason_min_contribution:
            found.append((float(contrib[j]), PHRASES[name][0 if diff[j] > 0 else 1]))
    if look >= s.reason_min_contribution:
        found.append((look, _LOOK))
    return [text for _, text in sorted(found, reverse=True)[: s.max_reasons]]


def _uncertainty(
    members: Sequence[Member],
    probs: np.ndarray,
    gap_z: float,
    order: np.ndarray,
    model: RankModel,
    s: RankSettings,
) -> list[str]:
    why: list[str] = []
    a, b = int(order[0]), int(order[1])
    margin = float(probs[a] - probs[b])
    if margin < s.uncertain_margin:
        why.append(f"small margin {margin:.2f} between {members[a].name} and {members[b].name}")
    if model.source == "model" and gap_z < s.uncertain_gap_z:
        why.append(f"model unsure of the order of the top two ({gap_z:.1f} sd)")
    # Only the proposed winner's own check matters here: an unchecked loser is not what the user
    # is asked to keep (routing every set with one crowd image in it meant routing them all).
    w = members[a]
    if w.signals.anomaly and w.signals.anomaly.get("uncertain"):
        why.append(f"anomaly detectors disagree on {w.name}")
    gaps = [set(missing_sources(m.signals)) for m in members]
    used = {n.removeprefix("missing:") for n in model.space.names if n.startswith("missing:")}
    for src in sorted(used & set().union(*gaps)):
        lacking = [m.name for m, g in zip(members, gaps, strict=True) if src in g]
        if len(lacking) < len(members):  # all members lacking it compare fairly
            why.append(f"{src} unavailable for {', '.join(lacking)}")
    return why


def propose(set_id: str, members: Sequence[Member], model: RankModel, settings: RankSettings) -> SetRanking:
    if not members:
        raise ValueError(f"set {set_id} has no members")
    x = model.space.transform([m.signals for m in members])
    pred = model.predict(x, settings.posterior_samples)
    probs = pred.probabilities
    order = np.argsort(-probs, kind="stable")
    a = int(order[0])
    winner = members[a]
    images = tuple(
        ImageScore(members[i].image_id, members[i].name, float(pred.utilities[i]), float(probs[i])) for i in order
    )
    residual = tuple(anomaly_phrases(winner.name, winner.signals.anomaly))
    if len(members) == 1:
        return SetRanking(
            set_id,
            winner.image_id,
            winner.name,
            images,
            1.0,
            1.0,
            model.source,
            model.version,
            ("only image in the set",),
            residual,
            False,
            (),
        )
    b = int(order[1])
    reasons = _feature_reasons(model, x, a, b, settings)
    for i in order[1:]:
        reasons.extend(anomaly_phrases(members[i].name, members[i].signals.anomaly))
    why = _uncertainty(members, probs, pred.gap_z, order, model, settings)
    return SetRanking(
        set_id,
        winner.image_id,
        winner.name,
        images,
        float(probs[a] - probs[b]),
        float(probs[a]),
        model.source,
        model.version,
        tuple(reasons),
        residual,
        bool(why),
        tuple(why),
    )


def review_order(rankings: Iterable[SetRanking]) -> list[SetRanking]:
    """Uncertain sets first, then least confident first: the user's attention goes where it pays."""
    return sorted(rankings, key=lambda r: (not r.uncertain, r.confidence, r.margin, r.set_id))

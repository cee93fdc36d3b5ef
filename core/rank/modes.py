"""Mode policy (watch -> recommend -> batch) and the tracked metrics, as pure functions of history.

History has one entry per decided set, oldest first, holding the proposal as it was computed
*before* that decision was learned, so every figure here is an honest out-of-sample one. A set
that batch mode decided by itself counts as accepted unless the user corrected it (the daemon then
records the user's final winner), since a correction is the only evidence the daemon gets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.rank.settings import RankSettings
from core.sidecar_types import Box

Mode = Literal["watch", "recommend", "batch"]


@dataclass(frozen=True)
class HistoryEntry:
    set_id: str
    ts: float
    user_winner: str
    proposed_winner: str | None = None  # None: no proposal existed before the decision
    confidence: float | None = None
    source: Literal["model", "prior"] = "model"  # who made the proposal
    auto_decided: bool = False
    crop_iou: float | None = None  # proposed crop vs the user's final crop; None when no crop involved
    residual_anomalies: int | None = None  # anomalies left on the final image; None when unknown
    set_size: int | None = None  # images in the set, for the chance level; None when unknown

    @property
    def agreed(self) -> bool:
        return self.proposed_winner is not None and self.proposed_winner == self.user_winner


def box_iou(a: Box, b: Box) -> float:
    return a.iou(b)


def _last(history: Sequence[HistoryEntry], window: int) -> Sequence[HistoryEntry]:
    return history[-window:] if window > 0 else history


def rolling_agreement(history: Sequence[HistoryEntry], window: int) -> float | None:
    """Top-1 agreement over the last `window` sets that had a proposal."""
    proposed = [e for e in history if e.proposed_winner is not None][-window:]
    return sum(e.agreed for e in proposed) / len(proposed) if proposed else None


def rolling_chance(history: Sequence[HistoryEntry], window: int) -> float | None:
    """What picking at random would agree on, over the same sets as `rolling_agreement`."""
    proposed = [e for e in history if e.proposed_winner is not None][-window:]
    sizes = [e.set_size for e in proposed if e.set_size]
    return sum(1 / n for n in sizes) / len(sizes) if sizes and len(sizes) == len(proposed) else None


def agreement_vs_chance(history: Sequence[HistoryEntry], window: int, z: float) -> tuple[bool | None, str]:
    """Whether top-1 agreement is above chance (its one-sided Wilson lower bound clears the chance
    level), in plain words; None while there is nothing to judge."""
    proposed = [e for e in history if e.proposed_winner is not None][-window:]
    agree, chance = rolling_agreement(history, window), rolling_chance(history, window)
    if agree is None or chance is None:
        return None, "no decided set had a proposal yet"
    k, n = sum(e.agreed for e in proposed), len(proposed)
    words = f"agreement {agree:.2f} on the last {n} sets against {chance:.2f} by chance"
    if wilson_lower(k, n, z) > chance:
        return True, f"{words}: above chance"
    return False, f"{words}: NOT above chance (proposals are no better than a random pick so far)"


def crop_acceptance(history: Sequence[HistoryEntry], window: int, min_iou: float) -> float | None:
    """Share of proposed crops the user kept without edits (IoU with their box >= min_iou)."""
    crops = [e.crop_iou for e in history if e.crop_iou is not None][-window:]
    return sum(iou >= min_iou for iou in crops) / len(crops) if crops else None


def residual_anomaly_rate(history: Sequence[HistoryEntry], window: int) -> float | None:
    known = [e.residual_anomalies for e in history if e.residual_anomalies is not None][-window:]
    return sum(n > 0 for n in known) / len(known) if known else None


def coverage(history: Sequence[HistoryEntry], window: int, threshold: float | None) -> float | None:
    """Share of the last `window` sets that batch would have decided alone (confidence >= threshold).

    With no threshold yet, the share that had a proposal at all.
    """
    recent = _last(history, window)
    if not recent:
        return None
    if threshold is None:
        return sum(e.proposed_winner is not None for e in recent) / len(recent)
    return sum(e.confidence is not None and e.confidence >= threshold for e in recent) / len(recent)


def wilson_lower(k: int, n: int, z: float) -> float:
    """One-sided Wilson lower bound of a proportion k/n."""
    if n == 0:
        return 0.0
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def calibrate_threshold(
    confidences: Sequence[float], correct: Sequence[bool], target: float, z: float, min_count: int
) -> float | None:
    """Lowest confidence threshold whose sets above it reach `target` precision (lower bound).

    The lowest such threshold decides the most sets. None when no threshold qualifies with at
    least `min_count` sets above it.
    """
    pairs = sorted(zip(confidences, correct, strict=True), key=lambda t: -t[0])
    best: float | None = None
    hits = 0
    for i, (conf, ok) in enumerate(pairs):
        hits += bool(ok)
        n = i + 1
        tie_next = i + 1 < len(pairs) and pairs[i + 1][0] == conf
        if not tie_next and n >= min_count and wilson_lower(hits, n, z) >= target:
            best = conf
    return best


def threshold_from_history(history: Sequence[HistoryEntry], s: RankSettings) -> float | None:
    """Calibrate on past model proposals the user decided themselves.

    Batch's own decisions are left out (the user never judged them unless correcting), and so are
    the prior's proposals, whose confidences are on another scale than the model's.
    """
    data = [
        e
        for e in history
        if e.proposed_winner is not None and e.confidence is not None and not e.auto_decided and e.source == "model"
    ]
    return calibrate_threshold(
        [e.confidence for e in data if e.confidence is not None],
        [e.agreed for e in data],
        s.batch_precision_target,
        s.precision_bound_z,
        s.batch_min_calibration_sets,
    )


def agreement_streak(
    history: Sequence[HistoryEntry], scope: Literal["all", "confident"], threshold: float | None
) -> tuple[int, float]:
    """(consecutive agreeing sets counted back from the newest, residual-anomaly rate among them).

    Scope "confident" skips sets below the threshold: batch would not have decided those alone.
    """
    streak = flagged = 0
    for e in reversed(history):
        if scope == "confident" and (threshold is None or e.confidence is None or e.confidence < threshold):
            continue
        if not e.agreed:
            break
        streak += 1
        flagged += bool(e.residual_anomalies)
    return streak, (flagged / streak if streak else 0.0)


@dataclass(frozen=True)
class ModeDecision:
    mode: Mode
    reason: str
    pinned: bool
    threshold: float | None  # confidence at or above which batch decides alone


def auto_decides(confidence: float, decision: ModeDecision) -> bool:
    """In batch, decide a set alone only when its confidence meets the calibrated threshold."""
    return decision.mode == "batch" and decision.threshold is not None and confidence >= decision.threshold


def _batch_holds(history: Sequence[HistoryEntry], threshold: float, s: RankSettings) -> str | None:
    """None while batch still earns its place, else why it no longer does."""
    recent = _last(history, s.batch_exit_window)
    confident = [e for e in recent if e.confidence is not None and e.confidence >= threshold]
    if confident:
        precision = sum(e.agreed for e in confident) / len(confident)
        if precision < s.batch_precision_target:
            return f"precision {precision:.3f} on the last {len(confident)} confident sets is below target"
    rate = residual_anomaly_rate(recent, s.batch_exit_window)
    if rate is not None and rate > s.batch_max_residual_anomaly_rate:
        return f"residual anomaly rate {rate:.3f} over the limit {s.batch_max_residual_anomaly_rate}"
    return None


def decide_mode(
    pinned: Literal["auto", "watch", "recommend", "batch"],
    current: Mode,
    history: Sequence[HistoryEntry],
    s: RankSettings,
) -> ModeDecision:
    """The mode to run in now. `pinned` is Config.mode (or --mode); `current` the mode in force."""
    threshold = threshold_from_history(history, s)
    if pinned != "auto":
        return ModeDecision(pinned, f"pinned to {pinned}", True, threshold)
    if len(history) < s.recommend_after_decisions:
        return ModeDecision("watch", f"{len(history)}/{s.recommend_after_decisions} decisions seen", False, None)
    if current == "batch":
        why = (
            _batch_holds(history, threshold, s)
            if threshold is not None
            else f"no confidence threshold reaches precision {s.batch_precision_target} any more"
        )
        if why is None:
            return ModeDecision("batch", "batch still meets its targets", False, threshold)
        return ModeDecision("recommend", f"left batch: {why}", False, threshold)
    streak, rate = agreement_streak(history, s.batch_streak_scope, threshold)
    if streak < s.batch_after_agreeing_sets:
        return ModeDecision("recommend", f"agreement streak {streak}/{s.batch_after_agreeing_sets}", False, threshold)
    if rate > s.batch_max_residual_anomaly_rate:
        return ModeDecision("recommend", f"residual anomaly rate {rate:.3f} over the streak", False, threshold)
    if threshold is None:
        return ModeDecision(
            "recommend",
            f"no confidence threshold reaches precision {s.batch_precision_target} yet",
            False,
            None,
        )
    return ModeDecision("batch", f"{streak} agreeing sets in a row", False, threshold)

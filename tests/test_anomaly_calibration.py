"""The user's decisions recalibrate the anomaly cues (core.anomaly.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from core.anomaly.calibration import (
    CalibratedScorer,
    CueCalibration,
    RegionOutcome,
    fit_calibration,
    outcomes_for_image,
)
from core.anomaly.detect import detect_anomalies
from core.anomaly.model import Anomaly, AnomalyReport, evidence
from core.anomaly.settings import AnomalySettings, CalibrationSettings
from core.sidecar_types import Box, Hand

S = CalibrationSettings()


def region(x: float, y: float, cue: str = "pip_flexion_deg", tag: str = "extra_fingers", score: float = 0.7) -> Anomaly:
    return Anomaly(tag, Box(x, y, 100, 100), score, evidence(cue, 150.0, 125.0), "hand:0")


def report(*anomalies: Anomaly, suppressed: tuple[Anomaly, ...] = ()) -> AnomalyReport:
    return AnomalyReport(1000, 1000, list(anomalies), suppressed=list(suppressed))


def test_outcomes_follow_what_the_user_did_with_each_region() -> None:
    left, right = region(0, 0), region(800, 800, cue="palm_over_face_width", tag="long_hand")
    r = report(left, suppressed=(right,))
    assert outcomes_for_image(r, "approved", None, [], S) == [
        RegionOutcome("pip_flexion_deg", False),
        RegionOutcome("palm_over_face_width", False),
    ]
    crop = Box(300, 300, 700, 700)  # cuts `left` away, keeps `right`
    assert outcomes_for_image(r, "cropped", crop, [], S) == [
        RegionOutcome("pip_flexion_deg", True),
        RegionOutcome("palm_over_face_width", False),
    ]
    half = Box(50, 0, 950, 950)  # half of `left` inside: says nothing about it
    assert outcomes_for_image(r, "cropped", half, [], S) == [RegionOutcome("palm_over_face_width", False)]
    assert outcomes_for_image(r, "rejected", None, ["long_hand"], S) == [RegionOutcome("palm_over_face_width", True)]
    assert outcomes_for_image(r, "rejected", None, [], S) == []  # rejected, but not for a region we know
    assert outcomes_for_image(r, "other", None, ["extra_fingers"], S) == []  # a loser left in its set


def test_cue_scores_move_towards_the_users_outcomes_after_enough_of_them() -> None:
    kept = [RegionOutcome("a", False)] * 12
    cut = [RegionOutcome("b", True)] * 12
    few = [RegionOutcome("c", False)] * (S.min_observations - 1)
    cal = fit_calibration([*kept, *cut, *few], S)
    assert cal.counts == {"a": (0, 12), "b": (12, 0), "c": (0, S.min_observations - 1)}
    assert cal.score("a", 0.7) < 0.5 <= 0.7 < cal.score("b", 0.7)  # ignored fades, always cut gains
    assert cal.score("c", 0.7) == 0.7 and cal.score("unseen", 0.6) == 0.6
    assert cal.score("a", 0.7) == pytest.approx(S.prior_strength * 0.7 / (12 + S.prior_strength))
    again = CueCalibration.from_dict(cal.to_dict())
    assert again == cal and again.version == cal.version
    assert fit_calibration(kept, S).version != cal.version


def _hand_with_a_folded_finger() -> Hand:
    """A straight open hand (palm 100 px) whose middle finger folds back on itself at the PIP."""
    lm = np.zeros((21, 3))
    lm[0] = (500, 600, 0)
    for f, x in enumerate((420, 470, 520, 570)):  # index..pinky MCP, PIP, DIP, tip
        base = 5 + 4 * f
        for k in range(4):
            lm[base + k] = (x, 500 - 45 * k, 0)
    lm[1:5] = [(450, 570, 0), (410, 540, 0), (380, 510, 0), (360, 480, 0)]
    lm[11] = (520, 410, 0)  # middle DIP back down past the PIP: flexion far beyond range
    lm[12] = (520, 470, 0)
    return Hand(lm, "right", 0.95)


def test_a_learned_calibration_suppresses_a_cue_the_user_keeps_and_keeps_its_region_in_the_report() -> None:
    settings = AnomalySettings()
    hand = _hand_with_a_folded_finger()
    geometric = detect_anomalies([hand], [], [], 1000, 1000, settings)
    assert geometric.anomalies, geometric.reasons
    cue = geometric.anomalies[0].evidence["measurement"]

    ignored = CalibratedScorer(fit_calibration([RegionOutcome(cue, False)] * 20, settings.calibration))
    calibrated = detect_anomalies([hand], [], [], 1000, 1000, settings, scorer=ignored)
    assert not [a for a in calibrated.anomalies if a.evidence["measurement"] == cue]
    gone = [a for a in calibrated.suppressed if a.evidence["measurement"] == cue]
    assert gone and gone[0].evidence["cue_score"] == round(geometric.anomalies[0].score, 4)
    assert calibrated.scorer == ignored.name
    stored = AnomalyReport.from_dict(calibrated.to_dict())  # suppressed regions survive the sidecar
    assert stored.to_dict() == calibrated.to_dict() and len(stored.suppressed) == len(calibrated.suppressed)

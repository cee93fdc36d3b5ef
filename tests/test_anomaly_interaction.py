"""Interacting hands (in front of a face, on the other arm) are uncertain: plausible landmarks
prove little there. Built on the synthetic adult of test_anomaly_cues."""

from __future__ import annotations

from core.anomaly.settings import AnomalySettings
from tests.test_anomaly_cues import FACE, agree, hand_on, make_pose, run


def _uncertain_measurements(r: object) -> set[str]:
    return {u.evidence["measurement"] for u in r.uncertain_regions}  # type: ignore[attr-defined]


def test_hand_in_front_of_the_face_is_uncertain() -> None:
    pose = make_pose(right_elbow=(420.0, 470.0), right_wrist=(470.0, 360.0))
    hands = [hand_on(pose, "right"), hand_on(pose, "left")]
    pose = agree(agree(pose, "right", hands[0]), "left", hands[1])
    r = run(hands, [pose], [FACE])
    assert r.uncertain and "hand_box_share_on_face" in _uncertain_measurements(r), r.reasons
    assert r.anomalies == []  # uncertain, not an anomaly
    s = AnomalySettings()
    s = s.model_copy(update={"uncertain": s.uncertain.model_copy(update={"hand_on_face_min": 1.0})})
    assert "hand_box_share_on_face" not in _uncertain_measurements(run(hands, [pose], [FACE], s))


def test_hand_resting_on_the_other_forearm_is_uncertain() -> None:
    pose = make_pose(left_elbow=(560.0, 600.0), left_wrist=(430.0, 640.0))
    hands = [hand_on(pose, "right"), hand_on(pose, "left")]
    pose = agree(agree(pose, "right", hands[0]), "left", hands[1])
    r = run(hands, [pose], [FACE])
    assert "distance_to_other_forearm_palms" in _uncertain_measurements(r), r.reasons
    s = AnomalySettings()
    s = s.model_copy(update={"uncertain": s.uncertain.model_copy(update={"hand_on_other_forearm_max": 0.01})})
    assert "distance_to_other_forearm_palms" not in _uncertain_measurements(run(hands, [pose], [FACE], s))


def test_hands_by_the_sides_are_not_interacting() -> None:
    pose = make_pose()
    hands = [hand_on(pose, "right"), hand_on(pose, "left")]
    pose = agree(agree(pose, "right", hands[0]), "left", hands[1])
    assert not _uncertain_measurements(run(hands, [pose], [FACE]))

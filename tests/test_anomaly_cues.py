"""Anomaly cues on synthetic people built from adult proportions: a plausible body and hand raise
nothing; each distortion raises exactly its cue, and raising that cue's threshold silences it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.anomaly.detect import detect_anomalies
from core.anomaly.model import TAGS, UNCERTAIN_TAGS, UNDETECTABLE_TAGS, Anomaly, AnomalyReport
from core.anomaly.scorer import GeometricScorer, RegionScorer
from core.anomaly.settings import AnomalySettings
from core.sidecar_types import POSE, Box, Face, Hand, Pose, SubjectMask

W, H = 1000, 1400

# An open right hand, palm to the camera, fingers up; wrist at the origin, palm length 100.
CANON_HAND = np.array(
    [
        [0, 0],
        [-25, -20],
        [-50, -45],
        [-65, -70],
        [-75, -90],  # wrist, thumb CMC..tip
        [-30, -95],
        [-32, -140],
        [-33, -168],
        [-34, -190],  # index MCP, PIP, DIP, tip
        [-5, -100],
        [-5, -148],
        [-5, -178],
        [-5, -201],  # middle
        [18, -95],
        [20, -140],
        [21, -168],
        [22, -190],  # ring
        [38, -85],
        [42, -122],
        [44, -144],
        [46, -162],  # pinky
    ],
    dtype=np.float64,
)


def make_hand(
    wrist: tuple[float, float],
    scale: float = 0.8,
    angle_deg: float = 180.0,
    score: float = 0.98,
    pts: np.ndarray | None = None,
) -> Hand:
    """CANON_HAND (or `pts` in its frame) scaled, rotated (180 = fingers down) and moved to `wrist`."""
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    xy = (CANON_HAND if pts is None else pts) * scale @ rot.T + np.asarray(wrist)
    return Hand(np.column_stack([xy, np.zeros(21)]), "Right", score)


def make_pose(**moves: tuple[float, float]) -> Pose:
    """A frontal standing adult (shoulder width 200 px); `moves` relocate named landmarks."""
    pts = {
        "nose": (500, 300), "left_eye_inner": (508, 290), "left_eye": (515, 290), "left_eye_outer": (522, 290),
        "right_eye_inner": (492, 290), "right_eye": (485, 290), "right_eye_outer": (478, 290),
        "left_ear": (535, 295), "right_ear": (465, 295), "mouth_left": (510, 320), "mouth_right": (490, 320),
        "left_shoulder": (600, 400), "right_shoulder": (400, 400), "left_elbow": (620, 570),
        "right_elbow": (380, 570), "left_wrist": (630, 720), "right_wrist": (370, 720),
        "left_pinky": (640, 790), "right_pinky": (355, 790), "left_index": (630, 800),
        "right_index": (370, 800), "left_thumb": (615, 770), "right_thumb": (385, 770),
        "left_hip": (570, 700), "right_hip": (430, 700), "left_knee": (570, 950), "right_knee": (430, 950),
        "left_ankle": (570, 1200), "right_ankle": (430, 1200), "left_heel": (570, 1215),
        "right_heel": (430, 1215), "left_foot_index": (570, 1250), "right_foot_index": (430, 1250),
    }  # fmt: skip
    pts.update(moves)
    lm = np.zeros((33, 4))
    for name, (x, y) in pts.items():
        lm[POSE[name]] = (x, y, 0.0, 0.99)
    return Pose(lm)


# The right upper arm pointing at the camera-like stub: 40 px against a 160 px forearm.
FORESHORTENED = {"right_elbow": (395.0, 440.0), "right_wrist": (390.0, 600.0)}

FACE = Face(
    Box(455, 250, 90, 95),
    0.95,
    np.array([[485, 290], [515, 290], [500, 305], [500, 322], [465, 295], [535, 295]], dtype=np.float64),
)


def hand_on(pose: Pose, side: str, **kw: Any) -> Hand:
    """A hand on the pose's wrist, pointing along the forearm, with the pose hand points agreeing."""
    w = pose.landmarks[POSE[f"{side}_wrist"], :2]
    e = pose.landmarks[POSE[f"{side}_elbow"], :2]
    d = w - e
    angle = np.degrees(np.arctan2(d[1], d[0])) + 90.0  # canonical fingers point to -y
    return make_hand((float(w[0]), float(w[1])), angle_deg=float(angle), **kw)


def agree(pose: Pose, side: str, hand: Hand) -> Pose:
    """Move the pose's own hand points onto the hand's knuckles (as the pose model would put them)."""
    lm = pose.landmarks.copy()
    for name, idx in (("pinky", 17), ("index", 5), ("thumb", 3)):
        lm[POSE[f"{side}_{name}"], :2] = hand.landmarks[idx, :2]
    return Pose(lm)


def person(**moves: tuple[float, float]) -> tuple[list[Hand], list[Pose], list[Face]]:
    pose = make_pose(**moves)
    hands = [hand_on(pose, "right"), hand_on(pose, "left")]
    pose = agree(agree(pose, "right", hands[0]), "left", hands[1])
    return hands, [pose], [FACE]


def run(
    hands: list[Hand], poses: list[Pose], faces: list[Face], s: AnomalySettings | None = None, **kw: Any
) -> AnomalyReport:
    return detect_anomalies(hands, poses, faces, W, H, s or AnomalySettings(), **kw)


def measurements(r: AnomalyReport) -> set[str]:
    out = set()
    for a in r.anomalies:
        out.add(a.evidence["measurement"])
        out.update(e["measurement"] for e in a.evidence.get("also", []))
    return out


def test_plausible_person_is_clean() -> None:
    r = run(*person())
    assert r.anomalies == [], r.reasons
    assert not r.uncertain, r.reasons
    assert r.clean


def _with(settings: AnomalySettings, section: str, **values: float) -> AnomalySettings:
    sub = getattr(settings, section).model_copy(update=values)
    return settings.model_copy(update={section: sub})


def _distorted_hand(edit: Any) -> tuple[list[Hand], list[Pose], list[Face]]:
    pose = make_pose()
    pts = CANON_HAND.copy()
    edit(pts)
    hands = [hand_on(pose, "right", pts=pts), hand_on(pose, "left")]
    return hands, [agree(agree(pose, "right", hands[0]), "left", hands[1])], [FACE]


def test_fused_fingers_flag_extra_fingers() -> None:
    def fuse(p: np.ndarray) -> None:
        p[11] = p[7] + (1, 0)  # middle DIP and tip on the index finger's
        p[12] = p[8] + (1, 0)
        p[10] = (p[6] + p[10]) / 2

    inputs = _distorted_hand(fuse)
    r = run(*inputs)
    hit = [a for a in r.anomalies if a.source == "hand:0"]
    assert [a.tag for a in hit] == ["extra_fingers"]
    assert "adjacent_finger_gap_over_length" in measurements(r)
    assert hit[0].evidence["fingers"] == "index+middle"
    assert run(*inputs, s=_with(AnomalySettings(), "hand", fused_finger_max_gap=0.001)).anomalies == []


def test_middle_phalanx_longer_than_proximal() -> None:
    def stretch(p: np.ndarray) -> None:
        p[11] = p[10] + (0, -70)  # middle phalanx of the middle finger 70 vs proximal 48
        p[12] = p[11] + (0, -23)

    inputs = _distorted_hand(stretch)
    r = run(*inputs)
    assert "middle_over_proximal_phalanx" in measurements(r)
    assert {a.tag for a in r.anomalies} == {"extra_fingers"}
    relaxed = _with(AnomalySettings(), "hand", middle_over_proximal_max=2.0)
    assert "middle_over_proximal_phalanx" not in measurements(run(*inputs, s=relaxed))


def test_finger_folded_past_its_range() -> None:
    def fold(p: np.ndarray) -> None:
        p[7] = p[6] + (2, 25)  # index middle phalanx folds straight back down (~175 degrees at PIP)
        p[8] = p[7] + (0, 20)

    inputs = _distorted_hand(fold)
    r = run(*inputs)
    assert "pip_flexion_deg" in measurements(r)
    assert run(*inputs, s=_with(AnomalySettings(), "hand", pip_flex_max_deg=179.9)).anomalies == []


def test_oversized_hand_is_long_hand() -> None:
    pose = make_pose()
    hands = [hand_on(pose, "right", scale=1.6), hand_on(pose, "left")]
    inputs = hands, [agree(agree(pose, "right", hands[0]), "left", hands[1])], [FACE]
    r = run(*inputs)
    assert [a.tag for a in r.anomalies] == ["long_hand"]
    assert "palm_over_face_width" in measurements(r)
    relaxed = _with(AnomalySettings(), "hand", palm_over_face_max=5.0, palm_over_shoulder_max=5.0)
    assert run(*inputs, s=relaxed).anomalies == []


def test_hand_away_from_the_arm_is_misaligned() -> None:
    pose = make_pose()
    far = hand_on(pose, "right")
    shifted = Hand(far.landmarks + np.array([-100.0, 40.0, 0.0]), far.handedness, far.score)
    hands = [shifted, hand_on(pose, "left")]
    inputs = hands, [agree(agree(pose, "right", shifted), "left", hands[1])], [FACE]
    r = run(*inputs)
    assert [(a.tag, a.evidence["measurement"]) for a in r.anomalies] == [
        ("limb_misaligned", "hand_wrist_to_pose_wrist_palms")
    ]
    assert run(*inputs, s=_with(AnomalySettings(), "hand", wrist_offset_max_palms=3.0)).anomalies == []


def test_hand_bent_back_off_the_forearm_is_warped_wrist() -> None:
    pose = make_pose()
    w = pose.landmarks[POSE["right_wrist"], :2]
    bent = make_hand((float(w[0]), float(w[1])), angle_deg=0.0)  # fingers up while the forearm points down
    hands = [bent, hand_on(pose, "left")]
    r = run(hands, [agree(agree(pose, "right", bent), "left", hands[1])], [FACE])
    assert "wrist_bend_deg" in measurements(r)
    assert {a.tag for a in r.anomalies} == {"warped_wrist"}


def test_third_hand_on_one_person() -> None:
    hands, poses, faces = person()
    extra = Hand(hands[0].landmarks + np.array([30.0, 10.0, 0.0]), "Right", 0.97)
    r = run([*hands, extra], poses, faces)
    tagged = [a for a in r.anomalies if a.evidence["measurement"] == "hands_per_person"]
    assert len(tagged) == 1 and tagged[0].tag == "limb_misaligned"
    assert tagged[0].evidence["value"] == 3
    ok = AnomalySettings().model_copy(update={"max_hands_per_person": 3})
    assert not [
        a for a in run([*hands, extra], poses, faces, s=ok).anomalies if a.evidence["measurement"] == "hands_per_person"
    ]


def test_visible_wrist_without_a_hand_is_uncertain_not_clean() -> None:
    hands, poses, faces = person()
    r = run(hands[1:], poses, faces)
    assert r.uncertain and not r.clean
    assert [u.tag for u in r.uncertain_regions] == ["hand_undetected"]
    region = r.uncertain_regions[0].box
    wx, wy = poses[0].landmarks[POSE["right_wrist"], :2]
    assert region.x <= wx <= region.x2 and region.y <= wy <= region.y2
    assert any("right wrist visible" in x for x in r.reasons)


def test_wrist_on_background_per_subject_mask_is_not_a_hand() -> None:
    hands, poses, faces = person()
    mask = np.zeros((140, 100), np.float32)
    mask[20:135, 45:70] = 1.0  # the person from x 450 to 700; the right wrist (x 370) is on background
    r = run(hands[1:], poses, faces, subject=SubjectMask(mask, 0.1))
    assert not r.uncertain
    assert any("background" in x for x in r.reasons)


def test_low_confidence_hand_is_uncertain() -> None:
    pose = make_pose()
    hands = [hand_on(pose, "right", score=0.3), hand_on(pose, "left")]
    r = run(hands, [agree(agree(pose, "right", hands[0]), "left", hands[1])], [FACE])
    assert r.uncertain
    assert [u.tag for u in r.uncertain_regions] == ["hand_low_confidence"]


def test_pose_and_hand_models_disagreeing_is_uncertain() -> None:
    pose = make_pose()
    hands = [hand_on(pose, "right"), hand_on(pose, "left")]
    agreed = agree(pose, "left", hands[1])  # the right arm keeps pose hand points 80 px off the palm
    lm = agreed.landmarks.copy()
    for n in ("right_pinky", "right_index", "right_thumb"):
        lm[POSE[n], :2] += (-90.0, 0.0)
    r = run(hands, [Pose(lm)], [FACE])
    assert r.uncertain
    assert [u.evidence["measurement"] for u in r.uncertain_regions] == ["pose_vs_hand_palm_centre_palms"]


def test_faces_without_pose_are_uncertain_unless_configured() -> None:
    r = run([], [], [FACE])
    assert r.uncertain and any("without a pose" in x for x in r.reasons)
    off = _with(AnomalySettings(), "uncertain", unposed_faces_are_uncertain=False)
    assert not run([], [], [FACE], s=off).uncertain


@pytest.mark.parametrize(
    ("moves", "tag", "measurement"),
    [
        (
            {"left_wrist": (800, 820), "left_pinky": (805, 880), "left_index": (800, 890), "left_thumb": (785, 870)},
            "limb_misaligned",
            "forearm_left_right_ratio",
        ),
        (FORESHORTENED, "foreshortened_upper_arm", "upper_arm_over_forearm"),
        ({"left_heel": (570, 1215), "left_foot_index": (870, 1230)}, "long_foot", "foot_over_shin"),
        (
            {"right_knee": (370, 950), "right_heel": (420, 1215), "right_foot_index": (530, 1225)},
            "limb_misaligned",
            "knee_hyperextension_deg",
        ),
    ],
)
def test_limb_cues(moves: dict[str, tuple[float, float]], tag: str, measurement: str) -> None:
    hands, poses, faces = person(**moves)
    r = run(hands, poses, faces)
    limb = [a for a in r.anomalies if a.source.startswith("pose:")]
    assert [(a.tag, a.evidence["measurement"]) for a in limb] == [(tag, measurement)], r.reasons
    assert 0.5 <= limb[0].score <= 1.0


def test_knee_bent_towards_the_toes_is_fine() -> None:
    hands, poses, faces = person(right_knee=(490, 950), right_heel=(420, 1215), right_foot_index=(530, 1225))
    assert not [a for a in run(hands, poses, faces).anomalies if a.source.startswith("pose:")]


def test_small_people_are_not_measured() -> None:
    hands, poses, faces = person(**FORESHORTENED)
    big = detect_anomalies(hands, poses, faces, W, H, AnomalySettings())
    small = detect_anomalies(hands, poses, faces, 6000, 8000, AnomalySettings())
    assert any(a.tag == "foreshortened_upper_arm" for a in big.anomalies)
    assert not any(a.tag == "foreshortened_upper_arm" for a in small.anomalies)
    assert any("too small" in x for x in small.reasons)


def test_report_json_round_trip() -> None:
    hands, poses, faces = person(**FORESHORTENED)
    r = run(hands[1:], poses, faces)
    assert r.anomalies and r.uncertain_regions
    back = AnomalyReport.from_json(r.to_json())
    assert back.to_dict() == r.to_dict()
    assert back.tags() == r.tags()
    for a in back.anomalies + back.uncertain_regions:
        assert {"measurement", "value", "threshold"} <= set(a.evidence)
        assert 0.0 <= a.score <= 1.0


class _HalfScorer:
    name = "halver"

    def score(self, candidates: Any, rgb: np.ndarray | None) -> list[float]:
        return [c.score / 2 for c in candidates]


def test_region_scorer_decides_the_final_score() -> None:
    hands, poses, faces = person(**FORESHORTENED)
    assert isinstance(GeometricScorer(), RegionScorer) and isinstance(_HalfScorer(), RegionScorer)
    geo = run(hands, poses, faces)
    assert geo.anomalies and geo.scorer == "geometric"
    halved = run(hands, poses, faces, scorer=_HalfScorer())
    assert halved.scorer == "halver"
    # Every geometric score is >= 0.5 at its threshold; halved ones fall below min_score 0.5 unless saturated.
    assert len(halved.anomalies) < len(geo.anomalies) or all(a.score <= 0.5 for a in halved.anomalies)
    keep_all = AnomalySettings().model_copy(update={"min_score": 0.0})
    assert [a.score for a in run(hands, poses, faces, s=keep_all, scorer=_HalfScorer()).anomalies] == [
        pytest.approx(a.score / 2) for a in geo.anomalies
    ]


def test_vocabulary_is_the_users() -> None:
    assert set(UNDETECTABLE_TAGS) <= set(TAGS)
    assert not set(UNCERTAIN_TAGS) & set(TAGS)
    hands, poses, faces = person(**FORESHORTENED)
    r = run(hands, poses, faces)
    assert all(a.tag in TAGS for a in r.anomalies)
    assert all(isinstance(a, Anomaly) for a in r.anomalies)

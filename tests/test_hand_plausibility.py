"""Anatomical plausibility of one hand from MediaPipe's world landmarks (core.anomaly.plausibility).

Every test starts from hands the real MediaPipe hands model reads in the shared generated portraits
(../shared/data/ai_portraits_hands): the sign convention and the typical readings are checked on
them as they come, and each measurement is checked to move when one of those real hands is bent,
stretched or crossed the way a malformed hand is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.anomaly.plausibility import (
    HYPEREXTENSION_LIMIT_DEG,
    finger_crossings,
    hyperextension_deg,
    proportion_deviation,
    proportions,
    signed_flexions,
)
from core.anomaly.world import hand_world_from_payload
from core.config import load_config
from core.extractors.registry import build_extractors, run_pass
from core.imaging import load
from core.sidecar_types import HAND_FINGERS, hands_from_payload

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

RealHand = tuple[str, np.ndarray]  # handedness, (21, 3) world landmarks


@pytest.fixture(scope="module")
def real_hands(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[RealHand]:
    cfg = load_config(None, root=tmp_path_factory.mktemp("root"), env={})
    extractors = build_extractors(cfg.extractors.model_copy(update={"enabled": ["hands"]}), cfg.path("models"))
    out: list[RealHand] = []
    try:
        for path in sorted((shared_data / "ai_portraits_hands" / "image").glob("*.png")):
            img = load(path)
            res = run_pass(extractors, [img], {})[img.sha256]["hands"]
            assert not isinstance(res, Exception), res
            for hand, world in zip(hands_from_payload(res.payload), hand_world_from_payload(res.payload), strict=True):
                assert world is not None
                out.append((hand.handedness, world))
    finally:
        for e in extractors:
            e.close()
    assert len(out) >= 6 and {h for h, _ in out} == {"Left", "Right"}
    return out


def _rotate_about(points: np.ndarray, origin: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    a = np.radians(deg)
    v = points - origin
    rot = v * np.cos(a) + np.cross(k, v) * np.sin(a) + np.outer(v @ k, k) * (1 - np.cos(a))
    out: np.ndarray = origin + rot
    return out


def test_real_fingers_bend_towards_the_palm_for_either_hand(real_hands: list[RealHand]) -> None:
    bent = [a for hd, w in real_hands for flex in signed_flexions(w, hd).values() for a in flex if abs(a) > 15]
    assert len(bent) >= 20
    assert np.mean(np.array(bent) > 0) >= 0.8, bent
    # A hand read mirror-imaged is the other hand: the same bends, the same signs.
    hd, w = real_hands[0]
    mirrored = w * np.array([-1.0, 1.0, 1.0])
    other = "Right" if hd == "Left" else "Left"
    for f, flex in signed_flexions(w, hd).items():
        assert np.allclose(signed_flexions(mirrored, other)[f], flex, atol=1e-6)


def test_a_finger_bent_backwards_is_hyperextended(real_hands: list[RealHand]) -> None:
    hd, w = min(real_hands, key=lambda h: hyperextension_deg(h[1], h[0]))
    assert hyperextension_deg(w, hd) == 0.0
    _, pip, dip, tip = HAND_FINGERS["middle"]
    pip_flex = signed_flexions(w, hd)["middle"][1]
    lateral = w[17] - w[5]
    # Turn the middle finger's last two phalanges about the PIP joint, against its flexion, until
    # the joint bends 70 degrees backwards.
    sign = 1.0 if hd == "Left" else -1.0
    bent = w.copy()
    for deg in (sign * (pip_flex + 70.0), -sign * (pip_flex + 70.0)):
        trial = w.copy()
        trial[[dip, tip]] = _rotate_about(w[[dip, tip]], w[pip], lateral, deg)
        if signed_flexions(trial, hd)["middle"][1] < 0:
            bent = trial
            break
    assert signed_flexions(bent, hd)["middle"][1] == pytest.approx(-70.0, abs=2.0)
    assert hyperextension_deg(bent, hd) == pytest.approx(70.0 - HYPEREXTENSION_LIMIT_DEG["pip"], abs=3.0)


def test_stretched_phalanges_move_the_proportions_away_from_a_typical_hand(real_hands: list[RealHand]) -> None:
    devs = [proportion_deviation(w) for _, w in real_hands]
    # Generated hands, several malformed: some far from a typical hand, but not all of them.
    assert all(d >= 0.0 for d in devs) and min(devs) < 0.5 and max(devs) > 1.0, devs
    _, w = min(real_hands, key=lambda h: proportion_deviation(h[1]))
    stretched = w.copy()
    for name in ("index", "middle", "ring", "pinky"):
        _, pip, dip, tip = HAND_FINGERS[name]
        step = w[dip] - w[pip]  # the middle phalanx twice as long, the rest of the finger moved out
        stretched[[dip, tip]] += step
    assert proportions(stretched)["middle_over_proximal"] == pytest.approx(
        2 * proportions(w)["middle_over_proximal"], rel=0.01
    )
    assert proportion_deviation(stretched) > proportion_deviation(w) + 0.3


def test_a_finger_through_a_non_neighbour_is_a_crossing(real_hands: list[RealHand]) -> None:
    clean = [w for _, w in real_hands if finger_crossings(w) == 0]
    assert len(clean) >= len(real_hands) // 2  # these are generated hands: some do cross
    w = clean[0]
    crossed = w.copy()
    dip, tip = HAND_FINGERS["index"][2:]
    rdip, rtip = HAND_FINGERS["ring"][2:]
    crossed[[dip, tip]] = w[[rdip, rtip]] + 0.002  # the index's last phalanges lie inside the ring finger
    assert finger_crossings(crossed) == 1
    # Neighbours side by side are not crossings.
    together = w.copy()
    mdip, mtip = HAND_FINGERS["middle"][2:]
    together[[dip, tip]] = w[[mdip, mtip]] + np.array([0.0, 0.0, 0.004])
    assert finger_crossings(together) == 0

"""The hand network's image and world readings checked against each other (core.anomaly.world).

Synthetic tests build a hand from adult proportions and a world reading of it; the real tests
run the real MediaPipe hands model over ../shared/data. (The file keeps its planned name: the
stability-under-augmentation cue it was meant for was measured and rejected, see
core/anomaly/world.py; the real hand's augmentations below are what is left of it.)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.anomaly.detect import detect_anomalies
from core.anomaly.hands import points_3d
from core.anomaly.model import AnomalyReport
from core.anomaly.settings import AnomalySettings, UncertainSettings
from core.anomaly.world import hand_world_from_payload, palm_normal_angle_deg, proximal_over_palm, world_cues
from core.config import load_config
from core.crop.from_sidecars import NEEDED, CropInputs, inputs_from_results
from core.extractors.hands import HandsExtractor
from core.extractors.registry import build_extractors, run_pass
from core.extractors.settings import ExtractorSettings
from core.imaging import DecodedImage, load
from core.sidecar_types import Box, Hand, hands_from_payload, hands_to_payload
from tests.test_anomaly_cues import H, W, person, run

WORLD_MEASUREMENTS = ("world_proximal_phalanx_over_palm", "image_vs_world_palm_normal_deg")


def world_of(hand: Hand, tilt_deg: float = 0.0) -> np.ndarray:
    """The world reading a consistent network would give: the hand in metres (palm 9 cm), centred,
    on the camera's axes, optionally tilted about the x axis (depth the image head does not see)."""
    p = points_3d(hand, W)
    p = (p - p.mean(axis=0)) * 0.09 / np.linalg.norm(p[9, :2] - p[0, :2])
    a = np.radians(tilt_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return p @ rot.T


def collapsed(world: np.ndarray, keep: float = 0.1) -> np.ndarray:
    """Each long finger's PIP, DIP and tip pulled back onto its knuckle, leaving `keep` of the
    proximal phalanx: fingers springing straight from the knuckles."""
    w = world.copy()
    for mcp, pip in ((5, 6), (9, 10), (13, 14), (17, 18)):
        w[pip : pip + 3] -= (1.0 - keep) * (w[pip] - w[mcp])
    return w


def world_regions(r: AnomalyReport) -> list[str]:
    """The world measurements behind the report's uncertain regions (merged ones included)."""
    out = []
    for u in r.uncertain_regions:
        for ev in [u.evidence, *u.evidence.get("also", [])]:
            if ev["measurement"] in WORLD_MEASUREMENTS:
                out.append(ev["measurement"])
    return out


def test_consistent_readings_raise_nothing() -> None:
    hands, poses, faces = person()
    for tilt in (0.0, 40.0):
        r = run(hands, poses, faces, hand_world=[world_of(h, tilt) for h in hands])
        assert r.clean, r.reasons
        assert not any("world landmarks" in x for x in r.reasons)
    assert proximal_over_palm(world_of(hands[0])) == pytest.approx(0.45, abs=0.03)
    assert palm_normal_angle_deg(points_3d(hands[0], W), world_of(hands[0], 40.0)) == pytest.approx(40.0, abs=0.5)


def test_collapsed_world_fingers_make_the_hand_uncertain() -> None:
    hands, poses, faces = person()
    world = [collapsed(world_of(hands[0])), world_of(hands[1])]
    r = run(hands, poses, faces, hand_world=world)
    assert not r.anomalies
    assert r.uncertain and world_regions(r) == ["world_proximal_phalanx_over_palm"]
    u = r.uncertain_regions[0]
    assert u.tag == "hand_low_confidence" and u.source == "hand:0"
    assert u.evidence["value"] == pytest.approx(0.045, abs=0.01)
    # The region is the hand's own box, so a crop can cut it away.
    xs, ys = hands[0].landmarks[:, 0], hands[0].landmarks[:, 1]
    assert u.box.x < xs.min() and u.box.x2 > xs.max() and u.box.y < ys.min() and u.box.y2 > ys.max()
    lax = AnomalySettings(uncertain=UncertainSettings(world_proximal_over_palm_min=0.04))
    assert run(hands, poses, faces, lax, hand_world=world).clean


def test_mirrored_world_reading_makes_the_hand_uncertain() -> None:
    hands, poses, faces = person()
    mirrored = world_of(hands[1]) * np.array([-1.0, 1.0, 1.0])  # the network reads the back for the palm
    r = run(hands, poses, faces, hand_world=[world_of(hands[0]), mirrored])
    assert world_regions(r) == ["image_vs_world_palm_normal_deg"]
    assert r.uncertain_regions[0].source == "hand:1"
    assert r.uncertain_regions[0].evidence["value"] == pytest.approx(180.0, abs=0.5)
    lax = AnomalySettings(uncertain=UncertainSettings(heads_palm_normal_max_deg=180.0))
    assert run(hands, poses, faces, lax, hand_world=[world_of(hands[0]), mirrored]).clean
    # Both contradictions on one hand: one region, the weaker one kept in its evidence.
    r = run(hands, poses, faces, hand_world=[world_of(hands[0]), collapsed(mirrored)])
    assert len(r.uncertain_regions) == 1 and sorted(world_regions(r)) == sorted(WORLD_MEASUREMENTS)


def test_missing_world_landmarks_are_reported_not_hidden() -> None:
    hands, poses, faces = person()
    bad = [collapsed(world_of(hands[0])), None]
    r = run(hands, poses, faces, hand_world=bad)
    assert world_regions(r) == ["world_proximal_phalanx_over_palm"]
    assert any("1 hand(s) without world landmarks" in x for x in r.reasons)
    r = run(hands, poses, faces)
    assert r.clean and any("2 hand(s) without world landmarks" in x for x in r.reasons)
    with pytest.raises(ValueError, match="1 entries for 2 hands"):
        run(hands, poses, faces, hand_world=[None])


def test_hand_cut_by_the_frame_is_not_judged_on_its_readings() -> None:
    hands, _, _ = person()
    inside = hands[0]
    # Moved so most landmarks fall below the frame: both heads extrapolate alike.
    cut = Hand(inside.landmarks + np.array([0.0, H - inside.landmarks[:, 1].min() - 20, 0.0]), "Right", 0.98)
    w = collapsed(world_of(inside))
    r = detect_anomalies([cut], [], [], W, H, AnomalySettings(), hand_world=[w])
    assert not world_regions(r)
    assert world_cues(points_3d(inside, W), w, Box(0, 0, 10, 10), "hand:0", UncertainSettings())


def test_payload_keeps_the_sidecar_format() -> None:
    hands, _, _ = person()
    payload = hands_to_payload(hands, W, H)
    assert hand_world_from_payload(payload) == [None, None]  # sidecars from hands version 1
    payload["hands"][1]["world_landmarks"] = np.round(world_of(hands[1]), 4).tolist()
    got = hand_world_from_payload(payload)
    assert got[0] is None and got[1] is not None and got[1].shape == (21, 3)
    back = hands_from_payload(payload)
    assert len(back) == 2 and np.allclose(back[1].landmarks, hands[1].landmarks, atol=0.01)


# ---- real images, real models ----------------------------------------------------------------

AI = ("ai_malformed_hands", "ai_portraits_hands/image", "ai_people_flux")
REAL = ("real_people_wholebody", "crop_scored")
# Its 3D reading collapses (proximal/palm 0.05, palm normals 123 degrees apart) while the 2D
# landmarks draw straight, well-proportioned fingers over melted curled ones.
MELTED = "9cb940e48d21acc3272b25a5a57fe1c5.png"
REAL_HAND = "342407.jpg"  # the one real hand the detector finds: two clasped hands


def _images(shared: Path, folders: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        out += sorted(p for p in (shared / folder).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return out


Analysed = dict[str, tuple[CropInputs, list[np.ndarray | None], AnomalyReport]]


@pytest.fixture(scope="module")
def analysed(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    cfg = load_config(None, root=tmp_path_factory.mktemp("root"), env={})
    extractors = build_extractors(cfg.extractors.model_copy(update={"enabled": list(NEEDED)}), cfg.path("models"))
    for e in extractors:
        a = e.availability()
        assert a.available, f"{e.name}: {a.reason} (fix: {a.fix})"
    out: Analysed = {}
    try:
        for path in _images(shared_data, AI + REAL):
            img = load(path)
            results = run_pass(extractors, [img], {})[img.sha256]
            inputs = inputs_from_results(results)
            assert not inputs.missing, inputs.missing
            hands = results["hands"]
            assert not isinstance(hands, Exception)
            world = hand_world_from_payload(hands.payload)
            report = detect_anomalies(
                inputs.hands,
                inputs.poses,
                inputs.faces,
                img.width,
                img.height,
                cfg.anomaly,
                subject=inputs.subject,
                hand_world=world,
            )
            out[path.name] = (inputs, world, report)
    finally:
        for e in extractors:
            e.close()
    assert len(out) == 23
    return out


@pytest.mark.slow
@pytest.mark.shared_data
def test_every_detected_hand_carries_world_landmarks(analysed: Analysed) -> None:
    n = 0
    for name, (inputs, world, _) in analysed.items():
        assert len(world) == len(inputs.hands), name
        for w in world:
            assert w is not None and w.shape == (21, 3), name
            # Metres: a palm of a few centimetres up to a large adult's, never pixels.
            assert 0.02 < float(np.linalg.norm(w[9] - w[0])) < 0.15, name
            n += 1
    assert n >= 20


@pytest.mark.slow
@pytest.mark.shared_data
def test_collapsed_reading_flags_the_melted_hand(analysed: Analysed) -> None:
    _, _, r = analysed[MELTED]
    assert sorted(world_regions(r)) == sorted(WORLD_MEASUREMENTS), r.reasons
    # Both contradictions on one hand make one region, not two.
    assert [u.source for u in r.uncertain_regions] == ["hand:0"]
    assert r.uncertain


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_photos_get_no_false_hand_flags(analysed: Analysed, shared_data: Path) -> None:
    """Zero hand anomalies and no low-confidence hand on the real photos. Their only uncertain
    regions are pose wrists the palm detector missed (COCO hands are 11-31 px wide) and people
    no detector read (`person_unchecked`: COCO 40083 has three people, two get a pose)."""
    real = [p.name for p in _images(shared_data, REAL)]
    assert len(real) == 10
    for name in real:
        _, _, r = analysed[name]
        assert not [a for a in r.anomalies if a.source.startswith("hand:")], (name, r.reasons)
        assert all(u.tag in ("hand_undetected", "person_unchecked") for u in r.uncertain_regions), (name, r.reasons)
    assert len(analysed[REAL_HAND][0].hands) == 1  # otherwise this checks no real hand at all
    # The world cue fires only on generated images.
    assert all(not world_regions(r) for n, (_, _, r) in analysed.items() if n in real)


def _variants(rgb: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, 2x3 map from original to variant pixels)."""
    h, w = rgb.shape[:2]
    out = [("flip", np.ascontiguousarray(rgb[:, ::-1]), np.array([[-1.0, 0, w], [0, 1, 0]]))]
    for a in (-30, 30):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), a, 1.0)
        out.append((f"rot{a}", cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT), m))
    for s in (0.6, 1.5):
        out.append(
            (
                f"x{s}",
                cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA),
                np.array([[s, 0, 0], [0, s, 0.0]]),
            )
        )
    return out


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_hand_stays_consistent_when_flipped_rotated_and_rescaled(shared_data: Path) -> None:
    img = load(shared_data / "crop_scored" / REAL_HAND)
    ext = HandsExtractor(ExtractorSettings(device="cpu"))
    base = ext.run([img], [{}])[0]
    assert not isinstance(base, Exception)
    anchor = hands_from_payload(base.payload)[0].landmarks[0, :2]
    seen = 0
    try:
        for name, rgb, m in _variants(img.rgb):
            res = ext.run([DecodedImage(f"{img.sha256}:{name}", img.path, rgb, "PNG")], [{}])[0]
            assert not isinstance(res, Exception)
            hv, wv = rgb.shape[:2]
            where = m[:, :2] @ anchor + m[:, 2]
            for hand, world in zip(hands_from_payload(res.payload), hand_world_from_payload(res.payload), strict=True):
                if np.linalg.norm(hand.landmarks[0, :2] - where) > 0.1 * max(hv, wv) or world is None:
                    continue
                seen += 1
                cues = world_cues(points_3d(hand, wv), world, Box(0, 0, 1, 1), "hand:0", UncertainSettings())
                assert not cues, (name, [c.evidence for c in cues])
    finally:
        ext.close()
    assert seen >= 4, seen  # measured: found in all 5 variants

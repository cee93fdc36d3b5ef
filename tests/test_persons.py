"""Every person in the image: a pose per person, each hand on its own person, and people nobody
could check never reported clean; on synthetic inputs and on real group and crowd images."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.anomaly.detect import hand_owners
from core.anomaly.settings import AnomalySettings
from core.crop.from_sidecars import NEEDED, CropInputs, analyse, inputs_from_results
from core.crop.proposal import propose_crop
from core.crop.settings import CropSettings
from core.extractors.registry import build_extractors, run_pass
from core.extractors.settings import ExtractorSettings
from core.imaging import load
from core.persons import pose_has_face, same_person
from core.sidecar_types import POSE, Hand, Pose, SubjectMask
from tests.helpers import bestshot, db_rows, write_config
from tests.test_anomaly_cues import FACE, H, W, make_pose, person, run

GROUP = "ai_people_flux/test2.png"  # a rugby crowd: 5-6 people, 3 faces found
# Five people at a table, hands on the pizza and at the chin; no hand is found in the frame pass.
CROWD = "anatomy_dev/images/sdXL/people_eating_pizza/sdXL_pizza_05.jpg"
# Five players; the frame pass finds no hand, the crops around the pose hands find four on three
# people (checked by eye).
VOLLEY = "anatomy_dev/images/dall-e3/five_people_playing_volleyball/dall_e3_volleyball_01.png"


def shifted(pose: Pose, dx: float) -> Pose:
    lm = pose.landmarks.copy()
    lm[:, 0] += dx
    return Pose(lm)


# ---- synthetic ----------------------------------------------------------------------------------


def test_a_face_without_a_pose_is_an_unchecked_person_with_a_region() -> None:
    r = run([], [], [FACE])
    assert r.uncertain and not r.clean
    (region,) = r.uncertain_regions
    assert region.tag == "person_unchecked" and region.source == "face:0"
    b = region.box
    assert b.x <= FACE.box.x and b.y <= FACE.box.y and b.x2 >= FACE.box.x2 and b.y2 > FACE.box.y2 + 3 * FACE.box.h
    # Nobody can crop a person away to make them checked: the crop routes the image to the user.
    crop = propose_crop(W, H, r, faces=[FACE])
    assert crop.verdict == "review" and "could not be checked" in crop.reason


def test_a_subject_blob_no_pose_or_face_reaches_is_an_unchecked_person() -> None:
    hands, poses, faces = person()
    mask = np.zeros((140, 100), np.float32)
    mask[20:135, 45:70] = 1.0  # the posed person
    alone = run(hands, poses, faces, subject=SubjectMask(mask, 0.1))
    assert alone.clean, alone.reasons
    mask[30:130, 85:98] = 1.0  # someone at the right edge whom no detector saw (x 850-980)
    r = run(hands, poses, faces, subject=SubjectMask(mask, 0.1))
    assert r.uncertain and not r.clean
    (region,) = r.uncertain_regions
    assert region.tag == "person_unchecked" and region.source == "subject:0"
    assert 840 <= region.box.x <= 860 and region.box.x2 >= 970


def test_a_hand_found_at_a_persons_wrist_belongs_to_that_person() -> None:
    a = make_pose()
    b = shifted(a, 255.0)  # b's right wrist (625, 720) next to a's left wrist (630, 720)
    wrist = (628.0, 720.0)
    lm = np.zeros((21, 3))
    lm[:, :2] = np.asarray(wrist) + np.linspace(0, 1, 21)[:, None] * np.array([0.0, 120.0])
    plain = Hand(lm, "Right", 0.9)
    found_for_b = Hand(lm, "Right", 0.9, pose=1, side="right")
    s = AnomalySettings()
    assert hand_owners([plain], [a, b], [], W, H, s) == {0: (0, "left")}  # the nearest wrist
    assert hand_owners([found_for_b], [a, b], [], W, H, s) == {0: (1, "right")}
    # A label that no longer fits (the pose sidecar moved on) is not trusted.
    stale = Hand(lm, "Right", 0.9, pose=1, side="left")
    assert hand_owners([stale], [a, b], [], W, H, s) == {0: (0, "left")}


def test_two_hands_near_one_wrist_go_to_two_people() -> None:
    a = make_pose()
    b = shifted(a, 300.0)  # b's right wrist at (670, 720)
    spread = np.linspace(0, 1, 21)[:, None] * np.array([0.0, 120.0])
    on_a = Hand(np.column_stack([np.array([630.0, 720.0]) + spread, np.zeros(21)]), "Left", 0.9)
    between = Hand(np.column_stack([np.array([645.0, 720.0]) + spread, np.zeros(21)]), "Right", 0.9)
    owners = hand_owners([on_a, between], [a, b], [], W, H, AnomalySettings())
    # Nearest-wrist-only would put both on a's left wrist (15 px against 25 px for `between`).
    assert owners == {0: (0, "left"), 1: (1, "right")}


# ---- real images --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analysed(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    extractors = build_extractors(ExtractorSettings(enabled=list(NEEDED)), tmp_path_factory.mktemp("models"))
    out: dict[str, Any] = {}
    try:
        for rel in (GROUP, CROWD, VOLLEY):
            path = shared_data / rel
            if not path.is_file():
                pytest.skip(f"{rel} is absent")
            img = load(path)
            inputs = inputs_from_results(run_pass(extractors, [img], {})[img.sha256])
            assert not inputs.missing, inputs.missing
            report, crop = analyse(inputs, img.width, img.height, AnomalySettings(), CropSettings(), img.rgb)
            out[rel] = {"inputs": inputs, "report": report, "crop": crop, "size": (img.width, img.height)}
        yield out
    finally:
        for e in extractors:
            e.close()


@pytest.mark.slow
@pytest.mark.shared_data
def test_a_group_image_gets_a_pose_per_person(analysed: dict[str, Any]) -> None:
    inputs: CropInputs = analysed[GROUP]["inputs"]
    poses = inputs.poses
    # The legacy graph found one; the faces alone name three people, the tiles find the others.
    assert len(poses) >= 4, len(poses)
    assert not any(same_person(p, q) for i, p in enumerate(poses) for q in poses[i + 1 :])
    noses = np.array([p.point("nose")[:2] for p in poses])
    gaps = np.linalg.norm(noses[:, None] - noses[None], axis=2) + np.eye(len(poses)) * 1e9
    assert gaps.min() > 40, gaps.min()  # distinct heads, not one head read twice
    assert inputs.faces and all(any(pose_has_face(p, f) for p in poses) for f in inputs.faces)


@pytest.mark.slow
@pytest.mark.shared_data
def test_hands_are_attached_to_the_person_whose_crop_found_them(analysed: dict[str, Any]) -> None:
    checked: set[tuple[str, int]] = set()
    for rel in (GROUP, CROWD, VOLLEY):
        inputs: CropInputs = analysed[rel]["inputs"]
        w, h = analysed[rel]["size"]
        owners = hand_owners(inputs.hands, inputs.poses, inputs.faces, w, h, AnomalySettings())
        for i, hand in enumerate(inputs.hands):
            if hand.pose is None:
                continue
            checked.add((rel, hand.pose))
            assert owners.get(i) == (hand.pose, hand.side), (rel, i)
            # And it is that person's hand: its wrist is nearer that pose's wrist than any other
            # person's wrist.
            own = inputs.poses[hand.pose].landmarks[POSE[f"{hand.side}_wrist"], :2]
            d_own = float(np.linalg.norm(hand.landmarks[0, :2] - own))
            for j, p in enumerate(inputs.poses):
                if j == hand.pose:
                    continue
                for side in ("left", "right"):
                    other = p.landmarks[POSE[f"{side}_wrist"], :2]
                    assert d_own < float(np.linalg.norm(hand.landmarks[0, :2] - other)), (rel, i, j, side)
    # Hands of several people in one image were found in their crops.
    assert len({p for r, p in checked if r == VOLLEY}) >= 2, checked


@pytest.mark.slow
@pytest.mark.shared_data
def test_a_crowd_whose_people_cannot_be_checked_is_not_clean(analysed: dict[str, Any]) -> None:
    for rel in (CROWD, GROUP):
        report = analysed[rel]["report"]
        w, h = analysed[rel]["size"]
        assert report.uncertain and not report.clean, (rel, report.reasons)
        assert report.uncertain_regions, rel
        for region in report.uncertain_regions:
            b = region.box
            assert 0 <= b.x < w and 0 <= b.y < h and b.w > 0 and b.h > 0, (rel, region)
            assert region.source.startswith(("pose:", "face:", "hand:")), region
        assert analysed[rel]["crop"].verdict != "no_crop_needed", (rel, analysed[rel]["crop"].reason)


# ---- end to end: what reaches the user ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_scan_of_a_group_set_reports_every_person_and_never_clean(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub"))  # no CLIP weights on any machine
    root = tmp_path / "root"
    folder = root / "inbox" / "group_set"
    folder.mkdir(parents=True)
    for rel in (GROUP, CROWD):
        if not (shared_data / rel).is_file():
            pytest.skip(f"{rel} is absent")
        shutil.copy(shared_data / rel, folder / Path(rel).name)
    enabled = ["phash", "hands", "pose", "face", "saliency", "quality", "anomalies", "crop"]
    write_config(root, {"extractors": {"enabled": enabled}})
    bestshot("scan", "--mode", "recommend", root=root, timeout=600)

    names = {Path(p).name: sha for sha, p in db_rows(root, "SELECT sha256, path FROM images")}
    assert sorted(names) == sorted(Path(r).name for r in (GROUP, CROWD))
    group_sha = names[Path(GROUP).name]
    # The face/foot file the user gets has one entry of feet per person found.
    facefoot = json.loads((root / "sidecar" / "det" / f"{group_sha}.facefoot.json").read_text())
    assert len(facefoot["feet"]) >= 4
    for sha in names.values():
        report = json.loads((root / "sidecar" / "anomalies" / f"{sha}.json").read_text())
        assert report["uncertain"] is True and report["uncertain_regions"]
        crop = json.loads((root / "labels" / "crops" / f"{sha}.crop.json").read_text())
        assert crop["verdict"] != "no_crop_needed", crop["reason"]
    (proposal_file,) = list((root / "raw").glob("*/proposal.json"))
    proposal = json.loads(proposal_file.read_text())
    assert proposal["uncertain"] is True
    assert proposal["crop"]["verdict"] != "no_crop_needed"

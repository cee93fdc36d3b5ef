"""hands, pose and face on real images, checked against annotations in ../shared/data.

Recall measured on the shared images (the figures the assertions guard):
- hands, generated portraits: 9/9 hands the keypoint file scores > 0.5 are found; 5/5 malformed-hand
  images have a hand; handedness agrees with the pose's wrist side for 15/15 hands.
- faces: generated portraits 6/6; COCO 1/4 (the COCO faces are 21-29 px, below what the
  full-range model resolves); no detected face lies outside a person.
- feet: COCO, pose's person in each image: 6/7 annotated feet have a visible foot point within
  8% of the person's height; 19/21 visible foot points lie inside a person box.
- hands on COCO: 0/9 (10-30 px, mostly gloved); not asserted beyond "no hand outside a person".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.extractors.face import FaceExtractor
from core.extractors.hands import HandsExtractor
from core.extractors.pose import PoseExtractor
from core.extractors.settings import ExtractorSettings
from core.imaging import DecodedImage, load
from core.sidecar_types import POSE, Face, Hand, Pose, faces_from_payload, hands_from_payload, poses_from_payload

pytestmark = pytest.mark.shared_data

FOOT = ("left_ankle", "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index")


@pytest.fixture(scope="module")
def settings() -> ExtractorSettings:
    return ExtractorSettings()


@pytest.fixture(scope="module")
def hands_ext(settings: ExtractorSettings) -> HandsExtractor:
    return HandsExtractor(settings)


@pytest.fixture(scope="module")
def pose_ext(settings: ExtractorSettings) -> PoseExtractor:
    return PoseExtractor(settings)


@pytest.fixture(scope="module")
def face_ext(settings: ExtractorSettings) -> FaceExtractor:
    return FaceExtractor(settings)


def _payload(ext: Any, im: DecodedImage) -> dict[str, Any]:
    out = ext.run([im], [{}])[0]
    assert not isinstance(out, Exception), out
    assert out.payload["image_size"] == [im.width, im.height]
    payload: dict[str, Any] = out.payload
    return payload


def hands_of(ext: HandsExtractor, im: DecodedImage) -> list[Hand]:
    return hands_from_payload(_payload(ext, im))


def poses_of(ext: PoseExtractor, im: DecodedImage) -> list[Pose]:
    return poses_from_payload(_payload(ext, im))


def faces_of(ext: FaceExtractor, im: DecodedImage) -> list[Face]:
    return faces_from_payload(_payload(ext, im))


def inside(x: float, y: float, box: list[float], pad: float = 0.0) -> bool:
    bx, by, bw, bh = box
    return bx - pad * bw <= x <= bx + bw * (1 + pad) and by - pad * bh <= y <= by + bh * (1 + pad)


@pytest.fixture(scope="module")
def portraits(shared_data: Path) -> list[tuple[DecodedImage, dict[str, Any]]]:
    root = shared_data / "ai_portraits_hands"
    out = []
    for f in sorted((root / "image").glob("*.png")):
        out.append((load(f), json.loads((root / "keypoints" / f"{f.stem}.json").read_text())))
    assert len(out) == 6
    return out


@pytest.fixture(scope="module")
def coco(shared_data: Path) -> tuple[dict[int, DecodedImage], list[dict[str, Any]]]:
    root = shared_data / "real_people_wholebody"
    d = json.loads((root / "test_coco_wholebody.json").read_text())
    return {i["id"]: load(root / i["file_name"]) for i in d["images"]}, d["annotations"]


def test_hands_found_on_malformed_hand_images(shared_data: Path, hands_ext: HandsExtractor) -> None:
    files = sorted((shared_data / "ai_malformed_hands").glob("*.jpg"))
    found = 0
    for f in files:
        im = load(f)
        hands = hands_of(hands_ext, im)
        found += bool(hands)
        for h in hands:
            assert h.landmarks.shape == (21, 3)
            assert h.handedness in ("Left", "Right") and 0 < h.score <= 1
            xy = h.landmarks[:, :2]
            # Original pixel coordinates (these are 512 px), allowing landmarks just off the frame.
            assert (xy > -0.1 * im.width).all() and (xy < 1.1 * im.width).all()
    assert found >= 4, f"hands found on {found}/{len(files)} images"


def test_hands_recall_against_portrait_keypoints(
    portraits: list[tuple[DecodedImage, dict[str, Any]]], hands_ext: HandsExtractor
) -> None:
    expected = hit = 0
    for im, kp in portraits:
        hands = hands_of(hands_ext, im)
        scores = np.asarray(kp["hands_score"])
        for ref, sc in zip(kp["hands"], scores, strict=True):
            if sc.mean() <= 0.5:  # not clearly visible per the keypoint model
                continue
            expected += 1
            pts = np.asarray(ref) * [im.width, im.height]
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            pad = 0.25 * max(x1 - x0, y1 - y0)
            box = [x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad]
            # A hand matches when most of its landmarks fall inside the (padded) annotated hand.
            hit += any(np.mean([inside(x, y, box) for x, y in h.landmarks[:, :2]]) > 0.5 for h in hands)
    assert expected >= 8
    assert hit / expected >= 0.85, f"hand recall {hit}/{expected}"


def test_handedness_names_the_subjects_own_hand(
    portraits: list[tuple[DecodedImage, dict[str, Any]]], hands_ext: HandsExtractor, pose_ext: PoseExtractor
) -> None:
    """Pose's left_wrist is the subject's left; the hand whose wrist lies on it must say Left."""
    agree = total = 0
    for im, _ in portraits:
        poses = poses_of(pose_ext, im)
        assert len(poses) == 1
        for h in hands_of(hands_ext, im):
            wrist = h.landmarks[0, :2]
            d = {
                side: np.hypot(*(wrist - np.array(poses[0].point(f"{side.lower()}_wrist")[:2])))
                for side in ("Left", "Right")
            }
            side = min(d, key=lambda k: d[k])
            if d[side] < 0.1 * max(im.width, im.height):
                total += 1
                agree += side == h.handedness
    assert total >= 6
    assert agree / total >= 0.9, f"handedness agrees with pose on {agree}/{total}"


def test_faces_on_portraits_match_the_keypoint_faces(
    portraits: list[tuple[DecodedImage, dict[str, Any]]], face_ext: FaceExtractor
) -> None:
    expected = hit = detections = good = 0
    for im, kp in portraits:
        faces = faces_of(face_ext, im)
        boxes = []
        for ref in kp["faces"]:
            pts = np.asarray(ref) * [im.width, im.height]
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            boxes.append([x0, y0, x1 - x0, y1 - y0])
        centre = [(f.box.x + f.box.w / 2, f.box.y + f.box.h / 2) for f in faces]
        expected += len(boxes)
        hit += sum(any(inside(x, y, b, 0.2) for x, y in centre) for b in boxes)
        detections += len(faces)
        good += sum(any(inside(x, y, b, 0.2) for b in boxes) for x, y in centre)
        for f in faces:
            assert f.keypoints.shape == (6, 2) and 0 < f.score <= 1
            # Eyes (keypoints 0, 1) inside the box, in original pixels.
            for x, y in f.keypoints[:2]:
                assert inside(x, y, [f.box.x, f.box.y, f.box.w, f.box.h])
    assert expected >= 6
    assert hit == expected, f"face recall {hit}/{expected}"
    assert good == detections, f"{detections - good} faces found where none is annotated"


def test_coco_faces_and_hands_fall_inside_annotated_people(
    coco: tuple[dict[int, DecodedImage], list[dict[str, Any]]], face_ext: FaceExtractor, hands_ext: HandsExtractor
) -> None:
    images, anns = coco
    face_hits = face_total = 0
    for image_id, im in images.items():
        people = [a for a in anns if a["image_id"] == image_id]
        faces = faces_of(face_ext, im)
        for f in faces:
            cx, cy = f.box.x + f.box.w / 2, f.box.y + f.box.h / 2
            assert any(inside(cx, cy, a["bbox"]) for a in people), f"face at {cx:.0f},{cy:.0f} outside every person"
        for a in people:
            if a["face_valid"]:
                face_total += 1
                face_hits += any(
                    inside(f.box.x + f.box.w / 2, f.box.y + f.box.h / 2, a["face_box"], 0.5) for f in faces
                )
        for h in hands_of(hands_ext, im):
            cx, cy = h.landmarks[:, :2].mean(axis=0)
            assert any(inside(cx, cy, a["bbox"], 0.1) for a in people)
    assert face_total == 4
    assert face_hits >= 1, f"COCO face recall {face_hits}/{face_total}"


def test_pose_feet_on_coco_match_annotated_feet(
    coco: tuple[dict[int, DecodedImage], list[dict[str, Any]]], pose_ext: PoseExtractor
) -> None:
    images, anns = coco
    feet_total = feet_hit = pts_total = pts_in = 0
    for image_id, im in images.items():
        people = [a for a in anns if a["image_id"] == image_id]
        poses = poses_of(pose_ext, im)
        assert 1 <= len(poses) <= len(people), f"{len(poses)} poses for {len(people)} people in {im.path.name}"
        matched: set[int] = set()
        for pose in poses:
            assert pose.landmarks.shape == (33, 4)
            visible = [
                (x, y)
                for x, y, v in (pose.point(n) for n in FOOT)
                if v > 0.5 and 0 <= x < im.width and 0 <= y < im.height
            ]
            pts_total += len(visible)
            pts_in += sum(any(inside(x, y, a["bbox"]) for a in people) for x, y in visible)
            # The annotated person this pose belongs to: the box holding most of its landmarks.
            lm = pose.landmarks[:, :2]
            k = max(range(len(people)), key=lambda i: sum(inside(x, y, people[i]["bbox"]) for x, y in lm))
            if k in matched:  # overlapping people: count each annotated person's feet once
                continue
            matched.add(k)
            person = people[k]
            fk = np.asarray(person["foot_kpts"], dtype=np.float64).reshape(6, 3)
            for foot in (fk[:3], fk[3:]):
                if (foot[:, 2] > 0).all():
                    feet_total += 1
                    pad = 0.08 * person["bbox"][3]
                    (x0, y0), (x1, y1) = foot[:, :2].min(axis=0) - pad, foot[:, :2].max(axis=0) + pad
                    feet_hit += any(x0 <= x <= x1 and y0 <= y <= y1 for x, y in visible)
    assert feet_total >= 6
    assert feet_hit / feet_total >= 0.8, f"foot recall {feet_hit}/{feet_total}"
    assert pts_in / pts_total >= 0.85, f"{pts_in}/{pts_total} visible foot points inside a person"


def test_pose_landmarks_are_in_original_pixels(
    portraits: list[tuple[DecodedImage, dict[str, Any]]], pose_ext: PoseExtractor
) -> None:
    """The portraits are 1024x1360 and detectors see them at 771x1024; the nose must still land
    on the keypoint file's nose (OpenPose index 0), in original pixels."""
    errors = []
    for im, kp in portraits:
        nose_ref = np.asarray(kp["bodies"]["candidate"][0][:2]) * [im.width, im.height]
        pose = poses_of(pose_ext, im)[0]
        errors.append(float(np.hypot(*(pose.landmarks[POSE["nose"], :2] - nose_ref))))
    assert np.median(errors) < 0.02 * 1360, errors

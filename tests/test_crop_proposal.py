"""Crop verdicts, objective terms, JSON and preview on synthetic people."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.anomaly.detect import detect_anomalies
from core.anomaly.model import Anomaly, AnomalyReport
from core.anomaly.settings import AnomalySettings
from core.crop.context import build_context
from core.crop.objective import evaluate
from core.crop.preview import render_preview
from core.crop.proposal import CropProposal, propose_crop
from core.crop.settings import CropSettings
from core.sidecar_types import POSE, Box, Face, SubjectMask
from tests.test_anomaly_cues import FACE, FORESHORTENED, H, W, person

EV = {"measurement": "m", "value": 1.0, "threshold": 0.5}


def report_with(*boxes: Box, uncertain: tuple[Box, ...] = (), uncertain_tag: str = "hand_undetected") -> AnomalyReport:
    return AnomalyReport(
        W,
        H,
        [Anomaly("extra_fingers", b, 0.8, EV, f"hand:{i}") for i, b in enumerate(boxes)],
        [Anomaly(uncertain_tag, b, 0.8, EV, f"pose:0:{i}") for i, b in enumerate(uncertain)],
        bool(uncertain),
    )


def inside(c: object, b: Box) -> bool:
    x, y, w, h = (getattr(c, k) for k in ("x", "y", "w", "h"))
    return x <= b.x and y <= b.y and x + w >= b.x2 and y + h >= b.y2


def disjoint(c: object, b: Box) -> bool:
    x, y, w, h = (getattr(c, k) for k in ("x", "y", "w", "h"))
    return x + w <= b.x or b.x2 <= x or y + h <= b.y or b.y2 <= y


def test_nothing_to_remove_means_no_crop() -> None:
    hands, poses, faces = person()
    report = detect_anomalies(hands, poses, faces, W, H, AnomalySettings())
    p = propose_crop(W, H, report, faces=faces, poses=poses)
    assert p.verdict == "no_crop_needed"
    assert (p.best.x, p.best.y, p.best.w, p.best.h) == (0, 0, W, H)
    assert p.fallbacks == []


def test_corner_anomaly_removed_head_kept_aspect_exact() -> None:
    _hands, poses, faces = person()
    bad = Box(820, 1250, 150, 140)
    p = propose_crop(W, H, report_with(bad), faces=faces, poses=poses)
    assert p.verdict == "crop", p.reason
    b = p.best
    assert b.w * 7 == b.h * 5  # 1000:1400 reduces to 5:7
    assert disjoint(b, bad) and inside(b, FACE.box)
    assert [r["tag"] for r in b.removed] == ["extra_fingers"] and b.residual == []
    # Losing as little as possible: far more than the minimum crop is kept.
    assert b.terms["area_kept"] > 0.75
    assert 1 <= len(p.fallbacks) <= 2
    for f in p.fallbacks:
        assert f.w * 7 == f.h * 5


def test_anomaly_on_the_face_recommends_reject() -> None:
    _hands, poses, faces = person()
    p = propose_crop(W, H, report_with(Box(470, 280, 60, 40)), faces=faces, poses=poses)
    assert p.verdict == "reject"
    assert "head" in p.reason or "remove" in p.reason


def test_unchecked_hand_keeps_the_full_frame_and_offers_the_crop() -> None:
    _hands, poses, faces = person()
    corner = Box(0, 1300, 120, 100)
    # A hand nobody could check is no evidence of a defect: the full frame stands, for review.
    p = propose_crop(W, H, report_with(uncertain=(corner,)), faces=faces, poses=poses)
    assert p.verdict == "review" and (p.best.x, p.best.y, p.best.w, p.best.h) == (0, 0, W, H)
    assert [r["tag"] for r in p.best.residual] == ["hand_undetected"]
    # The crop that removes it is the first fallback, exact aspect.
    assert p.fallbacks and disjoint(p.fallbacks[0], corner) and p.fallbacks[0].w * 7 == p.fallbacks[0].h * 5
    assert all(f.removed for f in p.fallbacks) and len(p.fallbacks) <= CropSettings().n_fallbacks
    # The learned hand model's suspicion is evidence: that hand is cropped away.
    q = propose_crop(W, H, report_with(uncertain=(corner,), uncertain_tag="hand_suspect"), faces=faces, poses=poses)
    assert q.verdict == "crop" and disjoint(q.best, corner) and q.best.w * 7 == q.best.h * 5
    # Once an anomaly forces a crop, the unchecked hand is removed with it where possible.
    r = propose_crop(W, H, report_with(Box(820, 1250, 150, 140), uncertain=(corner,)), faces=faces, poses=poses)
    assert r.verdict == "crop" and disjoint(r.best, corner) and r.best.residual == []


def test_uncertain_hand_removed_when_possible_else_review() -> None:
    _hands, poses, faces = person()
    corner = Box(0, 1300, 120, 100)
    p = propose_crop(W, H, report_with(uncertain=(corner,), uncertain_tag="hand_suspect"), faces=faces, poses=poses)
    assert p.verdict == "crop" and disjoint(p.best, corner)
    # An uncertain hand beside the face cannot be cropped away without cutting the head.
    face_side = Box(430, 250, 30, 80)
    q = propose_crop(W, H, report_with(uncertain=(face_side,)), faces=faces, poses=poses)
    assert q.verdict == "review"
    assert (q.best.w, q.best.h) == (W, H)  # nothing to gain from a crop that removes nothing
    off = propose_crop(
        W, H, report_with(uncertain=(corner,)), faces=faces, poses=poses, settings=CropSettings(remove_uncertain=False)
    )
    assert off.verdict == "no_crop_needed"


def test_subject_lost_recommends_reject() -> None:
    _hands, poses, faces = person()
    mask = np.zeros((140, 100), np.float32)
    mask[20:130, 30:70] = 1.0  # the person fills the middle column
    subject = SubjectMask(mask, 0.1)
    # Anomalies down both sides of the body: only a thin slice survives.
    bad = (Box(200, 400, 150, 900), Box(650, 400, 150, 900))
    p = propose_crop(
        W, H, report_with(*bad), faces=faces, poses=poses, subject=subject, settings=CropSettings(min_subject_kept=0.9)
    )
    assert p.verdict == "reject"
    assert "subject" in p.reason or "remove" in p.reason


def test_joint_and_body_terms() -> None:
    _hands, poses, faces = person()
    s = CropSettings()
    ctx = build_context(W, H, None, faces, poses, None, s)
    knee_y = poses[0].landmarks[POSE["right_knee"], 1]  # 950
    # Same size windows: bottom edge through the knees vs between knee and ankle.
    x = np.array([0, 0])
    y = np.array([int(knee_y) - 700, 1075 - 700])
    sc = evaluate(ctx, x, y, np.array([500, 500]), np.array([700, 700]), s)
    assert sc.joint[0] > 0.5 and sc.joint[1] == 0.0
    # A head-only crop of this full-body person keeps under a third of the body height.
    sc2 = evaluate(ctx, np.array([300, 0]), np.array([200, 0]), np.array([300, W]), np.array([250, H]), s)
    assert sc2.body[0] > 0 and sc2.body[1] == 0.0


def test_missing_saliency_uses_prior_and_says_so() -> None:
    _hands, poses, faces = person()
    p = propose_crop(W, H, report_with(Box(820, 1250, 150, 140)), faces=faces, poses=poses)
    assert any("no subject mask" in n for n in p.notes)
    with_mask = propose_crop(
        W,
        H,
        report_with(Box(820, 1250, 150, 140)),
        faces=faces,
        poses=poses,
        subject=SubjectMask(np.ones((140, 100), np.float32), 0.1),
    )
    assert not any("no subject mask" in n for n in with_mask.notes)


def test_json_round_trip_and_box_format() -> None:
    hands, poses, faces = person(**FORESHORTENED)
    report = detect_anomalies(hands, poses, faces, W, H, AnomalySettings())
    p = propose_crop(W, H, report, faces=faces, poses=poses)
    d = p.to_dict()
    assert set(d["best"]["box"]) == {"x", "y", "w", "h"}
    assert all(isinstance(v, int) for v in d["best"]["box"].values())
    back = CropProposal.from_json(p.to_json())
    assert back.to_dict() == d
    assert d["verdict"] in ("no_crop_needed", "crop", "review", "reject")
    for t in d["targets"]:
        assert {"id", "kind", "tag", "source", "box"} <= set(t)


@pytest.mark.parametrize("verdict_box", [Box(820, 1250, 150, 140), Box(470, 280, 60, 40)])
def test_preview_is_a_downscaled_jpeg_with_boxes(verdict_box: Box) -> None:
    _hands, poses, faces = person()
    report = report_with(verdict_box)
    p = propose_crop(W, H, report, faces=faces, poses=poses)
    rgb = np.full((H, W, 3), 128, np.uint8)
    data = render_preview(rgb, p, report, max_side=512)
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG" and max(im.size) == 512 and im.size == (366, 512)
    px = np.asarray(im.convert("RGB")).astype(int)
    # Anomaly outline in red along the middle of the box's bottom edge (scaled by 512/1400).
    k = 512 / H
    ax, ay = round((verdict_box.x + verdict_box.w / 2) * k), round(verdict_box.y2 * k)
    patch = px[ay - 3 : ay + 3, ax - 3 : ax + 3]
    redness = patch[..., 0] - np.maximum(patch[..., 1], patch[..., 2])
    assert redness.max() > 80
    plain = np.asarray(Image.open(io.BytesIO(render_preview(rgb, p, None, max_side=512))).convert("RGB")).astype(int)
    assert (plain[..., 0] - np.maximum(plain[..., 1], plain[..., 2])).max() > 80  # targets from the proposal


def test_faces_cut_by_the_frame_do_not_block_crops() -> None:
    # A face half outside the frame still counts as kept when its visible part is kept.
    face = Face(Box(900, 250, 200, 200), 0.9, np.array([[950, 320], [1050, 320]], dtype=np.float64))
    p = propose_crop(W, H, report_with(Box(0, 1200, 200, 200)), faces=[face])
    assert p.verdict == "crop" and p.best.heads_cut == 0

"""regions: descriptors per hand and limb region from real detections on real images, and the
hand representations the learned hand model reads (descriptors, CLIP crops, both)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core.anomaly.hand_model import HandExample, fit_hand_model
from core.anomaly.regions import APPEARANCE_DIM, DIM, GEOMETRY_DIM
from core.anomaly.settings import HandModelSettings
from core.extractors.analysis import hand_representations, hand_suspicion
from core.extractors.base import SidecarResult
from core.extractors.clip import ClipExtractor
from core.extractors.hand_clip import HandClipExtractor
from core.extractors.hands import HandsExtractor
from core.extractors.pose import PoseExtractor
from core.extractors.regions import RegionsExtractor
from core.extractors.registry import run_pass
from core.extractors.settings import ExtractorSettings
from core.imaging import DecodedImage, load
from tests.helpers import textured, write_png

pytestmark = pytest.mark.shared_data
SETTINGS = ExtractorSettings(device="cpu")
IMAGES = ("ai_malformed_hands/1.jpg", "ai_portraits_hands/image/4c82eec2d38678dd5c379b9e09876d69.png")


def results(images: list[DecodedImage], clip: bool, tmp: Path) -> dict[str, dict[str, SidecarResult]]:
    exts = [HandsExtractor(SETTINGS), PoseExtractor(SETTINGS), RegionsExtractor()]
    if clip:
        exts.append(HandClipExtractor(ClipExtractor(SETTINGS, tmp, random_weights_for_tests=True)))
    try:
        out = run_pass(exts, images, {})
    finally:
        for e in exts:
            e.close()
    got: dict[str, dict[str, SidecarResult]] = {}
    for sha, by_name in out.items():
        got[sha] = {}
        for name, r in by_name.items():
            assert isinstance(r, SidecarResult), (name, r)
            got[sha][name] = r
    return got


def test_regions_describe_every_hand_and_visible_limb(shared_data: Path, tmp_path: Path) -> None:
    images = [load(shared_data / rel) for rel in IMAGES] + [load(write_png(tmp_path / "plain.png", textured(3)))]
    got = results(images, clip=False, tmp=tmp_path)
    for im in images:
        r = got[im.sha256]
        desc, pay = r["regions"].arrays["descriptors"], r["regions"].payload
        n_hands = len(r["hands"].payload["hands"])
        assert desc.shape == (len(pay["regions"]), DIM) and desc.dtype == np.float32
        assert [g["kind"] for g in pay["regions"]] == ["hand"] * n_hands + ["limb"] * (len(pay["regions"]) - n_hands)
        assert np.isfinite(desc).all()
        for g in pay["regions"]:
            x, y, side = g["box"]
            assert x >= 0 and y >= 0 and x + side <= im.width and y + side <= im.height
    people = [got[im.sha256]["regions"] for im in images[:2]]
    assert all(p.payload["hands"] >= 1 for p in people)
    assert any(g["kind"] == "limb" for p in people for g in p.payload["regions"])
    assert got[images[2].sha256]["regions"].arrays["descriptors"].shape == (0, DIM)
    # Hands of different images differ in both halves of the descriptor.
    a, b = (p.arrays["descriptors"][0] for p in people)
    assert not np.allclose(a[:APPEARANCE_DIM], b[:APPEARANCE_DIM])
    assert not np.allclose(a[APPEARANCE_DIM:], b[APPEARANCE_DIM:]) and GEOMETRY_DIM == DIM - APPEARANCE_DIM
    # The same image gives the same descriptors.
    again = results(images[:1], clip=False, tmp=tmp_path)[images[0].sha256]["regions"].arrays["descriptors"]
    assert np.array_equal(again, got[images[0].sha256]["regions"].arrays["descriptors"])


@pytest.mark.slow
def test_hand_representations_append_clip_crops_when_present(shared_data: Path, tmp_path: Path) -> None:
    images = [load(shared_data / rel) for rel in IMAGES]
    got = results(images, clip=True, tmp=tmp_path)
    for im in images:
        r = got[im.sha256]
        reps = hand_representations(r["regions"], r["hand_clip"])
        clip_id = f"{r['hand_clip'].payload['model']}/{r['hand_clip'].payload['pretrained']}"
        assert set(reps) == {"regions-1", clip_id, f"regions-1+{clip_id}"}
        n = r["regions"].payload["hands"]
        both = reps[f"regions-1+{clip_id}"]
        assert both.shape == (n, DIM + r["hand_clip"].arrays["embeddings"].shape[1])
        assert np.array_equal(both[:, :DIM], reps["regions-1"])
        assert set(hand_representations(r["regions"], None)) == {"regions-1"}
    # A model trained on the combined representation scores exactly the hands that have it.
    rows = [
        (hand_representations(got[im.sha256]["regions"], got[im.sha256]["hand_clip"]), k) for k, im in enumerate(images)
    ]
    rep = next(k for k in rows[0][0] if k.startswith("regions-1+"))
    examples = [
        HandExample(f"set{k}{j}{c}", v, bool(k)) for reps, k in rows for j, v in enumerate(reps[rep]) for c in range(3)
    ]
    s = HandModelSettings(min_positives=2, min_negatives=2, min_cv_auc=0.51, folds=2)
    model = fit_hand_model(examples, s, rep, datetime.now(UTC))
    r = got[images[0].sha256]
    sus = hand_suspicion(model, r["hand_clip"], r["regions"])
    assert sus is not None and len(sus.probabilities) == r["regions"].payload["hands"]
    assert hand_suspicion(model, None, r["regions"]) is None  # no CLIP crops: not its representation

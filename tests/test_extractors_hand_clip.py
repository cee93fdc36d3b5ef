"""hand_clip: real MediaPipe hands, real open_clip code (seeded random weights), real crops and store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.config import load_config
from core.errors import ModelUnavailableError
from core.extractors.base import Outcome, SidecarResult
from core.extractors.clip import ClipExtractor
from core.extractors.hand_clip import MIN_SIDE, HandClipExtractor, hand_square
from core.extractors.hands import HandsExtractor
from core.extractors.registry import build_extractors, run_pass
from core.extractors.settings import ClipSettings, ExtractorSettings
from core.imaging import DecodedImage, load
from core.sidecar_types import Hand, hands_to_payload
from daemon.app import build_ctx
from daemon.extractors.sidecar_store import save_result, stored_result
from tests.helpers import random_clip_checkpoint, textured, write_png

SETTINGS = ExtractorSettings(device="cpu")
HAND_IMAGES = ("ai_malformed_hands/1.jpg", "ai_portraits_hands/image/4c82eec2d38678dd5c379b9e09876d69.png")


@pytest.fixture(scope="module")
def hands() -> HandsExtractor:
    return HandsExtractor(SETTINGS)


@pytest.fixture(scope="module")
def random_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipExtractor:
    return ClipExtractor(SETTINGS, tmp_path_factory.mktemp("models"), random_weights_for_tests=True)


def hand_images(shared_data: Path) -> list[DecodedImage]:
    return [load(shared_data / rel) for rel in HAND_IMAGES]


def no_people(tmp_path: Path) -> DecodedImage:
    return load(write_png(tmp_path / "plain.png", textured(3, 160, 200)))


def result(outcomes: dict[str, dict[str, Outcome]], im: DecodedImage, name: str = "hand_clip") -> SidecarResult:
    out = outcomes[im.sha256][name]
    assert isinstance(out, SidecarResult), out
    return out


def hand_at(points: list[tuple[float, float]]) -> Hand:
    """A hand whose 21 landmarks span the given points (the rest repeat the first)."""
    pts = np.zeros((21, 3))
    pts[:, :2] = points[0]
    for k, p in enumerate(points):
        pts[k, :2] = p
    return Hand(pts, "Right", 0.9)


def test_crop_square_grows_the_landmark_box_and_stays_inside() -> None:
    # 100 x 40 landmark box in the middle: 25% of 100 on every side -> a 150 px square, same centre.
    assert hand_square(hand_at([(200, 280), (300, 320)]), 600, 600) == (175, 225, 150)
    # A tiny hand still gets MIN_SIDE px of context.
    x, y, side = hand_square(hand_at([(100, 100), (104, 103)]), 600, 600)
    assert (x, y, side) == (86, 86, MIN_SIDE)
    # At a corner, with landmarks past the edge, the square is shifted in, not cut.
    assert hand_square(hand_at([(-20, 560), (60, 640)]), 500, 600) == (0, 480, 120)
    # Larger than the image: the image's shorter side, as near the hand's centre as fits.
    assert hand_square(hand_at([(0, 0), (90, 70)]), 100, 80) == (5, 0, 80)


@pytest.mark.slow
@pytest.mark.shared_data
def test_one_unit_embedding_per_detected_hand(
    shared_data: Path, hands: HandsExtractor, random_clip: ClipExtractor
) -> None:
    ext = HandClipExtractor(random_clip)
    images = hand_images(shared_data)
    got = run_pass([hands, ext], images, {})
    rows = []
    for im in images:
        n = len(result(got, im, "hands").payload["hands"])
        assert n >= 1, im.path
        out = result(got, im)
        emb = out.arrays["embeddings"]
        assert emb.dtype == np.float32 and emb.shape == (n, 512)
        assert np.isfinite(emb).all()
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        assert out.payload["model"] == "ViT-B-32" and out.payload["pretrained"] is None
        assert out.payload["dim"] == 512 and out.payload["hands"] == n and len(out.payload["boxes"]) == n
        for x, y, w, h in out.payload["boxes"]:
            assert w == h >= MIN_SIDE
            assert x >= 0 and y >= 0 and x + w <= im.width and y + h <= im.height
        rows.append(emb)
    # The same images again, and one alone (other batch composition): the same embeddings.
    again = run_pass([hands, ext], images, {})
    for im, emb in zip(images, rows, strict=True):
        np.testing.assert_array_equal(result(again, im).arrays["embeddings"], emb)
    alone = run_pass([hands, ext], [images[1]], {})
    np.testing.assert_allclose(result(alone, images[1]).arrays["embeddings"], rows[1], atol=1e-5)
    # Different hands differ (random weights still see the pixels).
    every = np.concatenate(rows)
    sims = every @ every.T
    assert len(every) >= 3 and float(sims[~np.eye(len(every), dtype=bool)].max()) < 0.999


@pytest.mark.slow
def test_hands_at_the_edge_give_square_crops_in_payload_order(random_clip: ClipExtractor, tmp_path: Path) -> None:
    """Hands given by payload (as stored ones are): one past the corner, one tiny, one big."""
    im = load(write_png(tmp_path / "h.png", textured(5, 300, 200)))
    listed = [hand_at([(-30, -30), (40, 50)]), hand_at([(150, 100), (152, 101)]), hand_at([(0, 0), (300, 200)])]
    deps = {"hands": SidecarResult(hands_to_payload(listed, im.width, im.height))}
    out = HandClipExtractor(random_clip).run([im], [deps])[0]
    assert isinstance(out, SidecarResult)
    assert out.payload["boxes"] == [[0.0, 0.0, 120.0, 120.0], [135.0, 84.0, 32.0, 32.0], [50.0, 0.0, 200.0, 200.0]]
    assert out.arrays["embeddings"].shape == (3, 512)
    # Payload order: the tiny hand's embedding is the tiny crop's, however it was batched.
    small = {"hands": SidecarResult(hands_to_payload(listed[1:2], im.width, im.height))}
    one = HandClipExtractor(random_clip).run([im], [small])[0]
    assert isinstance(one, SidecarResult)
    np.testing.assert_allclose(one.arrays["embeddings"][0], out.arrays["embeddings"][1], atol=1e-5)


def test_no_hands_gives_an_empty_array_and_loads_nothing(hands: HandsExtractor, tmp_path: Path) -> None:
    clip = ClipExtractor(SETTINGS, tmp_path / "models", random_weights_for_tests=True)
    ext = HandClipExtractor(clip)
    im = no_people(tmp_path)
    got = run_pass([hands, ext], [im], {})
    assert result(got, im, "hands").payload["hands"] == []
    out = result(got, im)
    assert out.arrays["embeddings"].shape == (0, 0) and out.arrays["embeddings"].dtype == np.float32
    assert out.payload["hands"] == 0 and out.payload["boxes"] == []
    assert not ext.loaded and not clip.loaded


@pytest.mark.slow
@pytest.mark.shared_data
def test_build_extractors_shares_the_clip_model(shared_data: Path, tmp_path: Path) -> None:
    settings = ExtractorSettings(
        device="cpu",
        enabled=["clip", "hands", "hand_clip"],
        clip=ClipSettings(checkpoint=random_clip_checkpoint(tmp_path)),
    )
    clip, hand_ext, ext = build_extractors(settings, tmp_path / "models")
    assert isinstance(clip, ClipExtractor) and isinstance(ext, HandClipExtractor)
    assert ext.clip is clip
    images = hand_images(shared_data)
    # hand_clip alone runs, and the clip extractor's instance is the one that loaded.
    assert not clip.loaded
    got = run_pass([hand_ext, ext], images, {})
    assert clip.loaded and ext.loaded
    for im in images:
        out = result(got, im)
        assert out.payload["pretrained"] == "laion2b_s34b_b79k" and len(out.arrays["embeddings"]) >= 1
    # Closing hand_clip leaves the shared model to its owner.
    ext.close()
    assert clip.loaded
    clip.close()
    assert not ext.loaded
    # Without clip enabled, hand_clip gets a model of its own.
    alone = build_extractors(settings.model_copy(update={"enabled": ["hands", "hand_clip"]}), tmp_path / "models")
    assert isinstance(alone[1], HandClipExtractor) and alone[1].clip is not clip
    assert alone[1].availability().available


@pytest.mark.shared_data
def test_unavailable_weights_fail_every_image_with_the_fetch_fix(
    shared_data: Path, hands: HandsExtractor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    ext = HandClipExtractor(ClipExtractor(SETTINGS, tmp_path / "models"))
    assert not ext.availability().available
    images = [*hand_images(shared_data)[:1], no_people(tmp_path)]
    got = run_pass([hands, ext], images, {})
    for im in images:
        out = got[im.sha256]["hand_clip"]
        assert isinstance(out, ModelUnavailableError) and out.path == im.path
        assert "bestshot models fetch" in out.fix
    assert not ext.loaded


@pytest.mark.slow
def test_embeddings_round_trip_through_the_sidecar_store(random_clip: ClipExtractor, tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    im = load(write_png(tmp_path / "h.png", textured(6, 200, 200)))
    deps = {"hands": SidecarResult(hands_to_payload([hand_at([(50, 50), (120, 140)])], im.width, im.height))}
    ext = HandClipExtractor(random_clip)
    out = ext.run([im], [deps])[0]
    assert isinstance(out, SidecarResult)
    with ctx.store.write() as conn:
        save_result(ctx, conn, im.sha256, ext, out)
    assert (ctx.cfg.path("sidecar") / "hand_clip" / f"{im.sha256}.npy").is_file()
    with ctx.store.read() as conn:
        back = stored_result(ctx.cfg, conn, im.sha256, "hand_clip", HandClipExtractor.version)
    assert back is not None and back.payload == out.payload
    assert set(back.arrays) == {"embeddings"}
    np.testing.assert_array_equal(back.arrays["embeddings"], out.arrays["embeddings"])

"""Crop box recovery from pixels: exact cuts and rescaled exports of a 1024x1536 image."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.labels.crop_recovery import CropMatch, CropNotMatchedError, match_crop, rank_sources, recover_crop
from core.labels.settings import LabelSettings
from core.sidecar_types import Box

W, H = 1024, 1536
SETTINGS = LabelSettings()
PORTRAITS = "ai_portraits_hands/image"


def to_portrait(rgb: np.ndarray) -> np.ndarray:
    """Scale to 1536 px high and centre-cut (or pad) to 1024 wide: the generators' 2:3 size."""
    h, w = rgb.shape[:2]
    nw = round(w * H / h)
    big = cv2.resize(rgb, (nw, H), interpolation=cv2.INTER_CUBIC)
    if nw >= W:
        x0 = (nw - W) // 2
        return np.ascontiguousarray(big[:, x0 : x0 + W])
    out = np.full((H, W, 3), 235, np.uint8)
    x0 = (W - nw) // 2
    out[:, x0 : x0 + nw] = big
    return out


def synthetic(seed: int) -> np.ndarray:
    """Textured stand-in when ../shared/data is absent: smooth shading, shapes, fine grain."""
    rng = np.random.default_rng(seed)
    low = cv2.resize(rng.uniform(0, 255, (12, 8, 3)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    img = np.clip(low, 0, 255).astype(np.uint8)
    for _ in range(60):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        cv2.circle(img, centre, int(rng.integers(8, 120)), colour, -1, cv2.LINE_AA)
    grain = rng.normal(0, 6, img.shape)
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def photos(shared_data: Path, n: int) -> list[np.ndarray]:
    files = sorted((shared_data / PORTRAITS).glob("*.png"))[:n]
    return [to_portrait(np.asarray(Image.open(f).convert("RGB"))) for f in files]


@pytest.fixture(scope="module", params=["photo", "synthetic"])
def sources(request: pytest.FixtureRequest) -> list[np.ndarray]:
    """Four 1024x1536 candidate sources, as a set of four generated images."""
    if request.param == "photo":
        imgs = photos(request.getfixturevalue("shared_data"), 4)
        if len(imgs) < 4:
            pytest.skip(f"fewer than 4 images in ../shared/data/{PORTRAITS}")
        return imgs
    return [synthetic(seed) for seed in range(4)]


def rescaled(rgb: np.ndarray, factor: float, resample: Image.Resampling = Image.Resampling.BICUBIC) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((round(w * factor), round(h * factor)), resample))


def jpeg(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def box_error(match_box: tuple[float, float, float, float], truth: tuple[int, int, int, int]) -> float:
    x, y, w, h = match_box
    tx, ty, tw, th = truth
    return max(abs(x - tx), abs(y - ty), abs(x + w - tx - tw), abs(y + h - ty - th))


# Boxes keep the source's 2:3 aspect, as the user's crops do; one is a small face-sized crop.
BOXES = [(100, 200, 640, 960), (37, 211, 854, 1281), (402, 130, 300, 450)]


@pytest.mark.parametrize("truth", BOXES)
def test_exact_cut_is_recovered_to_the_pixel(sources: list[np.ndarray], truth: tuple[int, int, int, int]) -> None:
    x, y, w, h = truth
    crop = sources[1][y : y + h, x : x + w]
    idx, m = match_crop(crop, sources, SETTINGS)
    assert idx == 1
    assert m.exact and m.method == "exact"
    assert (m.box.x, m.box.y, m.box.w, m.box.h) == (x, y, w, h)
    assert m.quality == pytest.approx(1.0, abs=1e-6) and m.aspect_error < 1e-3


@pytest.mark.parametrize("truth", BOXES)
def test_cut_then_rescaled_50_percent_within_2px(sources: list[np.ndarray], truth: tuple[int, int, int, int]) -> None:
    x, y, w, h = truth
    crop = rescaled(sources[2][y : y + h, x : x + w], 0.5)
    idx, m = match_crop(crop, sources, SETTINGS)
    assert idx == 2 and not m.exact
    assert box_error((m.box.x, m.box.y, m.box.w, m.box.h), truth) <= 2.0
    b = m.int_box()
    assert box_error((b.x, b.y, b.w, b.h), truth) <= 2.0
    assert m.scale[0] == pytest.approx(0.5, abs=0.01) and m.quality >= SETTINGS.crop_min_quality


@pytest.mark.parametrize(
    ("label", "make"),
    [
        ("upscaled 1.5x", lambda c: rescaled(c, 1.5, Image.Resampling.LANCZOS)),
        ("jpeg q85", lambda c: jpeg(c, 85)),
        ("37 % then jpeg", lambda c: jpeg(rescaled(c, 0.37, Image.Resampling.LANCZOS), 90)),
    ],
)
def test_other_exports_within_2px(sources: list[np.ndarray], label: str, make) -> None:
    truth = (150, 240, 600, 900)
    x, y, w, h = truth
    m = recover_crop(make(sources[0][y : y + h, x : x + w]), sources[0], SETTINGS)
    assert m is not None, label
    assert box_error((m.box.x, m.box.y, m.box.w, m.box.h), truth) <= 2.0, (label, m)
    assert m.quality >= SETTINGS.crop_min_quality


def test_aspect_error_reports_a_crop_that_changed_the_aspect(sources: list[np.ndarray]) -> None:
    truth = (100, 100, 800, 600)  # 4:3 out of a 2:3 image
    x, y, w, h = truth
    m = recover_crop(rescaled(sources[3][y : y + h, x : x + w], 0.5), sources[3], SETTINGS)
    assert m is not None
    assert box_error((m.box.x, m.box.y, m.box.w, m.box.h), truth) <= 2.0
    assert m.aspect_error == pytest.approx((800 / 600) / (1024 / 1536) - 1, rel=0.01)


def test_prefilter_ranks_the_true_source_first(sources: list[np.ndarray]) -> None:
    crop = rescaled(sources[3][300:1200, 200:800], 0.5)
    ranking = rank_sources(crop, sources, SETTINGS)
    assert ranking[0][0] == 3
    assert ranking[0][1] > ranking[1][1]


def test_crop_of_another_image_is_not_matched(sources: list[np.ndarray]) -> None:
    crop = rescaled(sources[0][200:1160, 100:740], 0.5)
    with pytest.raises(CropNotMatchedError, match="crop_min_quality"):
        match_crop(crop, sources[1:], SETTINGS)


def test_flat_crop_matches_nothing(sources: list[np.ndarray]) -> None:
    with pytest.raises(CropNotMatchedError):
        match_crop(np.full((300, 200, 3), 128, np.uint8), sources, SETTINGS)


def test_no_candidates() -> None:
    with pytest.raises(CropNotMatchedError, match="no candidate"):
        match_crop(synthetic(0)[:10, :10], [], SETTINGS)


def test_whole_image_export_gives_the_whole_box_in_bounds(sources: list[np.ndarray]) -> None:
    m = recover_crop(rescaled(sources[0], 0.5), sources[0], SETTINGS)
    assert m is not None
    b = m.int_box()
    assert (b.x, b.y, b.w, b.h) == (0, 0, W, H)


def test_int_box_stays_inside_the_source() -> None:
    m = CropMatch(Box(-0.6, 1530.2, 1030.0, 9.0), 0.99, False, (1.0, 1.0), 0.0, "ecc", source_size=(W, H))
    b = m.int_box()
    assert (b.x, b.y, b.x2, b.y2) == (0, 1530, W, H)

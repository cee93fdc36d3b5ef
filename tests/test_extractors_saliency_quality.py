"""saliency (U²-Netp + selfie mask) and quality (sharpness, exposure, noise, BRISQUE).

Measured on the COCO whole-body photos: the subject mask covers 94-97% of every annotated
person polygon of at least 10,000 px, and marks under 1% of the background in 3 of the 4
photos (the fourth is a street scene the saliency model takes whole).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from core.extractors.base import SidecarResult
from core.extractors.brisque import FLAT_EPS, Brisque, aggd_fit, brisque_features, load_normalize, mscn
from core.extractors.quality import LUMA_709, QualityExtractor, noise_sigma
from core.extractors.saliency import SaliencyExtractor, mask_geometry, subject_bbox
from core.extractors.settings import ExtractorSettings
from core.extractors.weights import brisque_model_dir
from core.imaging import DecodedImage, load
from tests.helpers import decoded


@pytest.fixture(scope="module")
def saliency() -> SaliencyExtractor:
    ext = SaliencyExtractor(ExtractorSettings())
    assert ext.availability().available, ext.availability()
    return ext


@pytest.fixture(scope="module")
def quality() -> QualityExtractor:
    ext = QualityExtractor(ExtractorSettings())
    assert ext.availability().available, ext.availability()
    return ext


def ok(out: Any) -> SidecarResult:
    assert isinstance(out, SidecarResult), out
    return out


def test_mask_geometry_keeps_aspect_and_never_enlarges() -> None:
    assert mask_geometry(1024, 1536, 320) == (213, 320, 320 / 1536)
    assert mask_geometry(100, 50, 320) == (100, 50, 1.0)
    assert mask_geometry(20000, 20, 320) == (320, 1, 320 / 20000)


def test_subject_bbox_is_in_original_pixels() -> None:
    mask = np.zeros((32, 20), np.float32)  # a 200x320 image at scale 0.1
    mask[8:16, 5:10] = 0.9
    assert subject_bbox(mask, 200, 320, 0.5) == [50.0, 80.0, 50.0, 80.0]
    assert subject_bbox(np.zeros((4, 4)), 40, 40, 0.5) is None
    # A 20000x20 strip keeps a 1-row mask: the box must not leave the image.
    assert subject_bbox(np.ones((1, 320)), 20000, 20, 0.5) == [0.0, 0.0, 20000.0, 20.0]


@pytest.mark.slow
@pytest.mark.shared_data
def test_subject_mask_covers_annotated_people(shared_data: Path, saliency: SaliencyExtractor) -> None:
    root = shared_data / "real_people_wholebody"
    d = json.loads((root / "test_coco_wholebody.json").read_text())
    coverage: list[float] = []
    background: list[float] = []
    for info in d["images"]:
        im = load(root / info["file_name"])
        res = ok(saliency.run([im], [{}])[0])
        mask = res.arrays["subject"]
        assert mask.dtype == np.float16
        mh, mw = res.payload["shape"]
        assert mask.shape == (mh, mw) and max(mh, mw) == 320
        assert res.payload["scale"] == pytest.approx(320 / max(im.width, im.height))
        full = cv2.resize(mask.astype(np.float32), (im.width, im.height), interpolation=cv2.INTER_LINEAR)
        people = np.zeros((im.height, im.width), np.uint8)
        for a in (a for a in d["annotations"] if a["image_id"] == info["id"]):
            poly = np.zeros_like(people)
            for p in a["segmentation"]:
                cv2.fillPoly(poly, [np.asarray(p).reshape(-1, 2).astype(np.int32)], (1,))
            x, y, w, h = (int(v) for v in a["bbox"])
            people[y : y + h + 1, x : x + w + 1] = 1  # boxes, so background excludes every person
            if a["area"] >= 10_000:
                coverage.append(float((full[poly.astype(bool)] > 0.5).mean()))
        background.append(float((full[people == 0] > 0.5).mean()))
    assert len(coverage) >= 5
    assert min(coverage) >= 0.85, coverage
    assert sorted(background)[2] < 0.05, background  # 3 of 4 images keep the background low


def test_blank_image_has_no_subject(saliency: SaliencyExtractor) -> None:
    res = ok(saliency.run([decoded(np.full((300, 200, 3), 128, np.uint8))], [{}])[0])
    assert res.payload["subject_fraction"] < 0.05
    assert res.arrays["subject"].shape == (300, 200)


def _with_subject(ext: SaliencyExtractor, im: DecodedImage) -> list[dict[str, SidecarResult]]:
    return [{"saliency": ok(ext.run([im], [{}])[0])}]


@pytest.mark.slow
@pytest.mark.shared_data
def test_quality_orders_sharp_blurred_and_noisy(
    shared_data: Path, saliency: SaliencyExtractor, quality: QualityExtractor
) -> None:
    src = load(shared_data / "ai_portraits_hands" / "image" / "9cb940e48d21acc3272b25a5a57fe1c5.png")
    blurred = decoded(cv2.GaussianBlur(src.rgb, (0, 0), 3))
    rng = np.random.default_rng(0)
    noisy = decoded(np.clip(src.rgb + rng.normal(0, 12, src.rgb.shape), 0, 255).astype(np.uint8))
    q = {
        name: ok(quality.run([im], _with_subject(saliency, im))[0]).payload
        for name, im in (("src", src), ("blur", blurred), ("noise", noisy))
    }
    assert q["blur"]["sharpness"] < 0.2 * q["src"]["sharpness"]
    assert q["blur"]["subject_sharpness"] < 0.2 * q["src"]["subject_sharpness"]
    assert q["noise"]["noise_sigma"] > q["src"]["noise_sigma"] + 5
    assert q["blur"]["brisque"] > q["src"]["brisque"] + 10
    assert q["noise"]["brisque"] > q["src"]["brisque"] + 10
    assert 0.2 < q["src"]["subject_fraction"] < 0.7
    assert q["src"]["subject_fraction"] == pytest.approx(q["blur"]["subject_fraction"], abs=0.1)


def test_noise_estimate_tracks_added_gaussian_noise() -> None:
    rng = np.random.default_rng(1)
    flat = np.full((256, 256), 128.0)
    for sigma in (2.0, 5.0, 10.0):
        gray = np.clip(flat + rng.normal(0, sigma, flat.shape), 0, 255).astype(np.uint8)
        est = noise_sigma(gray)
        assert est is not None and est == pytest.approx(sigma, rel=0.15)
    assert noise_sigma(np.zeros((2, 50), np.uint8)) is None


def test_exposure_and_clipping(saliency: SaliencyExtractor, quality: QualityExtractor) -> None:
    black = decoded(np.zeros((64, 64, 3), np.uint8))
    q = ok(quality.run([black], _with_subject(saliency, black))[0]).payload
    assert q["brightness"] == 0 and q["clipped_dark"] == 1.0 and q["clipped_bright"] == 0
    assert q["brisque"] is None and "flat" in q["brisque_error"]
    half = np.zeros((64, 64, 3), np.uint8)
    half[:, 32:] = 255
    im = decoded(half)
    q = ok(quality.run([im], _with_subject(saliency, im))[0]).payload
    assert q["clipped_dark"] == pytest.approx(0.5) and q["clipped_bright"] == pytest.approx(0.5)
    assert q["brightness"] == pytest.approx(0.5, abs=0.01)


def test_quality_without_subject_mask_is_an_error_for_that_image(quality: QualityExtractor) -> None:
    im = decoded(np.zeros((32, 32, 3), np.uint8), "lonely.png")
    out = quality.run([im], [{}])[0]
    assert not isinstance(out, SidecarResult)
    assert out.path == Path("lonely.png") and "saliency" in out.reason


# --- BRISQUE against the brisque package's own code -------------------------------------------


@pytest.fixture(scope="module")
def reference_brisque() -> Any:
    """brisque/brisque.py imported with empty stand-ins for its three uninstalled imports
    (scikit-image, libsvm, requests); the feature code used here touches none of them."""
    names = ["skimage", "skimage.io", "skimage.color", "libsvm", "libsvm.svmutil", "requests"]
    saved = {n: sys.modules.get(n) for n in [*names, "brisque", "brisque.brisque", "brisque.trainer"]}
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    try:
        import brisque.brisque as ref

        yield ref.BRISQUE.__new__(ref.BRISQUE)  # __init__ would load libsvm
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


def _ref_features(ref: Any, gray: np.ndarray, snap: bool) -> np.ndarray:
    feats: list[float] = []
    for g in (gray, cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)):
        m = ref.calculate_mscn_coefficients(g, 7, 7 / 6)
        if snap:
            m[np.abs(m) < FLAT_EPS] = 0.0
        coeffs = ref.calculate_pair_product_coefficients(m)
        for name, c in coeffs.items():
            alpha, mean, sl, sr = (float(np.ravel(v)[0]) for v in ref.asymmetric_generalized_gaussian_fit(c))
            feats += [alpha, (sl**2 + sr**2) / 2] if name == "mscn" else [alpha, mean, sl**2, sr**2]
    return np.asarray(feats)


@pytest.mark.shared_data
def test_brisque_agrees_with_the_package_code(shared_data: Path, reference_brisque: Any) -> None:
    model = Brisque(brisque_model_dir())  # type: ignore[arg-type]
    files = [
        shared_data / "real_people_wholebody" / "000000196141.jpg",  # photo, no flat areas
        shared_data / "ai_malformed_hands" / "5.jpg",  # 28% perfectly flat pixels
    ]
    for f in files:
        gray = load(f).rgb @ LUMA_709
        np.testing.assert_allclose(mscn(gray), reference_brisque.calculate_mscn_coefficients(gray, 7, 7 / 6), atol=1e-9)
        mine = brisque_features(gray)
        ref = _ref_features(reference_brisque, gray, snap=True)
        np.testing.assert_allclose(mine, ref, rtol=1e-8, atol=1e-12)
        # The package's own scaling (with the ranges from its file) and our SVR give our score.
        reference_brisque.scale_params = {"min_": list(model.lo), "max_": list(model.hi)}
        scaled = reference_brisque.scale_features(ref)
        assert model.svr.predict(scaled) == pytest.approx(model.score(gray), abs=1e-6)
    # Unsnapped, the package's result depends on the float noise of flat pixels: on the photo it
    # is the same, on the generated image it moves the score a little.
    photo = load(files[0]).rgb @ LUMA_709
    assert model.score_features(_ref_features(reference_brisque, photo, snap=False)) == pytest.approx(
        model.score(photo), abs=0.01
    )
    art = load(files[1]).rgb @ LUMA_709
    assert model.score_features(_ref_features(reference_brisque, art, snap=False)) == pytest.approx(
        model.score(art), abs=1.5
    )


def test_aggd_fit_recovers_a_known_shape() -> None:
    """A Laplacian (generalised Gaussian with alpha = 1), symmetric: alpha 1, mean 0, equal sigmas."""
    x = np.random.default_rng(3).laplace(0, 0.3, 400_000)
    alpha, mean, sl, sr = aggd_fit(x)
    assert alpha == pytest.approx(1.0, abs=0.03)
    assert abs(mean) < 0.01 and sl == pytest.approx(sr, rel=0.02)


def test_normalize_pickle_is_read_without_globals(tmp_path: Path) -> None:
    model_dir = brisque_model_dir()
    assert model_dir is not None
    lo, hi = load_normalize(model_dir / "normalize.pickle")
    assert lo.shape == (36,) and (hi > lo).all()
    import pickle

    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"min_": [1.0], "max_": Path("x")}))  # references pathlib.PosixPath
    from core.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="may not reference"):
        load_normalize(evil)

"""Image quality measures: sharpness, exposure, noise, BRISQUE, subject size.

Sharpness, exposure and noise read the full-resolution grey view that phash already made.
BRISQUE reads the `fit(brisque_max_side)` RGB view (the original pixels for usual sizes) and
converts it with the luminance weights the brisque package's model was trained with
(scikit-image's rgb2gray): quantising to 8-bit grey first moved scores by up to 3 points.
Subject measures weight by the saliency extractor's subject mask, at the mask's resolution.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from core.errors import ExtractorError, ModelUnavailableError
from core.extractors.base import Availability, Extractor, Outcome, SidecarResult
from core.extractors.brisque import Brisque
from core.extractors.settings import ExtractorSettings
from core.extractors.weights import brisque_model_dir
from core.imaging import DecodedImage

log = logging.getLogger(__name__)

# scikit-image rgb2gray weights (ITU-R BT.709), as brisque.py uses.
LUMA_709 = np.array([0.2125, 0.7154, 0.0721], dtype=np.float64) / 255.0
# Immerkær's noise operator: the difference of two Laplacians, blind to linear ramps.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def exposure(gray: np.ndarray, dark: int, bright: int) -> dict[str, float]:
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    n = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    mean = float(hist @ levels / n)
    var = float(hist @ (levels - mean) ** 2 / n)
    return {
        "brightness": round(mean / 255.0, 4),
        "contrast": round(math.sqrt(var) / 255.0, 4),
        "clipped_dark": round(float(hist[: dark + 1].sum() / n), 5),
        "clipped_bright": round(float(hist[bright:].sum() / n), 5),
    }


def noise_sigma(gray: np.ndarray) -> float | None:
    """Immerkær (1996) fast noise estimate in grey levels; None below 3x3 pixels. Strong edges add
    to it, so compare it between images of the same set rather than against a fixed bar."""
    h, w = gray.shape
    if h < 3 or w < 3:
        return None
    resp = cv2.filter2D(gray, cv2.CV_32F, _NOISE_KERNEL)[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2) * np.abs(resp).sum(dtype=np.float64) / (6.0 * (w - 2) * (h - 2)))


def sharpness(gray: np.ndarray, subject: np.ndarray | None, threshold: float) -> tuple[float, float | None]:
    """Laplacian variance of the whole image, and the mean squared Laplacian over the subject."""
    lap = cv2.Laplacian(gray, cv2.CV_32F)
    whole = float(lap.var(dtype=np.float64))
    if subject is None:
        return whole, None
    mh, mw = subject.shape
    energy = cv2.resize(lap * lap, (mw, mh), interpolation=cv2.INTER_AREA)
    sel = subject > threshold
    return whole, (float(energy[sel].mean()) if sel.any() else None)


class QualityExtractor(Extractor):
    name = "quality"
    version = 1
    requires = ("saliency",)
    batch_size = 16

    def __init__(self, settings: ExtractorSettings) -> None:
        self.settings = settings
        self._brisque: Brisque | None = None
        self._availability: Availability | None = None

    def availability(self) -> Availability:
        if self._availability is None:
            model_dir = brisque_model_dir()
            try:
                if model_dir is None:
                    raise ModelUnavailableError(None, "the brisque package is not installed", "")
                self._brisque = Brisque(model_dir)
                self._availability = Availability(True)
            except ModelUnavailableError as e:
                self._availability = Availability(
                    False, e.reason, e.fix or "reinstall brisque==0.2.0 (--no-deps) with scripts/bootstrap"
                )
        return self._availability

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        avail = self.availability()
        if not avail.available:
            return [ModelUnavailableError(im.path, avail.reason, avail.fix) for im in images]
        out: list[Outcome] = []
        for im, dep in zip(images, deps, strict=True):
            sal = dep.get("saliency")
            if sal is None or "subject" not in sal.arrays:
                out.append(ExtractorError(im.path, "quality needs the saliency subject mask, which is missing"))
                continue
            try:
                out.append(SidecarResult(self._measure(im, sal.arrays["subject"].astype(np.float32))))
            except Exception as e:  # numeric failures on odd images stay with that image
                log.debug("quality failed on %s", im.path, exc_info=True)
                out.append(ExtractorError(im.path, f"quality failed: {type(e).__name__}: {e}"))
        return out

    def _measure(self, im: DecodedImage, subject: np.ndarray) -> dict[str, Any]:
        s = self.settings
        gray = im.gray()
        thr = s.subject_threshold
        whole, subj = sharpness(gray, subject, thr)
        payload: dict[str, Any] = {"sharpness": round(whole, 3), "subject_sharpness": _round(subj, 3)}
        payload.update(exposure(gray, s.clip_dark_level, s.clip_bright_level))
        payload["noise_sigma"] = _round(noise_sigma(gray), 4)
        sel = subject > thr
        payload["subject_fraction"] = round(float(sel.mean()), 4)
        if sel.any():
            small = cv2.resize(gray, (subject.shape[1], subject.shape[0]), interpolation=cv2.INTER_AREA)
            payload["subject_brightness"] = round(float(small[sel].mean()) / 255.0, 4)
        else:
            payload["subject_brightness"] = None
        view, _ = im.fit(s.brisque_max_side)
        assert self._brisque is not None
        try:
            payload["brisque"] = round(self._brisque.score(view @ LUMA_709), 3)
        except ValueError as e:  # flat or tiny image: BRISQUE is undefined, say why
            payload["brisque"] = None
            payload["brisque_error"] = str(e)
        return payload


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)

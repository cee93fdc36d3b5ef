"""64-bit perceptual hash (imagehash's pHash, the same bits) from the shared grey view of the image.

imagehash resizes with Pillow's LANCZOS over the whole image and imports scipy for the DCT:
~2 ms an image and a third of a second of import, a large share of pHash-only ingest. Here
Pillow's resampling is done as two (banded) matrix products with Pillow's own fixed-point coefficients
(Resample.c: precompute_coeffs, normalize_coeffs_8bpc, clip8), which reproduces its 32x32 grey
pixels exactly (every product and sum is an integer below 2**53, so float64 BLAS is exact), and
the 8x8 low frequencies of fftpack's unnormalised DCT-II come from a precomputed cosine matrix
(the factor 2 per axis fftpack adds does not change which coefficients exceed the median).
tests/test_phash_exact.py checks both against the pinned Pillow and imagehash (a Pillow that changes its
resampling fails it, not the stored hashes silently).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from core.errors import ExtractorError
from core.extractors.base import Extractor, Outcome, Output, SidecarResult
from core.extractors.settings import ExtractorSettings
from core.imaging import DecodedImage

HASH_SIZE = 8
IMG_SIZE = HASH_SIZE * 4  # imagehash's highfreq_factor
_PRECISION_BITS = 32 - 8 - 2  # Pillow's Resample.c
_HALF = float(1 << (_PRECISION_BITS - 1))
_ONE = float(1 << _PRECISION_BITS)


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


@functools.lru_cache(maxsize=64)
def _resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's 8-bit LANCZOS coefficients for one axis as a dense (out_size, in_size) matrix of
    integers (scaled by 2**22), computed in the same order and precision as Resample.c."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    ss = 1.0 / filterscale
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for w in k:  # summed one by one, as in C (not math.fsum)
            ww += w
        for x, w in enumerate(k):
            w = w / ww if ww != 0.0 else w
            m[xx, xmin + x] = int(-0.5 + w * _ONE) if w < 0 else int(0.5 + w * _ONE)
    m.setflags(write=False)
    return m


_BAND = 4  # outputs per product: each reads only its few dozen inputs, not the whole row


@functools.lru_cache(maxsize=64)
def _bands(in_size: int) -> tuple[tuple[slice, slice, np.ndarray], ...]:
    """The resample matrix cut into blocks of _BAND outputs and the inputs they read."""
    m = _resample_matrix(in_size, IMG_SIZE)
    out = []
    for o in range(0, IMG_SIZE, _BAND):
        rows = m[o : o + _BAND]
        used = np.flatnonzero(rows.any(axis=0))
        lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
        block = np.ascontiguousarray(rows[:, lo:hi])
        block.setflags(write=False)
        out.append((slice(o, o + len(rows)), slice(lo, hi), block))
    return tuple(out)


def _clip8(acc: np.ndarray) -> np.ndarray:
    """Pillow's clip8 of an accumulator that started at 2**21: the pixel it stores."""
    out: np.ndarray = np.clip(np.floor((acc + _HALF) / _ONE), 0, 255)
    return out


# The products go through OpenCV's gemm, not numpy's: OpenBLAS splits a product this size over
# threads that then spin for a while after it, which cost 3x the product's own CPU time at one
# image per call (measured: 8 ms of CPU for 2 ms of work).


def _mul(a: np.ndarray, b: np.ndarray, flags: int = 0) -> np.ndarray:
    out: np.ndarray = cv2.gemm(a, b, 1.0, None, 0.0, flags=flags)  # type: ignore[call-overload]  # no src3
    return out


def _across(x: np.ndarray) -> np.ndarray:
    """The horizontal pass: (rows, width) -> (rows, 32)."""
    if x.shape[1] == IMG_SIZE:
        return x
    out = np.empty((x.shape[0], IMG_SIZE))
    for o, i, k in _bands(x.shape[1]):
        out[:, o] = _mul(x[:, i], k, cv2.GEMM_2_T)
    return _clip8(out)


def _down(x: np.ndarray) -> np.ndarray:
    """The vertical pass: (height, cols) -> (32, cols)."""
    if x.shape[0] == IMG_SIZE:
        return x
    out = np.empty((IMG_SIZE, x.shape[1]))
    for o, i, k in _bands(x.shape[0]):
        out[o] = _mul(k, x[i])
    return _clip8(out)


def lanczos_32(gray: np.ndarray) -> np.ndarray:
    """Pillow's `Image.resize((32, 32), LANCZOS)` of a grey uint8 image, as float64 pixels: two
    passes, each rounded to 8 bits. Pillow 13 runs the vertical pass first when the image is much
    taller than wide (found by comparing with it over sizes 1..4000: a vertical reduction with
    height - 32 > 2 * (width - 32)), else the horizontal; tests/test_phash_exact.py holds it to that."""
    h, w = gray.shape
    g = gray.astype(np.float64)
    if h > IMG_SIZE and h - IMG_SIZE > 2 * (w - IMG_SIZE):
        return _across(_down(g))
    return _down(_across(g))  # also a 32x32 image unchanged, as Pillow's copy


@functools.cache
def _dct_rows() -> np.ndarray:
    """The first HASH_SIZE rows of the DCT-II matrix (fftpack's, halved)."""
    k = np.arange(HASH_SIZE)[:, None]
    n = np.arange(IMG_SIZE)[None, :]
    m: np.ndarray = np.cos(np.pi * k * (2 * n + 1) / (2 * IMG_SIZE))
    m.setflags(write=False)
    return m


def phash_hex(image: DecodedImage) -> str:
    pixels = lanczos_32(image.gray())
    c = _dct_rows()
    # The 8x8 lowest frequencies. Rounded: a coefficient that is zero but for float rounding (a
    # flat image) counts as zero, as fftpack computes it, not as noise above or below the median.
    low = np.round(_mul(_mul(c, pixels), c, cv2.GEMM_2_T), 6)
    bits = (low > np.median(low)).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


class PhashExtractor(Extractor):
    name = "phash"
    version = 1
    outputs = (Output("column", key="phash"),)  # grouping reads images.phash
    batch_size = 64

    def __init__(self, settings: ExtractorSettings | None = None) -> None:
        self.settings = settings

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        out: list[Outcome] = []
        for im in images:
            try:
                out.append(SidecarResult({"phash": phash_hex(im)}))
            except (ValueError, OSError) as e:
                out.append(ExtractorError(im.path, f"phash failed: {e}"))
        return out

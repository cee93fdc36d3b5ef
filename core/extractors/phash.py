"""64-bit perceptual hash (imagehash's pHash, the same bits) from the shared grey view of the image.

The 32x32 grey thumbnail is Pillow's LANCZOS resize, as imagehash makes it, so the bits are
imagehash's by construction; only the DCT differs: imagehash imports scipy for it (a third of a
second per process, on the path of every pHash-only scan), here the 8x8 low frequencies of
fftpack's unnormalised DCT-II come from a precomputed cosine matrix (fftpack's factor 2 per axis
does not change which coefficients exceed the median). tests/test_phash_exact.py holds the bits
to the pinned imagehash.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from core.errors import ExtractorError
from core.extractors.base import Extractor, Outcome, Output, SidecarResult
from core.extractors.settings import ExtractorSettings
from core.imaging import DecodedImage

HASH_SIZE = 8
IMG_SIZE = HASH_SIZE * 4  # imagehash's highfreq_factor


@functools.cache
def _dct_rows() -> np.ndarray:
    """The first HASH_SIZE rows of the DCT-II matrix (fftpack's, halved)."""
    k = np.arange(HASH_SIZE)[:, None]
    n = np.arange(IMG_SIZE)[None, :]
    m: np.ndarray = np.cos(np.pi * k * (2 * n + 1) / (2 * IMG_SIZE))
    m.setflags(write=False)
    return m


def phash_hex(image: DecodedImage) -> str:
    thumb = Image.fromarray(image.gray()).resize((IMG_SIZE, IMG_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(thumb, dtype=np.float64)
    c = _dct_rows()
    # The 8x8 lowest frequencies. Rounded: a coefficient that is zero but for float rounding (a
    # flat image) counts as zero, as fftpack computes it, not as noise above or below the median.
    low = np.round(c @ pixels @ c.T, 6)
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

"""64-bit perceptual hash (imagehash's pHash) from the shared grey view of the image.

imagehash wants a PIL image and converts it to grey itself; giving it the memoised grey view
means the decode and the colour conversion are the ones every other extractor shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.errors import ExtractorError
from core.extractors.base import Extractor, Outcome, Output, SidecarResult
from core.extractors.settings import ExtractorSettings
from core.imaging import DecodedImage


def phash_hex(image: DecodedImage) -> str:
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.fromarray(image.gray())))


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

"""pHash without imagehash and scipy: the same bits."""

from __future__ import annotations

import subprocess
import sys

import imagehash
import numpy as np
from PIL import Image

from core.extractors.phash import phash_hex
from tests.helpers import REPO, decoded, textured

# Wide and tall images, reductions and enlargements, one axis unchanged, the thin extremes.
SIZES = [
    (768, 512), (512, 768), (1216, 832), (1024, 1024), (97, 64), (96, 64), (993, 512), (992, 512),
    (1569, 800), (1568, 800), (2000, 40), (40, 2000), (31, 31), (20, 10), (2, 2), (31, 2), (33, 2),
    (32, 500), (500, 32), (32, 32), (1, 1), (65, 33), (3000, 61),
]  # fmt: skip


def test_phash_bits_are_imagehashs() -> None:
    rng = np.random.default_rng(6)
    for i, (h, w) in enumerate(SIZES):
        kind = i % 4
        if kind == 0:
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 1:
            rgb = textured(i, w=w, h=h)
        elif kind == 2:  # flat: every AC coefficient is zero, not rounding noise
            rgb = np.full((h, w, 3), 90, dtype=np.uint8)
        else:
            rgb = textured(i, w=w, h=h).copy()
            rgb[:, : w // 2] = 0
        img = decoded(rgb)
        assert phash_hex(img) == str(imagehash.phash(Image.fromarray(img.gray()))), (h, w, kind)


def test_phash_needs_neither_scipy_nor_imagehash() -> None:
    code = (
        "import sys; import numpy as np; from tests.helpers import decoded, textured;"
        "from core.extractors.phash import phash_hex; phash_hex(decoded(textured(1, w=64, h=96)));"
        "print(sorted(m for m in ('scipy', 'imagehash') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

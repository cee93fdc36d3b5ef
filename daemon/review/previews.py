"""Downscaled JPEG previews for the review page, cached by sha256 under sidecar/previews/.

The name holds the image's hash and the preview size and quality, so a changed setting makes
new files and an image's bytes never need re-checking: its identity is its content.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from core.atomicfile import atomic_write
from core.config import Config


def preview_dir(cfg: Config) -> Path:
    return cfg.path("sidecar") / "previews"


def preview_path(cfg: Config, sha256: str) -> Path:
    r = cfg.review
    return preview_dir(cfg) / f"{sha256}.{r.preview_max_side}q{r.preview_quality}.jpg"


def ensure_preview(cfg: Config, sha256: str, source: Path) -> Path:
    """The cached preview of `source` (whose content is `sha256`), made now if missing."""
    out = preview_path(cfg, sha256)
    if out.exists():
        return out
    side = cfg.review.preview_max_side
    with Image.open(source) as im:
        im.draft("RGB", (side, side))  # JPEG sources decode at a reduced scale directly
        rgb = im.convert("RGB")
    rgb.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=cfg.review.preview_quality, optimize=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, buf.getvalue())
    return out

"""One OpenCLIP embedding per detected hand: the hand's square crop through the clip vision tower.

The tower is the clip extractor's own (shared instance, one model in memory), so hand and image
embeddings live in the same space. A crop is the landmarks' box grown by a quarter of its longer
side all round and made square, so the whole hand plus some wrist and context is seen without
the squashing a non-square crop would get; near an edge the square is shifted into the image
rather than cut, so every crop keeps the hand's proportions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from core.errors import ExtractorError, ModelUnavailableError
from core.extractors.base import Availability, Extractor, Outcome, Output, SidecarResult
from core.extractors.clip import ClipExtractor
from core.imaging import DecodedImage
from core.sidecar_types import Hand, hands_from_payload

log = logging.getLogger(__name__)

# Margin on every side, as a fraction of the landmarks' longer side: fingertip landmarks sit on
# the nail, not the tip's edge, and a little wrist tells the model what it is looking at.
MARGIN = 0.25
MIN_SIDE = 32


def hand_square(hand: Hand, width: int, height: int) -> tuple[int, int, int]:
    """(x, y, side) in whole original pixels of the square crop around one hand, inside the image."""
    pts = hand.landmarks[:, :2]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    longer = float(max(x1 - x0, y1 - y0))
    want = max(longer * (1 + 2 * MARGIN), float(MIN_SIDE))
    side = max(1, min(round(want), width, height))
    cx, cy = float(x0 + x1) / 2, float(y0 + y1) / 2
    x = min(max(round(cx - side / 2), 0), width - side)
    y = min(max(round(cy - side / 2), 0), height - side)
    return int(x), int(y), int(side)


def crop_pixels(rgb: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    x, y, side = box
    crop = rgb[y : y + side, x : x + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


class HandClipExtractor(Extractor):
    name = "hand_clip"
    version = 2  # 2: hands version 3 finds more hands; one embedding per hand, in its order
    outputs = (Output("npy", key="embeddings", file="hand_clip/{sha}.npy"),)
    requires = ("hands",)
    batch_size = 16

    def __init__(self, clip: ClipExtractor) -> None:
        self.clip = clip

    def availability(self) -> Availability:
        return self.clip.availability()

    @property
    def loaded(self) -> bool:
        return self.clip.loaded

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        avail = self.availability()
        if not avail.available:
            return [ModelUnavailableError(im.path, avail.reason, avail.fix) for im in images]
        boxes = [
            [hand_square(h, im.width, im.height) for h in hands_from_payload(dep["hands"].payload)]
            for im, dep in zip(images, deps, strict=True)
        ]
        # (image index, box) of every crop in the call, so crops of small images share batches.
        jobs = [(i, b) for i, bs in enumerate(boxes) for b in bs]
        rows: list[np.ndarray] = []
        failed: dict[int, str] = {}
        if jobs:
            size = self.clip.input_size  # loads the shared model: only needed once a hand is seen
            step = self.clip.settings.clip.batch_size
            for start in range(0, len(jobs), step):
                chunk = jobs[start : start + step]
                try:
                    pixels = np.stack([crop_pixels(images[i].rgb, b, size) for i, b in chunk])
                    emb = self.clip.embed_pixels(pixels)
                except Exception as e:  # a failed forward pass fails the images of this batch only
                    log.exception("hand_clip forward pass failed for %d crops", len(chunk))
                    for i, _b in chunk:
                        failed[i] = f"hand_clip forward pass failed: {type(e).__name__}: {e}"
                    emb = np.full((len(chunk), 0), np.nan, np.float32)
                rows.extend(emb)
        dim = self.clip.embedding_dim or 0
        out: list[Outcome] = []
        at = 0
        for i, (im, bs) in enumerate(zip(images, boxes, strict=True)):
            mine, at = rows[at : at + len(bs)], at + len(bs)
            if i in failed:
                out.append(ExtractorError(im.path, failed[i]))
                continue
            arr = np.stack(mine).astype(np.float32, copy=False) if mine else np.zeros((0, dim), np.float32)
            out.append(SidecarResult(self._payload(bs, arr.shape[1]), {"embeddings": np.ascontiguousarray(arr)}))
        return out

    def _payload(self, boxes: list[tuple[int, int, int]], dim: int) -> dict[str, Any]:
        clip = self.clip.settings.clip
        return {
            "model": clip.model,
            "pretrained": None if self.clip.random_weights else clip.pretrained,
            "dim": int(dim),
            "boxes": [[round(float(v), 1) for v in (x, y, s, s)] for x, y, s in boxes],
            "hands": len(boxes),
        }

    def close(self) -> None:
        """Nothing to release: the model belongs to the clip extractor, which closes it."""

"""OpenCLIP image embeddings, batched, L2-normalised float32.

Images are squashed (resized without cropping) to the model's square input: the default
open_clip transform centre-crops, which would cut the head or feet off a 2:3 portrait, and
these embeddings feed near-duplicate and set grouping where the whole figure matters. The
square view is memoised on the DecodedImage, so the resize happens once per image.

Only the vision tower is kept after loading: the text tower is a third of the weights and
bestshot never embeds text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ExtractorError, ModelUnavailableError
from core.extractors.base import Availability, Extractor, Outcome, Output, SidecarResult
from core.extractors.device import pick_device
from core.extractors.settings import ExtractorSettings
from core.extractors.weights import ClipTag, WeightsResolution, clip_tag, resolve_clip_weights
from core.imaging import DecodedImage

log = logging.getLogger(__name__)

# Seed for the random-weights test model, so its embeddings are the same in every process.
_TEST_SEED = 1234


class ClipExtractor(Extractor):
    name = "clip"
    version = 1
    outputs = (Output("blob", key="embedding"),)
    batch_size = 16

    def __init__(
        self, settings: ExtractorSettings, models_dir: Path, *, random_weights_for_tests: bool = False
    ) -> None:
        """`random_weights_for_tests` builds the real architecture with random weights (pretrained=None):
        only tests use it, and its payload says `pretrained: None` so nothing mistakes it for the model."""
        self.settings = settings
        self.models_dir = models_dir
        self.random_weights = random_weights_for_tests
        self._availability: Availability | None = None
        self._tag: ClipTag | None = None
        self._weights: WeightsResolution | None = None
        self._device: str | None = None
        self._visual: Any = None
        self._input_size = 224
        self._dim: int | None = None
        self._mean: Any = None
        self._std: Any = None

    def availability(self) -> Availability:
        if self._availability is None:
            self._availability = self._check()
        return self._availability

    def _check(self) -> Availability:
        clip = self.settings.clip
        try:
            self._device = pick_device(self.settings.device)
            if self.random_weights:
                return Availability(True)
            self._tag = clip_tag(clip.model, clip.pretrained)
            self._weights = resolve_clip_weights(clip, self.models_dir, self._tag)
        except ModelUnavailableError as e:
            return Availability(False, e.reason, e.fix)
        except ImportError as e:
            return Availability(False, f"open_clip cannot be imported: {e}", "reinstall with scripts/bootstrap")
        if not self._weights.found:
            return Availability(False, self._weights.reason, self._weights.fix)
        return Availability(True)

    def _load(self) -> None:
        import open_clip
        import torch

        clip = self.settings.clip
        assert self._device is not None
        if self.random_weights:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_TEST_SEED)
                model = open_clip.create_model(clip.model, pretrained=None, device="cpu", pretrained_text=False)
            mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
        else:
            assert self._weights is not None and self._weights.path is not None and self._tag is not None
            # A file path loses the tag's settings, so pass them: a QuickGELU mismatch would
            # silently produce wrong embeddings. pretrained_text=False: no tower download, ever.
            model = open_clip.create_model(
                clip.model,
                pretrained=str(self._weights.path),
                device="cpu",
                force_quick_gelu=self._tag.quick_gelu,
                pretrained_text=False,
            )
            mean, std = self._tag.mean, self._tag.std
            log.info("loaded %s/%s from %s (%s)", clip.model, clip.pretrained, self._weights.path, self._weights.source)
        visual = model.visual.to(self._device).eval()
        size = getattr(visual, "image_size", 224)
        self._input_size = int(size[0] if isinstance(size, tuple | list) else size)
        dim = getattr(visual, "output_dim", None)
        self._dim = int(dim) if isinstance(dim, int) else None
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self._device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(std, dtype=torch.float32, device=self._device).view(1, 3, 1, 1) * 255.0
        self._visual = visual
        del model

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        avail = self.availability()
        if not avail.available:
            return [ModelUnavailableError(im.path, avail.reason, avail.fix) for im in images]
        if self._visual is None:
            self._load()
        out: list[Outcome] = []
        step = self.settings.clip.batch_size
        for start in range(0, len(images), step):
            out.extend(self._embed_batch(images[start : start + step]))
        return out

    def _ensure_loaded(self) -> None:
        avail = self.availability()
        if not avail.available:
            raise ModelUnavailableError(None, avail.reason, avail.fix)
        if self._visual is None:
            self._load()

    @property
    def input_size(self) -> int:
        """The model's square input side; loads the model, since only the loaded tower knows it."""
        self._ensure_loaded()
        return self._input_size

    @property
    def embedding_dim(self) -> int | None:
        """Length of an embedding, or None while no model is loaded (nothing is loaded to ask)."""
        return self._dim if self._visual is not None else None

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB at `input_size` -> (N, dim) float32, L2-normalised.

        Loads the model on first use; raises ModelUnavailableError when it cannot, and lets a
        failing forward pass raise for the caller to attribute to its images."""
        import torch

        self._ensure_loaded()
        size = self._input_size
        if pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3) or pixels.dtype != np.uint8:
            raise ValueError(f"embed_pixels wants (N, {size}, {size}, 3) uint8, got {pixels.shape} {pixels.dtype}")
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self._device).permute(0, 3, 1, 2).float()
            x = (x - self._mean) / self._std
            feats = torch.nn.functional.normalize(self._visual(x).float(), dim=-1)
            emb: np.ndarray = feats.cpu().numpy().astype(np.float32, copy=False)
        self._dim = int(emb.shape[1])
        return emb

    def _embed_batch(self, images: Sequence[DecodedImage]) -> list[Outcome]:
        try:
            emb = self.embed_pixels(np.stack([im.square(self._input_size) for im in images]))
        except Exception as e:  # a failed forward pass fails this batch only, with the cause
            log.exception("clip forward pass failed for %d images", len(images))
            return [ExtractorError(im.path, f"clip forward pass failed: {type(e).__name__}: {e}") for im in images]
        clip = self.settings.clip
        payload = {
            "model": clip.model,
            "pretrained": None if self.random_weights else clip.pretrained,
            "dim": int(emb.shape[1]),
        }
        return [SidecarResult(dict(payload), {"embedding": np.ascontiguousarray(row)}) for row in emb]

    @property
    def loaded(self) -> bool:
        return self._visual is not None

    def close(self) -> None:
        self._visual = None

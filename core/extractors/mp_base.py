"""Shared plumbing for the MediaPipe (legacy `mp.solutions`) extractors.

Each extractor builds its solution graph once, on first use, and reuses it for every image.
All of them read the same memoised `DecodedImage.fit(detector_max_side)` RGB view, so an image
is resized once for hands, pose, face and the selfie mask together. MediaPipe returns
coordinates normalised to that view; because `fit` keeps the aspect ratio, multiplying by the
original width/height gives original pixels.

Model files are checked before a graph is built: for a missing file mediapipe would try to
download it into site-packages at run time, which offline means a hang or a stack trace.
Solution objects are not thread-safe; the registry runs one pass at a time.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import ExtractorError, ModelUnavailableError
from core.extractors.base import Availability, Extractor, Outcome, SidecarResult
from core.extractors.settings import ExtractorSettings
from core.extractors.weights import mediapipe_module_file
from core.imaging import DecodedImage

log = logging.getLogger(__name__)

MP_FIX = "reinstall mediapipe==0.10.21 with scripts/bootstrap (its wheel ships these models)"


def check_mediapipe_files(files: Sequence[str], fix: str = MP_FIX) -> Availability:
    missing = []
    for rel in files:
        path = mediapipe_module_file(rel)
        if path is None:
            return Availability(False, "mediapipe is not installed", MP_FIX)
        if not path.is_file():
            missing.append(str(path))
    if missing:
        return Availability(False, f"mediapipe model files missing: {', '.join(missing)}", fix)
    return Availability(True)


class MediaPipeExtractor(Extractor):
    batch_size = 16
    # Model files (relative to mediapipe/modules) the graph needs.
    model_files: tuple[str, ...] = ()
    # A Tasks graph stays failed after an error on one image: drop it, the next image rebuilds it.
    rebuild_after_failure: bool = False

    def __init__(self, settings: ExtractorSettings) -> None:
        self.settings = settings
        self._solutions: list[Any] | None = None
        self._availability: Availability | None = None

    def required_files(self) -> tuple[str, ...]:
        return self.model_files

    def missing_fix(self) -> str:
        return MP_FIX

    def availability(self) -> Availability:
        if self._availability is None:
            self._availability = check_mediapipe_files(self.required_files(), self.missing_fix())
        return self._availability

    @abstractmethod
    def _build(self) -> list[Any]:
        """Create the solution object(s)."""

    @abstractmethod
    def _detect(
        self, solutions: list[Any], view: np.ndarray, image: DecodedImage, dep: Mapping[str, SidecarResult]
    ) -> SidecarResult:
        """Run on the detector view (and, for crops, the original pixels) and return a payload in
        original pixels. `dep` holds the results of the extractors named in `optional`."""

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        avail = self.availability()
        if not avail.available:
            return [ModelUnavailableError(im.path, avail.reason, avail.fix) for im in images]
        out: list[Outcome] = []
        for im, dep in zip(images, deps, strict=True):
            try:
                if self._solutions is None:
                    self._solutions = self._build()
                view, _ = im.fit(self.settings.detector_max_side)
                out.append(self._detect(self._solutions, view, im, dep))
            except Exception as e:  # mediapipe raises RuntimeError/ValueError on odd inputs; keep the image's cause
                log.debug("%s failed on %s", self.name, im.path, exc_info=True)
                out.append(ExtractorError(im.path, f"{self.name} failed: {type(e).__name__}: {e}"))
                if self.rebuild_after_failure:
                    self.close()
        return out

    @property
    def loaded(self) -> bool:
        return self._solutions is not None

    def close(self) -> None:
        solutions, self._solutions = self._solutions or [], None
        for sol in solutions:
            try:
                sol.close()
            except RuntimeError:
                # A Tasks graph that failed on an image re-raises that image's error on close;
                # the image's outcome already carries it.
                log.debug("%s: closing a graph that had failed", self.name, exc_info=True)


def to_pixels(landmarks: Any, width: int, height: int, extra: str | None = None) -> np.ndarray:
    """A MediaPipe NormalizedLandmarkList as rows (x px, y px, z[, extra])."""
    rows = []
    for lm in landmarks.landmark:
        row = [lm.x * width, lm.y * height, lm.z]
        if extra is not None:
            row.append(getattr(lm, extra))
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)

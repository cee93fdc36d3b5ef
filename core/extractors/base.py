"""The extractor contract.

An extractor has a `name` and a `version`; the store keys results by (sha256, name, version),
so bumping `version` makes the daemon recompute. Models are loaded lazily on first `run` and
kept; nothing is built at import time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from core.errors import BestshotError

if TYPE_CHECKING:  # annotation only: core.imaging loads OpenCV, which `bestshot status` has no use for
    from core.imaging import DecodedImage


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""
    fix: str = ""


@dataclass
class SidecarResult:
    """`payload` is JSON-serialisable; `arrays` hold bulky outputs (embedding, saliency mask)."""

    payload: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


# What an extractor returns per image: a result, or the typed error for that image alone.
Outcome = SidecarResult | BestshotError

# How a result is kept besides its payload's DB row (sidecars.payload, always written):
# json    the payload as a JSON file
# npy     arrays[key] as a .npy file (read back with the result)
# blob    arrays[key] as little-endian float32 in the row's blob column (read back with the result)
# bytes   arrays[key] as the file's raw bytes (a preview image; not read back)
# column  payload[key] copied to the images row's column of that name (an index grouping reads)
# facefoot  face boxes and foot points of the image in one file, written once both are stored
OutputKind = Literal["json", "npy", "blob", "bytes", "column", "facefoot"]


@dataclass(frozen=True)
class Output:
    kind: OutputKind
    key: str = ""
    folder: str = "sidecar"  # a configured folder (Config.path)
    file: str = ""  # under `folder`; "{sha}" is the image's sha256

    def path_under(self, folder: Path, sha: str) -> Path:
        return folder / self.file.format(sha=sha)


class Extractor(ABC):
    name: ClassVar[str]
    version: ClassVar[int]
    # Names of extractors whose results this one reads (passed in `deps`), e.g. quality -> saliency.
    requires: ClassVar[tuple[str, ...]] = ()
    # Extractors whose results this one reads when they are there (enabled, available, stored or
    # computed in the same pass) and does without otherwise; they run first when both are pending.
    optional: ClassVar[tuple[str, ...]] = ()
    # Preferred number of images per call; model extractors batch, cheap ones take everything.
    batch_size: ClassVar[int] = 16
    # What the store keeps of a result besides its payload row; the store reads only this.
    outputs: ClassVar[tuple[Output, ...]] = ()

    def availability(self) -> Availability:
        return Availability(True)

    @property
    def loaded(self) -> bool:
        """Whether a model is in memory (models load on the first `run`, `close` drops them)."""
        return False

    @abstractmethod
    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        """One outcome per image, in order. Per-image failures are returned, not raised."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models (called on shutdown)."""

"""Typed errors. Every per-item failure carries the path it concerns and a human reason."""

from __future__ import annotations

from pathlib import Path


class BestshotError(Exception):
    """Base class: `path` is the file concerned (or None), `reason` says what went wrong."""

    kind = "error"

    def __init__(self, path: Path | str | None, reason: str) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path is not None else reason)


class DecodeError(BestshotError):
    kind = "decode"


class NotReadyError(BestshotError):
    """The file is still changing or does not decode completely yet; try again later."""

    kind = "not_ready"


class UnsupportedFormatError(BestshotError):
    kind = "unsupported_format"


class TooLargeError(BestshotError):
    kind = "too_large"


class MetadataError(BestshotError):
    kind = "metadata"


class VanishedError(BestshotError):
    kind = "vanished"


class UnreadableError(BestshotError):
    kind = "unreadable"


class ConfigError(BestshotError):
    kind = "config"


class ModelUnavailableError(BestshotError):
    """A model or its weights are missing. `fix` tells the user what to run or set."""

    kind = "model_unavailable"

    def __init__(self, path: Path | str | None, reason: str, fix: str) -> None:
        super().__init__(path, reason)
        self.fix = fix


class ExtractorError(BestshotError):
    kind = "extractor"


class FileOpError(BestshotError):
    kind = "file_op"


class DuplicateError(BestshotError):
    """The same content (sha256) is already known at another existing path."""

    kind = "duplicate"

"""File-system events as the daemon sees them: one small frozen dataclass per kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileChanged:
    """A file was created or written to (no close-write on macOS: readiness is checked later)."""

    path: Path


@dataclass(frozen=True)
class FileMoved:
    src: Path
    dst: Path


@dataclass(frozen=True)
class FileDeleted:
    """Also what a move out of the watched tree (e.g. to the Trash) looks like."""

    path: Path


@dataclass(frozen=True)
class DirChanged:
    """A folder appeared or moved in; its files may not have individual events (FSEvents coalesces)."""

    path: Path


@dataclass(frozen=True)
class RescanRequested:
    reason: str


@dataclass(frozen=True)
class RetrainRequested:
    """The nightly (or manual) retrain of the ranking model."""

    reason: str


@dataclass(frozen=True)
class LearnedFilesChanged:
    """A file under models/ was written: what is in force may have changed (`bestshot train` in
    another process); the daemon compares the database's versions to its live ones."""

    path: Path


@dataclass(frozen=True)
class FileSettled:
    """Internal: the settle timer found the file unchanged for the stable period."""

    path: Path


Event = (
    FileChanged
    | FileMoved
    | FileDeleted
    | DirChanged
    | RescanRequested
    | RetrainRequested
    | LearnedFilesChanged
    | FileSettled
)

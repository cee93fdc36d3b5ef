"""The core of `bestshot log`: decision lines from the user's own tools, validated.

Invalid lines are reported with their line number and reason and skipped; valid ones are
kept, so one bad line never loses a session's worth of decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from core.labels.session import SessionLine, SessionLineError, parse_line


def parse_lines(lines: Iterable[str], path: Path | None = None) -> tuple[list[SessionLine], list[tuple[int, str]]]:
    """(valid lines, [(line number, reason)]). Blank lines are skipped silently; numbers are 1-based."""
    valid: list[SessionLine] = []
    errors: list[tuple[int, str]] = []
    for lineno, text in enumerate(lines, start=1):
        if not text.strip().lstrip("\ufeff"):
            continue
        try:
            valid.append(parse_line(text, lineno, path))
        except SessionLineError as e:
            errors.append((lineno, e.reason))
    return valid, errors

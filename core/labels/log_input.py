"""The core of `bestshot log`: decision lines from the user's own tools, validated.

Invalid lines are reported with their line number and reason and skipped; valid ones are
kept, so one bad line never loses a session's worth of decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from core.labels.session import SessionLine, SessionLineError, parse_line

EARLIEST_YEAR = 2000  # before any image generator this log could describe
MAX_FUTURE = timedelta(days=1)  # clocks and time zones drift; a later stamp is a mistake


def implausible_ts(ts: datetime, now: datetime) -> str | None:
    """Why a decision time cannot be real (year 0001, 9999...), or None."""
    if ts.year < EARLIEST_YEAR:
        return f"timestamp {ts.isoformat()} is before {EARLIEST_YEAR}"
    if ts > now + MAX_FUTURE:
        return f"timestamp {ts.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})"
    return None


def parse_numbered_lines(
    lines: Iterable[str], path: Path | None = None, now: datetime | None = None
) -> tuple[list[tuple[int, SessionLine]], list[tuple[int, str]]]:
    """([(line number, line)], [(line number, reason)]). With `now`, implausible times are rejected."""
    valid: list[tuple[int, SessionLine]] = []
    errors: list[tuple[int, str]] = []
    for lineno, text in enumerate(lines, start=1):
        if not text.strip().lstrip("\ufeff"):
            continue
        try:
            line = parse_line(text, lineno, path)
        except SessionLineError as e:
            errors.append((lineno, e.reason))
            continue
        why = implausible_ts(line.ts, now) if now is not None else None
        if why is not None:
            errors.append((lineno, why))
        else:
            valid.append((lineno, line))
    return valid, errors


def parse_lines(lines: Iterable[str], path: Path | None = None) -> tuple[list[SessionLine], list[tuple[int, str]]]:
    """(valid lines, [(line number, reason)]). Blank lines are skipped silently; numbers are 1-based."""
    valid, errors = parse_numbered_lines(lines, path)
    return [line for _n, line in valid], errors

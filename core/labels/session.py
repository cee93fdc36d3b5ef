"""One line of `labels/sessions/<date>__session.jsonl`: the user's decision schema.

The line is the user's plan, key for key and in this order:

    {"ts", "set_id", "images", "winner", "needs_crop", "delete": false, "crop_box", "anomaly_tags"}

- `ts`: ISO-8601 date-time, when the set was decided (bestshot writes a timezone; a line
  without one is read as this machine's local time);
- `set_id`: the set's folder name under raw/;
- `images`: file names of the set's members, set order;
- `winner`: file name of the chosen member, or null;
- `needs_crop`: bool, the winner went to to_crop/ or was cropped;
- `delete`: bool, the set's images were deleted or rejected rather than kept (no winner);
- `crop_box`: {x, y, w, h} in the winner's original pixels when it was cropped, else null;
- `anomaly_tags`: tag strings, union over the set (per image: `bestshot.image_tags`).

Optional: `bestshot.region_labels`, what the user said about single regions on the review page
(core.review.regions); absent when there are none. Lines written before it moved into the
namespace carried it as a top-level `region_labels` key; those are still read.

bestshot's own extras live under the single key "bestshot" (per file: `bestshot.deleted` lists
the members rejected, trashed or gone); other tools may add "x-<tool>" keys. Lines are never
rewritten: a correction is a later line with `bestshot.revision` + 1.

Earlier bestshot lines (namespace v1) wrote `delete` as the list of deleted file names and left
`crop_box` out when there was none; they are still read: the list becomes `bestshot.deleted` and
`delete` becomes true when nothing was kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from core.errors import BestshotError
from core.review.regions import RegionLabel
from core.sidecar_types import Box

NAMESPACE = "bestshot"
NAMESPACE_VERSION = 2  # 2: `delete` is the plan's boolean, per-file detail in bestshot.deleted
EXTENSION_PREFIX = "x-"
SCHEMA_RESOURCE = "schemas/session_line.schema.json"


class SessionLineError(BestshotError):
    """A session line that is not valid: `lineno` (1-based, or None) and `reason` say why."""

    kind = "session_line"

    def __init__(self, path: Path | str | None, reason: str, lineno: int | None = None) -> None:
        self.lineno = lineno
        where = f"line {lineno}: " if lineno is not None else ""
        super().__init__(path, where + reason)
        self.reason = reason


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of a session line (draft 2020-12), loaded once."""
    text = resources.files("core").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    validator: jsonschema.protocols.Validator = cls(schema())
    return validator


def format_ts(ts: datetime) -> str:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"session timestamps need a timezone, got naive {ts!r}")
    return ts.isoformat(timespec="milliseconds")


def _number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


@dataclass(frozen=True)
class SessionLine:
    ts: datetime
    set_id: str
    images: tuple[str, ...]
    winner: str | None
    needs_crop: bool
    delete: bool
    anomaly_tags: tuple[str, ...]
    crop_box: Box | None = None
    # The "bestshot" namespace (empty: key omitted) and other tools' "x-..." keys, kept as given.
    bestshot: Mapping[str, Any] = field(default_factory=dict)
    extensions: Mapping[str, Any] = field(default_factory=dict)
    region_labels: tuple[RegionLabel, ...] = ()

    def __post_init__(self) -> None:
        problems = _semantic_problems(self)
        if problems:
            raise SessionLineError(None, "; ".join(problems))

    @property
    def revision(self) -> int:
        rev = self.bestshot.get("revision", 0)
        return rev if isinstance(rev, int) else 0

    @property
    def retracted(self) -> bool:
        return self.bestshot.get("retracted") is True

    @property
    def deleted(self) -> tuple[str, ...]:
        """The members deleted (rejected, trashed, gone): `bestshot.deleted` when the line says,
        else, for a line from another tool, every member but the winner when `delete` is true."""
        names = self.bestshot.get("deleted")
        if isinstance(names, (list, tuple)):
            return tuple(str(n) for n in names)
        return tuple(n for n in self.images if n != self.winner) if self.delete else ()

    @property
    def observed(self) -> bool:
        """Made by moving files (the watcher saw them, or the review page made them), not received
        through `bestshot log`: moving every file back retracts it."""
        return self.bestshot.get("source") in ("observed", "review")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data in the stable key order of the user's schema."""
        out: dict[str, Any] = {
            "ts": format_ts(self.ts),
            "set_id": self.set_id,
            "images": list(self.images),
            "winner": self.winner,
            "needs_crop": self.needs_crop,
            "delete": self.delete,
            "crop_box": None,
        }
        if self.crop_box is not None:
            b = self.crop_box
            out["crop_box"] = {"x": _number(b.x), "y": _number(b.y), "w": _number(b.w), "h": _number(b.h)}
        out["anomaly_tags"] = list(self.anomaly_tags)
        ns = dict(self.bestshot)
        if self.region_labels:  # bestshot's own: the plan's keys stay exactly the plan's
            ns["region_labels"] = [r.to_dict() for r in self.region_labels]
        if ns:
            out[NAMESPACE] = ns
        for key in sorted(self.extensions):
            out[key] = self.extensions[key]
        return out

    def to_json_line(self) -> str:
        """One line of JSON (no trailing newline); raises ValueError on NaN/infinity."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    def content_key(self) -> tuple[Any, ...]:
        """What the decision says, without when/why/how it was written: equal keys mean no news.

        Excludes ts, revision, supersedes, closure reason, hashes, locations, crop quality and
        region labels (they say what is in an image, not what was decided), so re-deciding the
        same observation compares equal: the watcher does not log a review page's decision again.
        """
        box = None
        if self.crop_box is not None:
            b = self.crop_box
            box = (round(b.x), round(b.y), round(b.w), round(b.h))
        image_tags = self.bestshot.get("image_tags") or {}
        tags_key = tuple(sorted((str(k), tuple(sorted(map(str, v)))) for k, v in image_tags.items() if v))
        return (
            self.set_id,
            self.images,
            self.winner,
            self.needs_crop,
            self.delete,
            tuple(sorted(self.deleted)),
            box,
            tuple(sorted(self.anomaly_tags)),
            tags_key,
            self.retracted,
        )


def _semantic_problems(line: SessionLine) -> list[str]:
    """What the JSON Schema cannot express: cross-field membership, timezone, finite box."""
    problems: list[str] = []
    if line.ts.tzinfo is None or line.ts.utcoffset() is None:
        problems.append("ts has no timezone")
    members = set(line.images)
    if len(members) != len(line.images):
        problems.append("images has duplicate names")
    if line.winner is not None and line.winner not in members:
        problems.append(f"winner {line.winner!r} is not one of images")
    stray = [d for d in line.deleted if d not in members]
    if stray:
        problems.append(f"delete names {stray} that are not in images")
    if line.winner is not None and line.winner in line.deleted:
        problems.append(f"winner {line.winner!r} is also in delete")
    if line.crop_box is not None:
        b = line.crop_box
        if not all(math.isfinite(v) for v in (b.x, b.y, b.w, b.h)):
            problems.append("crop_box has a non-finite number")
        if line.winner is None or not line.needs_crop:
            problems.append("crop_box needs a winner and needs_crop true")
    stray_regions = sorted({r.image for r in line.region_labels if r.image not in members})
    if stray_regions:
        problems.append(f"region_labels name {stray_regions} that are not in images")
    bad_ext = [k for k in line.extensions if not k.startswith(EXTENSION_PREFIX)]
    if bad_ext:
        problems.append(f"extension keys must start with {EXTENSION_PREFIX!r}: {bad_ext}")
    return problems


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (JSON has no NaN or infinity)")


def _schema_reason(err: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    return f"{where}: {err.message}"


def from_dict(data: Mapping[str, Any], *, lineno: int | None = None, path: Path | None = None) -> SessionLine:
    """Validate decoded JSON against the schema and the cross-field rules."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        assert best is not None
        raise SessionLineError(path, _schema_reason(best), lineno)
    try:
        ts = datetime.fromisoformat(data["ts"])
    except ValueError as e:
        raise SessionLineError(path, f"ts: not an ISO-8601 date-time ({e})", lineno) from e
    if ts.tzinfo is None:  # the user's own tool may write local time without an offset
        ts = ts.astimezone()
    box = data.get("crop_box")
    ns = dict(data.get(NAMESPACE) or {})
    regions = ns.pop("region_labels", None) or data.get("region_labels") or ()  # top level: earlier lines
    delete = data["delete"]
    if not isinstance(delete, bool):  # an earlier bestshot line: the list of deleted names
        ns.setdefault("deleted", list(delete))
        delete = data["winner"] is None and bool(delete)
    try:
        return SessionLine(
            ts=ts,
            set_id=data["set_id"],
            images=tuple(data["images"]),
            winner=data["winner"],
            needs_crop=data["needs_crop"],
            delete=delete,
            anomaly_tags=tuple(data["anomaly_tags"]),
            crop_box=Box.from_dict(box) if box is not None else None,
            bestshot=ns,
            extensions={k: v for k, v in data.items() if k.startswith(EXTENSION_PREFIX)},
            region_labels=tuple(RegionLabel.from_dict(r) for r in regions),
        )
    except SessionLineError as e:
        raise SessionLineError(path, e.reason, lineno) from e


def parse_line(text: str, lineno: int, path: Path | None = None) -> SessionLine:
    """Parse one jsonl line; raises SessionLineError naming the line number and the reason."""
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        raise SessionLineError(path, "empty line", lineno)
    try:
        data = json.loads(stripped, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as e:
        raise SessionLineError(path, f"not valid JSON: {e}", lineno) from e
    if not isinstance(data, dict):
        raise SessionLineError(path, f"expected a JSON object, got {type(data).__name__}", lineno)
    return from_dict(data, lineno=lineno, path=path)


def session_file_name(ts: datetime) -> str:
    """`<date>__session.jsonl` for a line decided at `ts` (the date in ts's own timezone)."""
    return f"{ts.date().isoformat()}__session.jsonl"

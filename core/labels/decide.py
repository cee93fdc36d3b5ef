"""The decision rule: where a set's members are now -> what the user decided, if anything yet.

Member locations (the area each file is in now):
- pending: `raw` (still in its set folder) or `review_queue` (put there by bestshot, not the user);
- chosen: `approved`, `to_crop`, `cropped`, or any member with a recovered crop (see `_chosen`);
- deleted: `rejected` (any tag subfolder), `trash` (moved out of the root, found by content hash)
  or `missing` (really gone; the caller says so only after a reconcile could not find it).

Closure rule: a set is decided when no member is pending ("all_placed"); or, once the user has
acted on it, when they have acted on `labels.close_after_other_sets` other sets since their last
action on it ("moved_on"), or `labels.close_after_seconds` have passed since that action
("timeout"). Members still pending then are "left behind": losers of the winner, not deleted.

Exports: once a set is decided, a member that leaves the root (the user moves the approved winner
to their final folder, or empties rejected/ into the Trash) is not a change of mind: it keeps the
place the decision in force saw it in (`kept_place`), so no new line is written.

Idempotence and corrections: `decide` is a pure function of the observation, and `next_line`
compares its line with the last recorded one by `SessionLine.content_key`, so the same
observation never writes twice, and any real change (another winner, an image moved back)
writes a new line that supersedes the old one (`bestshot.revision` + 1). When every member is
back in its set folder, the earlier decision is retracted by a line with `retracted: true`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

from core.labels.crop_recovery import CropMatch
from core.labels.session import NAMESPACE_VERSION, SessionLine, format_ts
from core.labels.settings import LabelSettings
from core.labels.tags import unique
from core.sidecar_types import Box

Location = Literal["raw", "review_queue", "approved", "to_crop", "cropped", "rejected", "trash", "missing"]
ClosedReason = Literal["all_placed", "moved_on", "timeout"]

LOCATIONS: frozenset[str] = frozenset(get_args(Location))
PENDING: frozenset[str] = frozenset({"raw", "review_queue"})
CHOSEN: frozenset[str] = frozenset({"approved", "to_crop", "cropped"})
DELETED: frozenset[str] = frozenset({"rejected", "trash", "missing"})
# A later move to these overrides an earlier crop: the user threw the source away on purpose.
_DISCARDED: frozenset[str] = frozenset({"rejected", "trash"})


@dataclass(frozen=True)
class MemberState:
    sha256: str
    name: str  # file name in the set folder: what session lines call the image
    location: Location
    # When it reached `location` by a move (first seen there, for moves found by a reconcile);
    # None when it never moved since it was filed.
    moved_at: datetime | None = None
    # Finder / xdg tags and tag subfolders, as observed (core.labels.tags).
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.location not in LOCATIONS:
            raise ValueError(f"unknown location {self.location!r} (one of {sorted(LOCATIONS)})")


@dataclass(frozen=True)
class CropState:
    """A crop file in cropped/ matched to a member (core.labels.crop_recovery)."""

    source_sha256: str
    file: str
    match: CropMatch
    observed_at: datetime


@dataclass(frozen=True)
class SetState:
    set_id: str
    members: tuple[MemberState, ...]
    crops: tuple[CropState, ...] = ()
    # For other sets, when the user last acted on each; only those after this set's last action
    # count, so the caller may leave out older ones.
    other_sets_last_action: Mapping[str, datetime] = field(default_factory=dict)

    def last_action(self) -> datetime | None:
        times = [m.moved_at for m in self.members if m.moved_at is not None]
        times += [c.observed_at for c in self.crops if c.source_sha256 in {m.sha256 for m in self.members}]
        return max(times, default=None)


@dataclass(frozen=True)
class Undecided:
    set_id: str
    reason: Literal["no_action", "waiting"]
    # When the timeout rule will close the set if nothing else happens (for the scheduler).
    closes_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    set_id: str
    ts: datetime  # when the set closed, derived from the observation (not the clock) where possible
    closed: ClosedReason
    members: tuple[MemberState, ...]
    winner: MemberState | None
    also_chosen: tuple[MemberState, ...]  # further members sent to approved/to_crop: not losers
    deleted: tuple[MemberState, ...]
    left_behind: tuple[MemberState, ...]
    crop: CropState | None

    @property
    def needs_crop(self) -> bool:
        return self.winner is not None and (self.winner.location in ("to_crop", "cropped") or self.crop is not None)

    @property
    def losers(self) -> tuple[MemberState, ...]:
        return (*self.deleted, *self.left_behind) if self.winner is not None else ()

    def pairs(self) -> list[tuple[str, str]]:
        """(winner sha256, loser sha256) per loser, for the ranker."""
        if self.winner is None:
            return []
        return [(self.winner.sha256, loser.sha256) for loser in self.losers]

    def to_line(self, previous: SessionLine | None = None) -> SessionLine:
        image_tags = {m.name: list(unique(m.tags)) for m in self.members if unique(m.tags)}
        ns: dict[str, object] = {
            "v": NAMESPACE_VERSION,
            "source": "observed",
            "closed": self.closed,
            "revision": previous.revision + 1 if previous is not None else 0,
        }
        if previous is not None:
            ns["supersedes"] = format_ts(previous.ts)
        ns["hashes"] = {m.name: m.sha256 for m in self.members}
        ns["locations"] = {m.name: m.location for m in self.members}
        ns["deleted"] = [m.name for m in self.deleted]
        ns["losers"] = [m.name for m in self.losers]
        ns["left_behind"] = [m.name for m in self.left_behind]
        if self.also_chosen:
            ns["also_chosen"] = [m.name for m in self.also_chosen]
        if image_tags:
            ns["image_tags"] = image_tags
        box: Box | None = None
        if self.crop is not None:
            m = self.crop.match
            box = m.int_box()
            ns["crop"] = {
                "file": self.crop.file,
                "quality": round(m.quality, 4),
                "aspect_error": round(m.aspect_error, 5),
                "scale": [round(m.scale[0], 5), round(m.scale[1], 5)],
                "method": m.method,
            }
        return SessionLine(
            ts=self.ts,
            set_id=self.set_id,
            images=tuple(m.name for m in self.members),
            winner=self.winner.name if self.winner is not None else None,
            needs_crop=self.needs_crop,
            # The plan's boolean: nothing kept, something thrown away (which: bestshot.deleted).
            delete=self.winner is None and bool(self.deleted),
            anomaly_tags=unique(t for m in self.members for t in m.tags),
            crop_box=box,
            bestshot=ns,
        )


def _latest_crop(state: SetState, member: MemberState) -> CropState | None:
    crops = [c for c in state.crops if c.source_sha256 == member.sha256]
    return max(crops, key=lambda c: c.observed_at, default=None)


def _chosen(state: SetState, member: MemberState) -> bool:
    if member.location in CHOSEN:
        return True
    crop = _latest_crop(state, member)
    if crop is None:
        return False
    # A crop proves the choice even when the user's tool consumed the to_crop/ file (missing),
    # unless the source was rejected or trashed after the crop appeared.
    discarded_later = member.location in _DISCARDED and (member.moved_at or crop.observed_at) > crop.observed_at
    return not discarded_later


def _closure(
    state: SetState, any_pending: bool, settings: LabelSettings, now: datetime
) -> tuple[ClosedReason, datetime] | Undecided:
    last = state.last_action()
    if not any_pending:
        return "all_placed", last or now
    options: list[tuple[datetime, ClosedReason]] = []
    if settings.close_after_other_sets is not None:
        later = sorted(
            t for s, t in state.other_sets_last_action.items() if s != state.set_id and (last is None or t > last)
        )
        if len(later) >= settings.close_after_other_sets:
            options.append((later[settings.close_after_other_sets - 1], "moved_on"))
    closes_at: datetime | None = None
    if settings.close_after_seconds is not None:
        closes_at = last + timedelta(seconds=settings.close_after_seconds) if last is not None else now
        if now >= closes_at:
            options.append((closes_at, "timeout"))
    if not options:
        return Undecided(state.set_id, "waiting", closes_at)
    ts, reason = min(options)
    return reason, ts


def decide(state: SetState, settings: LabelSettings, now: datetime) -> Decision | Undecided:
    """What the user decided about this set, judged at `now` (timezone-aware)."""
    chosen = [m for m in state.members if _chosen(state, m)]
    deleted = [m for m in state.members if m not in chosen and m.location in DELETED]
    pending = [m for m in state.members if m not in chosen and m.location in PENDING]
    if not chosen and not deleted:
        return Undecided(state.set_id, "no_action")
    closure = _closure(state, bool(pending), settings, now)
    if isinstance(closure, Undecided):
        return closure
    reason, ts = closure
    winner: MemberState | None = None
    if chosen:
        order = {m.sha256: i for i, m in enumerate(state.members)}

        def recency(m: MemberState) -> tuple[datetime, int]:
            crop = _latest_crop(state, m)
            times = [t for t in (m.moved_at, crop.observed_at if crop else None) if t is not None]
            # Most recent choice wins ("choosing differently later"); ties go to set order.
            return max(times, default=datetime.min.replace(tzinfo=now.tzinfo)), -order[m.sha256]

        winner = max(chosen, key=recency)
    return Decision(
        set_id=state.set_id,
        ts=ts,
        closed=reason,
        members=state.members,
        winner=winner,
        also_chosen=tuple(m for m in chosen if m is not winner),
        deleted=tuple(deleted),
        left_behind=tuple(pending),
        crop=_latest_crop(state, winner) if winner is not None else None,
    )


def retraction(state: SetState, previous: SessionLine, now: datetime) -> SessionLine:
    """The line that undoes `previous` when every member went back to its set folder."""
    return SessionLine(
        ts=state.last_action() or now,
        set_id=state.set_id,
        images=tuple(m.name for m in state.members),
        winner=None,
        needs_crop=False,
        delete=False,
        anomaly_tags=(),
        bestshot={
            "v": NAMESPACE_VERSION,
            "source": "observed",
            "closed": "retracted",
            "revision": previous.revision + 1,
            "supersedes": format_ts(previous.ts),
            "retracted": True,
            "hashes": {m.name: m.sha256 for m in state.members},
            "locations": {m.name: m.location for m in state.members},
        },
    )


def kept_place(in_force: SessionLine | None, name: str) -> Location | None:
    """Where the decision in force placed a member that has left the root since, or None when no
    decision is in force (before one, leaving the root is a delete)."""
    if in_force is None or in_force.retracted:
        return None
    seen = (in_force.bestshot.get("locations") or {}).get(name)
    if seen in LOCATIONS:
        return seen  # type: ignore[no-any-return]
    # A line from another tool says only what it decided, not where the files were.
    if name == in_force.winner:
        return "to_crop" if in_force.needs_crop else "approved"
    return "rejected" if name in in_force.deleted else "raw"


def next_line(state: SetState, last: SessionLine | None, settings: LabelSettings, now: datetime) -> SessionLine | None:
    """The line to append for this set now, or None when there is nothing new to say.

    `last` is the set's most recent recorded line (observed or logged). A logged line is never
    retracted just because the files did not move: the user's own tool may not move files.
    """
    result = decide(state, settings, now)
    if isinstance(result, Decision):
        line = result.to_line(previous=last)
        return line if last is None or line.content_key() != last.content_key() else None
    if result.reason == "no_action" and last is not None and last.observed and not last.retracted:
        return retraction(state, last, now)
    return None

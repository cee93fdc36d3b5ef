"""Watch-and-log: turn the user's moves of set members into decisions and session lines.

The engine reports every move of a known image; this tracker keeps each member's latest
location (table `observations`), has new files in cropped/ matched to their source
(daemon.labels.crop_recovery), and asks the pure rule (core.labels.decide) whether a set is now
decided. Lines are written through daemon.labels.session so that a crash anywhere yields exactly
one line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from core.errors import BestshotError
from core.labels.decide import CropState, Decision, MemberState, SetState, decide, kept_place, next_line
from core.labels.session import SessionLine, parse_line
from core.labels.tags import subfolder_tags
from core.layout import DECISION_AREAS, locate
from daemon.context import Ctx
from daemon.files.health import note_write_failure
from daemon.labels.crop_recovery import match_from_dict, match_user_crop
from daemon.labels.session import flush_unlogged, write_logged
from daemon.labels.tags import OWN_TAG_PREFIX, read_tags
from daemon.labels.tidy import after_decision
from daemon.store import records
from daemon.store.schema import crops, decisions, images, observations, pairs, proposals, set_members, sets

log = logging.getLogger(__name__)

_AREA_TO_LOCATION = {
    "raw": "raw",
    "inbox": "raw",
    "review_queue": "review_queue",
    "approved": "approved",
    "to_crop": "to_crop",
    "cropped": "cropped",
    "rejected": "rejected",
}


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class DecisionTracker:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.dirty: set[str] = set()
        self.waiting: dict[str, float] = {}  # set id -> when it closes by timeout
        self.recorded = 0  # decisions recorded by this process: the rank loop watches it
        # Moves that could not be written (full disk), with their original times, and whether a
        # committed decision still lacks its line: both retried at the next evaluate.
        self.pending_moves: dict[str, tuple[str | None, float, bool]] = {}
        self.unlogged = False
        # Sets whose latest move this process only discovered by a reconcile (made while it was
        # down, or an event it lost): they never close another set as "moved_on".
        self.discovered_sets: set[str] = set()

    @staticmethod
    def pending_batch(conn: Connection, set_id: str) -> str | None:
        """The batch that moved this set, while its decision is not yet recorded: that decision is
        the daemon's own. Stored on the proposal before the first move, so it survives a crash."""
        p = conn.execute(
            select(proposals.c.batch_id, proposals.c.ts)
            .where(proposals.c.set_id == set_id, proposals.c.batch_id.like("batch-%"))
            .order_by(proposals.c.id.desc())
            .limit(1)
        ).first()
        if p is None:
            return None
        done = conn.execute(
            select(decisions.c.id)
            .where(decisions.c.set_id == set_id, decisions.c.source == "batch", decisions.c.ts >= p.ts)
            .limit(1)
        ).first()
        return None if done else str(p.batch_id)

    # ---- observations ---------------------------------------------------------------------
    def location_of(self, rel: str | None) -> str:
        if rel is None:
            return "trash"  # left the tree: the Trash, or deleted; both are a delete decision
        area = locate(self.ctx.cfg, self.ctx.abs(rel)).area
        return _AREA_TO_LOCATION.get(area or "", "missing")

    def on_move(self, sha: str, old: str | None, new: str | None, when: float | None = None, live: bool = True) -> None:
        """`when`: the time of the move (the event's, or the file's ctime for a move a reconcile
        found); `live`: False when only a reconcile found it."""
        when = time.time() if when is None else when
        try:
            with self.ctx.store.write() as conn:
                set_id = conn.execute(select(set_members.c.set_id).where(set_members.c.sha256 == sha)).scalar()
                if set_id is None:
                    return
                if new is None and self.in_force(conn, set_id) is not None:
                    # Left the root after its set was decided: an export, not a change of mind. The
                    # decision stands (state_of keeps its place) and it is not an action on the set.
                    conn.execute(update(images).where(images.c.sha256 == sha).values(state="exported"))
                    log.info("set %s: %s left the root after the decision (exported; decision kept)", set_id, old)
                    return
                records.upsert(
                    conn,
                    observations,
                    {"sha256": sha, "location": self.location_of(new), "moved_at": when},
                    ["sha256"],
                )
        except Exception as e:
            if not note_write_failure(self.ctx.health, "recording a move", e):
                raise
            self.pending_moves[sha] = (new, when, live)
            return
        self.pending_moves.pop(sha, None)
        if live:
            self.discovered_sets.discard(set_id)
        else:
            self.discovered_sets.add(set_id)
        self.dirty.add(set_id)

    def on_touch(self, sha: str, rel: str) -> None:
        """Tags changed on a placed member: re-decide its set (the tags are part of the line).
        Not an observation: our own tags on raw/ files must not count as the user acting."""
        if self.location_of(rel) not in ("approved", "to_crop", "cropped", "rejected"):
            return
        with self.ctx.store.read() as conn:
            set_id = conn.execute(select(set_members.c.set_id).where(set_members.c.sha256 == sha)).scalar()
        if set_id is not None:
            self.dirty.add(set_id)

    def on_unknown_file(self, path: Path, sha: str) -> None:
        """A file whose content is not a known image: in cropped/ it is the user's crop."""
        set_id = match_user_crop(self.ctx, path, sha)
        if set_id is not None:
            self.dirty.add(set_id)

    # ---- decisions ------------------------------------------------------------------------
    def mark_active_sets(self) -> None:
        """After a restart: every set something happened to is re-evaluated (idempotent)."""
        with self.ctx.store.read() as conn:
            ids = {
                r[0]
                for r in conn.execute(
                    select(set_members.c.set_id).join(observations, observations.c.sha256 == set_members.c.sha256)
                )
            }
            ids |= {r[0] for r in conn.execute(select(decisions.c.set_id))}
            # A kill between a path update and its observation leaves a moved member unobserved.
            raw = self.ctx.rel(self.ctx.cfg.path("raw")) + "/"
            ids |= {
                r[0]
                for r in conn.execute(
                    select(set_members.c.set_id)
                    .join(images, images.c.sha256 == set_members.c.sha256)
                    .join(sets, sets.c.id == set_members.c.set_id)
                    .where(sets.c.status == "filed", ~images.c.path.startswith(raw))
                )
            }
        self.dirty |= ids

    def evaluate(self, now: float | None = None) -> float | None:
        """Decide dirty and waiting sets; returns when the next waiting set closes by timeout."""
        now = time.time() if now is None else now
        self._retry_writes()
        due = {s for s, t in self.waiting.items() if t <= now}
        todo, self.dirty = self.dirty | due | set(self.waiting), set()
        if todo:
            with self.ctx.store.read() as conn:
                last_actions = {k: v for k, v in self._last_actions(conn).items() if k not in self.discovered_sets}
            for set_id in sorted(todo):
                # One set's failure never drops the rest of the round.
                try:
                    self._evaluate_set(set_id, now, last_actions)
                except Exception as e:
                    if note_write_failure(self.ctx.health, f"deciding set_{set_id}", e):
                        self.dirty.add(set_id)  # retried with the observations' own times
                        continue
                    if not isinstance(e, BestshotError):
                        log.exception("deciding set %s failed", set_id)
                        e = BestshotError(None, f"internal error: {type(e).__name__}: {e}")
                    with self.ctx.store.write() as conn:
                        records.record_error(conn, f"set_{set_id}", "decide", e)
        return min(self.waiting.values(), default=None)

    @property
    def retry_pending(self) -> bool:
        return bool(self.pending_moves) or self.unlogged

    def _retry_writes(self) -> None:
        """Moves and lines that a full disk refused, in their original order and with their times."""
        for sha, (new, when, live) in sorted(self.pending_moves.items(), key=lambda kv: kv[1][1]):
            self.on_move(sha, None, new, when, live)
            if sha in self.pending_moves:
                return  # still failing: keep the rest for the next round
        if self.unlogged:
            try:
                flush_unlogged(self.ctx)
            except Exception as e:
                if not note_write_failure(self.ctx.health, "appending decision lines", e):
                    raise
                return
            self.unlogged = False

    def _last_actions(self, conn: Connection) -> dict[str, datetime]:
        rows = conn.execute(
            select(set_members.c.set_id, func.max(observations.c.moved_at))
            .join(observations, observations.c.sha256 == set_members.c.sha256)
            .group_by(set_members.c.set_id)
        ).all()
        return {r[0]: _dt(r[1]) for r in rows}

    @staticmethod
    def in_force(conn: Connection, set_id: str) -> SessionLine | None:
        """The set's latest line unless it was retracted: the decision that stands."""
        row = conn.execute(
            select(decisions.c.line).where(decisions.c.set_id == set_id).order_by(decisions.c.id.desc()).limit(1)
        ).first()
        line = parse_line(row.line, 1) if row is not None else None
        return line if line is not None and not line.retracted else None

    def state_of(self, conn: Connection, set_id: str, last_actions: dict[str, datetime]) -> SetState:
        rows = conn.execute(
            select(
                images.c.sha256,
                images.c.path,
                images.c.state,
                images.c.original_name,
                observations.c.location,
                observations.c.moved_at,
            )
            .join(set_members, set_members.c.sha256 == images.c.sha256)
            .join(observations, observations.c.sha256 == images.c.sha256, isouter=True)
            .where(set_members.c.set_id == set_id)
            .order_by(set_members.c.position)
        ).all()
        members = []
        decided = self.in_force(conn, set_id) if any(r.state != "present" for r in rows) else None
        for r in rows:
            location = self.location_of(r.path if r.state == "present" else None)
            if r.state != "present":
                location = kept_place(decided, Path(r.original_name).name) or location
            tags: tuple[str, ...] = ()
            if r.state == "present":
                p = self.ctx.abs(r.path)
                area = locate(self.ctx.cfg, p).area
                try:
                    # Only export areas name tags by subfolder: raw/set_<id>/ is the set's folder.
                    sub = subfolder_tags(p, self.ctx.cfg.path(area)) if area in DECISION_AREAS else ()
                    tags = (*read_tags(p), *sub)
                except BestshotError:
                    tags = ()
                # Our own proposal tags (bestshot:winner...) are not the user's labels.
                tags = tuple(t for t in tags if not t.startswith(OWN_TAG_PREFIX))
            moved = _dt(r.moved_at) if r.moved_at is not None else None
            members.append(MemberState(r.sha256, Path(r.original_name).name, location, moved, tags))  # type: ignore[arg-type]
        crop_rows = conn.execute(select(crops).where(crops.c.source_sha256.in_([m.sha256 for m in members]))).all()
        crop_states = tuple(
            CropState(c.source_sha256, Path(c.file).name, match_from_dict(json.loads(c.match)), _dt(c.observed_at))
            for c in crop_rows
        )
        others = {k: v for k, v in last_actions.items() if k != set_id}
        return SetState(f"set_{set_id}", tuple(members), crop_states, others)

    def _evaluate_set(self, set_id: str, now: float, last_actions: dict[str, datetime]) -> None:
        with self.ctx.store.read() as conn:
            state = self.state_of(conn, set_id, last_actions)
            last_row = conn.execute(
                select(decisions).where(decisions.c.set_id == set_id).order_by(decisions.c.id.desc()).limit(1)
            ).first()
            pending_batch = self.pending_batch(conn, set_id)
        last = parse_line(last_row.line, 1) if last_row else None
        verdict = decide(state, self.ctx.cfg.labels, _dt(now))
        self.waiting.pop(set_id, None)
        if not isinstance(verdict, Decision) and verdict.closes_at is not None:
            self.waiting[set_id] = verdict.closes_at.timestamp()
        line = next_line(state, last, self.ctx.cfg.labels, _dt(now))
        if line is None:
            return
        source = "observed"
        batch_id = pending_batch if isinstance(verdict, Decision) else None
        if batch_id is not None:
            source = "batch"
            line = dataclasses.replace(line, bestshot={**line.bestshot, "source": "batch", "batch_id": batch_id})
        self.record(
            set_id, line, verdict if isinstance(verdict, Decision) else None, source, last_row.id if last_row else None
        )

    def record(
        self, set_id: str | None, line: SessionLine, decision: Decision | None, source: str, supersedes: int | None
    ) -> int:
        """Commit the decision (and its pairs), then append its line; see daemon.labels.session."""
        text = line.to_json_line()
        with self.ctx.store.write() as conn:
            shas = self._shas_by_name(conn, set_id)
            winner = decision.winner.sha256 if decision and decision.winner else shas.get(line.winner or "")
            did = _inserted_id(
                conn.execute(
                    insert(decisions).values(
                        ts=line.ts.timestamp(),
                        set_id=set_id or line.set_id,
                        winner=winner,
                        needs_crop=line.needs_crop,
                        deleted=json.dumps([shas.get(n, n) for n in line.deleted]),
                        crop_box=json.dumps(line.crop_box.to_dict()) if line.crop_box else None,
                        anomaly_tags=json.dumps(list(line.anomaly_tags)),
                        source=source,
                        supersedes=supersedes,
                        closed_reason=decision.closed if decision else ("retracted" if line.retracted else None),
                        line=text,
                        logged=False,
                    )
                )
            )
            pair_list = (
                decision.pairs()
                if decision
                else (
                    [(winner, shas[n]) for n in line.images if winner and n in shas and shas[n] != winner]
                    if not line.retracted
                    else []
                )
            )
            for w, loser in pair_list:
                conn.execute(insert(pairs).values(decision_id=did, winner=w, loser=loser))
            if set_id is not None:
                conn.execute(
                    update(sets).where(sets.c.id == set_id).values(status="filed" if line.retracted else "decided")
                )
        self.recorded += 1
        try:
            write_logged(self.ctx, did, text)
        except Exception as e:
            # The decision is committed (unlogged): its line is appended again once writing works.
            if not note_write_failure(self.ctx.health, "appending a decision line", e):
                raise
            self.unlogged = True
        if set_id is not None:
            after_decision(self.ctx, set_id, retracted=line.retracted)
        log.info("%s", decided_line(line, source, decision.closed if decision else None))
        return did

    def _shas_by_name(self, conn: Connection, set_id: str | None) -> dict[str, str]:
        if set_id is None:
            return {}
        rows = conn.execute(
            select(images.c.sha256, images.c.original_name)
            .join(set_members, set_members.c.sha256 == images.c.sha256)
            .where(set_members.c.set_id == set_id)
        ).all()
        return {Path(r.original_name).name: r.sha256 for r in rows}


def decided_line(line: SessionLine, source: str, closed: str | None) -> str:
    """The one line `run` logs for a decided set."""
    if line.retracted:
        return f"{line.set_id}: decision retracted ({source})"
    if line.winner is None:
        outcome = f"no winner of {len(line.images)}"
    else:
        crop = ", needs a crop" if line.needs_crop else ""
        outcome = f"winner {line.winner} of {len(line.images)}{crop}"
    tags = f", tags {', '.join(line.anomaly_tags)}" if line.anomaly_tags else ""
    how = f"{source}, {closed}" if closed else source
    return f"decided {line.set_id}: {outcome}{tags} ({how})"


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])

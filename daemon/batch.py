"""Batch mode: decide confident sets by moving their files, journaled and undoable.

Winners go to approved/ (to_crop/ when the crop proposal says a crop is needed), the others to
rejected/; nothing is deleted. Each round is one batch id: `bestshot undo BATCH_ID` moves every
file back. The review queue gets a folder per batch with links to what was decided and the
proposal beside each, so the user can check the daemon's work.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from core.errors import BestshotError
from core.labels.decide import retraction
from core.labels.session import parse_line
from core.rank.modes import ModeDecision, auto_decides
from daemon import records
from daemon.context import Ctx
from daemon.decisions import DecisionTracker
from daemon.fileops import unique_destination
from daemon.ranking import members_of
from daemon.sidecar_store import atomic_write
from daemon.store.schema import decisions, journal, observations, proposals, set_members, sets

log = logging.getLogger(__name__)


def _open_proposals(ctx: Ctx) -> Sequence[Any]:
    """Latest proposals of sets nobody has touched: still filed, every member still in its set
    folder, no observed move, and never undone from an earlier batch."""
    with ctx.store.read() as conn:
        newest = select(func.max(proposals.c.id)).group_by(proposals.c.set_id)
        undone = select(proposals.c.set_id).where(proposals.c.batch_id.like("undone:%"))
        touched = select(set_members.c.set_id).join(observations, observations.c.sha256 == set_members.c.sha256)
        rows = conn.execute(select(proposals, sets.c.folder).join(sets, sets.c.id == proposals.c.set_id)
                            .where(proposals.c.id.in_(newest), sets.c.status == "filed",
                                   proposals.c.set_id.not_in(undone), proposals.c.set_id.not_in(touched))
                            .order_by(proposals.c.id)).all()
        out = []
        for r in rows:
            mem = members_of(conn, r.set_id)
            if mem and all(ctx.abs(rel).parent == ctx.abs(r.folder) and ctx.abs(rel).exists() for _s, _n, rel in mem):
                out.append(r)
    return out


def run_batch(ctx: Ctx, mode: ModeDecision, tracker: DecisionTracker) -> str | None:
    """Decide every untouched set whose confidence meets the threshold; returns the batch id, if any.

    Each set moves as a whole or not at all: a failed move rolls the set's earlier moves back.
    The batch id is on the proposal before the first move, so after a crash the decision is still
    recognised as the daemon's own and `undo` finds it.
    """
    chosen = [p for p in _open_proposals(ctx) if auto_decides(p.confidence, mode)]
    if not chosen:
        return None
    batch_id = "batch-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    review = ctx.cfg.path("review_queue") / batch_id
    listing = []
    for p in chosen:
        body = json.loads(p.body)
        with ctx.store.read() as conn:
            mem = members_of(conn, p.set_id)
        needs_crop = (body.get("crop") or {}).get("verdict") == "crop"
        with ctx.store.write() as conn:
            conn.execute(update(proposals).where(proposals.c.id == p.id).values(batch_id=batch_id))
        moved: list[dict[str, Any]] = []
        try:
            for sha, name, rel in mem:
                src = ctx.abs(rel)
                area = ("to_crop" if needs_crop else "approved") if sha == p.winner else "rejected"
                dst = unique_destination(ctx.cfg.path(area) / src.name)
                ctx.fileops.move(src, dst, sha256=sha, batch_id=batch_id, note=f"batch decision for set {p.set_id}")
                _relocated(ctx, tracker, sha, src, dst)
                moved.append({"name": name, "sha256": sha, "from": rel, "to": ctx.rel(dst), "winner": sha == p.winner})
        except BestshotError as e:
            _roll_back(ctx, tracker, p.id, batch_id, moved)
            with ctx.store.write() as conn:
                records.record_error(conn, f"set_{p.set_id}", "batch", e)
            continue
        listing.append({"set_id": f"set_{p.set_id}", "moves": moved, "proposal": body})
        winner_file = next((ctx.abs(m["to"]) for m in moved if m["winner"]), None)
        if winner_file is not None:
            review.mkdir(parents=True, exist_ok=True)
            link = review / f"set_{p.set_id}__{winner_file.name}"
            if not link.exists() and not link.is_symlink():
                link.symlink_to(os.path.relpath(winner_file, review))
    if listing:
        atomic_write(review / "batch.json", json.dumps({"batch_id": batch_id, "ts": time.time(), "sets": listing},
                                                       indent=2).encode())
        tracker.evaluate()
        log.info("%s: decided %d sets by itself", batch_id, len(listing))
    return batch_id if listing else None


def _roll_back(ctx: Ctx, tracker: DecisionTracker, proposal_id: int, batch_id: str,
               moved: list[dict[str, Any]]) -> None:
    for m in reversed(moved):
        src, dst = ctx.abs(m["to"]), ctx.abs(m["from"])
        ctx.fileops.move(src, dst, sha256=m["sha256"], batch_id=f"rollback:{batch_id}", note="batch set failed")
        _relocated(ctx, tracker, m["sha256"], src, dst)
    with ctx.store.write() as conn:
        conn.execute(update(proposals).where(proposals.c.id == proposal_id).values(batch_id=None))


def _relocated(ctx: Ctx, tracker: DecisionTracker, sha: str, src: Path, dst: Path) -> None:
    st = dst.stat()
    with ctx.store.write() as conn:
        records.relocate(conn, ctx.rel(src), ctx.rel(dst), sha, st.st_size, st.st_mtime_ns)
    tracker.on_move(sha, ctx.rel(src), ctx.rel(dst))


def undo_batch(ctx: Ctx, batch_id: str, tracker: DecisionTracker) -> int:
    """Restore every file of the batch and retract its decisions; returns the number of files moved back."""
    with ctx.store.read() as conn:
        set_ids = [r[0] for r in conn.execute(select(proposals.c.set_id).where(proposals.c.batch_id == batch_id))]
        rows = conn.execute(select(journal).where(journal.c.batch_id == batch_id, journal.c.state == "done")).all()
    results = ctx.fileops.undo_batch(batch_id)
    restored = {(str(m.dst), str(m.src)) for m in results}
    for r in rows:
        src, dst = ctx.abs(r.src), ctx.abs(r.dst)
        if r.sha256 and (str(dst), str(src)) in restored:
            _relocated(ctx, tracker, r.sha256, dst, src)
    review = ctx.cfg.path("review_queue") / batch_id
    if review.is_dir():
        for item in review.iterdir():  # only our own links and listing live here
            if item.is_symlink() or item.name == "batch.json":
                item.unlink()
        review.rmdir()
    now = datetime.now(UTC)
    for set_id in set_ids:
        with ctx.store.read() as conn:
            last = conn.execute(select(decisions).where(decisions.c.set_id == set_id)
                                .order_by(decisions.c.id.desc()).limit(1)).first()
            state = tracker.state_of(conn, set_id, {})
        if last is not None and last.closed_reason != "retracted":
            line = retraction(state, parse_line(last.line, 1), now)
            tracker.record(set_id, line, None, "batch", last.id)
        with ctx.store.write() as conn:
            # Never decided by batch again: the user undid it, so the user decides it.
            conn.execute(update(proposals).where(proposals.c.set_id == set_id, proposals.c.batch_id == batch_id)
                         .values(batch_id=f"undone:{batch_id}"))
    return len(results)


def batch_ids(ctx: Ctx) -> list[str]:
    with ctx.store.read() as conn:
        return [r[0] for r in conn.execute(select(journal.c.batch_id).where(
            journal.c.batch_id.like("batch-%")).distinct().order_by(journal.c.batch_id))]

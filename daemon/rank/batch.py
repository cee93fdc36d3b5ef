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

from core.atomicfile import atomic_write
from core.errors import BestshotError
from core.labels.decide import retraction
from core.labels.session import parse_line
from core.layout import fit_name
from core.rank.modes import ModeDecision, auto_decides
from daemon.context import Ctx
from daemon.files.fileops import unique_destination
from daemon.labels.decide import DecisionTracker
from daemon.rank.ranking import members_of
from daemon.store import records
from daemon.store.schema import decisions, journal, observations, proposals, set_members, sets

log = logging.getLogger(__name__)


def _open_proposals(ctx: Ctx) -> Sequence[Any]:
    """Latest proposals of sets nobody has touched: still filed, every member still in its set
    folder, no observed move, and never undone from an earlier batch."""
    with ctx.store.read() as conn:
        newest = select(func.max(proposals.c.id)).group_by(proposals.c.set_id)
        undone = select(proposals.c.set_id).where(proposals.c.batch_id.like("undone:%"))
        touched = select(set_members.c.set_id).join(observations, observations.c.sha256 == set_members.c.sha256)
        rows = conn.execute(
            select(proposals, sets.c.folder)
            .join(sets, sets.c.id == proposals.c.set_id)
            .where(
                proposals.c.id.in_(newest),
                sets.c.status == "filed",
                proposals.c.set_id.not_in(undone),
                proposals.c.set_id.not_in(touched),
            )
            .order_by(proposals.c.id)
        ).all()
        out = []
        for r in rows:
            mem = members_of(conn, r.set_id)
            if mem and all(ctx.abs(rel).parent == ctx.abs(r.folder) and ctx.abs(rel).exists() for _s, _n, rel in mem):
                out.append(r)
    return out


def run_batch(ctx: Ctx, mode: ModeDecision, tracker: DecisionTracker) -> str | None:
    """Decide every untouched set whose confidence meets the threshold; returns the batch id, if any.

    Each set moves as a whole or not at all: a failed move rolls the set's earlier moves back, and
    so does `recover_interrupted_batches` after a crash between two moves. The batch id is on the
    proposal before the first move, so after a crash the decision is still recognised as the
    daemon's own and `undo` finds it.
    """
    chosen = [p for p in _open_proposals(ctx) if auto_decides(p.confidence, mode)]
    if not chosen:
        return None
    batch_id = "batch-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    decided = 0
    for p in chosen:
        body = json.loads(p.body)
        with ctx.store.read() as conn:
            mem = members_of(conn, p.set_id)
        needs_crop = (body.get("crop") or {}).get("verdict") == "crop"
        with ctx.store.write() as conn:
            conn.execute(update(proposals).where(proposals.c.id == p.id).values(batch_id=batch_id))
        moved: list[tuple[str, Path, Path]] = []
        try:
            for sha, _name, rel in mem:
                src = ctx.abs(rel)
                area = ("to_crop" if needs_crop else "approved") if sha == p.winner else "rejected"
                dst = unique_destination(ctx.cfg.path(area) / src.name)
                ctx.fileops.move(src, dst, sha256=sha, batch_id=batch_id, note=f"batch decision for set {p.set_id}")
                _relocated(ctx, tracker, sha, src, dst)
                moved.append((sha, src, dst))
        except BestshotError as e:
            _roll_back(ctx, tracker, p.id, batch_id, moved)
            with ctx.store.write() as conn:
                records.record_error(conn, f"set_{p.set_id}", "batch", e)
            continue
        decided += 1
        _link_winner(ctx, batch_id, p.set_id, next((dst for sha, _s, dst in moved if sha == p.winner), None))
    if decided:
        write_listing(ctx, batch_id)
        tracker.evaluate()
        log.info("%s: decided %d sets by itself", batch_id, decided)
    return batch_id if decided else None


def _link_winner(ctx: Ctx, batch_id: str, set_id: str, winner_file: Path | None) -> None:
    if winner_file is None:
        return
    review = ctx.cfg.path("review_queue") / batch_id
    review.mkdir(parents=True, exist_ok=True)
    link = review / fit_name(f"set_{set_id}__{winner_file.stem}", winner_file.suffix)
    if not link.exists() and not link.is_symlink():
        link.symlink_to(os.path.relpath(winner_file, review))


def write_listing(ctx: Ctx, batch_id: str) -> int:
    """`review_queue/<batch>/batch.json`: every set the batch decided, with its moves (from the
    journal) and the proposal beside it. Built from the database, so a batch cut short by a crash
    gets the same listing after recovery. Returns the number of sets listed."""
    with ctx.store.read() as conn:
        props = conn.execute(select(proposals).where(proposals.c.batch_id == batch_id).order_by(proposals.c.id)).all()
        moves = conn.execute(
            select(journal).where(journal.c.batch_id == batch_id, journal.c.state == "done").order_by(journal.c.id)
        ).all()
        names = {p.set_id: {sha: name for sha, name, _rel in members_of(conn, p.set_id)} for p in props}
    listing = []
    for p in props:
        mine = [m for m in moves if m.sha256 in names[p.set_id]]
        listing.append(
            {
                "set_id": f"set_{p.set_id}",
                "proposal": json.loads(p.body),
                "moves": [
                    {
                        "name": names[p.set_id][m.sha256],
                        "sha256": m.sha256,
                        "from": m.src,
                        "to": m.dst,
                        "winner": m.sha256 == p.winner,
                    }
                    for m in mine
                ],
            }
        )
    if listing:
        atomic_write(
            ctx.cfg.path("review_queue") / batch_id / "batch.json",
            json.dumps({"batch_id": batch_id, "ts": time.time(), "sets": listing}, indent=2).encode(),
        )
    return len(listing)


def recover_interrupted_batches(ctx: Ctx, tracker: DecisionTracker) -> list[str]:
    """After a crash (run after `FileOps.recover`): a set the daemon was moving when it died is
    rolled back if only some of its members had moved, so every set moves as a whole or not at
    all; a set whose moves all completed keeps them, gets its review link, and its batch listing
    is rewritten. Returns one line per set touched."""
    out: list[str] = []
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(proposals.c.id, proposals.c.set_id, proposals.c.batch_id, proposals.c.winner)
            .where(proposals.c.batch_id.like("batch-%"))
            .order_by(proposals.c.id)
        ).all()
        open_rows = [r for r in rows if tracker.pending_batch(conn, r.set_id) == r.batch_id]
    listings: set[str] = set()
    for r in open_rows:
        with ctx.store.read() as conn:
            shas = {sha for sha, _n, _rel in members_of(conn, r.set_id)}
            done = [
                m
                for m in conn.execute(
                    select(journal)
                    .where(journal.c.batch_id == r.batch_id, journal.c.state == "done")
                    .order_by(journal.c.id)
                ).all()
                if m.sha256 in shas
            ]
        if len(done) == len(shas):
            for m in done:
                if ctx.abs(m.dst).exists():
                    _relocated(ctx, tracker, m.sha256, ctx.abs(m.src), ctx.abs(m.dst))
            _link_winner(ctx, r.batch_id, r.set_id, next((ctx.abs(m.dst) for m in done if m.sha256 == r.winner), None))
            listings.add(r.batch_id)
            out.append(f"set_{r.set_id}: every file of {r.batch_id} had moved; kept")
            continue
        _roll_back(
            ctx,
            tracker,
            r.id,
            r.batch_id,
            [(m.sha256, ctx.abs(m.src), ctx.abs(m.dst)) for m in done if ctx.abs(m.dst).exists()],
        )
        out.append(f"set_{r.set_id}: {len(done)} of {len(shas)} files of {r.batch_id} had moved; moved back")
    for batch_id in listings:
        write_listing(ctx, batch_id)
    for line in out:
        log.info("batch recovery: %s", line)
    return out


def _roll_back(
    ctx: Ctx, tracker: DecisionTracker, proposal_id: int, batch_id: str, moved: list[tuple[str, Path, Path]]
) -> None:
    """Move a set's files back (newest first) and take the batch id off its proposal."""
    for sha, src, dst in reversed(moved):
        ctx.fileops.move(dst, src, sha256=sha, batch_id=f"rollback:{batch_id}", note="batch set not completed")
        _relocated(ctx, tracker, sha, dst, src)
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
    # The path index and the image rows follow each file back now, so the retraction lines below
    # name the right locations (not only after the next start's reconcile).
    restored = set(ctx.fileops.last_restored)
    for r in rows:
        if r.sha256 and (r.src, r.dst) in restored and ctx.abs(r.src).exists():
            _relocated(ctx, tracker, r.sha256, ctx.abs(r.dst), ctx.abs(r.src))
    review = ctx.cfg.path("review_queue") / batch_id
    if review.is_dir():
        for item in review.iterdir():  # only our own links and listing live here
            if item.is_symlink() or item.name == "batch.json":
                item.unlink()
        review.rmdir()
    now = datetime.now(UTC)
    for set_id in set_ids:
        with ctx.store.read() as conn:
            last = conn.execute(
                select(decisions).where(decisions.c.set_id == set_id).order_by(decisions.c.id.desc()).limit(1)
            ).first()
            state = tracker.state_of(conn, set_id, {})
        if last is not None and last.closed_reason != "retracted":
            line = retraction(state, parse_line(last.line, 1), now)
            tracker.record(set_id, line, None, "batch", last.id)
        with ctx.store.write() as conn:
            # Never decided by batch again: the user undid it, so the user decides it.
            conn.execute(
                update(proposals)
                .where(proposals.c.set_id == set_id, proposals.c.batch_id == batch_id)
                .values(batch_id=f"undone:{batch_id}")
            )
    return len(results)


def batch_ids(ctx: Ctx) -> list[str]:
    with ctx.store.read() as conn:
        return [
            r[0]
            for r in conn.execute(
                select(journal.c.batch_id)
                .where(journal.c.batch_id.like("batch-%"))
                .distinct()
                .order_by(journal.c.batch_id)
            )
        ]

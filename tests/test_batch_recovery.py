"""A crash in the middle of a batch: every set moves as a whole or not at all.

The crash states are made with the daemon's own calls in the order `run_batch` makes them (the
batch id on the proposal, then one journaled move per member) and then abandoned, as a kill -9
would leave them; a new tracker plays the restarted process and runs the start-up steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core.config import load_config
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.labels.decide import DecisionTracker
from daemon.rank.batch import undo_batch
from daemon.rank.loop import RankLoop
from daemon.rank.ranking import members_of
from daemon.store.schema import decisions, proposals
from tests.helpers import image_tree, ingest, restart, session_lines, set_ids, textured, write_png

pytestmark = pytest.mark.slow


@pytest.fixture()
def proposed(tmp_path: Path) -> Ctx:
    root = tmp_path / "root"
    for s in range(2):
        for i in range(3):
            write_png(root / "inbox" / f"set{s}" / f"img_{s}_{i}.png", textured(40 + 10 * s + i, w=64, h=96))
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    ingest(ctx)
    RankLoop(ctx, DecisionTracker(ctx)).round()  # watch mode: a proposal per set
    return ctx


def crash_mid_batch(ctx: Ctx, set_id: str, batch_id: str, moves: int) -> None:
    """What run_batch has done for this set when it dies after `moves` of its members moved."""
    with ctx.store.write() as conn:
        p = conn.execute(
            select(proposals).where(proposals.c.set_id == set_id).order_by(proposals.c.id.desc()).limit(1)
        ).one()
        conn.execute(update(proposals).where(proposals.c.id == p.id).values(batch_id=batch_id))
    with ctx.store.read() as conn:
        mem = members_of(conn, set_id)
    for sha, _name, rel in mem[:moves]:
        src = ctx.abs(rel)
        area = "approved" if sha == p.winner else "rejected"
        ctx.fileops.move(src, ctx.cfg.path(area) / src.name, sha256=sha, batch_id=batch_id)


def test_a_set_cut_short_is_moved_back_whole(proposed: Ctx) -> None:
    ctx = proposed
    before = image_tree(ctx.root)
    first = set_ids(ctx)[0]
    crash_mid_batch(ctx, first, "batch-20261125T000000000", moves=1)
    assert image_tree(ctx.root) != before

    restart(ctx)
    assert image_tree(ctx.root) == before  # every file back in its set folder, bytes unchanged
    with ctx.store.read() as conn:
        assert conn.execute(select(proposals.c.batch_id).where(proposals.c.set_id == first)).scalars().all() == [None]
        assert conn.execute(select(decisions)).all() == []
    assert session_lines(ctx.root) == []  # nothing was decided, by anyone


def test_a_set_whose_moves_all_completed_is_kept_listed_logged_once_and_undoable(proposed: Ctx) -> None:
    ctx = proposed
    before = image_tree(ctx.root)
    batch = "batch-20261125T000000001"
    second = set_ids(ctx)[1]
    crash_mid_batch(ctx, second, batch, moves=3)
    moved = image_tree(ctx.root)

    tracker = restart(ctx)
    restart(ctx)  # a second restart changes nothing and duplicates nothing
    assert image_tree(ctx.root) == moved
    lines = session_lines(ctx.root)
    assert len(lines) == 1 and lines[0]["bestshot"]["source"] == "batch" and lines[0]["bestshot"]["batch_id"] == batch
    review = ctx.cfg.path("review_queue") / batch
    listing = json.loads((review / "batch.json").read_text())
    assert [s["set_id"] for s in listing["sets"]] == [f"set_{second}"]
    assert len(listing["sets"][0]["moves"]) == 3
    assert [p.name for p in review.iterdir() if p.is_symlink()] == [f"set_{second}__{lines[0]['winner']}"]

    assert undo_batch(ctx, batch, tracker) == 3
    assert image_tree(ctx.root) == before

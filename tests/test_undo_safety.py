"""`undo` restores the exact tree: only the content the batch moved, never a rolled-back move, and
the database follows every file back at once (issue 14, defects 1, 2 and the killed undo of 8).

Crash states are made with the daemon's own calls in the order `run_batch` makes them, then
abandoned as a kill -9 leaves them; a new tracker plays the restarted process. The final `undo`
runs as the user runs it: the `bestshot undo` command in a subprocess.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from core.config import load_config
from core.rank.modes import ModeDecision
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.labels.decide import DecisionTracker
from daemon.rank.batch import run_batch, undo_batch
from daemon.rank.loop import RankLoop
from daemon.rank.ranking import members_of
from daemon.store.schema import images, journal, proposals
from tests.helpers import (
    bestshot,
    image_tree,
    ingest,
    restart,
    session_lines,
    set_ids,
    textured,
    write_config,
    write_png,
)

pytestmark = pytest.mark.slow
BATCH_ALL = ModeDecision("batch", "test: decide every set", True, 0.0)


@pytest.fixture()
def same_names(tmp_path: Path) -> Ctx:
    """Two filed sets whose members have the same file names (img_0.png ... img_2.png), proposed."""
    root = tmp_path / "root"
    write_config(root, {"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    for s in range(2):
        for i in range(3):
            write_png(root / "inbox" / f"set{s}" / f"img_{i}.png", textured(70 + 10 * s + i, w=64, h=96))
    ctx = build_ctx(load_config(root / "bestshot.yaml", root=root, env={}))
    ingest(ctx)
    RankLoop(ctx, DecisionTracker(ctx)).round()  # watch mode: a proposal per set
    return ctx


def proposal(ctx: Ctx, set_id: str) -> Any:
    with ctx.store.read() as conn:
        return conn.execute(
            select(proposals).where(proposals.c.set_id == set_id).order_by(proposals.c.id.desc()).limit(1)
        ).one()


def test_undo_never_moves_another_sets_image_into_a_rolled_back_set(same_names: Ctx) -> None:
    """Defect 1: `undo` replayed a rolled-back move by path, moving another set's winner (which
    had reused the freed name exports/approved/img_N.png) into the rolled-back set's folder."""
    ctx = same_names
    a, b = set_ids(ctx)
    with ctx.store.read() as conn:
        names_b = {sha: name for sha, name, _rel in members_of(conn, b)}
        mem_a = members_of(conn, a)
    name = names_b[proposal(ctx, b).winner]  # the name batch 2 will give B's winner in approved/
    # Batch 1 dies right after its first move of set A: A's file of that name went to approved/.
    batch1 = "batch-20261125T000000000"
    with ctx.store.write() as conn:
        conn.execute(update(proposals).where(proposals.c.id == proposal(ctx, a).id).values(batch_id=batch1))
    sha_a, _n, rel_a = next(m for m in mem_a if m[1] == name)
    ctx.fileops.move(ctx.abs(rel_a), ctx.cfg.path("approved") / name, sha256=sha_a, batch_id=batch1)

    tracker = restart(ctx)  # A is rolled back whole
    assert (ctx.abs(rel_a)).exists() and not (ctx.cfg.path("approved") / name).exists()
    batch2 = run_batch(ctx, BATCH_ALL, tracker)  # decides B (A was touched): its winner reuses the name
    assert batch2 is not None
    b_winner = ctx.cfg.path("approved") / name
    assert hashlib.sha256(b_winner.read_bytes()).hexdigest() == proposal(ctx, b).winner

    trash = ctx.root.parent / "Trash"
    trash.mkdir()
    shutil.move(str(ctx.abs(rel_a)), trash / name)  # the user trashes A's file
    before = image_tree(ctx.root)
    ctx.store.close()

    res = bestshot("undo", batch1, root=ctx.root, check=False)
    assert image_tree(ctx.root) == before, res.stdout + res.stderr  # B's winner stays where B's batch put it
    assert "0 files moved back" in res.stdout


def test_undo_refuses_a_file_whose_content_changed_and_says_why(same_names: Ctx) -> None:
    """Defect 1: undo moved whatever file held the recorded name; it must move only the content
    the journal recorded and report what it could not restore, and why."""
    ctx = same_names
    tracker = DecisionTracker(ctx)
    batch = run_batch(ctx, BATCH_ALL, tracker)
    assert batch is not None
    with ctx.store.read() as conn:
        moves = conn.execute(select(journal).where(journal.c.batch_id == batch)).all()
    victim = ctx.abs(moves[0].dst)
    victim.unlink()  # the user deleted it, and later saved another image under that name
    write_png(victim, textured(999, w=64, h=96))
    ctx.store.close()

    res = bestshot("undo", batch, root=ctx.root, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert victim.exists() and not ctx.abs(moves[0].src).exists()  # the stranger stays put
    assert "holds other content" in res.stdout and str(moves[0].dst) in res.stdout
    assert f"{len(moves) - 1} files moved back" in res.stdout


def test_after_undo_the_database_and_the_retraction_place_files_back_in_raw(same_names: Ctx) -> None:
    """Defect 2: after `undo` the database still placed every file in exports/ (undo_batch compared
    reversed path tuples), so retraction lines carried the batch's locations instead of raw."""
    ctx = same_names
    before = image_tree(ctx.root)
    tracker = DecisionTracker(ctx)
    batch = run_batch(ctx, BATCH_ALL, tracker)
    assert batch is not None and image_tree(ctx.root) != before
    n = undo_batch(ctx, batch, tracker)
    assert n == 6 and image_tree(ctx.root) == before
    raw = ctx.rel(ctx.cfg.path("raw")) + "/"
    with ctx.store.read() as conn:
        paths = [r.path for r in conn.execute(select(images.c.path))]
    assert paths and all(p.startswith(raw) for p in paths), paths
    retractions = [line for line in session_lines(ctx.root) if line["bestshot"].get("retracted")]
    assert len(retractions) == 2
    for line in retractions:
        assert set(line["bestshot"]["locations"].values()) == {"raw"}, line


def test_a_killed_undo_is_finished_by_the_next_undo(same_names: Ctx) -> None:
    """Defect 8 (last item): a killed `undo` left journal rows `planned` until the next daemon
    start; `undo` itself must settle them and finish restoring the batch."""
    ctx = same_names
    before = image_tree(ctx.root)
    batch = run_batch(ctx, BATCH_ALL, DecisionTracker(ctx))
    assert batch is not None
    with ctx.store.read() as conn:
        last = conn.execute(
            select(journal).where(journal.c.batch_id == batch).order_by(journal.c.id.desc()).limit(1)
        ).one()
    # What the killed undo left: its first move journaled as planned, the link made, no unlink.
    with ctx.store.write() as conn:
        conn.execute(
            journal.insert().values(
                batch_id=f"undo:{batch}",
                op="move",
                src=last.dst,
                dst=last.src,
                sha256=last.sha256,
                state="planned",
                created_at=last.created_at,
            )
        )
    ctx.abs(last.src).parent.mkdir(parents=True, exist_ok=True)  # the decided set's folder was tidied away
    ctx.abs(last.src).hardlink_to(ctx.abs(last.dst))
    ctx.store.close()

    res = bestshot("undo", batch, root=ctx.root, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert image_tree(ctx.root) == before
    ctx2 = build_ctx(ctx.cfg, with_extractors=False)
    with ctx2.store.read() as conn:
        assert conn.execute(select(journal.c.id).where(journal.c.state == "planned")).all() == []
        raw = ctx.rel(ctx.cfg.path("raw")) + "/"
        assert all(r.path.startswith(raw) for r in conn.execute(select(images.c.path)))

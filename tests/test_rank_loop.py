"""The whole ranking loop over a real root: decisions arrive, the model trains, proposals change,
agreement is computed honestly, modes switch at their thresholds, a batch runs and undo restores
the exact tree.

The simulated user's hidden taste: in each set they pick the darkest image. The prior prefers
well-exposed images, so only learning from the user's decisions can agree with them.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from core.config import load_config
from core.events import FileMoved
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.labels.decide import DecisionTracker
from daemon.labels.tags import read_tags
from daemon.rank.batch import undo_batch
from daemon.rank.loop import RankLoop
from daemon.rank.ranking import history, members_of
from daemon.store import records
from daemon.store.schema import proposals, sets
from daemon.watch.engine import Engine
from tests.helpers import image_tree, ingest, textured, write_png

pytestmark = pytest.mark.slow

N_SETS = 22
LEVELS = (0.35, 0.6, 0.95)  # brightness multipliers: darkest is the user's pick
AREAS = ("inbox", "raw", "exports")  # the loop must leave the inbox untouched too


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ctx, Engine, DecisionTracker, RankLoop]:
    root = tmp_path_factory.mktemp("rank") / "root"
    rng = np.random.default_rng(7)
    for s in range(N_SETS):
        base = textured(1000 + s, w=96, h=128).astype(np.float64)
        for i in rng.permutation(len(LEVELS)):
            write_png(
                root / "inbox" / f"set{s:02}" / f"img_{s:02}_{i}.png",
                np.clip(base * LEVELS[i], 0, 255).astype(np.uint8),
            )
    cfg = load_config(
        root=root,
        env={},
        overrides={
            "extractors": {"enabled": ["phash", "saliency", "quality"]},
            "rank": {
                "recommend_after_decisions": 4,
                "min_train_decisions": 4,
                "retrain_every_decisions": 4,
                "batch_after_agreeing_sets": 6,
                "batch_min_calibration_sets": 6,
                "batch_precision_target": 0.8,
                "precision_bound_z": 0.0,
                "heldout_fraction": 0.25,
                "pca_components": 0,
            },
        },
    )
    ctx = build_ctx(cfg)
    pipeline = ingest(ctx)
    engine, tracker, rank = pipeline.engine, pipeline.tracker, pipeline.rank
    rank.round()
    return ctx, engine, tracker, rank


def latest_proposal(ctx: Ctx, set_id: str) -> dict[str, object]:
    with ctx.store.read() as conn:
        row = conn.execute(
            select(proposals).where(proposals.c.set_id == set_id).order_by(proposals.c.id.desc()).limit(1)
        ).one()
    return dict(row._mapping)


def user_decides(ctx: Ctx, engine: Engine, tracker: DecisionTracker, set_id: str) -> str:
    """The simulated user moves the darkest image to approved/ and the rest to rejected/."""
    with ctx.store.read() as conn:
        mem = members_of(conn, set_id)
    darkest = min(mem, key=lambda m: float(np.asarray(Image.open(ctx.abs(m[2]))).mean()))
    for sha, _name, rel in mem:
        src = ctx.abs(rel)
        dst = ctx.cfg.path("approved" if sha == darkest[0] else "rejected") / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)  # the user's own move (Finder), not a journaled daemon move
        engine.handle(FileMoved(src, dst))  # the event the watcher would deliver
    tracker.evaluate()
    return darkest[0]


def open_sets(ctx: Ctx) -> list[str]:
    with ctx.store.read() as conn:
        return [r.id for r in conn.execute(select(sets.c.id).where(sets.c.status == "filed").order_by(sets.c.id))]


def test_whole_loop(loop: tuple[Ctx, Engine, DecisionTracker, RankLoop]) -> None:
    ctx, engine, tracker, rank = loop
    todo = open_sets(ctx)
    assert len(todo) == N_SETS
    first = latest_proposal(ctx, todo[0])
    assert first["source"] == "prior" and first["mode"] == "watch"
    assert not (ctx.abs(f"raw/set_{todo[0]}") / "proposal.json").exists()  # watch mode: shadow proposals only

    modes = []
    decided = 0
    published = False
    before: dict[str, str] = {}
    while rank.mode is not None and rank.mode.mode != "batch" and decided < N_SETS - 4:
        set_id = open_sets(ctx)[0]
        user_decides(ctx, engine, tracker, set_id)
        decided += 1
        before = image_tree(ctx.root, AREAS)
        rank.round()  # retrain when due, switch modes, propose; in batch mode also decide
        modes.append(rank.mode.mode)
        if rank.mode.mode == "recommend":
            # Recommend mode publishes proposals where the user looks, with the winner tagged.
            for s in open_sets(ctx):
                folder = ctx.abs(f"raw/set_{s}")
                if (folder / "proposal.json").exists():
                    body = json.loads((folder / "proposal.json").read_text())
                    tags = read_tags(folder / body["winner"])
                    published |= any(t.startswith("bestshot:") for t in tags)
    # watch until 4 decisions, then recommend, then batch once 6 agreeing sets are in a row.
    assert modes[:3] == ["watch"] * 3 and modes[3] == "recommend"
    assert modes[-1] == "batch", modes
    assert published
    with ctx.store.read() as conn:
        version = records.get_state(conn, "rank_model")
        hist = history(conn)
    card_file = ctx.cfg.path("models") / "rank" / f"{version}.card.json"
    assert version and card_file.exists() and json.loads(card_file.read_text())

    # Honest agreement: every proposal judged was made before the decision it is judged against,
    # and the learned model agrees more than the prior did.
    for h in hist:
        with ctx.store.read() as conn:
            p = conn.execute(
                select(proposals.c.ts).where(proposals.c.set_id == h.set_id).order_by(proposals.c.id)
            ).first()
        assert p is None or p.ts <= h.ts
    user_hist = [h for h in hist if not h.auto_decided]
    early = [h for h in user_hist if h.source == "prior"]
    late = [h for h in user_hist if h.source == "model"]
    assert early and late
    assert sum(h.agreed for h in late) / len(late) > sum(h.agreed for h in early) / len(early)
    assert all(h.agreed for h in user_hist[-6:])  # the streak that earned batch mode

    # The round that entered batch mode decided confident sets by moving files.
    with ctx.store.read() as conn:
        batch_ids = {
            r.batch_id for r in conn.execute(select(proposals.c.batch_id).where(proposals.c.batch_id.is_not(None)))
        }
    assert len(batch_ids) == 1
    batch_id = batch_ids.pop()
    after = image_tree(ctx.root, AREAS)
    moved_in = set(after) - set(before)
    assert any(k.startswith("exports/approved/") for k in moved_in)
    assert any(k.startswith("exports/rejected/") for k in moved_in)
    review = ctx.cfg.path("review_queue") / batch_id
    assert (review / "batch.json").exists() and any(p.is_symlink() for p in review.iterdir())
    lines = [
        json.loads(ln)
        for f in (ctx.cfg.path("labels") / "sessions").glob("*.jsonl")
        for ln in f.read_text().splitlines()
    ]
    assert any(ln.get("bestshot", {}).get("source") == "batch" for ln in lines)
    # Our own proposal tags on the winners are never taken for the user's anomaly tags.
    assert not [t for ln in lines for t in ln["anomaly_tags"] if t.startswith("bestshot:")]

    from daemon.rank.metrics import compute_metrics, write_chart

    m = compute_metrics(ctx)
    assert m["mode"] == "batch" and m["top1_agreement"] is not None and m["decided_sets"] >= 10
    chart = ctx.cfg.path("labels") / "metrics.png"
    write_chart(ctx, chart, 300)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    undo_batch(ctx, batch_id, tracker)
    restored = image_tree(ctx.root, AREAS)
    diff = {
        k: (before.get(k), restored.get(k)) for k in set(before) | set(restored) if before.get(k) != restored.get(k)
    }
    assert not diff, diff
    assert restored == before  # every file back
    rank.round()  # an undone set is the user's to decide: batch must not redo it
    assert image_tree(ctx.root, AREAS) == before
    assert not review.exists()

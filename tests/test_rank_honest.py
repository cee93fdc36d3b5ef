"""Honest confidence through the real loop: a user who picks at random, one prompt for every set.

- A training run that cannot run says why: in its output, in the log and in `bestshot status`.
- With a single prompt group the salted group split holds out nothing (or everything); the model is
  then judged on the newest decisions, never switched in on 0 held-out sets.
- `bestshot metrics` reports chance beside agreement, and `status` says plainly that agreement is
  not above chance.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from core.config import load_config
from core.events import FileMoved
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.labels.decide import DecisionTracker
from daemon.rank.loop import RankLoop
from daemon.rank.ranking import members_of
from daemon.watch.engine import Engine
from tests.helpers import bestshot, ingest, status, textured, write_png

pytestmark = pytest.mark.slow

N_SETS = 14
RANK = {
    "recommend_after_decisions": 100,
    "min_train_decisions": 4,
    "retrain_every_decisions": 1000,  # training only when the test asks for it
    "pca_components": 0,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ctx, Engine, DecisionTracker, RankLoop]:
    root = tmp_path_factory.mktemp("honest") / "root"
    for s in range(N_SETS):
        base = textured(2000 + s, w=96, h=128).astype(np.float64)
        for i, level in enumerate((0.5, 0.75, 1.0)):
            arr = np.clip(base * level, 0, 255).astype(np.uint8)
            write_png(
                root / "inbox" / f"set{s:02}" / f"img_{s:02}_{i}.png",
                arr,
                {"parameters": "a person waving\nSteps: 20, Seed: 1"},
            )
    overrides = {"extractors": {"enabled": ["phash", "saliency", "quality"]}, "rank": RANK}
    (root / "bestshot.yaml").write_text(yaml.safe_dump(overrides), encoding="utf-8")
    ctx = build_ctx(load_config(root=root, env={}))
    pipeline = ingest(ctx)
    engine, tracker, rank = pipeline.engine, pipeline.tracker, pipeline.rank
    rank.round()  # shadow proposals for every set, before any decision
    return root, ctx, engine, tracker, rank


def decide(ctx: Ctx, engine: Engine, tracker: DecisionTracker, set_id: str, pick: int) -> None:
    with ctx.store.read() as conn:
        mem = members_of(conn, set_id)
    for k, (_sha, _name, rel) in enumerate(mem):
        src = ctx.abs(rel)
        dst = ctx.cfg.path("approved" if k == pick else "rejected") / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
        engine.handle(FileMoved(src, dst))
    tracker.evaluate()


def test_training_and_agreement_say_what_they_know(
    world: tuple[Path, Ctx, Engine, DecisionTracker, RankLoop],
) -> None:
    root, ctx, engine, tracker, _rank = world
    from sqlalchemy import select

    from daemon.store.schema import sets

    with ctx.store.read() as conn:
        ids = [r.id for r in conn.execute(select(sets.c.id).order_by(sets.c.id))]
    assert len(ids) == N_SETS
    picks = np.random.default_rng(5).integers(0, 3, N_SETS)  # no taste at all

    for k in range(2):
        decide(ctx, engine, tracker, ids[k], int(picks[k]))
    out = bestshot("train", root=root)
    assert "no model" in out.stdout and "training needs 4" in out.stdout, out.stdout
    assert "ranking model not trained on 2 decided sets" in out.stderr, out.stderr
    st = status(root)
    assert st["rank_training"].startswith("not trained on 2 decided sets") and "needs 4" in st["rank_training"]

    for k in range(2, N_SETS):
        decide(ctx, engine, tracker, ids[k], int(picks[k]))
    out = bestshot("train", root=root)
    cards = sorted((root / "models" / "rank").glob("*.card.json"))
    assert len(cards) == 1, out.stdout
    card = json.loads(cards[0].read_text())
    # one prompt group: held out by recency, and never judged on nothing
    assert card["split"]["heldout_by"] == "newest decisions"
    assert card["counts"]["heldout_sets"] >= 1
    assert "no held-out sets" not in card["switch"]["reason"]
    assert card["fit"]["temperature"] > 0
    st = status(root)
    assert card["version"] in st["rank_training"] and "held out: newest decisions" in st["rank_training"]

    m = json.loads(bestshot("metrics", "--json", root=root).stdout)
    assert m["chance_top1"] == pytest.approx(1 / 3)
    assert m["top1_agreement"] is not None
    assert m["agreement_above_chance"] is False
    assert Path(m["chart"]).stat().st_size > 0
    text = bestshot("status", root=root).stdout
    assert "against 0.33 by chance: NOT above chance" in text, text

"""The learned hand model through the real daemon loop without any CLIP weights: the `regions`
extractor's descriptors (hand landmark geometry and crop appearance) are its representation.

The user rejects the malformed-hand SD images into rejected/extra_fingers/ (their only hand:
removed), approves the portraits and group shots (every hand: kept) but for one portrait, whose
crop cuts one hand away and keeps the other. With four of the five rejected the gate refuses (too
few removed hands); with the fifth a model on region descriptors is put in force,
and new renditions of a rejected and an approved image are scored by it through the anomalies
extractor. Without the descriptors (hand_clip needs weights that are not here) no model is ever
trained, so every assertion on the model in force fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import Connection

from core.config import load_config
from core.events import FileMoved
from core.extractors.analysis import hand_representations
from daemon.anomaly.hand_model import STATE_KEY, STATUS_KEY, hand_examples
from daemon.app import build_ctx
from daemon.extractors.sidecar_store import stored_result
from daemon.rank.train import run_training
from tests.hand_model_checks import check_model_in_force, hand_images, members_by_name, reject_and_train
from tests.helpers import ingest, move_member, state_value

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]
EXTRACTORS = ["phash", "hands", "pose", "regions", "face", "saliency", "quality", "anomalies", "crop"]


def test_hand_model_learns_from_region_descriptors_without_clip(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    gestures, others = hand_images(shared_data)
    for p in gestures + others:
        (root / "inbox" / p.stem).mkdir(parents=True)
        shutil.copy(p, root / "inbox" / p.stem / p.name)
    cfg = load_config(
        root=root,
        env={},
        overrides={
            "extractors": {
                "device": "cpu",
                "enabled": EXTRACTORS,
            },
            "anomaly": {"hand_model": {"min_positives": 6, "min_negatives": 4}},
        },
    )
    ctx = build_ctx(cfg)
    pipeline = ingest(ctx)
    engine, tracker = pipeline.engine, pipeline.tracker
    members = members_by_name(ctx)
    assert len(members) == 13

    cut = next(p for p in others if p.name.startswith("5c1bf7bf"))  # hands at x 864-975 and 245-336
    for p in others:
        if p is not cut:
            move_member(ctx, engine, tracker, members[p.name][1], "approved")
    # The user crops the right hand away (x 864-975) and keeps the left of the frame.
    src = ctx.abs(members[cut.name][1])
    dst = ctx.cfg.path("to_crop") / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dst)
    engine.handle(FileMoved(src, dst))
    ctx.cfg.path("cropped").mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(ctx.cfg.path("cropped") / "cut_crop.png"), cv2.imread(str(dst))[:, :850])
    engine.reconcile(direct=True)  # finds the crop in cropped/, as the start-up or timer rescan does
    tracker.evaluate()
    for p in gestures[:4]:
        move_member(ctx, engine, tracker, members[p.name][1], "rejected/extra_fingers")
    run_training(ctx)
    assert state_value(ctx, STATE_KEY) is None
    status = str(state_value(ctx, STATUS_KEY))
    assert status == "not trained: 5 removed hands (positives), at least 6 needed", status

    with ctx.store.read() as conn:
        examples, emb_model = hand_examples(ctx, conn)
    assert emb_model == "regions-1"  # no CLIP weights here: the descriptors alone
    # 7 approved images' hands kept; the cut portrait: its right hand cut away, its left hand's box
    # runs off the bottom of the frame (88% inside the crop), so the crop says nothing about it.
    assert sum(e.label for e in examples) == 5 and sum(not e.label for e in examples) == 13

    version, model = reject_and_train(ctx, engine, tracker, members[gestures[4].name][1])
    assert model.cv_auc >= 0.75 and (model.positives, model.negatives) == (6, 13)

    def descriptors(conn: Connection, sha: str) -> np.ndarray:
        reps = hand_representations(
            stored_result(cfg, conn, sha, "regions"), stored_result(cfg, conn, sha, "hand_clip")
        )
        assert set(reps) == {model.embedding_model}
        return reps[model.embedding_model]

    check_model_in_force(ctx, pipeline, model, version, gestures[4], others[0], descriptors)

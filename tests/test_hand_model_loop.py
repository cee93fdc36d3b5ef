"""The learned hand model through the real daemon loop, on the real AI images' hands.

CLIP weights cannot be downloaded here, so the embeddings come from the real OpenCLIP
architecture with seeded random weights, loaded from a checkpoint file as a user's weights would
be (`extractors.clip.checkpoint`). Random-weight embeddings carry little about hands, so this
tests the machinery, not what the model would learn from real weights: the examples the user's
decisions give, the gate that refuses a model that does not generalise, the model in force, and
the uncertain `hand_suspect` regions it adds. `pca_components` is lowered to 4, where these
embeddings still separate the SD-1.5 gesture images from the portraits.

The user rejects the malformed-hand images into rejected/extra_fingers/ (their only hand: cut)
and approves the portraits and group shots (every hand: kept). With four of the five rejected
the held-out AUC stays under the bar and nothing is put in force; with the fifth it clears it.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Connection

from core.config import load_config
from core.extractors.analysis import embedding_model_id
from core.grouping import set_id_for
from daemon.anomaly.hand_model import STATE_KEY, STATUS_KEY, hand_examples
from daemon.app import build_ctx
from daemon.extractors.sidecar_store import stored_result
from daemon.rank.train import run_training
from tests.hand_model_checks import check_model_in_force, hand_images, members_by_name, reject_and_train
from tests.helpers import ingest, move_member, random_clip_checkpoint, state_value

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]
EXTRACTORS = ["phash", "hands", "hand_clip", "pose", "face", "saliency", "quality", "anomalies", "crop"]


def test_hand_model_learns_from_rejections_and_approvals_behind_its_gate(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    gestures, others = hand_images(shared_data)
    for p in gestures + others:
        # A dropped folder's name becomes its set's id, and the cross-validation folds are dealt by
        # sorted set id: content ids keep the folds (and so the gate's first verdict) fixed.
        folder = root / "inbox" / f"set_{set_id_for([hashlib.sha256(p.read_bytes()).hexdigest()])}"
        folder.mkdir(parents=True)
        shutil.copy(p, folder / p.name)
    cfg = load_config(
        root=root,
        env={},
        overrides={
            "extractors": {
                "device": "cpu",
                "enabled": EXTRACTORS,
                "clip": {"checkpoint": str(random_clip_checkpoint(tmp_path))},
            },
            "anomaly": {"hand_model": {"min_positives": 4, "min_negatives": 4, "pca_components": 4}},
        },
    )
    ctx = build_ctx(cfg)
    pipeline = ingest(ctx)
    engine, tracker = pipeline.engine, pipeline.tracker
    members = members_by_name(ctx)
    assert len(members) == 13

    for p in others:
        move_member(ctx, engine, tracker, members[p.name][1], "approved")
    for p in gestures[:4]:
        move_member(ctx, engine, tracker, members[p.name][1], "rejected/extra_fingers")
    run_training(ctx)
    assert state_value(ctx, STATE_KEY) is None
    status = str(state_value(ctx, STATUS_KEY))
    assert status.startswith("not trained: cross-validated AUC") and "below the required 0.750" in status

    with ctx.store.read() as conn:
        examples, emb_model = hand_examples(ctx, conn)
    assert emb_model == "ViT-B-32/laion2b_s34b_b79k"  # the configured checkpoint stands in for those weights
    assert sum(e.label for e in examples) == 4 and sum(not e.label for e in examples) == 15

    version, model = reject_and_train(ctx, engine, tracker, members[gestures[4].name][1])
    assert model.cv_auc >= 0.75 and (model.positives, model.negatives) == (5, 15)

    def clip_embeddings(conn: Connection, sha: str) -> np.ndarray:
        emb = stored_result(cfg, conn, sha, "hand_clip")
        assert emb is not None and embedding_model_id(emb.payload) == model.embedding_model
        out: np.ndarray = emb.arrays["embeddings"].astype(float)
        return out

    check_model_in_force(ctx, pipeline, model, version, gestures[4], others[0], clip_embeddings)

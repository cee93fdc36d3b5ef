"""What both hand model loop tests (CLIP crop embeddings, region descriptors) share: the images,
the step that puts a model in force, and what they check once it is: how new images are scored,
that a restart loads it, that a refused refit keeps it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import Connection, select

from core.anomaly.hand_model import HandModel
from daemon.anomaly.hand_model import STATE_KEY, STATUS_KEY, learn_hand_model
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.extractors.sidecar_store import latest_payload
from daemon.labels.decide import DecisionTracker
from daemon.pipeline import Pipeline
from daemon.rank.ranking import members_of
from daemon.rank.train import run_training
from daemon.store.schema import sets
from daemon.watch.engine import Engine
from tests.helpers import ingest, move_member, state_value

# The hands of a stored image as the model in force reads them (the test asserts they are its kind).
HandVectors = Callable[[Connection, str], np.ndarray]


def hand_images(shared_data: Path) -> tuple[list[Path], list[Path]]:
    """The SD-1.5 malformed-hand gesture images (the user rejects them) and the portraits and group
    shots (approved)."""
    gestures = sorted((shared_data / "ai_malformed_hands").glob("*.jpg"))
    others = sorted((shared_data / "ai_portraits_hands" / "image").glob("*.png")) + sorted(
        (shared_data / "ai_people_flux").glob("*.png")
    )
    return gestures, others


def members_by_name(ctx: Ctx) -> dict[str, tuple[str, str]]:
    """Every set member's (sha256, path) by file name."""
    with ctx.store.read() as conn:
        return {name: (sha, rel) for r in conn.execute(select(sets.c.id)) for sha, name, rel in members_of(conn, r.id)}


def reject_and_train(ctx: Ctx, engine: Engine, tracker: DecisionTracker, rel: str) -> tuple[str, HandModel]:
    """The user rejects one more hand image and training puts a model in force: its version and model."""
    move_member(ctx, engine, tracker, rel, "rejected/extra_fingers")
    run_training(ctx)
    version = state_value(ctx, STATE_KEY)
    assert isinstance(version, str) and str(state_value(ctx, STATUS_KEY)).startswith(f"in force: {version}")
    return version, HandModel.load(ctx.cfg.path("models") / "hands" / f"{version}.json")


def check_model_in_force(
    ctx: Ctx,
    pipeline: Pipeline,
    model: HandModel,
    version: str,
    rejected: Path,
    approved: Path,
    hand_vectors: HandVectors,
) -> None:
    cfg = ctx.cfg
    # New renditions (rescaled by 1%) of a rejected and of an approved image: every hand is scored
    # by the model in force and flagged exactly when at or above the bar.
    for p in (rejected, approved):
        img = cv2.imread(str(p))
        img = cv2.resize(img, (round(img.shape[1] * 0.99), round(img.shape[0] * 0.99)), interpolation=cv2.INTER_AREA)
        (ctx.root / "inbox" / f"new_{p.stem}").mkdir(parents=True)
        cv2.imwrite(str(ctx.root / "inbox" / f"new_{p.stem}" / f"new_{p.stem}.png"), img)
    ingest(ctx, pipeline)
    flagged: dict[str, int] = {}
    with ctx.store.read() as conn:
        new = [
            (sha, name)
            for r in conn.execute(select(sets.c.id))
            for sha, name, _ in members_of(conn, r.id)
            if name.startswith("new_")
        ]
        assert len(new) == 2
        for sha, name in new:
            probs = model.probabilities(hand_vectors(conn, sha))
            report = latest_payload(conn, sha, "anomalies")
            assert report is not None
            suspects = {r["source"]: r for r in report["uncertain_regions"] if r["tag"] == "hand_suspect"}
            for i, p in enumerate(probs):
                if p >= cfg.anomaly.hand_model.flag_probability:
                    flagged[name] = flagged.get(name, 0) + 1
                    ev = suspects[f"hand:{i}"]["evidence"]
                    assert ev["model"] == version and ev["value"] == pytest.approx(p, abs=1e-4)
                else:
                    assert f"hand:{i}" not in suspects or suspects[f"hand:{i}"]["evidence"]["model"] != version
    assert flagged == {f"new_{rejected.stem}.png": 1}, flagged  # the rejected kind only

    restarted = build_ctx(cfg)
    in_force = getattr(restarted.extractor("anomalies"), "hand_model", None)
    assert isinstance(in_force, HandModel) and in_force.version == version

    # A later fit that fails the gate leaves the model in force, and status says both.
    stricter = cfg.model_copy(
        update={
            "anomaly": cfg.anomaly.model_copy(
                update={"hand_model": cfg.anomaly.hand_model.model_copy(update={"min_positives": 50})}
            )
        }
    )
    assert learn_hand_model(dataclasses.replace(ctx, cfg=stricter)) is None
    assert state_value(ctx, STATE_KEY) == version
    assert str(state_value(ctx, STATUS_KEY)).startswith(f"in force: {version}, kept; the new fit was refused: ")

"""The daemon learns the user's calibration of a cue from real decisions and applies it.

A real malformed-hand image (its folded middle finger fires `pip_flexion_deg`, and the crop
proposal says reject because removing the hand would cut the head) arrives as eight slightly
different renditions, each its own set, with a ninth that waits undecided. The user approves six
as they are, rejects one into rejected/extra_fingers/ and crops the hand out of another. After
the training run the daemon schedules, those count 6 kept and 2 removed; the waiting set is
re-analysed and proposed again, and a tenth rendition arriving later is analysed the same way:
the region is reported as suppressed, with the cue's own score in its evidence, and the crop
proposal no longer says reject. A restarted daemon loads the same calibration.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from core.anomaly.model import AnomalyReport
from core.config import load_config
from core.events import FileMoved
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.extractors.extract import run_extract_pass
from daemon.extractors.sidecar_store import latest_payload
from daemon.rank.loop import RankLoop
from daemon.rank.ranking import members_of
from daemon.rank.train import run_training
from daemon.store.schema import proposals, set_members, sets
from tests.helpers import ingest

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]
CUE = "pip_flexion_deg"
EXTRACTORS = ["phash", "hands", "pose", "face", "saliency", "quality", "anomalies", "crop"]


def renditions(src: np.ndarray) -> list[np.ndarray]:
    return [
        src,
        src[:, ::-1],
        cv2.resize(src, None, fx=0.97, fy=0.97),
        cv2.resize(src, None, fx=1.03, fy=1.03),
        np.clip(src.astype(int) + 3, 0, 255).astype(np.uint8),
        np.clip(src.astype(int) - 3, 0, 255).astype(np.uint8),
        cv2.resize(src, None, fx=0.99, fy=0.99),
        np.clip(src.astype(int) + 5, 0, 255).astype(np.uint8),
        cv2.resize(src, None, fx=1.01, fy=1.01),
        cv2.GaussianBlur(src, (3, 3), 0.6),
    ]


def proposed_crop(ctx: Ctx, sha: str) -> dict[str, Any]:
    """The crop in the newest proposal of the set holding this image."""
    with ctx.store.read() as conn:
        set_id = conn.execute(select(set_members.c.set_id).where(set_members.c.sha256 == sha)).scalar_one()
        body = conn.execute(
            select(proposals.c.body).where(proposals.c.set_id == set_id).order_by(proposals.c.id.desc()).limit(1)
        ).scalar_one()
    crop: dict[str, Any] = json.loads(body)["crop"]
    return crop


def report_of(ctx: Ctx, sha: str) -> AnomalyReport:
    with ctx.store.read() as conn:
        payload = latest_payload(conn, sha, "anomalies")
    assert payload is not None
    return AnomalyReport.from_dict(payload)


def test_approving_a_flagged_cue_again_and_again_calibrates_it_away(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    versions = renditions(cv2.imread(str(shared_data / "ai_malformed_hands" / "4.jpg")))
    for i, img in enumerate(versions[:9]):
        (root / "inbox" / f"take{i}").mkdir(parents=True)
        cv2.imwrite(str(root / "inbox" / f"take{i}" / f"take{i}.png"), img)
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": EXTRACTORS}}))
    pipeline = ingest(ctx)
    engine, tracker = pipeline.engine, pipeline.tracker
    rank = RankLoop(ctx, tracker)
    rank.round()  # a (shadow) proposal for every set

    with ctx.store.read() as conn:
        taken = sorted((m for r in conn.execute(select(sets.c.id)) for m in members_of(conn, r.id)), key=lambda m: m[1])
    assert len(taken) == 9
    waiting = taken.pop()  # take8: nobody decides it yet
    assert proposed_crop(ctx, waiting[0])["verdict"] == "reject"
    for k, (sha, _name, rel) in enumerate(taken):
        flagged = report_of(ctx, sha).anomalies
        assert [a.evidence["measurement"] for a in flagged] == [CUE]
        src = ctx.abs(rel)
        # Six approved as they are (malformed finger and all), one rejected for it, one to crop.
        dst = {6: ctx.cfg.path("rejected") / "extra_fingers", 7: ctx.cfg.path("to_crop")}.get(
            k, ctx.cfg.path("approved")
        ) / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
        engine.handle(FileMoved(src, dst))
        if k == 7:  # the user's crop keeps the left of the frame, clear of the hand
            hand = flagged[0].box
            kept = cv2.imread(str(dst))[:, : int(hand.x) - 4]
            crop = ctx.cfg.path("cropped") / "take7_crop.png"
            cv2.imwrite(str(crop), kept)
    engine.reconcile(direct=True)  # finds the crop in cropped/, as the start-up or timer rescan does
    tracker.evaluate()

    run_training(ctx)  # what the daemon runs every few decisions and nightly
    while run_extract_pass(ctx):  # the waiting set's report and crop, again
        pass
    rank.round()
    again = report_of(ctx, waiting[0])
    assert again.scorer.startswith("calibrated:") and not again.anomalies
    assert proposed_crop(ctx, waiting[0])["verdict"] != "reject"

    (root / "inbox" / "take9").mkdir(parents=True)
    cv2.imwrite(str(root / "inbox" / "take9" / "take9.png"), versions[9])
    ingest(ctx, pipeline)
    with ctx.store.read() as conn:
        new = [m for r in conn.execute(select(sets.c.id)) for m in members_of(conn, r.id) if m[1] == "take9.png"]
        crop = latest_payload(conn, new[0][0], "crop")
    after = report_of(ctx, new[0][0])
    assert after.scorer.startswith("calibrated:")
    assert not [a for a in after.anomalies if a.evidence["measurement"] == CUE]
    suppressed = [a for a in after.suppressed if a.evidence["measurement"] == CUE]
    assert suppressed and suppressed[0].score < ctx.cfg.anomaly.min_score <= suppressed[0].evidence["cue_score"]
    assert crop is not None and crop["verdict"] != "reject", crop["reason"]

    restarted = build_ctx(ctx.cfg)
    anomalies = restarted.extractor("anomalies")
    assert getattr(anomalies, "scorer", None) is not None and anomalies.scorer.name == after.scorer  # type: ignore[union-attr]

    from daemon.commands.status import collect

    shown = collect(ctx.cfg)["anomaly_calibration"]
    assert shown["cues"][CUE] == {"removed": 2, "kept": 6} and shown["version"] == after.scorer.split(":", 1)[1]

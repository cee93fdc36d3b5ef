"""Recomputing a cheap extractor (the anomaly report, the crop) after a version bump or a new
calibration reads the stored detector results: no detector model is loaded again. A dependency
that is not stored whole (its mask file gone) is computed again instead."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from core.config import load_config
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.extractors import jobs
from daemon.extractors.extract import run_extract_pass
from daemon.store.schema import images, sidecars
from tests.helpers import ingest, textured, write_png

DETECTORS = ("hands", "pose", "face", "saliency")


def created(ctx: Ctx, name: str) -> dict[str, float]:
    with ctx.store.read() as conn:
        return {
            r.sha256: r.created_at
            for r in conn.execute(select(sidecars.c.sha256, sidecars.c.created_at).where(sidecars.c.extractor == name))
        }


def test_recomputing_the_report_and_crop_reads_stored_detections(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(2):
        write_png(root / "inbox" / "s" / f"img_{i}.png", textured(300 + i, w=96, h=128))
    ctx = build_ctx(
        load_config(
            root=root, env={}, overrides={"extractors": {"enabled": ["phash", *DETECTORS, "anomalies", "crop"]}}
        )
    )
    ingest(ctx)
    for e in ctx.extractors:
        e.close()
    before = {n: created(ctx, n) for n in ("anomalies", "crop", *DETECTORS)}
    with ctx.store.read() as conn:
        shas = sorted(r.sha256 for r in conn.execute(select(images.c.sha256)))
    assert len(shas) == 2 and all(len(before[n]) == 2 for n in before)

    specs = [jobs.JobSpec(e.name, e.version) for e in ctx.extractors if e.name in ("anomalies", "crop")]
    with ctx.store.write() as conn:
        for sha in shas:
            jobs.enqueue(conn, sha, specs)
    assert run_extract_pass(ctx) == 2
    assert not [e.name for e in ctx.extractors if e.loaded], "a detector ran again"
    for n in ("anomalies", "crop"):
        assert all(created(ctx, n)[sha] > before[n][sha] for sha in shas)
    assert all(created(ctx, n) == before[n] for n in DETECTORS)

    # Without its mask file the stored saliency is not whole: it is computed again (not saved,
    # as its own job is done), and the report is still made.
    mask = root / "sidecar" / "saliency" / f"{shas[0]}.npy"
    mask.unlink()
    with ctx.store.write() as conn:
        jobs.enqueue(conn, shas[0], specs[:1])
    assert run_extract_pass(ctx) == 1
    assert [e.name for e in ctx.extractors if e.loaded] == ["saliency"]
    with ctx.store.read() as conn:
        row = conn.execute(
            select(sidecars.c.payload).where(sidecars.c.sha256 == shas[0], sidecars.c.extractor == "anomalies")
        ).one()
    assert json.loads(row.payload)["image_size"] == [96, 128]

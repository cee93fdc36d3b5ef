"""bestshot's own crop previews, written next to a proposed winner, are never taken for the user's
images: not tracked where they are written, not matched as a crop if they end up in cropped/."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from core.config import load_config
from core.layout import PREVIEW_SUFFIX
from daemon.app import build_ctx
from daemon.store.schema import crops, files, sets
from tests.helpers import ingest, textured, write_png


def test_previews_are_not_tracked_but_other_images_there_are(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(2):
        write_png(root / "inbox" / "s" / f"img_{i}.png", textured(70 + i, w=64, h=96))
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    engine = ingest(ctx).engine
    with ctx.store.read() as conn:
        folder = ctx.abs(conn.execute(select(sets.c.folder)).scalar_one())
    preview = folder / f"img_0{PREVIEW_SUFFIX}"
    Image.fromarray(textured(70, w=64, h=96)).save(preview, quality=90)
    other = folder / "someone_elses.jpg"
    shutil.copy(preview, other)
    (ctx.cfg.path("cropped")).mkdir(parents=True, exist_ok=True)
    shutil.copy(preview, ctx.cfg.path("cropped") / preview.name)

    engine.reconcile(direct=True)
    with ctx.store.read() as conn:
        tracked = {Path(r.path).name for r in conn.execute(select(files.c.path))}
        matched = conn.execute(select(crops)).all()
    assert "someone_elses.jpg" in tracked
    assert preview.name not in tracked
    assert matched == []

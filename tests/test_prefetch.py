"""Scan's read-ahead: what was read ahead is used only while it is still the file's content."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import NotReadyError
from core.imaging import decodes_so_far
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.ingest import stages
from daemon.ingest.prefetch import each_prefetched, prefetch
from daemon.ingest.register import ImageTask
from tests.helpers import db_rows, textured, write_config, write_png


def ctx_for(root: Path) -> Ctx:
    write_config(root)
    return build_ctx(load_config(root / "bestshot.yaml", root=root, env={}))


def test_a_file_rewritten_after_it_was_read_ahead_is_registered_as_it_is_now(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = ctx_for(root)
    p = write_png(root / "inbox" / "a.png", textured(1))
    ahead = prefetch(p, ctx.cfg.ingest)
    assert ahead is not None and ahead.image is not None
    write_png(p, textured(2))  # the user saves over it before its turn
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, ahead.mtime_ns + 1_000_000))
    now = hashlib.sha256(p.read_bytes()).hexdigest()
    before = decodes_so_far()
    task = stages.run_image(ctx, ImageTask(p, prefetched=ahead))
    assert task.outcome == "registered" and task.sha256 == now != ahead.sha256
    assert decodes_so_far() - before == 1  # decoded again, from what is there now
    assert db_rows(root, "select sha256 from images") == [(now,)]


def test_pixels_read_ahead_are_not_decoded_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = ctx_for(root)
    p = write_png(root / "inbox" / "a.png", textured(3))
    ahead = prefetch(p, ctx.cfg.ingest)
    assert ahead is not None
    before = decodes_so_far()
    task = stages.run_image(ctx, ImageTask(p, prefetched=ahead))
    assert task.outcome == "registered" and task.image is ahead.image
    assert decodes_so_far() == before


def test_a_truncated_file_read_ahead_is_not_ready_at_the_decode_stage(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = ctx_for(root)
    p = write_png(root / "inbox" / "t.png", textured(4))
    p.write_bytes(p.read_bytes()[:-40])  # no IEND yet: still being written
    ahead = prefetch(p, ctx.cfg.ingest)
    assert ahead is not None and isinstance(ahead.error, NotReadyError)
    with pytest.raises(NotReadyError):
        stages.run_image(ctx, ImageTask(p, prefetched=ahead))


def test_read_ahead_keeps_the_order_and_stops_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = ctx_for(root)
    paths = [write_png(root / "inbox" / f"{i}.png", textured(10 + i)) for i in range(6)]
    got = [(p, a) for p, a in each_prefetched(paths, ctx.cfg.ingest, 2, lambda: False)]
    assert [p for p, _ in got] == paths
    assert all(a is not None and a.image is not None and a.image.path == p for p, a in got)
    seen: list[Path] = []
    for p, _a in each_prefetched(paths, ctx.cfg.ingest, 2, lambda: len(seen) >= 2):
        seen.append(p)
    assert seen == paths[:2]

"""The running daemon rewrites sidecar/*.parquet after its queue drains, deferring a rewrite that
follows another one closely (the files hold every image), and never skips one: the files end up
listing every image."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq

from core.config import load_config
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.store.parquet_export import ExportSchedule
from tests.helpers import db_rows, ingest, textured, wait_for, write_png


def _ingest(ctx: Ctx, folder: Path, seeds: range) -> None:
    for s in seeds:
        write_png(folder / f"img_{s:02}.png", textured(800 + s, w=64, h=96))
    ingest(ctx)


def _hashes(root: Path) -> set[str]:
    return {r["sha256"] for r in pq.read_table(root / "sidecar" / "hashes.parquet").to_pylist()}


def test_a_deferred_export_runs_at_its_deadline_with_everything(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    schedule = ExportSchedule(ctx)
    assert schedule.deadline() is None and not schedule.run_if_due()  # nothing changed: nothing to write

    _ingest(ctx, root / "inbox" / "a", range(0, 2))
    schedule.changed()
    assert schedule.run_if_due()  # the first drain exports at once
    assert _hashes(root) == {r[0] for r in db_rows(root, "SELECT sha256 FROM images")}
    assert schedule.deadline() is None

    _ingest(ctx, root / "inbox" / "b", range(2, 4))
    schedule.changed()
    due = schedule.deadline()
    assert due is not None
    if time.time() < due:  # right after a rewrite: deferred, and the worker is told when to wake
        assert not schedule.run_if_due()
        assert len(_hashes(root)) == 2
    wait_for(lambda: time.time() >= due, timeout=60, what="the export's deadline")
    assert schedule.run_if_due()
    assert _hashes(root) == {r[0] for r in db_rows(root, "SELECT sha256 FROM images")}
    assert len(_hashes(root)) == 4

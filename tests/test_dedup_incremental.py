"""Near-duplicate groups are brought up to date incrementally as images arrive, with the same
groups and per-set marks a full recomputation gives; a library that lost images is recomputed."""

from __future__ import annotations

from pathlib import Path

from core.config import load_config
from daemon.app import build_ctx
from daemon.dedup import refresh_duplicates
from daemon.watch.engine import Engine
from tests.helpers import db_rows, ingest, textured, write_png


def snapshot(root: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    return (
        db_rows(root, "SELECT sha256, group_id FROM dup_groups ORDER BY sha256"),
        db_rows(root, "SELECT set_id, sha256, near_duplicate_of FROM set_members ORDER BY set_id, sha256"),
    )


def test_incremental_refresh_matches_a_full_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    base = [textured(600 + i, w=96, h=128) for i in range(4)]
    for s in range(2):  # two sets, each with a retouch of its first image
        write_png(root / "inbox" / f"s{s}" / "a.png", base[s])
        write_png(root / "inbox" / f"s{s}" / "b.png", textured(610 + s, w=96, h=128, base=base[s], noise=2.0))
        write_png(root / "inbox" / f"s{s}" / "c.png", textured(620 + s, w=96, h=128))
    ingest(ctx)
    first = refresh_duplicates(ctx)
    assert first.mode == "full" and first.groups == 2
    assert refresh_duplicates(ctx).mode == "unchanged"

    # New arrivals: a set with a retouch of set 0's first image, and a set with a pair of its own.
    write_png(root / "inbox" / "s2" / "a.png", textured(630, w=96, h=128, base=base[0], noise=2.0))
    write_png(root / "inbox" / "s2" / "b.png", base[2])
    write_png(root / "inbox" / "s3" / "a.png", base[3])
    write_png(root / "inbox" / "s3" / "b.png", textured(640, w=96, h=128, base=base[3], noise=2.0))
    ingest(ctx)
    step = refresh_duplicates(ctx)
    assert step.mode == "incremental" and step.groups == 3 and step.changed >= 3  # a new smallest sha renames its group
    incremental = snapshot(root)
    assert refresh_duplicates(ctx, full=True).mode == "full"
    assert snapshot(root) == incremental
    assert sum(1 for *_x, mark in incremental[1] if mark is not None) == 3  # one retouch marked per set

    # A grouped image leaves the library: its group must be recomputed, not merged into.
    gone = next(p for p in (root / "raw").rglob("*.png") if p.parent.name.startswith("set_") and p.name == "b.png")
    gone.unlink()
    Engine(ctx).reconcile(direct=True)
    after = refresh_duplicates(ctx)
    assert after.mode == "full"
    kept = snapshot(root)
    assert refresh_duplicates(ctx, full=True).mode == "full" and snapshot(root) == kept

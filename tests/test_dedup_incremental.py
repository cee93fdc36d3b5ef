"""Near-duplicate groups are brought up to date incrementally as images arrive, with the same
groups and per-set marks a full recomputation gives; a library that lost images is recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
    # Sorted: set s0's retouch (rglob's order is the file system's; on ext4 it picked s2's ungrouped b.png).
    gone = next(
        p for p in sorted((root / "raw").rglob("*.png")) if p.parent.name.startswith("set_") and p.name == "b.png"
    )
    gone.unlink()
    Engine(ctx).reconcile(direct=True)
    after = refresh_duplicates(ctx)
    assert after.mode == "full"
    kept = snapshot(root)
    assert refresh_duplicates(ctx, full=True).mode == "full" and snapshot(root) == kept


def test_neighbourhoods_on_the_index_match_a_full_refresh_in_a_windowed_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the window, the incremental refresh reads only the new images' neighbours by mtime
    (ix_images_state_mtime): arrivals at the end and in the middle, then a removal, give what a
    full recomputation gives. Rows are written straight into the real database (no files: only
    the pHash and the arrival order matter here), with a small window so neighbourhoods matter."""
    import sqlite3
    import time

    from daemon import dedup as duplicates

    monkeypatch.setattr(duplicates, "WINDOW", 16)
    root = tmp_path / "root"
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    rng = np.random.default_rng(3)
    db = sqlite3.connect(root / "bestshot.sqlite")

    def add(i: int, mtime: float, phash: str) -> str:
        sha = f"{i:064x}"
        db.execute(
            "INSERT INTO images VALUES (?, ?, ?, 1, 8, 8, 'PNG', ?, ?, 0, 0, 'present')",
            (sha, f"raw/x/{i}.png", f"{i}.png", mtime, phash),
        )
        db.execute(
            "INSERT INTO sidecars VALUES (?, 'phash', 1, ?, NULL, '[]', ?)",
            (sha, f'{{"phash": "{phash}"}}', time.time()),
        )
        return sha

    def cluster(start: int, mtime: float, n: int) -> None:
        h = int(rng.integers(0, 2**63))
        for k in range(n):  # near-duplicates arrive together: 1 bit apart each
            add(start + k, mtime + k * 0.01, f"{h ^ (1 << k):016x}")

    for c in range(40):  # 40 pairs/triples spread over 100 positions, singletons between them
        cluster(c * 10, float(c * 10), 2 + c % 2)
        add(c * 10 + 5, c * 10 + 5.0, f"{int(rng.integers(0, 2**63)):016x}")
    db.commit()
    assert refresh_duplicates(ctx).mode == "full"
    for what in ("end", "middle"):
        if what == "end":
            cluster(1000, 1000.0, 3)
        else:  # a retouch of an early image arrives with an old mtime, and a pair lands mid-library
            (h,) = db.execute("SELECT phash FROM images WHERE sha256 = ?", (f"{10:064x}",)).fetchone()
            add(2000, 10.5, f"{int(h, 16) ^ 0b11:016x}")
            cluster(2100, 200.5, 2)
        db.commit()
        step = refresh_duplicates(ctx)
        assert step.mode == "incremental"
        incremental = snapshot(root)
        assert refresh_duplicates(ctx, full=True).mode == "full"
        assert snapshot(root) == incremental, what
    groups = dict(db_rows(root, "SELECT sha256, group_id FROM dup_groups"))
    assert groups[f"{2000:064x}"] == groups[f"{10:064x}"]  # the late retouch joined its early original
    db.execute("UPDATE images SET state = 'missing' WHERE sha256 = ?", (f"{1000:064x}",))
    db.commit()
    assert refresh_duplicates(ctx).mode == "full"  # a grouped image left: recomputed
    db.close()


def test_a_state_from_before_the_image_counts_still_refreshes_incrementally(tmp_path: Path) -> None:
    """A refresh state written before migration 0007 (no departed count, no group count): the
    stored members are looked up once, and the groups are counted, as that release did."""
    import json
    import sqlite3

    root = tmp_path / "root"
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    base = [textured(700 + i, w=96, h=128) for i in range(3)]
    write_png(root / "inbox" / "s0" / "a.png", base[0])
    write_png(root / "inbox" / "s0" / "b.png", textured(710, w=96, h=128, base=base[0], noise=2.0))
    write_png(root / "inbox" / "s0" / "c.png", base[1])
    ingest(ctx)
    assert refresh_duplicates(ctx).groups == 1
    db = sqlite3.connect(root / "bestshot.sqlite")
    (raw,) = db.execute("SELECT value FROM state WHERE key = 'dedup_refresh'").fetchone()
    old = {k: v for k, v in json.loads(raw).items() if k not in ("departed", "groups")}
    db.execute("UPDATE state SET value = ? WHERE key = 'dedup_refresh'", (json.dumps(old),))
    db.commit()
    db.close()
    assert refresh_duplicates(ctx).mode == "unchanged"

    write_png(root / "inbox" / "s1" / "a.png", base[2])
    write_png(root / "inbox" / "s1" / "b.png", textured(720, w=96, h=128, base=base[2], noise=2.0))
    ingest(ctx)
    step = refresh_duplicates(ctx)
    assert step.mode == "incremental" and step.groups == 2
    incremental = snapshot(root)
    assert refresh_duplicates(ctx, full=True).groups == 2 and snapshot(root) == incremental


def test_many_arrivals_read_the_neighbourhoods_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the new images' windows would read more rows than the library holds, one ordered read
    gives the same neighbourhoods as the look-ups per image, and the refresh the groups a full
    recomputation gives."""
    import sqlite3
    import time

    from daemon import dedup as duplicates

    monkeypatch.setattr(duplicates, "WINDOW", 16)
    root = tmp_path / "root"
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    rng = np.random.default_rng(5)
    db = sqlite3.connect(root / "bestshot.sqlite")

    def add(i: int, phash: int) -> None:
        sha = f"{i:064x}"
        db.execute(
            "INSERT INTO images VALUES (?, ?, ?, 1, 8, 8, 'PNG', ?, ?, 0, 0, 'present')",
            (sha, f"raw/x/{i}.png", f"{i}.png", float(i), f"{phash:016x}"),
        )
        db.execute("INSERT INTO sidecars VALUES (?, 'phash', 1, ?, NULL, '[]', ?)", (sha, "{}", time.time()))

    def pairs(start: int, n: int) -> None:
        for k in range(n):  # a near-duplicate pair, then a stranger
            h = int(rng.integers(0, 2**63))
            add(start + 3 * k, h)
            add(start + 3 * k + 1, h ^ 1)
            add(start + 3 * k + 2, int(rng.integers(0, 2**63)))

    pairs(0, 30)
    db.commit()
    assert refresh_duplicates(ctx).mode == "full"
    with ctx.store.read() as conn:
        everything = conn.execute(duplicates._ordered()).all()
        for picks in ([-1, -2, -3], [0], [5, 50, 51, 89], list(range(0, 90, 7))):
            new = [everything[i] for i in picks]
            by_key = duplicates._neighbourhoods(conn, new, present=10**9)  # a look-up per image
            assert [r.sha256 for r in duplicates._neighbourhoods_in_one_pass(conn, new)] == [
                r.sha256 for r in by_key
            ], picks

    pairs(1000, 10)  # 30 arrivals x a window of 16 > the 120 images
    db.commit()
    step = refresh_duplicates(ctx)
    assert step.mode == "incremental" and step.groups == 40
    incremental = snapshot(root)
    assert refresh_duplicates(ctx, full=True).groups == 40 and snapshot(root) == incremental
    db.close()


@pytest.mark.parametrize("window", [2000, 16])
def test_images_in_no_group_leaving_refresh_incrementally_as_a_full_refresh_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Random images in no group leave (alone, or with arrivals in the same refresh): the refresh
    stays incremental and stores the groups and marks a full recomputation gives; a grouped image
    leaving is still recomputed in full. One window, then windows of 16 (neighbourhoods matter)."""
    import sqlite3
    import time

    from daemon import dedup as duplicates

    monkeypatch.setattr(duplicates, "WINDOW", window)
    root = tmp_path / "root"
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    rng = np.random.default_rng(11)
    db = sqlite3.connect(root / "bestshot.sqlite")
    count = 0

    def add(phash: int) -> str:
        nonlocal count
        count += 1
        sha = f"{int(rng.integers(0, 2**62)):048x}{count:016x}"  # arrival order is not sha order
        db.execute(
            "INSERT INTO images VALUES (?, ?, ?, 1, 8, 8, 'PNG', ?, ?, 0, 0, 'present')",
            (sha, f"raw/x/{count}.png", f"{count}.png", float(count), f"{phash:016x}"),
        )
        db.execute("INSERT INTO sidecars VALUES (?, 'phash', 1, ?, NULL, '[]', ?)", (sha, "{}", time.time()))
        return sha

    def batch(n: int) -> None:
        for _ in range(n):  # a near-duplicate triple or pair, then strangers
            h = int(rng.integers(0, 2**63))
            for k in range(int(rng.integers(2, 4))):
                add(h ^ (1 << k))
            for _ in range(int(rng.integers(1, 4))):
                add(int(rng.integers(0, 2**63)))

    def leave(sha: str) -> None:
        db.execute("UPDATE images SET state = 'missing' WHERE sha256 = ?", (sha,))

    batch(60)
    db.commit()
    assert refresh_duplicates(ctx).mode == "full"
    for step in range(8):
        grouped = {s for (s,) in db.execute("SELECT sha256 FROM dup_groups")}
        alone = sorted(
            s for (s,) in db.execute("SELECT sha256 FROM images WHERE state = 'present'") if s not in grouped
        )
        for sha in rng.choice(alone, size=int(rng.integers(1, 4)), replace=False):
            leave(str(sha))
        if step % 2:
            batch(int(rng.integers(1, 4)))
        db.commit()
        out = refresh_duplicates(ctx)
        assert out.mode == "incremental", step
        incremental = snapshot(root)
        assert refresh_duplicates(ctx, full=True).groups == out.groups and snapshot(root) == incremental, step
        assert refresh_duplicates(ctx).mode == "unchanged"
    leave(sorted(grouped)[0])
    db.commit()
    assert refresh_duplicates(ctx).mode == "full"
    db.close()

"""Fewer fsyncs, nothing lost: what can be found again from the files commits without the WAL's
fsync, a set's moves are journaled in one durable transaction before the first of them, and scan
still writes every row, sidecar and move."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import text

from daemon.cli import main
from daemon.files.fileops import FileOps, PlannedMove
from daemon.store.db import open_store
from tests.helpers import db_rows, filed_sets, textured, write_config, write_png


def test_a_write_is_durable_unless_it_says_otherwise(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = open_store(url)
    with store.write() as conn:
        full = conn.execute(text("PRAGMA synchronous")).scalar()
        conn.execute(text("create table t (x integer)"))
        conn.execute(text("insert into t values (1)"))
    with store.write(durable=False) as conn:
        normal = conn.execute(text("PRAGMA synchronous")).scalar()
        conn.execute(text("insert into t values (2)"))
    with store.write() as conn:  # the pooled connection is durable again
        again = conn.execute(text("PRAGMA synchronous")).scalar()
    store.close()
    assert (full, normal, again) == (2, 1, 2)  # FULL, NORMAL, FULL
    other = open_store(url)
    with other.read() as conn:
        assert [r[0] for r in conn.execute(text("select x from t order by x"))] == [1, 2]
    other.close()


def test_moves_planned_together_and_interrupted_are_recovered_one_by_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    a, b = root / "inbox" / "a.png", root / "inbox" / "b.png"
    write_png(a, textured(1))
    write_png(b, textured(2))
    store = open_store(f"sqlite:///{root / 'bestshot.sqlite'}")
    ops = FileOps(store, root)
    dst = root / "raw" / "set_x"
    ids = ops.plan([PlannedMove(a, dst / "a.png"), PlannedMove(b, dst / "b.png")])
    ops.make(a, dst / "a.png")
    with store.write(durable=False) as conn:
        ops.finish(conn, {ids[0]: None})
    # The process dies here: b's move was journaled and never made.
    lines = FileOps(store, root).recover()
    assert len(lines) == 1 and "interrupted before the move" in lines[0]
    with store.read() as conn:
        states = [r[0] for r in conn.execute(text("select state from journal order by id"))]
    store.close()
    assert states == ["done", "failed"]
    assert (dst / "a.png").is_file() and b.is_file() and not (dst / "b.png").exists()


def test_scan_writes_every_row_sidecar_and_move(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root, {"extractors": {"enabled": ["phash", "saliency"], "images_per_pass": 3}})
    inbox = root / "inbox"
    names = []
    for s in range(2):  # two loose sets of 4, grouped by prompt, each image with its YAML
        for i in range(4):
            name = f"s{s}_{i}.png"
            write_png(inbox / name, textured(10 * s + i, w=160, h=240))
            (inbox / f"s{s}_{i}.yaml").write_text(f"prompt: subject {s}\nseed: {i}\n")
            names.append(name)
    for i in range(3):  # a dropped folder with a caption per image and the folder's meta.yaml
        write_png(inbox / "my batch" / f"f_{i}.png", textured(100 + i, w=160, h=240))
        (inbox / "my batch" / f"f_{i}.txt").write_text(f"caption {i}\n")
    (inbox / "my batch" / "meta.yaml").write_text("prompt: folder set\n")
    try:
        assert main(["scan", "--root", str(root)]) == 0
    finally:
        logging.getLogger().handlers.clear()  # scan configured logging for this process

    n = 11
    assert db_rows(root, "select kind, state, count(*) from jobs group by kind, state order by kind") == [
        ("phash", "done", n),
        ("saliency", "done", n),
    ]
    assert len(db_rows(root, "select 1 from images where phash is not null and path like 'raw/%'")) == n
    assert db_rows(root, "select extractor, count(*) from sidecars group by extractor order by extractor") == [
        ("phash", n),
        ("saliency", n),
    ]
    for (sha,) in db_rows(root, "select sha256 from images"):
        assert (root / "sidecar" / "saliency" / f"{sha}.npy").is_file()
    # Every move journaled and done: 11 images, 11 metadata files, the folder's meta.yaml.
    assert db_rows(root, "select state, count(*) from journal group by state") == [("done", 23)]
    assert sorted(map(sorted, filed_sets(root).values())) == [
        ["f_0.png", "f_1.png", "f_2.png"],
        names[:4],
        names[4:],
    ]
    for folder in (root / "raw").iterdir():
        pngs = sorted(p.stem for p in folder.glob("*.png"))
        meta = sorted(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".txt") and p.name != "meta.yaml")
        assert pngs == meta, folder  # each metadata file beside its image
    assert (root / "raw" / "set_my_batch" / "meta.yaml").is_file()
    assert sorted(p.name for p in inbox.rglob("*")) == []
    paths = db_rows(root, "select path from files")
    assert len(paths) == n and all(p.startswith("raw/") for (p,) in paths)

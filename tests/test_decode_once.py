"""Each image is read, hashed and decoded once from drop to stored sidecars: ingest hands its
pixels to the first extraction pass, where pHash runs with the others."""

from __future__ import annotations

import logging
from pathlib import Path

from core.imaging import decodes_so_far
from daemon.cli import main
from tests.helpers import db_rows, filed_sets, textured, write_config, write_png


def test_scan_decodes_each_image_once_and_groups_loose_files_by_phash(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root, {"extractors": {"enabled": ["phash", "saliency", "quality"], "images_per_pass": 3}})
    base = textured(50, w=160, h=240)
    for i in range(2):  # near-identical, no metadata: only their pHash can put them in one set
        write_png(root / "inbox" / f"near_{i}.png", textured(60 + i, base=base, noise=2.0))
    for i in range(5):
        write_png(root / "inbox" / "folder" / f"f_{i}.png", textured(70 + i, w=160, h=240))
    before = decodes_so_far()
    try:
        assert main(["scan", "--root", str(root)]) == 0
    finally:
        logging.getLogger().handlers.clear()  # scan configured logging for this process
    assert decodes_so_far() - before == 7
    done = db_rows(root, "select kind, count(*) from jobs where state = 'done' group by kind order by kind")
    assert done == [("phash", 7), ("quality", 7), ("saliency", 7)]
    assert len(db_rows(root, "select 1 from images where phash is not null")) == 7
    sets = filed_sets(root)
    assert sorted(map(len, sets.values())) == [2, 5]
    assert ["near_0.png", "near_1.png"] in sets.values()

"""Idle models leave memory: the daemon unloads them after `extractors.unload_idle_seconds` without
images and loads them again for the next image."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import DaemonProc, db_rows, textured, wait_for, write_config, write_png


def hands_done(root: Path) -> int:
    return len(db_rows(root, "select 1 from jobs where kind = 'hands' and state = 'done'"))


def test_daemon_unloads_idle_models_and_reloads_them_for_the_next_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root, {"extractors": {"enabled": ["phash", "hands"], "unload_idle_seconds": 1.0}})
    with DaemonProc(root) as d:
        write_png(root / "inbox" / "a.png", textured(1, w=256, h=384))
        wait_for(lambda: hands_done(root) == 1, timeout=90, what="hands on the first image")
        wait_for(lambda: "unloaded idle models (hands)" in d.output(), timeout=30, what="the unload")
        write_png(root / "inbox" / "b.png", textured(2, w=256, h=384))
        wait_for(lambda: hands_done(root) == 2, timeout=90, what="hands on the next image, model loaded again")
        wait_for(lambda: d.output().count("unloaded idle models (hands)") == 2, timeout=30, what="the second unload")

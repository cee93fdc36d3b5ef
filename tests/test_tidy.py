"""Leftovers: Finder's .DS_Store/._* files never keep a drop folder; a decided set leaves raw/, its
proposal, previews and metadata kept under labels/sets/, bestshot's tags off its files and no
review-queue link to it. Real daemon, real files, real xattrs (user.xdg.tags on Linux)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from core.layout import is_finder_leftover
from daemon.labels.tags import read_tags
from daemon.labels.tidy import remove_if_empty
from tests.helpers import DaemonProc, filed_sets, textured, wait_for, write_config, write_png
from tests.test_watch_log import session_lines

pytestmark = pytest.mark.slow


def _finder_litter(folder: Path) -> None:
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "._b_0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")


def test_only_finder_leftovers_never_keep_a_folder(tmp_path: Path) -> None:
    d = tmp_path / "drop"
    (d / "sub").mkdir(parents=True)
    _finder_litter(d)
    _finder_litter(d / "sub")
    assert remove_if_empty(d) and not d.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    _finder_litter(kept)
    (kept / "notes.txt").write_text("mine")
    assert not remove_if_empty(kept) and (kept / "notes.txt").read_text() == "mine"
    assert is_finder_leftover(".DS_Store") and is_finder_leftover("._x.png") and not is_finder_leftover("x.png")


def test_a_decided_set_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "root"
    # Every proposal uncertain, so the set gets a review-queue link; recommend publishes and tags.
    write_config(root, {"rank": {"uncertain_margin": 1.0}})
    with DaemonProc(root, "--mode", "recommend"):
        staging = tmp_path / "staging" / "my_batch"
        for i in range(2):
            write_png(staging / f"b_{i}.png", textured(400 + i, w=128, h=192))
        (staging / "meta.yaml").write_text(yaml.safe_dump({"prompt": "a portrait"}))
        _finder_litter(staging)
        shutil.move(str(staging), root / "inbox" / "my_batch")
        wait_for(lambda: ["b_0.png", "b_1.png"] in filed_sets(root).values(), timeout=30, what="set filed")
        wait_for(lambda: not (root / "inbox" / "my_batch").exists(), timeout=10, what="drop folder removed")
        folder = root / "raw" / next(k for k, v in filed_sets(root).items() if "b_0.png" in v)
        queue = root / "exports" / "review_queue" / "next"
        wait_for(lambda: (folder / "proposal.json").exists(), timeout=60, what="proposal published")
        wait_for(
            lambda: queue.is_dir() and any(p.name.endswith(folder.name) for p in queue.iterdir()),
            timeout=30,
            what="review link",
        )
        tagged = [n for n in ("b_0.png", "b_1.png") if any(t.startswith("bestshot:") for t in read_tags(folder / n))]
        assert tagged, "recommend mode tags the proposed winner"
        _finder_litter(folder)  # the user opened the set folder in Finder
        approved, rejected = root / "exports" / "approved", root / "exports" / "rejected"
        approved.mkdir(parents=True, exist_ok=True)
        rejected.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / "b_0.png"), approved / "b_0.png")
        shutil.move(str(folder / "b_1.png"), rejected / "b_1.png")
        wait_for(lambda: session_lines(root), timeout=20, what="the decision")
        wait_for(lambda: not folder.exists(), timeout=10, what="decided set folder removed")
        kept = root / "labels" / "sets" / folder.name
        assert (kept / "proposal.json").exists() and (kept / "meta.yaml").exists()
        for f in (approved / "b_0.png", rejected / "b_1.png"):
            wait_for(lambda f=f: not [t for t in read_tags(f) if t.startswith("bestshot:")], 10, what=f"{f} untagged")
        assert not [p for p in queue.iterdir() if p.name.endswith(folder.name)]
        assert len(session_lines(root)) == 1
    assert filed_sets(root) == {}  # raw/ shows undecided sets only


def test_start_up_tidies_decided_sets_an_earlier_version_left_in_raw(tmp_path: Path) -> None:
    from tests.helpers import bestshot

    root = tmp_path / "root"
    write_config(root)
    for i in range(2):
        write_png(root / "inbox" / "old" / f"o_{i}.png", textured(420 + i, w=96, h=128))
    bestshot("scan", root=root)
    folder = root / "raw" / next(iter(filed_sets(root)))
    for i, area in enumerate(("approved", "rejected")):
        (root / "exports" / area).mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / f"o_{i}.png"), root / "exports" / area / f"o_{i}.png")
    bestshot("scan", root=root)  # decides the set, and tidies it
    assert len(session_lines(root)) == 1 and not folder.exists()
    # What an earlier version left behind: the set folder with its proposal and Finder's litter.
    folder.mkdir()
    (folder / "proposal.json").write_text("{}")
    _finder_litter(folder)
    bestshot("scan", root=root)
    assert not folder.exists()
    assert (root / "labels" / "sets" / folder.name / "proposal.json").read_text() == "{}"
    assert len(session_lines(root)) == 1

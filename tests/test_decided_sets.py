"""What happens to a set after the user decided it, with the real daemon on real files:
exporting the winner out of the root keeps the decision; a whole folder trashed or moved out is
handled at once (no reconcile: it runs every 60 minutes here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import DaemonProc, bestshot, db_rows, status, wait_for, write_config
from tests.test_watch_log import drop_set, session_lines

pytestmark = pytest.mark.slow


def _decide(root: Path, folder: Path, name: str, winner: int, n: int) -> None:
    approved, rejected = root / "exports" / "approved", root / "exports" / "rejected"
    approved.mkdir(parents=True, exist_ok=True)
    rejected.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        dst = approved if i == winner else rejected
        shutil.move(str(folder / f"{name}_{i}.png"), dst / f"{name}_{i}.png")


def test_exporting_the_winner_after_the_decision_is_not_a_change_of_mind(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    final, trash = tmp_path / "final", tmp_path / "Trash"
    final.mkdir()
    trash.mkdir()
    with DaemonProc(root):
        folder = drop_set(root, tmp_path, "e", n=3, seed=300)
        _decide(root, folder, "e", winner=1, n=3)
        wait_for(lambda: session_lines(root), timeout=20, what="the decision")
        # The user takes the winner to their final folder and empties rejected/ into the Trash.
        shutil.move(str(root / "exports" / "approved" / "e_1.png"), final / "e_1.png")
        shutil.move(str(root / "exports" / "rejected" / "e_0.png"), trash / "e_0.png")
        wait_for(
            lambda: status(root).get("exported") == 2 or len(session_lines(root)) > 1, timeout=20, what="exports seen"
        )
        lines = session_lines(root)
    assert len(lines) == 1 and lines[0]["winner"] == "e_1.png" and lines[0]["delete"] is False
    assert status(root)["exported"] == 2
    assert "exported 2 images" in bestshot("status", root=root).stdout
    bestshot("scan", root=root)  # start-up re-evaluates every decided set: still the same decision
    assert len(session_lines(root)) == 1
    assert db_rows(root, "select count(*) from decisions") == [(1,)]


def test_a_set_folder_trashed_whole_is_decided_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    trash = tmp_path / "Trash"
    trash.mkdir()
    with DaemonProc(root):
        folder = drop_set(root, tmp_path, "w", n=2, seed=320)
        shutil.move(str(folder), trash / folder.name)  # one event, for the folder only
        wait_for(lambda: session_lines(root), timeout=20, what="a line for the trashed folder")
        (line,) = session_lines(root)
    assert line["winner"] is None and line["delete"] is True
    assert sorted(line["bestshot"]["deleted"]) == ["w_0.png", "w_1.png"]  # type: ignore[index]


def test_a_folder_of_exports_moved_out_after_the_decision_keeps_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    final = tmp_path / "final"
    final.mkdir()
    with DaemonProc(root):
        folder = drop_set(root, tmp_path, "f", n=2, seed=340)
        batch = root / "exports" / "approved" / "client_x"
        batch.mkdir(parents=True)
        (root / "exports" / "rejected").mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / "f_0.png"), batch / "f_0.png")
        shutil.move(str(folder / "f_1.png"), root / "exports" / "rejected" / "f_1.png")
        wait_for(lambda: session_lines(root), timeout=20, what="the decision")
        shutil.move(str(batch), final / "client_x")  # the whole delivery folder leaves the root
        wait_for(lambda: status(root).get("exported") == 1, timeout=20, what="the folder's export seen at once")
        lines = session_lines(root)
    assert len(lines) == 1 and lines[0]["winner"] == "f_0.png"
